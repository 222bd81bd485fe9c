"""A validation split carved from a run's own training subset: what every training-based track tunes on (learning
rate, steps / epochs), so no run uses the test set or labels beyond the n it is charged for (docs/encoders.md).

    fit, val = carve_validation(train_exs, 0.25, seed)
    if len(val) < items_needed(0.10): ...   # too few items to separate settings: do not search (docs/speed.md)
"""

from __future__ import annotations

import math

import numpy as np

from eval.inputs.data import Example
from eval.inputs.sources import DataError


def carve_validation(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(fit, validation): a stratified split of a training subset. Every class with at least two examples puts at
    least one in each part; a class seen once stays in the fit part (it cannot be both learnt and checked)."""
    rng = np.random.default_rng([seed, 104729])  # its own stream: the subset's order is the data's business
    by_class: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_class.setdefault(ex.label, []).append(i)
    val_idx: set[int] = set()
    for label in sorted(by_class):
        idx = by_class[label]
        if len(idx) < 2:
            continue
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        val_idx.update(int(i) for i in rng.permutation(idx)[:k])
    if not val_idx:
        raise DataError(f"a training subset of {len(examples)} has no class with two examples, so no validation "
                        "split can be carved from it; use a larger --n-train")
    fit = [ex for i, ex in enumerate(examples) if i not in val_idx]
    val = [ex for i, ex in enumerate(examples) if i in val_idx]
    return fit, val


Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided 95%, 80% power


def min_detectable_difference(n_val: int) -> float:
    """The smallest accuracy difference between two settings that n_val validation items detect (two-sided 95%, 80%
    power, p = 0.5, the worst case): (z_0.975 + z_0.8) * sqrt(2 * 0.25 / n). docs/speed.md, "A search worth its
    cost"."""
    return (Z_ALPHA + Z_POWER) * math.sqrt(2 * 0.25 / max(1, n_val))


def items_needed(delta: float) -> int:
    """Validation items needed to detect an accuracy difference of `delta` (the inverse of the above)."""
    return math.ceil((Z_ALPHA + Z_POWER) ** 2 * 2 * 0.25 / delta**2)
