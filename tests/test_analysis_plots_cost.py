"""eval/decide/analysis.py (records -> ranked rows, curves, break-even), eval/decide/plots.py (learning curve, cost
plot, Pareto front), eval/run/cost.py (the record's `cost` object) and eval/decide/report_assets.py (the page's inline
CSS/JS), on the synthetic records of tests/decide_fixtures.py whose accuracies are set exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from decide_fixtures import write_results

from eval.decide.analysis import analyse, approach_label, n_labels
from eval.run import cost
from eval.run.records import load_records


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory):
    results, task = write_results(tmp_path_factory.mktemp("decide"))
    records, problems = load_records(results)
    assert not problems
    sets, notes = analyse(records, metric="accuracy", n_boot=200)
    assert list(sets) == [task.name] and not notes
    (ts,) = sets[task.name]  # every record scored the same test items: one test set
    return ts, records


def test_rows_are_ranked_by_the_metric_and_collapse_is_flagged(analysed) -> None:
    ts, _ = analysed
    values = [r.value("accuracy") for r in ts.rows]
    assert ts.rows[0].approach == ("encoders", "minilm-l6", "full") and math.isclose(values[0], 0.95)
    assert values == sorted(values, reverse=True)
    collapsed = {(r.approach, r.n_train) for r in ts.rows if r.collapse}
    assert (("encoders", "minilm-l6", "lora"), 64) in collapsed  # always the majority label: never a win
    assert ts.majority and ts.majority["label"] == "pos"


def test_seeds_pool_and_curves_follow_label_counts(analysed) -> None:
    ts, _ = analysed
    full = ts.curves[("encoders", "minilm-l6", "full")]
    assert [p.n_labels for p in full] == [16, 64, 256]
    assert math.isclose(full[0].value("accuracy"), (0.5 + 0.55) / 2, abs_tol=0.01)  # two seeds averaged
    assert len(full[0].seeds) == 2
    baseline_first = list(ts.curves)[0]
    assert baseline_first[0] == "baseline"  # the registry order: the reference line first
    zero_shot = ts.curves[("prompting", "hf/qwen", "zeroshot")]
    assert [p.n_labels for p in zero_shot] == [0]


def test_break_even_is_computed_for_trained_tracks_only(analysed) -> None:
    ts, _ = analysed
    assert ("encoders", "minilm-l6", "full") in ts.break_even
    assert ("encoders", "minilm-l6", "full") in ts.break_even_prompting  # against prompting alone too
    assert not any(a[0] == "prompting" for a in ts.break_even)


def test_n_labels_and_approach_label() -> None:
    assert n_labels({"n_train_examples": 12, "n_train": 16}) == 12
    assert approach_label(("encoders", "minilm-l6", "full")).startswith("encoders")


def test_plots_are_written_and_the_pareto_front_is_cheapest_best(analysed, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from eval.decide import plots

    ts, _ = analysed
    drawn = plots.learning_curve(ts, tmp_path / "curve.png", max_lines=3)
    assert len(drawn) == 3 and (tmp_path / "curve.png").stat().st_size > 1000
    assert drawn[0] == ("encoders", "minilm-l6", "full")
    assert plots.cost_plot(ts, tmp_path / "cost.png") and (tmp_path / "cost.png").exists()
    assert plots.pareto_front([(1.0, 0.5), (2.0, 0.4), (3.0, 0.9), (0.5, 0.2)]) == [3, 0, 2]
    best = plots.best_per_approach(ts)
    assert len(best) == len(ts.curves) and all(b.collapse is None for b in best
                                               if any(p.collapse is None for p in ts.curves[b.approach]))


def test_cost_record_and_old_records() -> None:
    c = cost.cost_record({"train_s": 12.34567, "eval_s": 2.0}, 100, device="cpu", dtype="torch.bfloat16")
    assert (c["train_s"], c["eval_s"], c["eval_ms_per_example"], c["examples_per_s"]) == (12.346, 2.0, 20.0, 50.0)
    assert c["dtype"] == "bfloat16" and c["device"] == "cpu"
    assert c["peak_rss_mb"] is None or c["peak_rss_mb"] > 0
    assert cost.cost_record({"eval_s": 0.0}, 10)["examples_per_s"] is None  # nothing measured: no rate
    old = cost.cost_of({"timing": {"train_s": 3.0, "eval_s": 4.0}, "metrics": {"n": 8}})
    assert set(old) == set(cost.COST_FIELDS) and old["eval_ms_per_example"] == 500.0 and old["device"] is None
    with cost.Stopwatch() as sw:
        sum(range(1000))
    assert sw.seconds > 0


def test_report_assets_are_self_contained() -> None:
    from eval.decide.report_assets import CSS, JS

    assert "http://" not in CSS + JS and "https://" not in CSS + JS  # no CDN: the page works offline
    assert CSS.count("{") == CSS.count("}") and JS.count("(") == JS.count(")") and JS.count("{") == JS.count("}")
    assert "use strict" in JS


def test_the_test_set_holds_each_item_once_and_every_row_is_scored(analysed) -> None:
    ts, records = analysed
    assert ts.n_items == len(ts.ids) == len(ts.gold) and len(set(ts.ids)) == ts.n_items
    assert np.isfinite([r.value("accuracy") for r in ts.rows]).all()
