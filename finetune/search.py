"""Whether to search the SFT learning rate at all, and a search that costs little when it does (docs/speed.md,
"A search worth its cost").

    cfg, search = plan(spec, cfg, task)     # when cfg.learning_rate is None; then sft.py trains on all n

`--search auto` (the default) searches only when the validation split carved from the run's own training subset
can tell the candidates apart: a difference of `search_delta` in accuracy between two settings is detectable
(two-sided 95%, 80% power, the worst case p = 0.5) only with

    n_val >= (z_0.975 + z_0.8)^2 * 2 * 0.25 / delta^2   (393 items for delta 0.10, 99 for 0.20)

items; a 32-item split (n 128, val_fraction 0.25) can only see differences of ~0.35, so picking by it is picking by
noise (issue 24: the accuracy search chose lr 5e-4 on 32 items and lost 0.16 against lr 2e-4). Below that size the
run uses the documented default (DEFAULT_LR, the LoRA learning rate of the peft/TRL examples and of the plain
script in benchmarks/bench_sft_plain.py, for the configured epochs) and says so in the record.

When it searches (`auto` with enough items, or `--search halving`), successive halving with a finer metric: every
LR of `lr_grid` trains one epoch on the fit part; each is scored by the mean log-probability of the gold label
among the label verbalizers on the validation part (a proper scoring rule: continuous per item, so two settings
are compared item by item, not by a few flipped argmaxes); the best continues - it is refit on the whole subset for
the configured epochs - only if its paired improvement over the default LR is significant (one-sided paired t-test,
p < 0.05), else the default is kept. Epochs are not searched: they are the configured number (the LR x epochs grid
by generated accuracy is `--search grid`, finetune/select.py, at its measured cost in BENCHMARKS.md).
The seconds spent are added to the run's training time.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
import time
from typing import Any

from eval.inputs.data import TaskData
from eval.run.records import RunSpec
from eval.run.validation import carve_validation, items_needed, min_detectable_difference
from finetune.config import SFTArgs

DEFAULT_LR = 2e-4  # the documented default when the validation split cannot separate the candidates
SIGNIFICANCE = 0.05


def _say(msg: str) -> None:
    print(f"[sft search] {msg}", file=sys.stderr, flush=True)


__all__ = ["DEFAULT_LR", "decide", "gate", "items_needed", "min_detectable_difference", "paired_p", "plan"]


def gate(n_val: int, cfg: SFTArgs) -> tuple[bool, str]:
    """(search?, why) for `cfg.search` and a validation split of n_val items."""
    if cfg.search == "never":
        return False, f"--search never: the default lr {DEFAULT_LR:g}"
    if cfg.search in ("halving", "grid"):
        return True, f"--search {cfg.search}"
    need = items_needed(cfg.search_delta)
    if n_val >= need:
        return True, (f"{n_val} validation items detect an accuracy difference of {cfg.search_delta:g} "
                      f"(>= {need} needed)")
    return False, (f"{n_val} validation items detect only differences >= {min_detectable_difference(n_val):.2f}; "
                   f"{need} are needed for {cfg.search_delta:g} (--search-delta): the default lr {DEFAULT_LR:g} "
                   f"for {cfg.num_train_epochs:g} epochs, no search")


def paired_p(a: list[float], b: list[float]) -> float:
    """One-sided paired t-test p-value that mean(a - b) > 0 (1.0 when the differences are all equal)."""
    from scipy.stats import ttest_rel

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return 1.0
    if max(diffs) == min(diffs):  # no spread: a t-test is undefined; a uniform gain is certain, none is not
        return 0.0 if diffs[0] > 0 else 1.0
    return float(ttest_rel(a, b, alternative="greater").pvalue)


def decide(trials: list[dict], default_lr: float) -> dict:
    """The winner of the screened trials (best mean gold log-probability) replaces the default LR only when its
    paired improvement on the same validation items is significant."""
    best = max(trials, key=lambda t: (t["val_gold_logprob"], -t["learning_rate"]))
    base = next((t for t in trials if t["learning_rate"] == default_lr), None)
    if base is None or best is base:
        return {"learning_rate": best["learning_rate"], "p_vs_default": None,
                "why": "the default scored best" if base is not None else "the best of the grid (no default in it)"}
    p = paired_p(best["per_item"], base["per_item"])
    if p < SIGNIFICANCE:
        return {"learning_rate": best["learning_rate"], "p_vs_default": round(p, 5),
                "why": f"better than the default lr {default_lr:g} on the same items (paired t, p {p:.3g})"}
    return {"learning_rate": default_lr, "p_vs_default": round(p, 5),
            "why": f"lr {best['learning_rate']:g} scored higher but not significantly (p {p:.3g}): the default"}


def gold_logprobs(model: Any, tok: Any, fmt: Any, prompts: list[str], gold: list[str], batch_size: int) -> list[float]:
    """log p(gold label | prompt) normalised over the label verbalizers (the trained completions), per item."""
    from eval.lm.causal import score_labels

    labels = list(fmt.scheme.labels)
    rows = score_labels(model, tok, prompts, fmt.verbalizers, batch_size=batch_size, prefix=fmt.answer_prefix)
    out = []
    for row, g in zip(rows, gold, strict=True):
        top = max(row)
        norm = top + math.log(sum(math.exp(s - top) for s in row))
        out.append(row[labels.index(g)] - norm)
    return out


def plan(spec: RunSpec, cfg: SFTArgs, task: TaskData) -> tuple[SFTArgs, dict]:
    """(cfg with the learning rate to train with, the record's `search`): the gate, then the search it allows."""
    t0 = time.perf_counter()
    train = task.train(spec.n_train, spec.seed)
    fit, val = carve_validation(train, cfg.val_fraction, spec.seed)
    go, why = gate(len(val), cfg)
    base = {"mode": cfg.search, "n_fit": len(fit), "n_val": len(val), "delta": cfg.search_delta,
            "min_detectable_difference": round(min_detectable_difference(len(val)), 3),
            "items_needed": items_needed(cfg.search_delta), "reason": why}
    if not go:
        _say(why)
        chosen = {"learning_rate": DEFAULT_LR, "num_train_epochs": cfg.num_train_epochs}
        return dataclasses.replace(cfg, learning_rate=DEFAULT_LR), {
            **base, "searched": False, "chosen": chosen, "seconds": round(time.perf_counter() - t0, 2)}
    if cfg.search == "grid":
        from finetune.select import choose

        cfg, search = choose(spec, cfg, task)
        return cfg, {**base, **search, "searched": True}
    trials = screen(spec, cfg, task, fit, val)
    chosen = decide(trials, DEFAULT_LR)
    _say(f"chosen lr {chosen['learning_rate']:g}: {chosen['why']}")
    for t in trials:
        t.pop("per_item")  # n_val numbers per trial: the means and the p-value are what the record needs
    search = {**base, "searched": True, "metric": "mean log p(gold label) over the verbalizers, 1 epoch each",
              "grid": {"learning_rate": list(cfg.lr_grid)}, "trials": trials,
              "chosen": {**chosen, "num_train_epochs": cfg.num_train_epochs},
              "seconds": round(time.perf_counter() - t0, 2)}
    return dataclasses.replace(cfg, learning_rate=chosen["learning_rate"]), search


def screen(spec: RunSpec, cfg: SFTArgs, task: TaskData, fit: list, val: list) -> list[dict]:
    """Successive halving's first rung: every LR of the grid, one epoch on `fit`, scored on `val`."""
    import torch
    from transformers import set_seed

    from eval.lm.models import resolve
    from eval.run.hardware import sft_precision
    from finetune.backends import for_inference, load, select_backend
    from finetune.config import trainer_args
    from finetune.formatting import Formatter, load_template
    from finetune.trainer import make_trainer

    backend = select_backend(cfg.backend)
    info = resolve(spec.model)
    template = load_template(cfg.prompt)
    precision = sft_precision(cfg.dtype)  # the trials train exactly as the run they choose for
    per_epoch = max(1, math.ceil(len(fit) / (cfg.batch_size * cfg.grad_accum)))
    grid = list(dict.fromkeys([*cfg.lr_grid, DEFAULT_LR]))  # the default is always a candidate: it is the baseline
    trials = []
    for lr in grid:
        t0 = time.perf_counter()
        set_seed(spec.seed)
        loaded = load(info, backend, load_in_4bit=spec.method == "qlora", max_seq_length=cfg.max_seq_length,
                      lora=cfg.lora(), seed=spec.seed, dtype=precision["weights"])
        fmt = Formatter.for_run(loaded.tokenizer, task.scheme, template, cfg, info.base)
        trial_cfg = dataclasses.replace(cfg, learning_rate=lr, max_steps=per_epoch, min_steps=0)
        with tempfile.TemporaryDirectory(prefix="sft-search-") as scratch:
            args = trainer_args(trial_cfg, output_dir=scratch, n_examples=len(fit), seed=spec.seed,
                                cuda=torch.cuda.is_available(), bf16=precision["bf16"], unsloth=backend == "unsloth")
            loaded.tokenizer.padding_side = "right"
            trainer = make_trainer(loaded.model, loaded.tokenizer, args, fmt.dataset_rows(fit),
                                   sparse_logits=backend == "hf")
            trainer.train()
        for_inference(loaded)
        side = loaded.tokenizer.padding_side
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision["autocast"] else _null()
        with ctx:
            per_item = gold_logprobs(loaded.model, loaded.tokenizer, fmt, [fmt.prompt(e.text) for e in val],
                                     [e.label for e in val], cfg.eval_batch_size)
        loaded.tokenizer.padding_side = side
        mean = sum(per_item) / max(1, len(per_item))
        trials.append({"learning_rate": lr, "steps": per_epoch, "val_gold_logprob": round(mean, 5),
                       "per_item": per_item, "seconds": round(time.perf_counter() - t0, 2)})
        _say(f"lr {lr:g}: mean log p(gold) {mean:.4f} after 1 epoch ({per_epoch} steps)")
        del trainer, loaded
    return trials


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()
