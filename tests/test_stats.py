"""eval/decide/stats.py against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from eval.decide import stats
from eval.scoring.metrics import macro_f1


def test_mcnemar_exact_on_a_known_table():
    # 8 items only a got right, 2 only b: p = 2 * P(X <= 2 | n=10, 1/2) = 2 * (1 + 10 + 45) / 1024
    a = [True] * 8 + [False] * 2 + [True] * 5 + [False] * 5
    b = [False] * 8 + [True] * 2 + [True] * 5 + [False] * 5
    n10, n01, p = stats.mcnemar_exact(a, b)
    assert (n10, n01) == (8, 2) and p == pytest.approx(112 / 1024)
    assert stats.mcnemar_exact([True, False], [True, False])[2] == 1.0  # no discordant pair


def test_holm_step_down():
    # sorted 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_paired_difference_known_difference_and_width():
    # 100 items; a is right on 80, b on the same 70 of them: every difference is a-only, d_i in {0, 1}
    gold = np.zeros(100, dtype=np.int64)
    a = np.where(np.arange(100) < 80, 0, 1)[None, :]
    b = np.where(np.arange(100) < 70, 0, 1)[None, :]
    d = stats.paired_difference(gold, a, b, k=2, n_boot=4000, seed=1)
    assert d.diff == pytest.approx(0.10) and d.test == "paired-bootstrap" and d.discordant == (10, 0)
    # no replicate can favour b, and P(no discordant item drawn) = 0.9^100: p is at its floor 1/B, not 1/1001
    assert d.p == pytest.approx(1 / 4000)
    assert stats.mcnemar_exact(a[0] == gold, b[0] == gold)[2] == pytest.approx(2 / 1024)  # the exact cross-check
    se = np.sqrt(0.1 * 0.9 / 100)  # sd of d_i / sqrt(n)
    assert d.ci[0] == pytest.approx(0.10 - 1.96 * se, abs=0.02) and d.ci[1] == pytest.approx(0.10 + 1.96 * se,
                                                                                              abs=0.02)
    # several seeds on both sides: the same procedure, the estimate is the mean over seeds
    d2 = stats.paired_difference(gold, np.vstack([a, a]), np.vstack([b, a]), k=2, n_boot=500)
    assert d2.test == "paired-bootstrap" and d2.diff == pytest.approx(0.05) and d2.seeds == (2, 2)
    assert d2.ci[0] <= 0.0 + 1e-12  # half of b's seeds equal a: a resample of seeds can give no difference


def test_ci_excludes_zero_exactly_when_p_is_below_alpha():
    """One procedure per comparison: over random pairs, replicate counts and seed counts, never a CI that excludes 0
    with p >= 0.05 or the other way round (the defect: a bootstrap CI beside a McNemar p)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(20, 120))
        gold = rng.integers(0, 3, n)
        runs = [np.where(rng.random((int(rng.integers(1, 4)), n)) < acc, gold, rng.integers(0, 4, n))
                for acc in rng.uniform(0.4, 0.9, 2)]
        for metric in ("accuracy", "macro_f1"):
            d = stats.paired_difference(gold, *runs, k=3, metric=metric, n_boot=int(rng.integers(1000, 2500)))
            assert (d.ci[0] > 0 or d.ci[1] < 0) == (d.p < 0.05) == d.significant


def test_same_pair_same_numbers_in_any_table():
    """The seed resampling of a run is drawn from its identity, so a pair's replicates do not depend on which other
    runs a table holds (the leaderboard, recommend and compare agree)."""
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 60)
    a, b, c = (np.where(rng.random((2, 60)) < 0.7, gold, 1 - gold) for _ in range(3))
    two = stats.bootstrap_metric(gold, [a, b], 2, n_boot=1000, keys=[11, 22])
    three = stats.bootstrap_metric(gold, [c, a, b], 2, n_boot=1000, keys=[33, 11, 22])
    assert np.array_equal(two, three[:, 1:])


def test_tost_equivalence():
    rng = np.random.default_rng(1)
    close = rng.normal(0.0, 0.005, 4000)
    p, ci = stats.tost(close, margin=0.02)
    assert p < 0.05 and -0.02 < ci[0] < ci[1] < 0.02
    wide = rng.normal(0.0, 0.03, 4000)
    assert stats.tost(wide, margin=0.02)[0] > 0.05


