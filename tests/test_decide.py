"""The decision layer end to end on synthetic records: leaderboard ties and flags, compare, recommend, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from decide_fixtures import write_results

from eval.decide import compare, leaderboard, recommend, report


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("decide")
    return write_results(folder)[0]


def _row(md: str, method: str, n: str) -> str:
    return next(line for line in md.splitlines() if f" · {method} |" in line and f"| {n} |" in line)


def test_leaderboard_marks_ties_collapse_and_break_even(results):
    out, problems = leaderboard.build(results, plots=False)
    md = out.read_text()
    assert problems == []
    assert "**best**" in _row(md, "full", "256")
    assert "tied" in _row(md, "setfit", "256")  # one item apart from the best: not significantly worse
    assert "worse" in _row(md, "full", "64")
    assert "collapsed" in _row(md, "lora", "64")
    assert "near-collapse: 99% of answers are 'pos'" in _row(md, "lora", "256")
    zs = _row(md, "zeroshot", "0")
    assert "1 / 0 / 1 / 0" in zs  # invalid answers by reason: no label / empty / truncated / error
    assert "0.821" in zs  # accuracy on valid answers: 64 of 78
    # break-even of the encoder (0.725 at 64, 0.95 at 256): behind zero-shot (0.8) at 64, ahead of everything
    # (setfit 0.9375) at 256: an interval between the two measured sizes, never an interpolated point
    assert "**encoders: minilm-l6 full**: overtakes somewhere in (64, 256]" in md
    assert "≈" not in md
    # one test per comparison: every "vs top" CI excludes 0 exactly when its p < 0.05; the family is named
    assert "Family: Holm over the 8 comparisons" in md
    for line in md.splitlines():
        m = re.search(r"(tied|worse|collapsed) [-+]\d\.\d+ \[([-+]\d\.\d+), ([-+]\d\.\d+)\] p=([<\d.]+)", line)
        if m:
            lo, hi = float(m.group(2)), float(m.group(3))
            p = 0.0 if m.group(4).startswith("<") else float(m.group(4))
            assert (lo > 0 or hi < 0) == (p < 0.05), line
    # collapsed rows are never tied, whatever their p
    assert "tied" not in _row(md, "lora", "64") and "tied" not in _row(md, "lora", "256")
    assert "| cpu, float32 |" in zs
    again, _ = leaderboard.build(results, plots=False)
    assert again.read_text() == md
    import os

    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask  # what open() gives, not mkstemp's 0600
    assert out.stat().st_mode & 0o777 == mode
    assert all(p.stat().st_mode & 0o777 == mode for p in (results / "runs").rglob("*.json"))


def test_old_and_hand_edited_records_never_crash(results, tmp_path):
    import shutil

    copy = tmp_path / "r"
    shutil.copytree(results, copy)
    recs = sorted((copy / "runs").rglob("*.json"))
    old = json.loads(recs[0].read_text())
    old.pop("cost")
    old["metrics"].pop("invalid")
    recs[0].write_text(json.dumps(old))
    for rec in recs:  # logs from before texts and statuses were stored
        log = rec.with_suffix(".jsonl")
        rows = [json.loads(x) for x in log.read_text().splitlines()]
        log.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("status", "text")}) + "\n"
                               for r in rows))
    broken = json.loads(recs[1].read_text())
    broken["metrics"].pop("macro_f1")
    recs[1].write_text(json.dumps(broken))
    out, problems = leaderboard.build(copy, plots=False)
    assert len(problems) == 1 and recs[1].name in problems[0] and "metrics.macro_f1" in problems[0]
    assert "n/a" in out.read_text()  # the old record's memory and device
    page, _ = report.build(copy)
    assert "text not stored in this older log" in page.read_text()


def test_compare_paired_and_refuses_other_test_items(results, tmp_path, capsys):
    runs = results / "runs" / "toy"
    full = sorted((runs / "encoders").glob("minilm-l6__full__n256__*s0*.json"))[0]
    setfit = sorted((runs / "encoders").glob("minilm-l6__setfit__*.json"))[0]
    assert compare.main([str(full), str(setfit)]) == 0
    out = capsys.readouterr().out
    assert "1 items only A got right, 0 only B" in out and "no significant difference" in out
    seeds = ",".join(str(p) for p in sorted((runs / "encoders").glob("minilm-l6__full__n256__*.json")))
    assert compare.main([seeds, str(setfit), "--json", "--metric", "macro_f1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test"] == "paired-bootstrap" and res["a"]["seeds"] == [0, 1]
    # the same pair has the same numbers here and on the leaderboard (same replicates), and CI <=> p
    from eval.decide.analysis import analyse
    from eval.run.records import load_records

    ts = analyse(load_records(results)[0])[0]["toy"][0]
    row = next(r for r in ts.rows if r.approach[2] == "setfit")
    assert compare.main([str(setfit), seeds, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["p"] == row.vs_best.p and res["ci"] == list(row.vs_best.ci) and res["diff"] == row.vs_best.diff
    assert (res["ci"][0] > 0 or res["ci"][1] < 0) == (res["p"] < 0.05) == res["significant"]
    # a comma list is the seeds of one configuration: mixing two is refused, not pooled
    assert compare.main([f"{full},{setfit}", seeds]) == 2
    assert "mixes 2 different configurations" in capsys.readouterr().err
    other = json.loads(setfit.read_text())
    other["split_hash"]["test"] = "different"
    moved = tmp_path / setfit.name
    moved.write_text(json.dumps(other))
    moved.with_suffix(".jsonl").write_text(setfit.with_suffix(".jsonl").read_text())
    assert compare.main([str(full), str(moved)]) == 2
    assert "different test items" in capsys.readouterr().err


def test_recommend_answers_and_says_what_is_missing(results, capsys):
    assert recommend.main(["--task", "toy", "--labels", "64", "--results-dir", str(results), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["best"]["approach"] == "prompting: hf/qwen zeroshot"
    assert {o["approach"] for o in res["runners_up"]} >= {"encoders: minilm-l6 full", "baseline: tfidf-lr tfidf-lr"}
    assert all("diff_ci" in o and "p_holm" in o for o in res["runners_up"])
    assert "encoders: minilm-l6 full" in res["break_even"]
    assert res["best"]["eval_ms_per_example"] == pytest.approx(500 / 80, abs=0.01)
    assert recommend.main(["--task", "toy", "--labels", "256", "--results-dir", str(results)]) == 0
    text = capsys.readouterr().out
    assert "Recommended: encoders: minilm-l6 full (n_train=256" in text and "Break-even" in text
    # a budget between measured sizes: the command that adds the missing run
    assert recommend.main(["--task", "toy", "--labels", "128", "--results-dir", str(results)]) == 0
    text = capsys.readouterr().out
    assert "has no run at n=128" in text
    assert ("python encoders/train.py --task toy --model minilm-l6 --method full --n-train 128" in text
            and "--text-column text --label-column label" in text)  # a --data task's commands carry its data flags
    # cost limits: only prompting trains in under 100 s here; nothing evaluates in under 1 ms per example
    assert recommend.main(["--task", "toy", "--labels", "256", "--max-train-s", "100", "--results-dir",
                           str(results), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["approach"] == "prompting: hf/qwen zeroshot"
    assert recommend.main(["--task", "toy", "--labels", "256", "--max-eval-ms", "1", "--results-dir",
                           str(results)]) == 0
    assert "no usable run needs at most 256 labels on toy within the cost limits" in capsys.readouterr().out
    # a task with no records that is no task either: one line, not suggested commands that would fail (#23)
    assert recommend.main(["--task", "nope", "--labels", "16", "--results-dir", str(results)]) == 2
    assert "unknown task 'nope': no records" in capsys.readouterr().err
    # an unknown task: one line, exit 2; a known task without records: the starters
    assert recommend.main(["--task", "rotton", "--labels", "16", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown task 'rotton'" in err and "rotten" in err
    assert recommend.main(["--task", "sst2", "--labels", "16", "--results-dir", str(results)]) == 0
    assert "python baseline/train.py --task sst2 --n-train 16" in capsys.readouterr().out


def test_report_is_one_offline_file(results):
    path, problems = report.build(results)
    page = path.read_text()
    assert path.name == "report.html" and problems == []
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from anywhere
    assert page.count("data:image/png;base64,") >= 2  # learning curve and cost plot inline
    assert 'class="sortable"' in page and "errors only" in page and "Error analysis" in page
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                                re.S).group(1).replace("<\\/", "</"))
    run = next(v for k, v in data["runs"].items() if "zeroshot" in k)
    assert {r[3] for r in run["rows"]} == {"valid", "no_label", "truncated"}
    assert all(t.startswith("review number") for t in next(iter(data["examples"].values()))["texts"])
    assert report.build(results)[0].read_text() == page  # deterministic


def test_suggested_commands_add_seeds_to_the_same_configuration(tmp_path, capsys):
    """A run made with non-default settings (a sweep's options) gets a command carrying them as flags, so its extra
    seeds land on the same configuration: the command's seed-0 run id is the record's."""
    import dataclasses

    from encoders import train as enc
    from eval.tracks import DataRef, track

    t = track("encoders")
    cfg = t.config_from_options("minilm-l6", "full", {"lr": 5e-5, "max_steps": 48, "refit": False, "max_length": 96})
    spec = t.make_spec(cfg, DataRef("drugs"), 64, 0, 50)
    record = {**dataclasses.asdict(spec), "run_id": spec.run_id, "n_eval_requested": 50}
    opts = recommend.run_options(record)
    assert opts is not None and opts["max_steps"] == 48 and opts["refit"] is False and opts["lr"] == 5e-5
    cmd = recommend.command("encoders", "minilm-l6", "full", "drugs", 64, "0", " --n-eval 50", opts)
    assert "--no-refit" in cmd and "--max-steps 48" in cmd and "--max-length 96" in cmd
    argv = cmd.split()[2:] + ["--dry-run", "--results-dir", str(tmp_path)]
    assert enc.cli(argv) == 0
    assert spec.run_id in capsys.readouterr().out  # the same run id: these seeds pool with the record's
    assert recommend.run_options({"track": "nope"}) is None  # unreadable: fall back to the shown options


COMMITTED = Path(__file__).resolve().parents[1] / "results"


def _dry_run(cmd: str, results_dir: Path, records: Path | None = None) -> int:
    """Run a suggested command's own CLI in-process with --dry-run (its preflight and plan, no model); settle reads
    the records it was suggested from (`records`) and, with --dry-run, writes nothing."""
    import shlex

    from eval.tracks import TRACKS

    argv = shlex.split(cmd)
    assert argv[0] == "python", cmd
    script, args = argv[1], argv[2:] + ["--dry-run", "--results-dir", str(results_dir)]
    if script == "eval/settle.py":
        from eval.decide import settle

        return settle.main(argv[2:] + ["--dry-run", "--results-dir", str(records or results_dir)])
    track = next(t for t in TRACKS.values() if t.script == script)
    return track.cli(args)


def _suggested(results_dir: Path, task: str, budgets: tuple[int, ...]) -> list[str]:
    from eval.decide.analysis import analyse
    from eval.run.records import load_records

    records, _ = load_records(results_dir)
    analysed = analyse(records, task=task)
    cmds = []
    for n in budgets:
        res = recommend.recommend(records, task, n, analysed=analysed)
        here = [a["command"] for a in res["add_runs"]]
        assert len(here) == len(set(here)), f"duplicate suggestions at {n}: {here}"
        cmds += here
    return list(dict.fromkeys(cmds))


@pytest.mark.parametrize("task", ["drugs", "rotten", "chnsenti"])
def test_every_suggested_command_passes_its_dry_run_committed(task, tmp_path, capsys):
    """Every command recommend prints for the committed records (budgets 0 to past the pool) passes its own
    track's preflight here; no run asks for more examples than the pool, no zero-shot run for several seeds."""
    cmds = _suggested(COMMITTED, task, (0, 16, 64, 256, 1024, 100_000))
    assert cmds
    for cmd in cmds:
        assert "--n-train 0 " not in cmd and "--n-train 100000" not in cmd, cmd
        if "--shots 0 " in cmd:
            assert "--seeds 0 " in cmd + " " and "--seeds 0 1" not in cmd, cmd
        assert _dry_run(cmd, tmp_path, COMMITTED) == 0, (cmd, capsys.readouterr().err)
    assert not (COMMITTED / "settle").exists()  # a dry run writes no plan


def test_every_suggested_command_passes_its_dry_run_data_task(results, tmp_path, capsys):
    cmds = _suggested(results, "toy", (0, 16, 64, 128, 256, 1024))
    assert any("--n-train full" in c for c in cmds)  # 1024 > the 256-example pool: capped, not refused
    for cmd in cmds:
        assert "--data " in cmd and "--task toy " in cmd, cmd
        assert _dry_run(cmd, tmp_path, results) == 0, (cmd, capsys.readouterr().err)


def test_labels_zero_suggests_only_what_needs_no_labels(tmp_path, capsys):
    res = recommend.recommend([], "drugs", 0)  # no records at all, an offline task
    assert res["add_runs"] and all("--n-train" not in a["command"] for a in res["add_runs"])
    for a in res["add_runs"]:
        assert _dry_run(a["command"], tmp_path) == 0, capsys.readouterr().err


def test_never_recommends_what_does_not_beat_the_constant(capsys):
    """drugs at 64 labels (committed records): SetFit is the most accurate (0.665) but its paired difference to
    always answering 'positive' straddles 0 -- it is not called best anywhere."""
    assert recommend.main(["--task", "drugs", "--labels", "64", "--results-dir", str(COMMITTED), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["best"] is None and res["leader"]["approach"] == "encoders: minilm-l6 setfit"
    assert any("not shown to beat always answering 'positive'" in n for n in res["notes"])
    # prompting on drugs ran on a 64-item prefix of the fixed test order: compared there, on the shared items
    shared = {c["approach"]: c for c in res["shared_items"]}
    assert shared["prompting: hf/gemma3-270m fewshot-score"]["n_items"] == 64
    assert len(res["shared_items"]) == len(shared)  # each approach once, on its largest shared set
    for c in res["shared_items"]:
        assert (c["ci"][0] > 0 or c["ci"][1] < 0) == (c["p"] < 0.05)
    from eval.decide.analysis import analyse
    from eval.run.records import load_records

    sets, _ = analyse(load_records(COMMITTED)[0], task="drugs")
    for ts in sets["drugs"]:
        for r in ts.rows:
            if r.is_best:
                assert r.vs_majority.ci[0] > 0 and r.collapse is None
            if r.collapse:
                assert not r.tied and not r.is_best


def test_committed_pairs_one_test_same_numbers_everywhere(capsys):
    """For every pair of rows of every committed test set: the CI excludes 0 exactly when p < 0.05; the leaderboard's
    numbers for a row are the table's difference to its top row, recommend's are the same difference, and compare
    on the same records gives the same numbers (checked on a spread of pairs)."""
    from itertools import combinations

    from eval.decide.analysis import analyse
    from eval.run.records import load_records

    records = load_records(COMMITTED)[0]
    sets, _ = analyse(records)
    checked = 0
    for task, task_sets in sets.items():
        for ts in task_sets:
            rows = [r for r in ts.rows if r.preds is not None]
            for i, (a, b) in enumerate(combinations(rows, 2)):
                d = ts.difference(a, b)
                assert (d.ci[0] > 0 or d.ci[1] < 0) == (d.p < 0.05), (task, a.name, b.name, d)
                if i % 25 == 0:
                    res = compare.compare(compare.load_side(",".join(r["_path"] for r in a.records)),
                                          compare.load_side(",".join(r["_path"] for r in b.records)))
                    assert (res["diff"], res["ci"], res["p"]) == (d.diff, list(d.ci), d.p), (a.name, b.name)
                checked += 1
            top = ts.top
            for r in rows:
                if r.vs_best is not None:
                    assert r.vs_best == ts.difference(r, top)
    assert checked > 200  # 213 pairs in the committed records
    # recommend shows the same unadjusted numbers for the same pair (its Holm family is its own, and named)
    res = recommend.recommend(records, "rotten", 64)
    ts = sets["rotten"][0]
    leader = next(r for r in ts.rows if r.name == res["leader"]["approach"] and r.n_train == res["leader"]["n_train"])
    for o in res["runners_up"]:
        row = next(r for r in ts.rows if r.name == o["approach"] and r.n_train == o["n_train"]
                   and r.shown_options == o["options"])
        d = ts.difference(row, leader)
        assert (o["diff"], o["diff_ci"], o["p"]) == (d.diff, list(d.ci), d.p)
    assert "Holm over the" in res["family"]


def test_tied_means_the_cheapest_and_a_lone_option_says_so(capsys):
    """chnsenti (committed): at 1024 labels TF-IDF (0.12 ms/example) is tied with zero-shot Qwen (512 ms/example),
    which is more accurate: recommend takes the cheaper one and says why; at 0 labels there is one option."""
    assert recommend.main(["--task", "chnsenti", "--labels", "1024", "--results-dir", str(COMMITTED)]) == 0
    out = capsys.readouterr().out
    assert "Recommended: baseline: tfidf-lr tfidf-lr-balanced" in out
    assert "tied within noise (2 options): baseline: tfidf-lr tfidf-lr-balanced costs 0.12 ms/example against " \
           "512.29" in out and "take it unless more evidence separates them" in out
    assert recommend.main(["--task", "chnsenti", "--labels", "0", "--results-dir", str(COMMITTED)]) == 0
    out = capsys.readouterr().out
    assert "Only option measured" in out and "NOT significant" not in out
    # a budget past every measurement says so: rotten's mpnet-base stops at 256
    assert recommend.main(["--task", "rotten", "--labels", "1024", "--results-dir", str(COMMITTED)]) == 0
    assert "encoders: mpnet-base full was measured only up to n=256" in capsys.readouterr().out
