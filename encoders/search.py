"""The same tuning effort for every training-based encoder run: a small learning-rate grid and the number of steps,
both chosen on a validation split carved from the run's own training subset (never the test set, and no labels
beyond the n the run is charged for).

    fitted = search_and_fit(cfg, labels, train_exs, seed=0, fit=fit_fn)
    fitted.model, fitted.result.train_s, fitted.search   # search cost included in train_s; grid + scores in .search

1. carve a stratified `val_fraction` of the subset (every class with >= 2 examples keeps one in each part);
2. for each LR of the grid: train on the rest, evaluate `evals` times, early-stop (never before `min_steps`),
   remember the best validation score and the step it was reached at;
3. pick the LR with the best score (ties: the smaller LR, the safer choice when scores are those of a constant);
   with `--search auto` (default) the grid is searched only when the split has enough items to detect a
   `search_delta` difference (eval.run.validation.items_needed; docs/speed.md), else its middle value is used alone;
4. refit on the whole subset with that LR for the same number of epochs the best checkpoint had (at least
   `min_steps`), or, with `refit` off, keep the search's best model.
`--lr X` makes the grid one value: the steps are still chosen this way. docs/encoders.md explains the choices.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from encoders.config import EncoderConfig
from eval.inputs.data import Example
from eval.run.validation import carve_validation, items_needed, min_detectable_difference

# fit(cfg, fit_exs, val_exs or None) -> (model, tok, TrainResult); val None = refit without evaluations
FitFn = Callable[[EncoderConfig, list[Example], "list[Example] | None"], tuple]


@dataclass
class Fitted:
    model: object
    tok: object
    result: object  # the final model's TrainResult; train_s counts the whole search
    search: dict


def refit_steps(best_step: int, n_fit: int, n_all: int, cfg: EncoderConfig) -> int:
    """The step count for the whole subset: as many epochs as the best checkpoint saw, at least min_steps."""
    steps = max(cfg.min_steps, math.ceil(best_step * n_all / max(1, n_fit)))
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def search_and_fit(cfg: EncoderConfig, train_exs: list[Example], *, seed: int, fit: FitFn,
                   log: Callable[[str], None] = print, steps_chosen: bool = True) -> Fitted:
    """Pick the LR (and the step count, when `steps_chosen`) on a carved validation split, then refit.
    `steps_chosen=False` for methods whose length is fixed by their recipe (SetFit's pairs)."""
    cfg = cfg.resolved()
    fit_exs, val_exs = carve_validation(train_exs, cfg.val_fraction, seed)
    grid, gate = list(cfg.lr_grid), None
    if cfg.search == "auto" and len(grid) > 1 and len(val_exs) < items_needed(cfg.search_delta):
        # the split cannot separate the LRs (docs/speed.md, "A search worth its cost"): the method's usual rate
        gate = (f"{len(val_exs)} validation items detect only differences >= "
                f"{min_detectable_difference(len(val_exs)):.2f}; {items_needed(cfg.search_delta)} are needed for "
                f"{cfg.search_delta:g} (--search-delta): lr {grid[len(grid) // 2]:g}, the grid's middle; no LR search")
        grid = [grid[len(grid) // 2]]
        log(f"  {gate}")
    trials, best = [], None
    total_s = 0.0
    for lr in grid:
        model, tok, res = fit(dataclasses.replace(cfg, lr=lr), fit_exs, val_exs)
        total_s += res.train_s
        trials.append({"lr": lr, f"val_{cfg.select_metric}": round(res.best_score, 5), "best_step": res.best_step,
                       "steps": res.steps, "stopped_early": res.stopped_early, "train_s": round(res.train_s, 2),
                       "history": res.history})
        log(f"  lr {lr:g}: val {cfg.select_metric} {res.best_score:.3f} at step {res.best_step}/{res.steps}")
        if best is None or res.best_score > best[2].best_score:  # strict: ties keep the smaller, earlier LR
            best = (model, tok, res, lr)
        del model
    model, tok, res, lr = best
    chosen = {"lr": lr, "best_step": res.best_step, f"val_{cfg.select_metric}": round(res.best_score, 5)}
    if cfg.refit:
        del model
        final_cfg = dataclasses.replace(cfg, lr=lr)
        if steps_chosen:
            steps = refit_steps(res.best_step, len(fit_exs), len(train_exs), cfg)
            final_cfg = dataclasses.replace(final_cfg, min_steps=steps, max_steps=steps, patience=0)
            chosen["steps"] = steps
        chosen_history = res.history
        model, tok, res = fit(final_cfg, train_exs, None)
        total_s += res.train_s
        res.history = chosen_history  # the refit has no validation: its curve is the chosen LR's search run
    res.train_s = total_s
    why = gate or ("searched" if len(grid) > 1 else "one LR given")
    search = {"grid": list(cfg.lr_grid), "searched": len(grid) > 1, "lr_gate": why,
              "min_detectable_difference": round(min_detectable_difference(len(val_exs)), 3),
              "metric": cfg.select_metric,
              "val_fraction": cfg.val_fraction, "n_fit": len(fit_exs), "n_val": len(val_exs),
              "steps_chosen_by": "early stopping on the carved split" if steps_chosen else "the method's recipe",
              "refit": cfg.refit, "trials": trials, "chosen": chosen}
    return Fitted(model=model, tok=tok, result=res, search=search)
