"""The batch canary (and dtype guard) run before a batched evaluation: cheap, on by default, recorded.

    outcome = run_canary(predict, prompts, batch_size=16, precision=switch)   # predict(prompts, bs) -> labels
    batch_size = outcome["batch_size_used"]                                   # and record `outcome`

Why (docs/speed.md): batched generation has silently returned garbage for padded rows (unsloth #3699, fixed by
PR #4100), and labels can depend on batch size and dtype (lm-eval PR #1992, transformers #22861). So the first k
prompts run at batch 1 and at the configured batch size; if any extracted label differs we warn, record it and use
the largest halved batch size that agrees (batch 1 at worst). With a `precision` switch (bf16 chosen for a CPU),
the same k prompts also run in fp32 at batch 1 first: if bf16's labels differ, we warn and the run uses fp32.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_K = 16


class PrecisionSwitch(Protocol):
    """Moves the model between its fast dtype (`low`, e.g. bf16) and fp32 (`high`); names both for the record."""

    low_name: str
    high_name: str

    def low(self) -> None: ...

    def high(self) -> None: ...


def run_canary(predict: Callable[[Sequence[str], int], list[str]], prompts: Sequence[str], batch_size: int, *,
               k: int = DEFAULT_K, precision: PrecisionSwitch | None = None, enabled: bool = True,
               say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Check batch invariance (and, with `precision`, bf16 vs fp32) on the first k prompts; returns the record.

    On return the model is left in the dtype the run should use (`dtype_used`); `batch_size_used` is the batch
    size to run with. `enabled=False` (--no-batch-check) records that nothing was checked."""
    warn = say or log.warning
    rec: dict[str, Any] = {"ran": False, "k": 0, "batch_size_asked": batch_size, "batch_size_used": batch_size,
                           "dtype_used": precision.low_name if precision else None}
    sub = list(prompts[:k])
    if not enabled or not sub or (batch_size <= 1 and precision is None):
        rec["reason"] = "disabled (--no-batch-check)" if not enabled else "nothing to compare"
        return rec
    t0 = time.perf_counter()
    rec.update(ran=True, k=len(sub))
    fast: list[str] | None = None  # labels of the fast dtype at `batch_size`, when already computed
    if precision is not None:
        # the reference is fp32 at batch 1. The run's own setting (bf16, batch N) is compared with it first: when
        # they agree, neither the dtype nor the batch changes a label and the batch loop below accepts `fast`
        # without another pass (the common case: 2 passes over the k prompts instead of 3). Only a difference is
        # taken apart: bf16 at batch 1 says whether the dtype or the batch is the cause.
        precision.high()
        ref = predict(sub, 1)
        precision.low()
        fast = predict(sub, batch_size) if batch_size > 1 else None
        if fast is not None and not _differences(ref, fast):
            base = ref
            rec["dtype_check"] = {"compared": f"{precision.low_name} batch {batch_size} vs "
                                              f"{precision.high_name} batch 1", "mismatches": 0, "examples": []}
        else:
            base = predict(sub, 1)
            diff = _differences(ref, base)
            rec["dtype_check"] = {"compared": f"{precision.low_name} vs {precision.high_name}, batch 1",
                                  "mismatches": len(diff), "examples": diff[:5]}
            if diff:
                warn(f"dtype canary: {len(diff)}/{len(sub)} labels differ between {precision.low_name} and "
                     f"{precision.high_name}; this run uses {precision.high_name}")
                precision.high()
                base = ref
                fast = None  # computed in the dtype no longer used
                rec["dtype_used"] = precision.high_name
    else:
        base = predict(sub, 1)
    tried: list[dict[str, Any]] = []
    size = batch_size
    while size > 1:
        got = fast if fast is not None and size == batch_size else predict(sub, size)
        diff = _differences(base, got)
        tried.append({"batch_size": size, "mismatches": len(diff), "examples": diff[:5]})
        if not diff:
            break
        warn(f"batch canary: {len(diff)}/{len(sub)} labels differ between batch 1 and batch {size}; "
             f"trying batch {max(1, size // 2)}")
        size //= 2
    rec.update(batch_size_used=max(1, size), batch_checks=tried, seconds=round(time.perf_counter() - t0, 3))
    rec["agreed"] = rec["batch_size_used"] == batch_size and rec["dtype_used"] == (
        precision.low_name if precision else None)
    return rec


def _differences(a: Sequence[str], b: Sequence[str]) -> list[dict[str, Any]]:
    return [{"index": i, "expected": x, "got": y} for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


class AutocastSwitch:
    """bf16 autocast over fp32 weights (the SFT model on a CPU with native bf16): `low` turns autocast on.

    Nothing is converted, so switching back to fp32 is exact; use `context()` around each evaluation call."""

    low_name, high_name = "bfloat16-autocast", "float32"

    def __init__(self, device_type: str = "cpu") -> None:
        self.device_type = device_type
        self.active = True

    def low(self) -> None:
        self.active = True

    def high(self) -> None:
        self.active = False

    def context(self) -> Any:
        import contextlib

        import torch

        if not self.active:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=torch.bfloat16)


class CastSwitch:
    """bf16 weights for speed, fp32 as the reference (the `hf` prompting backend on a CPU with native bf16).

    `low` keeps a reference to each fp32 parameter and buffer tensor before the cast (`Module.to` swaps in new
    tensors, so the originals stay intact and nothing is copied); `high` puts them back: exact fp32, not an upcast
    of rounded bf16, so a fallback runs the same fp32 model as if bf16 had never been tried. The bf16 tensors of the
    first cast are kept too, so later round trips (the near-tie re-scoring of docs/speed.md switches once per
    batch) only swap references and never cast again. `release()` drops the fp32 tensors (and the kept bf16 ones
    when the model is in fp32)."""

    low_name, high_name = "bfloat16", "float32"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.saved: list[tuple[Any, Any]] | None = None  # (parameter, its fp32 data)
        self.buffers: dict[str, Any] = {}
        self.low_saved: list[tuple[Any, Any]] | None = None  # (parameter, its bf16 data) after the first cast
        self.low_buffers: dict[str, Any] = {}

    @property
    def is_low(self) -> bool:
        import torch

        return self.model.dtype == torch.bfloat16

    def low(self) -> None:
        import torch

        if self.saved is None and self.model.dtype == torch.float32:
            # parameters() yields a tied weight (embeddings = lm_head) once
            self.saved = [(p, p.data) for p in self.model.parameters()]
            self.buffers = dict(self.model.named_buffers())
        if self.model.dtype == torch.bfloat16:
            return
        if self.low_saved is not None:
            self._put(self.low_saved, self.low_buffers)
            return
        self.model.to(torch.bfloat16)
        self.low_saved = [(p, p.data) for p in self.model.parameters()]
        self.low_buffers = dict(self.model.named_buffers())

    def high(self) -> None:
        import torch

        if self.model.dtype == torch.float32:
            return
        if self.saved is None:
            self.model.to(torch.float32)
            return
        self._put(self.saved, self.buffers)

    def _put(self, params: list[tuple[Any, Any]], buffers: dict[str, Any]) -> None:
        for p, data in params:
            p.data = data
        for name, buf in buffers.items():  # e.g. rotary inv_freq, cast along with the weights
            module_name, _, attr = name.rpartition(".")
            setattr(self.model.get_submodule(module_name), attr, buf)

    def release(self) -> None:
        self.saved = None
        self.buffers = {}
        self.low_saved = None
        self.low_buffers = {}