def test_weighted_metric_matches_the_record_metrics():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    gold = rng.integers(0, 3, 200)
    pred = rng.integers(0, 4, 200)  # 3 = invalid
    names = labels + ["[invalid]"]
    expected = macro_f1([names[i] for i in gold], [names[i] for i in pred], labels)
    assert stats.metric_value(gold, pred, 3, "macro_f1") == pytest.approx(expected)
    # integer weights = repeating items
    w = rng.integers(0, 3, 200).astype(float)
    rep = np.repeat(np.arange(200), w.astype(int))
    assert stats.metric_value(gold, pred, 3, "macro_f1", w) == pytest.approx(
        stats.metric_value(gold[rep], pred[rep], 3, "macro_f1"))
    assert stats.metric_value(gold, pred, 3, "accuracy", w) == pytest.approx(np.mean(gold[rep] == pred[rep]))


def test_near_collapse_both_rules():
    support = {"neg": 60, "neu": 20, "pos": 120}
    # constant "pos": F1 = 2*120/(120+200) = 0.75, over 3 classes = 0.25
    assert stats.constant_macro_f1(support) == pytest.approx(0.25)
    assert "96% of answers are 'pos'" in stats.near_collapse({"pos": 192, "neg": 8}, support, 0.4)
    assert "constant predictor's 0.250" in stats.near_collapse({"pos": 150, "neg": 50}, support, 0.21)
    assert stats.near_collapse({"pos": 150, "neg": 50}, support, 0.30) is None
    # invalid answers are their own class: never saying anything but 'pos' (or nothing) is a constant predictor
    assert "95% of answers are 'pos' or invalid" in stats.near_collapse({"pos": 180, "[invalid]": 10, "neg": 10},
                                                                        support, 0.4)
    assert "100% of answers are 'pos' or invalid (4% / 96%)" in stats.near_collapse({"[invalid]": 192, "pos": 8},
                                                                                  support, 0.3)
    assert "100% of answers are invalid" in stats.near_collapse({"[invalid]": 200}, support, 0.0)
    two = {"negative": 50, "positive": 50}
    assert stats.near_collapse({"positive": 90, "[invalid]": 10}, two, 0.45) is not None  # the case
    assert stats.near_collapse({"positive": 80, "negative": 10, "[invalid]": 10}, two, 0.45) is None


def test_break_even_intervals_between_measured_sizes():
    ns = [16, 64, 256]
    scores = np.array([0.5, 0.6, 0.8])
    boot = np.tile(scores, (50, 1))
    zero_shot = (0, 0.7, np.full(50, 0.7))
    # d = -0.2, -0.1, +0.1: somewhere in (64, 256], never a point between them
    be = stats.break_even(ns, scores, boot, [zero_shot])
    assert be.crossings == (("overtakes", 64.0, 256.0),) and be.ci == (64.0, 256.0) and be.first == (64.0, 256.0)
    assert "overtakes somewhere in (64, 256]" in be.describe() and "≈" not in be.describe()
    ahead = stats.break_even(ns, scores, boot, [(0, 0.4, np.full(50, 0.4))])
    assert ahead.describe().startswith("ahead from its smallest measured n (16)")
    never = stats.break_even(ns, scores, boot, [(0, 0.9, np.full(50, 0.9))])
    assert never.first is None and never.describe().startswith("not ahead at any measured n up to 256")
    # a competitor measured at 128 is compared at 128 (A credited with its best run at <= 128: 0.6): A falls
    # behind there and overtakes again at 256; a competitor needing 64 labels only counts from 64 on
    late = stats.break_even(ns, scores, boot, [(64, 0.55, np.full(50, 0.55)), (128, 0.7, np.full(50, 0.7))])
    assert late.grid == (16.0, 64.0, 128.0, 256.0)
    assert late.crossings == (("overtakes", 0.0, 16.0), ("falls behind", 64.0, 128.0), ("overtakes", 128.0, 256.0))
    assert "falls behind again somewhere in (64, 128]" in late.describe()
    # a collapsed earlier point (-inf) does not snap the crossing to the next measured size: it stays an interval
    collapsed = stats.break_even(ns, np.array([-np.inf, 0.6, 0.8]), boot, [zero_shot])
    assert collapsed.first == (64.0, 256.0)
    # noisy replicates: ahead at the start in some, never in others -> undetermined, said as such
    rng = np.random.default_rng(0)
    noisy = rng.normal(0.7, 0.1, (400, 3))
    und = stats.break_even(ns, np.array([0.7, 0.7, 0.7]), noisy, [(0, 0.7, np.full(400, 0.7))])
    assert und.undetermined and "undetermined (from the start to past n=256)" in und.describe()


def test_bootstrap_resamples_seeds():
    gold = np.zeros(50, dtype=np.int64)
    good, bad = np.zeros(50, dtype=np.int64), np.ones(50, dtype=np.int64)
    boot = stats.bootstrap_metric(gold, [np.vstack([good, bad])], k=2, n_boot=400)
    # the two seeds score 1 and 0: resampling seeds gives means 0, 0.5 and 1
    assert set(np.round(boot[:, 0], 3)) == {0.0, 0.5, 1.0}
