"""What a run cost: wall seconds, throughput and peak memory, written as the `cost` object of every record.

    with Stopwatch() as sw:
        preds = predict(...)
    finish_run(..., timing={"train_s": train_s, "eval_s": sw.seconds}, cost={"device": "cpu", "dtype": "float32"})

`finish_run` calls `cost_record`, so a track only names its device and dtype; the times come from its `timing`.
Peak RSS is the process's high-water mark so far (`resource.getrusage`), which covers training and evaluation
together; on a GPU, `torch.cuda.max_memory_allocated` adds the CUDA peak. Old records without `cost` are shown as
"n/a" by every reader (`cost_of`).
"""

from __future__ import annotations

import sys
import time
from typing import Any

COST_FIELDS = ("train_s", "eval_s", "eval_ms_per_example", "examples_per_s", "peak_rss_mb", "cuda_peak_mb",
               "device", "dtype")


class Stopwatch:
    """Wall seconds of a `with` block (perf_counter: monotonic, unaffected by clock changes)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def peak_rss_mb() -> float | None:
    """The process's peak resident set size in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil

            return round(psutil.Process().memory_info().peak_wset / 2**20, 1)  # type: ignore[attr-defined]
        except (ImportError, AttributeError):
            return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def cuda_peak_mb() -> float | None:
    """Peak CUDA memory allocated by this process, when torch is already imported and a GPU is present."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return round(max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / 2**20, 1)


def default_device() -> str:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def cost_record(timing: dict, n_eval: int, device: str | None = None, dtype: str | None = None) -> dict:
    """The record's `cost` object from a run's timing and evaluation size."""
    train_s = timing.get("train_s")
    eval_s = timing.get("eval_s")
    per_ex = eval_s / n_eval if eval_s and n_eval else None
    return {"train_s": None if train_s is None else round(float(train_s), 3),
            "eval_s": None if eval_s is None else round(float(eval_s), 3),
            "eval_ms_per_example": None if per_ex is None else round(1000 * per_ex, 3),
            "examples_per_s": None if not per_ex else round(1 / per_ex, 3),
            "peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda_peak_mb(),
            "device": str(device) if device is not None else default_device(),
            "dtype": None if dtype is None else str(dtype).removeprefix("torch.")}


def cost_of(record: dict) -> dict[str, Any]:
    """A record's cost, every field present (None = not measured). Records written before `cost` existed still give
    their train/eval seconds from `timing`; memory, device and dtype stay None ("n/a")."""
    cost = record.get("cost")
    out: dict[str, Any] = dict.fromkeys(COST_FIELDS)
    if isinstance(cost, dict):
        out.update({k: cost.get(k) for k in COST_FIELDS})
        return out
    timing = record.get("timing") if isinstance(record.get("timing"), dict) else {}
    n = (record.get("metrics") or {}).get("n") or record.get("n_eval")
    out["train_s"], out["eval_s"] = timing.get("train_s"), timing.get("eval_s")
    if out["eval_s"] and n:
        out["eval_ms_per_example"] = 1000 * out["eval_s"] / n
        out["examples_per_s"] = n / out["eval_s"]
    return out
