"""The SFT run's share of the same tuning effort every training-based approach gets: the learning rate and the number
of epochs, chosen on a validation split carved from the run's own training subset, by generate-and-parse accuracy
(the users' metric: greedy answer, harness extraction, an invalid answer counts wrong) — not by loss.

    cfg, search = choose(spec, cfg, task)     # when cfg.learning_rate is None; then sft.py trains on all n

For each LR of `lr_grid`: a fresh LoRA model trains on the fit part for `num_train_epochs` epochs (at least
`min_steps`), and the validation part is generated and parsed at the end of every epoch. The (LR, epochs) with the
best accuracy wins (`pick`); ties go to more epochs, then the smaller LR. A few dozen validation items tie often, and
a tie says nothing about the settings, so it goes to the model trained longer, as in the encoder track: the first
epochs at small n are the under-trained ones (BENCHMARKS.md, "SFT defaults against a plain peft script").
The seconds spent are added to the run's training time. docs/encoders.md, "same tuning effort".
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
from eval.run.validation import carve_validation
from finetune.config import SFTArgs


def _say(msg: str) -> None:
    print(f"[sft search] {msg}", file=sys.stderr, flush=True)


def _accuracy(preds: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(preds, gold)) / max(1, len(gold))


def _epoch_validator(loaded: Any, fmt: Any, prompts: list[str], gold: list[str], per_epoch: int, cfg: SFTArgs,
                     scores: list[dict]) -> Any:
    """A TrainerCallback that generates and parses the validation prompts every `per_epoch` steps."""
    from transformers import TrainerCallback

    from finetune.backends import for_inference, for_training
    from finetune.predict import predict_generate

    class EpochValidator(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % per_epoch and state.global_step != state.max_steps:
                return control
            for_inference(loaded)
            side = loaded.tokenizer.padding_side
            result = predict_generate(loaded.model, loaded.tokenizer, prompts, fmt, batch_size=cfg.eval_batch_size,
                                      max_new_tokens=cfg.max_new_tokens)
            loaded.tokenizer.padding_side = side
            for_training(loaded)
            acc = _accuracy(result.preds, gold)
            scores.append({"step": state.global_step, "epochs": round(state.global_step / per_epoch, 3),
                           "val_accuracy": round(acc, 5)})
            return control

    return EpochValidator()


def _rank(score: dict) -> tuple[float, float]:
    return score["val_accuracy"], score["epochs"]  # a tie goes to the longer-trained checkpoint


def pick(trials: list[dict]) -> dict:
    """The chosen (LR, epochs) from the trials' per-epoch validation curves: the best accuracy; ties go to more
    epochs, then to the smaller LR."""
    lr, best = max(((t["learning_rate"], max(t["curve"], key=_rank)) for t in trials),
                   key=lambda c: (*_rank(c[1]), -c[0]))
    return {"learning_rate": lr, "num_train_epochs": best["epochs"], "val_accuracy": best["val_accuracy"]}


def choose(spec: RunSpec, cfg: SFTArgs, task: TaskData) -> tuple[SFTArgs, dict]:
    """(cfg with the chosen learning_rate and num_train_epochs, the search for the record)."""
    from finetune.backends import follow_loaded_dtype, load, model_type_of, select_backend

    # first, before torch/transformers/TRL: unsloth, when it is the backend, must be imported before them
    # (finetune/backends.py select_backend), and an hf search must never import it
    backend = select_backend(cfg.backend)
    import torch
    from transformers import set_seed

    from eval.lm.models import resolve
    from eval.run.hardware import sft_precision
    from finetune.config import trainer_args
    from finetune.formatting import Formatter, load_template
    from finetune.trainer import make_trainer

    train = task.train(spec.n_train, spec.seed)
    fit, val = carve_validation(train, cfg.val_fraction, spec.seed)
    info = resolve(spec.model)
    template = load_template(cfg.prompt)
    cuda = torch.cuda.is_available()
    # the trials train exactly as the run they choose for does (finetune/sft.py main): eval.run.hardware decides the
    # dtype once, native bf16 only (is_bf16_supported() alone counts a T4's emulation; docs/pitfalls.md#bf16-support)
    precision = sft_precision(cfg.dtype, model_type_of(info) if cuda else None)  # as the run (finetune/sft.py)
    bf16 = precision["bf16"]
    per_epoch = max(1, math.ceil(len(fit) / (cfg.batch_size * cfg.grad_accum)))
    trials, t0 = [], time.perf_counter()
    for lr in cfg.lr_grid:
        set_seed(spec.seed)
        loaded = load(info, backend, load_in_4bit=spec.method == "qlora", max_seq_length=cfg.max_seq_length,
                      lora=cfg.lora(), seed=spec.seed, dtype=precision["weights"],
                      gradient_checkpointing=cfg.gradient_checkpointing)
        bf16 = follow_loaded_dtype(precision, loaded.model)["bf16"]  # as the run it chooses for (sft.py)
        fmt = Formatter.for_run(loaded.tokenizer, task.scheme, template, cfg, info.base)
        scores: list[dict] = []
        trial_cfg = dataclasses.replace(cfg, learning_rate=lr)
        with tempfile.TemporaryDirectory(prefix="sft-search-") as scratch:
            args = trainer_args(trial_cfg, output_dir=scratch, n_examples=len(fit), seed=spec.seed, cuda=cuda,
                                bf16=bf16, unsloth=backend == "unsloth")
            loaded.tokenizer.padding_side = "right"
            trainer = make_trainer(loaded.model, loaded.tokenizer, args, fmt.dataset_rows(fit),
                                   sparse_logits=backend == "hf")
            trainer.add_callback(_epoch_validator(loaded, fmt, [fmt.prompt(e.text) for e in val],
                                                  [e.label for e in val], per_epoch, cfg, scores))
            trainer.train()
        best = max(scores, key=_rank)
        trials.append({"learning_rate": lr, "curve": scores, "best": best})
        _say(f"lr {lr:g}: best val accuracy {best['val_accuracy']:.3f} after {best['epochs']:g} epochs")
        del trainer, loaded
    chosen = pick(trials)
    search = {"grid": {"learning_rate": list(cfg.lr_grid), "epochs": f"1..{cfg.num_train_epochs:g} (every epoch)"},
              "metric": "generate-and-parse accuracy", "val_fraction": cfg.val_fraction, "n_fit": len(fit),
              "n_val": len(val), "trials": trials, "chosen": chosen,
              "seconds": round(time.perf_counter() - t0, 2)}
    return dataclasses.replace(cfg, learning_rate=chosen["learning_rate"],
                               num_train_epochs=float(chosen["num_train_epochs"])), search
