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
are compared item by item, not by a few flipped argmaxes); the best continues only if its paired improvement over
the default LR is significant (one-sided paired t-test, p < 0.05), else the default does. Epochs are not searched:
they are the configured number (the LR x epochs grid by generated accuracy is `--search grid`, finetune/select.py,
at its measured cost in BENCHMARKS.md). The seconds spent are added to the run's training time.

"Continues" means the chosen trial's own checkpoint goes on training, not a refit from scratch: every trial is
scheduled as the whole run (warmup and decay over the run's steps, less the first epoch's difference between the
fit part and the whole subset) and stopped after its first epoch, with its LoRA weights, optimizer and scheduler
state kept; the winner resumes from there on the whole subset for the remaining epochs, on one continuous LR
schedule. Cost (k x 0.75 + E - 1) / E of one run for k candidates and E epochs (1.42x for the default grid and 3
epochs) instead of (k x 0.75 + E) / E (1.75x) with a refit. Its first epoch saw only the fit part; a run of one
epoch, or one spread over several processes, refits instead (docs/speed.md).
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


__all__ = ["DEFAULT_LR", "continuation", "decide", "gate", "items_needed", "min_detectable_difference", "paired_p",
           "plan", "resume"]


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


def plan(spec: RunSpec, cfg: SFTArgs, task: TaskData, scratch: str | None = None) -> tuple[SFTArgs, dict]:
    """(cfg with the learning rate to train with, the record's `search`): the gate, then the search it allows.
    With `scratch` (a directory that outlives the call) the halving trials keep their checkpoints there and
    search["resume"] tells train_and_record where the chosen one stands (popped before the record is written)."""
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
    schedule = continuation(cfg, len(fit), len(train)) if scratch else None
    trials = screen(spec, cfg, task, fit, val, keep=(scratch, schedule) if schedule else None)
    chosen = decide(trials, DEFAULT_LR)
    _say(f"chosen lr {chosen['learning_rate']:g}: {chosen['why']}")
    checkpoint = next(t["checkpoint"] for t in trials if t["learning_rate"] == chosen["learning_rate"])
    for t in trials:
        t.pop("per_item")  # n_val numbers per trial: the means and the p-value are what the record needs
        t.pop("checkpoint", None)
    search = {**base, "searched": True, "metric": "mean log p(gold label) over the verbalizers, 1 epoch each",
              "grid": {"learning_rate": list(cfg.lr_grid)}, "trials": trials,
              "chosen": {**chosen, "num_train_epochs": cfg.num_train_epochs},
              "continued": ({**schedule, "from": "the chosen trial's checkpoint after its first epoch (on the fit "
                             "part), then the whole subset"} if schedule else None),
              "seconds": round(time.perf_counter() - t0, 2)}
    if schedule:
        search["resume"] = {**schedule, "checkpoint": checkpoint}
    return dataclasses.replace(cfg, learning_rate=chosen["learning_rate"]), search


def continuation(cfg: SFTArgs, n_fit: int, n_train: int) -> dict | None:
    """The schedule the trials share when the winner resumes from its checkpoint: `first` steps (one epoch on the
    fit part) of `total`, then `rest` on the whole subset - what a full run trains after its own first epoch. None
    (a refit) when the run is a single epoch or spread over several processes."""
    from eval.run.distributed import world_size

    per_batch = cfg.batch_size * cfg.grad_accum
    first = max(1, math.ceil(n_fit / per_batch))
    rest = cfg.total_steps(n_train) - math.ceil(n_train / per_batch)
    if rest < 1 or world_size() > 1:
        return None
    return {"first_steps": first, "rest_steps": rest, "total_steps": first + rest}


