"""Paired statistics over runs on the same test items, as pure functions (docs/decide.md explains each choice).

- `bootstrap_metric`: one engine for every interval and every p-value. Each replicate resamples the test items once
  (shared by every run, which is what makes comparisons paired) and, for a run with several seeds, resamples its seeds;
  it returns each run's metric per replicate. Differences, their CIs and p-values, and break-even CIs all come from it.
- `paired_difference`: THE test of one comparison. Its CI and its p-value come from the same bootstrap replicates, so
  the CI excludes 0 exactly when p < alpha (`ci_and_p`), whether each side has one seed or several.
- `mcnemar_exact`: McNemar's exact test, kept as a cross-check of the bootstrap (tests/test_stats.py), not used in
  decisions: one procedure per comparison.
- `holm`: Holm's step-down adjustment of a family of p-values.
- `tost`: two one-sided tests of equivalence within a margin, from the same replicates.
- `near_collapse`: a run that is (almost) a constant predictor, whatever its accuracy.
- `break_even`: where an approach overtakes everything that needs no more labels, as intervals between measured sizes.

Predictions are integer-coded: label index 0..K-1, and K for an invalid answer (never a class, always wrong).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("accuracy", "macro_f1")
ALPHA = 0.05
# Replicates of every paired bootstrap. The smallest p it can give is 1/N_BOOT, so Holm over m comparisons can still
# reject when m / N_BOOT < alpha: up to 1,000 rows per table at 0.05 (docs/decide.md).
N_BOOT = 20_000


def encode(
    gold: Sequence[str], preds: Sequence[Sequence[str]], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Gold (n,) and predictions (seeds, n) as integers; anything outside `labels` (INVALID) becomes K."""
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    g = np.array([index.get(x, k) for x in gold], dtype=np.int64)
    p = np.array([[index.get(x, k) for x in row] for row in preds], dtype=np.int64).reshape(len(preds), len(gold))
    return g, p


