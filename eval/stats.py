"""Paired statistics over runs on the same test items, as pure functions (docs/decide.md explains each choice).

- `bootstrap_metric`: one engine for every interval. Each replicate resamples the test items once (shared by every
  run, which is what makes comparisons paired) and, for a run with several seeds, resamples its seeds; it returns
  each run's metric per replicate. Differences, their CIs and p-values, and break-even CIs all come from it.
- `mcnemar_exact`: McNemar's exact test for two single-seed runs' accuracy (binomial test on the discordant
  pairs, scipy.stats.binomtest).
- `holm`: Holm's step-down adjustment of a family of p-values.
- `near_collapse`: a run that is (almost) a constant predictor, whatever its accuracy.
- `break_even`: the smallest label count at which an approach beats everything that needs no more labels.

Predictions are integer-coded: label index 0..K-1, and K for an invalid answer (never a class, always wrong).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("accuracy", "macro_f1")


def encode(gold: Sequence[str], preds: Sequence[Sequence[str]], labels: Sequence[str]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Gold (n,) and predictions (seeds, n) as integers; anything outside `labels` (INVALID) becomes K."""
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    g = np.array([index.get(x, k) for x in gold], dtype=np.int64)
    p = np.array([[index.get(x, k) for x in row] for row in preds], dtype=np.int64).reshape(len(preds), len(gold))
    return g, p


def metric_value(gold: np.ndarray, pred: np.ndarray, k: int, metric: str, weights: np.ndarray | None = None) -> float:
    """Accuracy or macro-F1 of one run, each item counted `weights[i]` times (a bootstrap resample). Macro-F1
    averages F1 over the classes present in (the resampled) gold, as eval.metrics.macro_f1 does."""
    w = np.ones(len(gold)) if weights is None else weights
    total = w.sum()
    if total == 0:
        return 0.0
    if metric == "accuracy":
        return float(w[gold == pred].sum() / total)
    if metric != "macro_f1":
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}")
    conf = np.bincount(gold * (k + 1) + pred, weights=w, minlength=(k + 1) * (k + 1)).reshape(k + 1, k + 1)[:k]
    tp = np.diag(conf[:, :k])
    support = conf.sum(axis=1)
    predicted = conf[:, :k].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    present = support > 0
    return float(f1[present].mean()) if present.any() else 0.0


def point_estimate(gold: np.ndarray, preds: np.ndarray, k: int, metric: str) -> float:
    """The metric averaged over a run's seeds (rows of `preds`)."""
    return float(np.mean([metric_value(gold, row, k, metric) for row in preds]))


def bootstrap_metric(gold: np.ndarray, runs: Sequence[np.ndarray], k: int, metric: str = "accuracy",
                     n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, len(runs)): each run's seed-averaged metric in each paired bootstrap replicate.

    Items are resampled once per replicate for all runs (paired); a run with S > 1 seeds also has its seeds resampled
    with replacement, so seed-to-seed variance widens its interval."""
    rng = np.random.default_rng(seed)
    n = len(gold)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)
    out = np.empty((n_boot, len(runs)))
    for j, preds in enumerate(runs):
        if metric == "accuracy":  # every replicate at once: weighted share of correct items, per seed
            per_seed = weights @ (preds == gold).T.astype(float) / weights.sum(axis=1, keepdims=True)
        else:
            per_seed = np.array([[metric_value(gold, row, k, metric, w) for row in preds] for w in weights])
        s = preds.shape[0]
        if s > 1:  # resample the seeds too: mean over S draws with replacement
            pick = rng.integers(0, s, (n_boot, s))
            out[:, j] = np.take_along_axis(per_seed, pick, axis=1).mean(axis=1)
        else:
            out[:, j] = per_seed[:, 0]
    return out


def percentile_ci(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from bootstrap differences: twice the smaller tail mass at 0 (the
    inversion of the percentile interval, so p < 0.05 exactly when the 95% CI excludes 0), at least 1/(B+1)."""
    tail = min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0)))
    return float(min(1.0, max(2 * tail, 1 / (len(diffs) + 1))))