def screen(spec: RunSpec, cfg: SFTArgs, task: TaskData, fit: list, val: list,
           keep: tuple[str, dict] | None = None) -> list[dict]:
    """Successive halving's first rung: every LR of the grid, one epoch on `fit`, scored on `val`. With `keep`
    (a directory, continuation()'s schedule) each trial is scheduled over the whole run, stopped after its first
    epoch, and its checkpoint saved for resume()."""
    import torch
    from transformers import set_seed

    from eval.lm.models import resolve
    from eval.run.hardware import sft_precision
    from finetune.backends import for_inference, load, select_backend
    from finetune.config import trainer_args
    from finetune.formatting import Formatter, load_template
    from finetune.trainer import frozen_linears_cast, make_trainer

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
        scheduled = keep[1]["total_steps"] if keep else per_epoch
        trial_cfg = dataclasses.replace(cfg, learning_rate=lr, max_steps=scheduled, min_steps=scheduled)
        with tempfile.TemporaryDirectory(prefix="sft-search-") as scratch:
            args = trainer_args(trial_cfg, output_dir=scratch, n_examples=len(fit), seed=spec.seed,
                                cuda=torch.cuda.is_available(), bf16=precision["bf16"], unsloth=backend == "unsloth")
            loaded.tokenizer.padding_side = "right"
            trainer = make_trainer(loaded.model, loaded.tokenizer, args, fmt.dataset_rows(fit),
                                   sparse_logits=backend == "hf")
            if keep:
                trainer.add_callback(_stop_after(per_epoch))
            with frozen_linears_cast(loaded.model, torch.bfloat16, enabled=backend == "hf" and precision["autocast"]):
                trainer.train()
        checkpoint = _save_trial(trainer, loaded.model, f"{keep[0]}/lr-{len(trials)}") if keep else None
        for_inference(loaded)
        side = loaded.tokenizer.padding_side
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision["autocast"] else _null()
        with ctx:
            per_item = gold_logprobs(loaded.model, loaded.tokenizer, fmt, [fmt.prompt(e.text) for e in val],
                                     [e.label for e in val], cfg.eval_batch_size)
        loaded.tokenizer.padding_side = side
        mean = sum(per_item) / max(1, len(per_item))
        trials.append({"learning_rate": lr, "steps": per_epoch, "val_gold_logprob": round(mean, 5),
                       "per_item": per_item, "checkpoint": checkpoint, "seconds": round(time.perf_counter() - t0, 2)})
        _say(f"lr {lr:g}: mean log p(gold) {mean:.4f} after 1 epoch ({per_epoch} steps)")
        del trainer, loaded
    return trials


def _stop_after(steps: int) -> Any:
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        """Ends a trial scheduled over the whole run after its first epoch's optimizer steps."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= steps:
                control.should_training_stop = True
            return control

    return StopAfter()


def _save_trial(trainer: Any, model: Any, path: str) -> str:
    """A trial's LoRA weights (safetensors), optimizer and scheduler state (tensors and numbers only: they load back
    with weights_only=True)."""
    from pathlib import Path

    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    save_file(weights, str(out / "adapter.safetensors"))
    torch.save({"optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.lr_scheduler.state_dict(),
                "global_step": trainer.state.global_step}, out / "trainer_state.pt")
    return str(out)


def resume(trainer: Any, model: Any, cfg: SFTArgs, state: dict) -> None:
    """Put the chosen trial's checkpoint into a trainer built for the remaining `rest_steps` on the whole subset:
    its LoRA weights into the model, its optimizer moments, and the run's LR schedule at the step the trial stopped
    (transformers' own resume order: create both, then load their states). The Trainer keeps an optimizer and a
    scheduler it is given (Trainer.create_optimizer / create_scheduler build one only when none is set)."""
    from pathlib import Path

    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import get_scheduler

    path = Path(state["checkpoint"])
    missing = set_peft_model_state_dict(model, load_file(str(path / "adapter.safetensors")))
    if getattr(missing, "unexpected_keys", None):
        raise RuntimeError(f"the search checkpoint does not fit this model: {missing.unexpected_keys[:3]}")
    saved = torch.load(path / "trainer_state.pt", weights_only=True)
    optimizer = trainer.create_optimizer()
    optimizer.load_state_dict(saved["optimizer"])
    total = state["total_steps"]
    scheduler = get_scheduler(cfg.lr_scheduler_type, optimizer=optimizer,
                              num_warmup_steps=math.ceil(cfg.warmup_ratio * total), num_training_steps=total)
    scheduler.load_state_dict(saved["scheduler"])
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
        group["lr"] = lr
    trainer.lr_scheduler = scheduler
    if saved["global_step"] != state["first_steps"]:
        raise RuntimeError(f"the search trial stopped at step {saved['global_step']}, expected {state['first_steps']}")


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()