def _f1_from_confusion(conf: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 from confusion counts (..., k+1, k+1) (rows gold, columns predicted; index k = invalid), averaged
    over the classes present in gold, as eval.scoring.metrics.macro_f1 does."""
    conf = conf[..., :k, :]
    tp = np.diagonal(conf[..., :k], axis1=-2, axis2=-1)
    support = conf.sum(axis=-1)
    predicted = conf[..., :k].sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    present = support > 0
    count = present.sum(axis=-1)
    return np.where(count > 0, (f1 * present).sum(axis=-1) / np.maximum(count, 1), 0.0)


def metric_value(gold: np.ndarray, pred: np.ndarray, k: int, metric: str, weights: np.ndarray | None = None) -> float:
    """Accuracy or macro-F1 of one run, each item counted `weights[i]` times (a bootstrap resample). Macro-F1
    averages F1 over the classes present in (the resampled) gold, as eval.scoring.metrics.macro_f1 does."""
    w = np.ones(len(gold)) if weights is None else weights
    total = w.sum()
    if total == 0:
        return 0.0
    if metric == "accuracy":
        return float(w[gold == pred].sum() / total)
    if metric != "macro_f1":
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}")
    conf = np.bincount(gold * (k + 1) + pred, weights=w, minlength=(k + 1) * (k + 1)).reshape(k + 1, k + 1)
    return float(_f1_from_confusion(conf, k))


def point_estimate(gold: np.ndarray, preds: np.ndarray, k: int, metric: str) -> float:
    """The metric averaged over a run's seeds (rows of `preds`)."""
    return float(np.mean([metric_value(gold, row, k, metric) for row in preds]))


def run_key(names: Sequence[str]) -> int:
    """A stable number for a run (its records' ids), so its seed resampling is the same in every table it is in."""
    return zlib.crc32("\n".join(sorted(names)).encode())


def item_weights(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n) multiplicities of the test items in each replicate: a function of (n, n_boot, seed) only, so
    every reader resamples the same items the same way."""
    rng = np.random.default_rng([seed, n])
    draws = rng.integers(0, n, (n_boot, n)) + (np.arange(n_boot) * n)[:, None]  # row b's draws, offset by b * n
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)


def bootstrap_metric(
    gold: np.ndarray,
    runs: Sequence[np.ndarray],
    k: int,
    metric: str = "accuracy",
    n_boot: int = N_BOOT,
    seed: int = 0,
    keys: Sequence[int] | None = None,
) -> np.ndarray:
    """(n_boot, len(runs)): each run's seed-averaged metric in each paired bootstrap replicate.

    Items are resampled once per replicate for all runs (paired); a run with S > 1 seeds also has its seeds resampled
    with replacement (drawn from `keys[j]`, the run's identity, so the same run gets the same draws in any table),
    so seed-to-seed variance widens its interval."""
    n = len(gold)
    weights = item_weights(n, n_boot, seed)
    totals = weights.sum(axis=1, keepdims=True)
    out = np.empty((n_boot, len(runs)))
    for j, preds in enumerate(runs):
        if metric == "accuracy":  # every replicate at once: weighted share of correct items, per seed
            per_seed = weights @ (preds == gold).T.astype(float) / totals
        elif metric == "macro_f1":  # confusion counts of every replicate at once: weights @ one-hot(cell)
            cells = (k + 1) * (k + 1)
            per_seed = np.empty((n_boot, preds.shape[0]))
            for s, row in enumerate(preds):
                onehot = np.zeros((n, cells))
                onehot[np.arange(n), gold * (k + 1) + row] = 1.0
                conf = (weights @ onehot).reshape(n_boot, k + 1, k + 1)
                per_seed[:, s] = _f1_from_confusion(conf, k)
        else:
            raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}")
        s = preds.shape[0]
        if s > 1:  # resample the seeds too: mean over S draws with replacement
            rng = np.random.default_rng([seed, keys[j] if keys is not None else j, s])
            pick = rng.integers(0, s, (n_boot, s))
            out[:, j] = np.take_along_axis(per_seed, pick, axis=1).mean(axis=1)
        else:
            out[:, j] = per_seed[:, 0]
    return out


def _lower(samples: np.ndarray, q: float) -> float:
    return float(np.quantile(samples, q, method="inverted_cdf"))


def percentile_ci(samples: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """The (1 - alpha) percentile interval, with the order statistics chosen so that it excludes a value c exactly
    when the bootstrap p-value of c is below alpha (`ci_and_p`)."""
    return _lower(samples, alpha / 2), -_lower(-samples, alpha / 2)


def bootstrap_p(diffs: np.ndarray, null: float = 0.0) -> float:
    """Two-sided p-value of "the difference is `null`": twice the smaller share of replicates on either side of it
    (the inversion of `percentile_ci`). Never 0: at least 1/B, below any alpha the tables use when B >= 1000."""
    b = len(diffs)
    tail = min(int(np.sum(diffs <= null)), int(np.sum(diffs >= null)))
    return float(min(1.0, max(2 * tail, 1) / b))


def ci_and_p(diffs: np.ndarray, alpha: float = ALPHA) -> tuple[tuple[float, float], float]:
    """CI and p of one comparison from the same replicates: CI excludes 0 <=> p < alpha (tests/test_stats.py).

    Lower bound = the smallest replicate value v with #(d <= v) >= alpha/2 * B, so lower > 0 <=> #(d <= 0) <
    alpha/2 * B <=> that tail's p < alpha; the upper bound mirrors it."""
    return percentile_ci(diffs, alpha), bootstrap_p(diffs)


@dataclass(frozen=True)
class Difference:
    """a - b on the same items: estimate, 95% CI and p-value, both from the same paired bootstrap replicates."""

    diff: float
    ci: tuple[float, float]
    p: float
    n_items: int
    seeds: tuple[int, int]
    n_boot: int
    discordant: tuple[int, int] | None = None  # single-seed accuracy: (a right & b wrong, a wrong & b right)
    test: str = "paired-bootstrap"

    @property
    def significant(self) -> bool:
        """Unadjusted, at ALPHA; equal to "the CI excludes 0"."""
        return self.p < ALPHA

    def to_dict(self) -> dict:
        return {
            "diff": self.diff,
            "ci": list(self.ci),
            "p": self.p,
            "test": self.test,
            "n_items": self.n_items,
            "seeds": list(self.seeds),
            "n_boot": self.n_boot,
            "discordant": None if self.discordant is None else list(self.discordant),
        }


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, float]:
    """(n10, n01, p): n10 items only a got right, n01 only b; p = exact two-sided binomial test of n10 against
    Binomial(n10 + n01, 1/2). No discordant pairs: p = 1. A cross-check only (see the module docstring)."""
    from scipy.stats import binomtest

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs paired items: {a.shape} vs {b.shape}")
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if n10 + n01 == 0 else float(binomtest(n10, n10 + n01, 0.5).pvalue)
    return n10, n01, p


def paired_difference(
    gold: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    k: int,
    metric: str = "accuracy",
    n_boot: int = N_BOOT,
    seed: int = 0,
    boot: np.ndarray | None = None,
    keys: Sequence[int] | None = None,
) -> Difference:
    """a - b (each (seeds, n) integer predictions on the same items): the paired bootstrap's CI and p (`ci_and_p`).
    `boot` (n_boot, 2) reuses replicates already drawn for a and b (a table draws them once for all its rows)."""
    if a.shape[1] != len(gold) or b.shape[1] != len(gold):
        raise ValueError("both runs need a prediction for every test item")
    diff = point_estimate(gold, a, k, metric) - point_estimate(gold, b, k, metric)
    boot = bootstrap_metric(gold, [a, b], k, metric, n_boot, seed, keys) if boot is None else boot
    ci, p = ci_and_p(boot[:, 0] - boot[:, 1])
    discordant = None
    if metric == "accuracy" and a.shape[0] == 1 and b.shape[0] == 1:
        ra, rb = a[0] == gold, b[0] == gold
        discordant = (int(np.sum(ra & ~rb)), int(np.sum(~ra & rb)))
    return Difference(diff, ci, p, len(gold), (a.shape[0], b.shape[0]), len(boot), discordant)


def tost(diffs: np.ndarray, margin: float, alpha: float = ALPHA) -> tuple[float, tuple[float, float]]:
    """Two one-sided tests of |difference| < margin from bootstrap replicates (Schuirmann 1987): p = the larger of
    the two one-sided p-values (share of replicates <= -margin, >= +margin); equivalent at alpha exactly when the
    (1 - 2 alpha) percentile interval lies inside (-margin, +margin). Returns (p, that interval)."""
    b = len(diffs)
    p_low = max(int(np.sum(diffs <= -margin)), 1) / b
    p_high = max(int(np.sum(diffs >= margin)), 1) / b
    return float(min(1.0, max(p_low, p_high))), percentile_ci(diffs, 2 * alpha)


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


def near_collapse(
    prediction_counts: Mapping[str, int],
    support: Mapping[str, int],
    macro_f1: float,
    share: float = 0.95,
    invalid: str = "[invalid]",
) -> str | None:
    """Why a run is (nearly) a constant predictor, or None. Invalid answers are their own class (they tell no class
    apart): flagged when at least `share` of all answers are one real class or invalid (so 90 x 'positive' + 10
    invalid is flagged: it never says anything else), or its macro-F1 is not above the best constant predictor's."""
    total = sum(prediction_counts.values())
    n_invalid = prediction_counts.get(invalid, 0)
    real = {c: v for c, v in prediction_counts.items() if c != invalid}
    if total:
        top, count = max(real.items(), key=lambda kv: (kv[1], kv[0])) if real else (None, 0)
        if (count + n_invalid) / total >= share:
            if not n_invalid:
                return f"{count / total:.0%} of answers are {top!r}"
            if top is None or count == 0:
                return f"{n_invalid / total:.0%} of answers are invalid"
            return (
                f"{(count + n_invalid) / total:.0%} of answers are {top!r} or invalid "
                f"({count / total:.0%} / {n_invalid / total:.0%})"
            )
    floor = constant_macro_f1(support)
    if macro_f1 <= floor + 1e-9:
        return f"macro-F1 {macro_f1:.3f} <= a constant predictor's {floor:.3f}"
    return None


# --- break-even ---------------------------------------------------------------------------------------------------


def step_curve(grid: np.ndarray, points: Sequence[tuple[float, np.ndarray | float]]) -> np.ndarray:
    """For each n in `grid`: the best score among `points` ((labels needed, score (B,) or scalar)) needing at most n
    labels; -inf where none does. With n labels one can always use a subset of them, so an approach is credited at n
    with its best measurement at <= n (the same rule for the approach and its competitors). (len(grid), B) or
    (len(grid),)."""
    out = []
    for n in grid:
        eligible = [s for m, s in points if m <= n]
        out.append(np.max(np.stack(np.broadcast_arrays(*eligible)), axis=0) if eligible else -np.inf)
    return np.stack(np.broadcast_arrays(*out))


def _first_ahead(ahead: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `ahead` (R, G): the bracket (lo, hi] of the first overtaking: lo = the grid point before the first
    one ahead (0 when ahead at the first), hi = that point; never ahead: (grid[-1], inf)."""
    any_ahead = ahead.any(axis=1)
    first = np.argmax(ahead, axis=1)
    prev = np.concatenate([[0.0], grid])[first]
    lo = np.where(any_ahead, prev, grid[-1])
    hi = np.where(any_ahead, grid[first], np.inf)
    return lo, hi


@dataclass(frozen=True)
class BreakEven:
    """Where approach A overtakes (and falls behind) the best of the others that need no more labels.

    `grid`: every label count A or a competitor was measured at within A's measured range; `ahead`: A ahead there
    (point estimates); `crossings`: ("overtakes" | "falls behind", lo, hi) = it happens somewhere in (lo, hi], lo = 0
    meaning "from the start"; `ci`: the 95% interval (lo, hi] of the first overtaking over the bootstrap replicates
    (items and seeds resampled jointly for every run), hi = inf when some replicates never overtake."""

    grid: tuple[float, ...]
    ahead: tuple[bool, ...]
    crossings: tuple[tuple[str, float, float], ...]
    ci: tuple[float, float]

    @property
    def n_min(self) -> float:
        return self.grid[0]

    @property
    def n_max(self) -> float:
        return self.grid[-1]

    @property
    def first(self) -> tuple[float, float] | None:
        """The bracket (lo, hi] of the first overtaking (point estimates), or None if never ahead."""
        return next(((lo, hi) for kind, lo, hi in self.crossings if kind == "overtakes"), None)

    @property
    def undetermined(self) -> bool:
        """The 95% interval runs from the start to past the last measurement: the records say nothing."""
        return self.ci[0] == 0 and np.isinf(self.ci[1])

    def describe(self) -> str:
        def bracket(lo: float, hi: float) -> str:
            if lo == 0:
                return f"from the start to {f'past {self.n_max:g}' if np.isinf(hi) else f'{hi:g}'}"
            return f"({lo:g}, {f'past {self.n_max:g})' if np.isinf(hi) else f'{hi:g}]'}"

        parts = []
        for kind, lo, hi in self.crossings:
            if kind == "overtakes" and lo == 0:
                parts.append(f"ahead from its smallest measured n ({self.n_min:g})")
            else:
                parts.append(
                    f"{'overtakes' if kind == 'overtakes' else 'falls behind again'} somewhere in ({lo:g}, {hi:g}]"
                )
        text = "; ".join(parts) if parts else f"not ahead at any measured n up to {self.n_max:g}"
        if self.undetermined:
            return f"{text}; 95% CI: undetermined (from the start to past n={self.n_max:g})"
        if self.ci[0] >= self.n_max and np.isinf(self.ci[1]):
            return f"{text}; 95% CI: not reached within the measured sizes"
        return f"{text}; 95% CI of the first overtaking: {bracket(*self.ci)}"

    def to_dict(self) -> dict:
        enc = lambda x: "inf" if np.isinf(x) else x  # noqa: E731
        return {
            "grid": list(self.grid),
            "ahead": list(self.ahead),
            "crossings": [{"kind": k, "lo": lo, "hi": enc(hi)} for k, lo, hi in self.crossings],
            "ci": [self.ci[0], enc(self.ci[1])],
            "undetermined": self.undetermined,
            "text": self.describe(),
        }


def break_even(
    ns: Sequence[float],
    scores: np.ndarray,
    boot: np.ndarray,
    others: Sequence[tuple[float, float, np.ndarray]],
    alpha: float = ALPHA,
) -> BreakEven:
    """Approach A measured at increasing label counts `ns` (point `scores`, -inf where a point cannot compete, e.g.
    collapsed; replicates `boot` (B, len(ns))) against `others` ((labels, point, replicates (B,))).

    Both sides are step curves (`step_curve`) evaluated at every size either was measured at in [ns[0], ns[-1]];
    every change of sign is reported as an interval between consecutive sizes, never interpolated inside it."""
    ns_arr = np.asarray(ns, dtype=float)
    if len(ns_arr) == 0:
        raise ValueError("break_even needs at least one measured size")
    grid = np.array(sorted({*ns_arr.tolist(), *(m for m, _, _ in others if ns_arr[0] <= m <= ns_arr[-1])}))
    scores = np.asarray(scores, dtype=float)
    with np.errstate(invalid="ignore"):  # -inf - -inf (a collapsed point with no competitor) is nan: not ahead
        mine = step_curve(grid, list(zip(ns_arr, scores)))
        ref = step_curve(grid, [(m, p) for m, p, _ in others]) if others else np.full(len(grid), -np.inf)
        ahead = np.nan_to_num(mine - ref, nan=-1.0) > 0
        mine_b = step_curve(grid, [(n, boot[:, i]) for i, n in enumerate(ns_arr)]).reshape(len(grid), -1)
        ref_b = (
            step_curve(grid, [(m, b) for m, _, b in others]).reshape(len(grid), -1)
            if others
            else np.full((len(grid), 1), -np.inf)
        )
        ahead_b = (np.nan_to_num(mine_b - ref_b, nan=-1.0) > 0).T  # (B, G)
    crossings, before, prev = [], False, 0.0
    for n, now in zip(grid, ahead):
        if now != before:
            crossings.append(("overtakes" if now else "falls behind", float(prev), float(n)))
        before, prev = bool(now), n
    lo, hi = _first_ahead(ahead_b, grid)
    ci = (
        float(np.quantile(lo, alpha / 2, method="inverted_cdf")),
        float(np.quantile(hi, 1 - alpha / 2, method="inverted_cdf")),
    )
    return BreakEven(tuple(float(x) for x in grid), tuple(bool(x) for x in ahead), tuple(crossings), ci)
