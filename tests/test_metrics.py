import pytest

from eval.scoring.labels import INVALID
from eval.scoring.metrics import (
    accuracy,
    bootstrap_ci,
    collapsed,
    compute_metrics,
    confusion_matrix,
    macro_f1,
    majority_baseline,
    per_class,
    valid_rate,
    weighted_f1,
)

LABELS = ["neg", "pos"]
GOLD = ["neg", "neg", "pos", "pos"]


def test_invalid_counts_wrong_and_stays_in_denominator():
    pred = ["neg", INVALID, "pos", INVALID]
    assert accuracy(GOLD, pred) == 0.5
    assert valid_rate(pred) == 0.5
    m = compute_metrics(GOLD, pred, LABELS)
    assert m["n"] == 4 and m["n_invalid"] == 2


def test_per_class_and_f1_by_hand():
    pred = ["neg", "pos", "pos", INVALID]
    pc = per_class(GOLD, pred, LABELS)
    assert pc["neg"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    # pos: tp=1, predicted twice, support 2; the INVALID lowers recall but adds no false positive
    assert pc["pos"]["precision"] == 0.5 and pc["pos"]["recall"] == 0.5
    assert macro_f1(GOLD, pred, LABELS) == pytest.approx((2 / 3 + 0.5) / 2)
    assert weighted_f1(GOLD, pred, LABELS) == pytest.approx((2 / 3 + 0.5) / 2)


def test_macro_f1_matches_sklearn_on_valid_predictions():
    from sklearn.metrics import f1_score

    gold = ["a", "b", "c", "a", "b", "c", "a"]
    pred = ["a", "c", "c", "a", "b", "a", "b"]
    assert macro_f1(gold, pred, ["a", "b", "c"]) == pytest.approx(f1_score(gold, pred, average="macro"))


def test_confusion_matrix_has_invalid_column():
    m = confusion_matrix(GOLD, ["neg", INVALID, "neg", "pos"], LABELS)
    assert m == [[1, 0, 1], [1, 1, 0]]


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    correct = [1] * 80 + [0] * 20
    lo, hi = bootstrap_ci(correct, seed=0)
    assert lo < 0.8 < hi and 0.05 < hi - lo < 0.25
    assert bootstrap_ci(correct, seed=0) == (lo, hi)
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    assert bootstrap_ci([]) == (0.0, 0.0)


def test_majority_baseline_and_collapsed():
    assert majority_baseline(["a", "b", "b"]) == {"label": "b", "accuracy": pytest.approx(2 / 3)}
    assert collapsed(["pos"] * 5)
    assert not collapsed(["pos", "neg"])
    assert not collapsed([INVALID] * 3)  # all-invalid shows up as valid_rate 0, not as a constant predictor
    assert compute_metrics(GOLD, ["pos"] * 4, LABELS)["collapsed"]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(["a"], ["a", "b"])
