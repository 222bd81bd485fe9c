"""Classification metrics as pure functions over gold labels and predictions.

Predictions may be INVALID (no label could be extracted). INVALID is never dropped: it counts as wrong in accuracy,
lowers the valid-response rate, and lowers the recall (hence F1) of the gold class. It is never a predicted class,
so it adds no false positive to any label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from eval.scoring.labels import INVALID


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    _check(gold, pred)
    return float(np.mean([g == p for g, p in zip(gold, pred)])) if gold else 0.0


def valid_rate(pred: Sequence[str]) -> float:
    return float(np.mean([p != INVALID for p in pred])) if pred else 0.0


def confusion_matrix(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Rows: gold labels in `labels` order. Columns: `labels` then INVALID."""
    _check(gold, pred)
    cols = list(labels) + [INVALID]
    index = {lab: i for i, lab in enumerate(cols)}
    mat = [[0] * len(cols) for _ in labels]
    for g, p in zip(gold, pred):
        if g in index and g != INVALID:
            mat[index[g]][index.get(p, len(cols) - 1)] += 1
    return mat


def per_class(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    _check(gold, pred)
    out: dict[str, dict[str, float]] = {}
    for lab in labels:
        tp = sum(1 for g, p in zip(gold, pred) if g == lab and p == lab)
        n_pred = sum(1 for p in pred if p == lab)
        support = sum(1 for g in gold if g == lab)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[lab] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def macro_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> float:
    """Mean F1 over the classes present in gold (a class absent from the test set has no defined recall)."""
    pc = per_class(gold, pred, labels)
    present = [v["f1"] for v in pc.values() if v["support"] > 0]
    return float(np.mean(present)) if present else 0.0


def weighted_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> float:
    pc = per_class(gold, pred, labels)
    total = sum(v["support"] for v in pc.values())
    return float(sum(v["f1"] * v["support"] for v in pc.values()) / total) if total else 0.0


def bootstrap_ci(correct: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `correct` (0/1 per test item, or per-item means over seeds)."""
    x = np.asarray(correct, dtype=float)
    if x.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def majority_baseline(gold: Sequence[str]) -> dict:
    """Accuracy of always answering the test set's most frequent class: the floor every model must clear."""
    if not gold:
        return {"label": None, "accuracy": 0.0}
    label, count = Counter(gold).most_common(1)[0]
    return {"label": label, "accuracy": count / len(gold)}


def collapsed(pred: Sequence[str]) -> bool:
    """Every prediction is the same real label: a constant predictor, whatever its accuracy (near-collapse:
    eval/decide/stats.py)."""
    return len(pred) > 1 and len(set(pred)) == 1 and pred[0] != INVALID


def invalid_breakdown(pred: Sequence[str], statuses: Sequence[str] | None = None) -> dict[str, int]:
    """How many answers are invalid, by reason (eval.scoring.labels.STATUSES). Without statuses (a track that never
    parses text), an INVALID prediction counts as `no_label`."""
    from eval.scoring.labels import STATUSES

    statuses = list(statuses) if statuses is not None else ["valid" if p != INVALID else "no_label" for p in pred]
    if len(statuses) != len(pred):
        raise ValueError(f"{len(statuses)} statuses for {len(pred)} predictions")
    counts = Counter(statuses)
    unknown = sorted(set(counts) - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown parse status {unknown}; known: {list(STATUSES)}")
    return {s: counts.get(s, 0) for s in STATUSES if s != "valid"}


def accuracy_on_valid(gold: Sequence[str], pred: Sequence[str]) -> float | None:
    """Accuracy over the valid answers only: a secondary number (the headline counts invalid answers wrong)."""
    pairs = [(g, p) for g, p in zip(gold, pred) if p != INVALID]
    return float(np.mean([g == p for g, p in pairs])) if pairs else None


def compute_metrics(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str], seed: int = 0,
                    statuses: Sequence[str] | None = None) -> dict:
    """Everything a record stores about one evaluation. `n` is the denominator of every rate."""
    _check(gold, pred)
    correct = [float(g == p) for g, p in zip(gold, pred)]
    return {
        "n": len(gold),
        "accuracy": accuracy(gold, pred),
        "accuracy_ci": list(bootstrap_ci(correct, seed=seed)),
        "valid_rate": valid_rate(pred),
        "n_invalid": sum(1 for p in pred if p == INVALID),
        "invalid": invalid_breakdown(pred, statuses),
        "accuracy_on_valid": accuracy_on_valid(gold, pred),
        "macro_f1": macro_f1(gold, pred, labels),
        "weighted_f1": weighted_f1(gold, pred, labels),
        "per_class": per_class(gold, pred, labels),
        "confusion": {"labels": list(labels) + [INVALID], "matrix": confusion_matrix(gold, pred, labels)},
        "majority_baseline": majority_baseline(gold),
        "collapsed": collapsed(pred),
        "prediction_counts": dict(sorted(Counter(pred).items())),
    }


def _check(gold: Sequence[str], pred: Sequence[str]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold and predictions differ in length: {len(gold)} vs {len(pred)}")