@dataclass(frozen=True)
class Difference:
    """a - b on the same items: estimate, 95% CI, p-value and the test that gave it."""

    diff: float
    ci: tuple[float, float]
    p: float
    test: str  # "mcnemar-exact" or "paired-bootstrap"
    n_items: int
    seeds: tuple[int, int]
    discordant: tuple[int, int] | None = None  # McNemar: (a right & b wrong, a wrong & b right)

    def to_dict(self) -> dict:
        return {"diff": self.diff, "ci": list(self.ci), "p": self.p, "test": self.test, "n_items": self.n_items,
                "seeds": list(self.seeds), "discordant": None if self.discordant is None else list(self.discordant)}


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, float]:
    """(n10, n01, p): n10 items only a got right, n01 only b; p = exact two-sided binomial test of n10 against
    Binomial(n10 + n01, 1/2). No discordant pairs: p = 1."""
    from scipy.stats import binomtest

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs paired items: {a.shape} vs {b.shape}")
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if n10 + n01 == 0 else float(binomtest(n10, n10 + n01, 0.5).pvalue)
    return n10, n01, p


def paired_difference(gold: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, metric: str = "accuracy",
                      n_boot: int = 2000, seed: int = 0, boot: np.ndarray | None = None) -> Difference:
    """a - b (each (seeds, n) integer predictions on the same items). CI: paired bootstrap. p: McNemar exact for
    accuracy when both sides have one seed; otherwise the paired bootstrap's. `boot` (n_boot, 2) reuses replicates."""
    if a.shape[1] != len(gold) or b.shape[1] != len(gold):
        raise ValueError("both runs need a prediction for every test item")
    diff = point_estimate(gold, a, k, metric) - point_estimate(gold, b, k, metric)
    boot = bootstrap_metric(gold, [a, b], k, metric, n_boot, seed) if boot is None else boot
    d = boot[:, 0] - boot[:, 1]
    ci = percentile_ci(d)
    if metric == "accuracy" and a.shape[0] == 1 and b.shape[0] == 1:
        n10, n01, p = mcnemar_exact(a[0] == gold, b[0] == gold)
        return Difference(diff, ci, p, "mcnemar-exact", len(gold), (1, 1), (n10, n01))
    return Difference(diff, ci, bootstrap_p(d), "paired-bootstrap", len(gold), (a.shape[0], b.shape[0]))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the i-th smallest is multiplied by (m - i), then
    made monotone and capped at 1. Reject at level alpha where adjusted < alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def constant_macro_f1(support: Mapping[str, int]) -> float:
    """The best macro-F1 a constant predictor reaches on a test set with these class counts: always answering
    class c gives F1_c = 2 s_c / (s_c + n) and 0 elsewhere, averaged over the classes present."""
    present = {c: s for c, s in support.items() if s > 0}
    n = sum(present.values())
    if not present:
        return 0.0
    return max(2 * s / (s + n) for s in present.values()) / len(present)


def near_collapse(prediction_counts: Mapping[str, int], support: Mapping[str, int], macro_f1: float,
                  share: float = 0.95, invalid: str = "[invalid]") -> str | None:
    """Why a run is (nearly) a constant predictor, or None: at least `share` of all its answers are one real class,
    or its macro-F1 is not above the best constant predictor's."""
    total = sum(prediction_counts.values())
    real = {c: v for c, v in prediction_counts.items() if c != invalid}
    if total and real:
        top, count = max(real.items(), key=lambda kv: (kv[1], kv[0]))
        if count / total >= share:
            return f"{count / total:.0%} of answers are {top!r}"
    floor = constant_macro_f1(support)
    if macro_f1 <= floor + 1e-9:
        return f"macro-F1 {macro_f1:.3f} <= a constant predictor's {floor:.3f}"
    return None


