"""The training loop: length-grouped dynamic-padding batches, AdamW with warmup/decay (and layer-wise LR decay),
gradient clipping, bf16 autocast, periodic validation with early stopping, best checkpoint restored at the end.

A small explicit loop rather than transformers.Trainer: R-Drop, SupCon, LLRD and "at least N steps" each stay one
readable line here instead of an override of a Trainer internal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from encoders.config import EncoderConfig
from encoders.losses import LossFn
from encoders.modeling import layer_groups
from eval.run.hardware import cuda_native_bf16
from eval.scoring.metrics import accuracy, macro_f1


@dataclass
class Encoded:
    """Tokenised texts (unpadded) and label indices."""

    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tok, texts: Sequence[str], labels: Sequence[int], max_length: int) -> Encoded:
    ids = tok(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return Encoded(input_ids=ids, labels=list(labels))


def batch_order(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, group_by_length: bool
                ) -> list[list[int]]:
    """Batches of indices for one epoch. Grouped by length: shuffle, sort within mega-batches of 50 batches, then
    shuffle the batches, so padding is small and batch composition stays random (transformers'
    LengthGroupedSampler idea)."""
    idx = rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * 50
        idx = np.concatenate([sorted(idx[i:i + mega], key=lambda j: -lengths[j]) for i in range(0, len(idx), mega)])
    batches = [list(map(int, idx[i:i + batch_size])) for i in range(0, len(idx), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(tok, data: Encoded, idx: Sequence[int], pad_to: int | None, device) -> dict:
    """Pad to the longest text of the batch (dynamic), or to `pad_to` tokens."""
    feats = [{"input_ids": data.input_ids[i]} for i in idx]
    kw = {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": "longest"}
    batch = tok.pad(feats, return_tensors="pt", **kw)
    batch["labels"] = torch.tensor([data.labels[i] for i in idx])
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}


def autocast_dtype(cfg: EncoderConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware supports it (auto: CUDA with bf16); fp32 on CPU, where bf16 autocast is slower
    unless the CPU has bf16 units. fp16 is allowed only by explicit request (refused for DeBERTa-v3)."""
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "fp16":
        return torch.float16
    if cfg.precision == "bf16":
        return torch.bfloat16
    # native bf16 only: torch.cuda.is_bf16_supported() also counts emulation and says True on a T4 (sm_75), where
    # bf16 autocast is emulated and slow while the record said bf16 (docs/pitfalls.md#bf16-support)
    if device.type == "cuda" and torch.cuda.is_available() and cuda_native_bf16(torch):
        return torch.bfloat16
    return None


@torch.no_grad()
def predict_logits(model, tok, data: Encoded, batch_size: int, device, dtype=None) -> torch.Tensor:
    """Logits in input order; batches sorted by length so little compute goes to padding."""
    model.eval()
    order = sorted(range(len(data)), key=lambda i: -len(data.input_ids[i]))
    out = torch.empty(len(data), model.config.num_labels if hasattr(model, "config") else 0)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        batch = collate(tok, data, idx, None, device)
        batch.pop("labels")
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out[idx] = model(**batch).logits.float().cpu()
    return out


def validation_score(logits: torch.Tensor, data: Encoded, metric: str) -> float:
    """Higher is better for every metric (loss is negated)."""
    if metric == "loss":
        return -float(torch.nn.functional.cross_entropy(logits, torch.tensor(data.labels)))
    pred = [str(x) for x in logits.argmax(-1).tolist()]
    gold = [str(y) for y in data.labels]
    if metric == "accuracy":
        return accuracy(gold, pred)
    return macro_f1(gold, pred, sorted({*gold, *pred}, key=int))


