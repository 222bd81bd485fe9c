"""eval/stats.py against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from eval import stats
from eval.metrics import macro_f1


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
    assert d.diff == pytest.approx(0.10) and d.test == "mcnemar-exact" and d.discordant == (10, 0)
    assert d.p == pytest.approx(2 / 1024)  # 10 of 10 discordant pairs favour a
    se = np.sqrt(0.1 * 0.9 / 100)  # sd of d_i / sqrt(n)
    assert d.ci[0] == pytest.approx(0.10 - 1.96 * se, abs=0.02) and d.ci[1] == pytest.approx(0.10 + 1.96 * se,
                                                                                              abs=0.02)
    # several seeds on both sides: the bootstrap gives the p-value, the estimate is the mean over seeds
    d2 = stats.paired_difference(gold, np.vstack([a, a]), np.vstack([b, a]), k=2, n_boot=500)
    assert d2.test == "paired-bootstrap" and d2.diff == pytest.approx(0.05) and d2.seeds == (2, 2)
    assert d2.ci[0] <= 0.0 + 1e-12  # half of b's seeds equal a: a resample of seeds can give no difference


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
    # invalid answers are not a class: 96% invalid + 4% pos is not "one class"
    assert stats.near_collapse({"[invalid]": 192, "pos": 8}, support, 0.3) is None


def test_break_even_interpolates_on_log_n():
    ns = [16, 64, 256]
    scores = np.array([0.5, 0.6, 0.8])
    boot = np.tile(scores, (50, 1))
    zero_shot = (0, 0.7, np.full(50, 0.7))
    # d = -0.2, -0.1, +0.1: halfway between log 64 and log 256 -> 128
    be = stats.break_even(ns, scores, boot, [zero_shot])
    assert be.n == pytest.approx(128) and be.ci == pytest.approx((128, 128))
    assert stats.break_even(ns, scores, boot, [(0, 0.4, np.full(50, 0.4))]).describe().startswith("already ahead")
    never = stats.break_even(ns, scores, boot, [(0, 0.9, np.full(50, 0.9))])
    assert np.isinf(never.n) and never.describe().startswith("not reached up to n=256")
    # a competitor that needs 64 labels only counts from n = 64 on
    late = stats.break_even(ns, scores, boot, [(64, 0.9, np.full(50, 0.9))])
    assert late.n == 0.0


def test_bootstrap_resamples_seeds():
    gold = np.zeros(50, dtype=np.int64)
    good, bad = np.zeros(50, dtype=np.int64), np.ones(50, dtype=np.int64)
    boot = stats.bootstrap_metric(gold, [np.vstack([good, bad])], k=2, n_boot=400)
    # the two seeds score 1 and 0: resampling seeds gives means 0, 0.5 and 1
    assert set(np.round(boot[:, 0], 3)) == {0.0, 0.5, 1.0}