def _crossing(ns: np.ndarray, d: np.ndarray) -> float:
    """Smallest n where d(n) > 0 (d measured at increasing ns), linear in log n between the measured sizes. 0 when
    ahead at the smallest n, inf when never ahead."""
    if d[0] > 0:
        return 0.0
    for i in range(1, len(ns)):
        if d[i] > 0:
            if not np.isfinite(d[i - 1]):  # the previous point cannot compete (collapsed): no slope to follow
                return float(ns[i])
            x0, x1 = np.log(ns[i - 1]), np.log(ns[i])
            return float(np.exp(x0 + (x1 - x0) * (0 - d[i - 1]) / (d[i] - d[i - 1])))
    return float("inf")


@dataclass(frozen=True)
class BreakEven:
    n: float  # 0: already ahead at the smallest n; inf: not reached
    ci: tuple[float, float]
    n_min: float
    n_max: float

    def describe(self) -> str:
        def fmt(x: float) -> str:
            return "start" if x == 0 else (f">{self.n_max:g}" if np.isinf(x) else f"{x:.0f}")

        if self.n == 0:
            text = f"already ahead at the smallest n ({self.n_min:g})"
        elif np.isinf(self.n):
            text = f"not reached up to n={self.n_max:g}"
        else:
            text = f"n ≈ {self.n:.0f}"
        return f"{text} [95% CI {fmt(self.ci[0])}, {fmt(self.ci[1])}]"

    def to_dict(self) -> dict:
        enc = lambda x: "ahead at start" if x == 0 else ("not reached" if np.isinf(x) else round(x, 1))
        return {"n": enc(self.n), "ci": [enc(self.ci[0]), enc(self.ci[1])], "n_min": self.n_min, "n_max": self.n_max,
                "text": self.describe()}


def reference_curve(ns: np.ndarray, others: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
    """For each n in `ns`: the best score among the other approaches' points that need at most n labels
    (`others`: (labels needed, scores (B,) or scalar)); -inf when none does. Works on scalars or replicate vectors."""
    out = []
    for n in ns:
        eligible = [s for m, s in others if m <= n]
        out.append(np.max(np.stack(np.broadcast_arrays(*eligible)), axis=0) if eligible else -np.inf)
    return np.stack(np.broadcast_arrays(*out))


def break_even(ns: Sequence[float], scores: np.ndarray, boot: np.ndarray,
               others: Sequence[tuple[float, float, np.ndarray]]) -> BreakEven:
    """When approach A (measured at increasing label counts `ns`, point `scores`, replicates `boot` (B, len(ns)))
    first beats the best other approach needing no more labels (`others`: (labels, point, replicates (B,))).

    The crossing is interpolated on log n between measured sizes; the CI is the 2.5/97.5% order statistics of the
    crossing over the replicates (items and seeds resampled jointly for every run, so they stay paired)."""
    ns_arr = np.asarray(ns, dtype=float)
    if len(ns_arr) == 0:
        raise ValueError("break_even needs at least one measured size")
    ref = reference_curve(ns_arr, [(m, p) for m, p, _ in others])
    with np.errstate(invalid="ignore"):  # -inf - -inf (a collapsed point with no competitor) is nan: not ahead
        return _break_even(ns_arr, scores, boot, others, ref)


def _break_even(ns_arr: np.ndarray, scores: np.ndarray, boot: np.ndarray, others: Sequence, ref: np.ndarray
                ) -> BreakEven:
    point = _crossing(ns_arr, np.asarray(scores, dtype=float) - ref)
    ref_b = reference_curve(ns_arr, [(m, b) for m, _, b in others]).reshape(len(ns_arr), -1)
    ref_b = np.broadcast_to(ref_b, (len(ns_arr), boot.shape[0]))  # (len(ns), B), also when no one competes
    crossings = np.sort([_crossing(ns_arr, boot[i] - ref_b[:, i]) for i in range(boot.shape[0])])
    lo = crossings[int(np.floor(0.025 * (len(crossings) - 1)))]
    hi = crossings[int(np.ceil(0.975 * (len(crossings) - 1)))]
    return BreakEven(point, (float(lo), float(hi)), float(ns_arr[0]), float(ns_arr[-1]))