def make_optimizer(model, cfg: EncoderConfig) -> torch.optim.Optimizer:
    """AdamW; no decay on biases and norms; with llrd < 1 each layer down gets lr × llrd (the head gets lr)."""
    groups = layer_groups(model)
    params = []
    top = len(groups) - 1
    for depth, group in enumerate(groups):
        lr = cfg.lr * cfg.llrd ** (top - depth)
        decay = [p for n, p in group if p.ndim > 1 and "norm" not in n.lower()]
        no_decay = [p for n, p in group if not (p.ndim > 1 and "norm" not in n.lower())]
        params += [{"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
                   {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    params = [g for g in params if g["params"]]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    return torch.optim.AdamW(params, lr=cfg.lr)


def plan_steps(n_train: int, cfg: EncoderConfig) -> tuple[int, int]:
    """(total optimiser steps, steps per epoch): epochs × steps per epoch, but at least min_steps."""
    per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * cfg.grad_accum)))
    total = max(cfg.min_steps, math.ceil(cfg.epochs * per_epoch))
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return total, per_epoch


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best_score: float
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    train_s: float = 0.0
    examples_seen: int = 0
    class_weights: list[float] | None = None


def train(model, tok, train_data: Encoded, val_data: Encoded | None, cfg: EncoderConfig, loss_fn: LossFn, *, seed: int,
          device, progress: bool = True, accelerator=None) -> TrainResult:
    """Train in place; the model ends with the best validation checkpoint's weights (with `val_data` None: no
    evaluations, the last weights; the refit after a search, which already chose the step count).

    With an `accelerator` (several processes, eval/run/distributed.py) the model is wrapped in DDP and every global
    batch is split across the processes; all of them see the same batches in the same order (same seed), validate on
    the whole validation set with the same synchronised weights, and so take the same early-stopping decisions.
    """
    from tqdm.auto import tqdm

    from eval.run.distributed import shard

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    total, per_epoch = plan_steps(len(train_data), cfg)
    eval_every = max(1, math.ceil(total / cfg.evals))
    warmup = int(cfg.warmup_ratio * total)
    opt = make_optimizer(model, cfg)
    net = model  # what the loss runs through: the DDP wrapper when distributed, the model itself otherwise
    if accelerator is not None:
        net, opt = accelerator.prepare(model, opt)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    dtype = autocast_dtype(cfg, device)
    lengths = [len(x) for x in train_data.input_ids]
    trainable = [p for p in model.parameters() if p.requires_grad]
    best_score, best_step, best_state, bad = -math.inf, 0, None, 0
    history: list[dict] = []
    batches: list[list[int]] = []
    step, seen, stopped, running = 0, 0, False, []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="train steps", leave=False,
               disable=not progress or (accelerator is not None and not accelerator.is_main_process))
    while step < total and not stopped:
        model.train()
        for _ in range(cfg.grad_accum):
            if not batches:
                batches = batch_order(lengths, cfg.batch_size, rng, cfg.group_by_length)
            idx = batches.pop()
            batch = collate(tok, train_data, shard(idx, accelerator), None, device)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(net, batch) / cfg.grad_accum
            if accelerator is not None:
                accelerator.backward(loss)
            else:
                loss.backward()
            running.append(float(loss.detach()) * cfg.grad_accum)
            seen += len(idx)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if val_data is not None and (step % eval_every == 0 or step == total):
            score = validation_score(predict_logits(model, tok, val_data, cfg.eval_batch_size, device, dtype),
                                     val_data, cfg.select_metric)
            history.append({"step": step, "train_loss": round(float(np.mean(running)), 5),
                            f"val_{cfg.select_metric}": round(score, 5)})
            running = []
            bar.set_postfix(loss=history[-1]["train_loss"], val=round(score, 3))
            # ties go to the later (more trained) checkpoint: early scores at small n are often a constant
            # predictor's, and a later model that scores the same has at least learnt something
            if score >= best_score:
                best_score, best_step, bad = score, step, 0
                best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            else:
                bad += 1
                # never stop before min_steps: at small n the first evaluations are noise around a constant predictor
                stopped = bool(cfg.patience) and bad >= cfg.patience and step >= cfg.min_steps
    bar.close()
    if val_data is None:
        best_step = step
    train_s = time.perf_counter() - t0
    if best_state is not None:  # restore the selected checkpoint before anyone evaluates the model
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, v in best_state.items():
                params[n].copy_(v)
    return TrainResult(steps=step, best_step=best_step, best_score=best_score, stopped_early=stopped,
                       history=history, train_s=train_s, examples_seen=seen)
