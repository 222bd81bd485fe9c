"""What this machine can run fast: usable CPU cores, native bf16, and the one dtype decision every track uses.

    device, dtype, why = pick_dtype()            # ("cpu", torch.bfloat16, "cpu: native bf16 (avx512_bf16)")
    device, dtype, why = pick_dtype("float32")   # --dtype wins
    n = configure_threads()                      # torch threads = cores this process may really use

Why (docs/speed.md has the measurements and sources):
- `torch.cuda.is_bf16_supported()` also counts emulated bf16 and says True on a T4 (compute capability 7.5), where
  bf16 is slow; `including_emulation=False` (or capability >= 8) asks for real bf16 kernels.
- On a CPU, bf16 matmuls are fast only with AVX512-BF16 or AMX (oneDNN kernels); elsewhere they are emulated and
  slower than fp32. We read the CPU's flags rather than guess from the vendor.
- `os.cpu_count()` counts the host's cores, not the ones a container or `taskset` grants: affinity and the cgroup
  quota (cpu.max) decide how many threads can run at once, and cores busy with other processes are not free
  either; more torch threads than that spin and wait.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names (Linux kernel x86 cpufeatures)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS/Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_native_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The feature that gives this CPU native bf16 matmuls (avx512_bf16 / amx_bf16), or None.

    Falls back to torch's own probe when /proc/cpuinfo is unavailable."""
    flags = cpu_flags() if flags is None else flags
    found = [f for f in _NATIVE_BF16_FLAGS if f in flags]
    if found:
        return "+".join(found)
    if flags:
        return None
    try:  # no /proc/cpuinfo: ask torch's cpuinfo-based probes (private, so guarded)
        import torch

        cpu = torch._C._cpu  # type: ignore[attr-defined]
        if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
            return "amx"
        if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
            return "avx512_bf16"
    except (ImportError, AttributeError, RuntimeError):
        pass
    return None


def cuda_native_bf16(torch: Any) -> bool:
    """Real (not emulated) bf16 on the current CUDA device: a T4 (sm_75) says False here, an A100/4090 True."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation argument
        return torch.cuda.get_device_capability()[0] >= 8


def pick_dtype(override: str | None = None, device: str | None = None) -> tuple[str, Any, str]:
    """(device, torch dtype, reason) for inference and the training autocast: one decision for every track.

    cuda: bf16 where native, else fp16. mps: fp32 (half precision still lacks kernels for some ops).
    cpu: bf16 when the CPU has AVX512-BF16 or AMX, else fp32. `override` (--dtype) wins when not "auto".
    """
    import torch

    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if override and override != "auto":
        if override not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {override!r}")
        return device, getattr(torch, override), f"{device}: --dtype {override}"
    if device.startswith("cuda"):
        if cuda_native_bf16(torch):
            return device, torch.bfloat16, "cuda: native bf16 (compute capability >= 8)"
        return device, torch.float16, "cuda: no native bf16 (compute capability < 8), fp16"
    if device == "cpu":
        feature = cpu_native_bf16()
        if feature:
            return device, torch.bfloat16, f"cpu: native bf16 ({feature})"
        return device, torch.float32, "cpu: no AVX512-BF16/AMX, fp32 (emulated bf16 is slower)"
    return device, torch.float32, f"{device}: fp32"


def _affinity() -> set[int]:
    """The cores this process may run on (sched_getaffinity; all of os.cpu_count() where it does not exist)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """Cores this process can use at once: CPU affinity, capped by the cgroup v2/v1 CPU quota."""
    n = len(_affinity())
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, int(quota + 0.5)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    """CPUs granted by the cgroup (cpu.max "quota period", or v1 cfs files); None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if q <= 0 or p <= 0 else q / p
    except (OSError, ValueError):
        return None


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over `cpus` from /proc/stat (Linux); None when unreadable."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


def busy_cpus(interval: float = 0.25) -> float | None:
    """How many of this process's cores other processes keep busy *now*: /proc/stat sampled over `interval`
    seconds while this process sleeps. None where /proc/stat is not there (then the load average is used)."""
    import time

    cpus = _affinity()
    a = _cpu_times(cpus)
    time.sleep(interval)
    b = _cpu_times(cpus)
    if a is None or b is None or b[1] <= a[1]:
        return None
    return len(cpus) * (b[0] - a[0]) / (b[1] - a[1])


def idle_cpus() -> int:
    """Usable cores not kept busy by other processes right now, at least 1.

    On a shared machine OpenMP threads beyond the idle cores spin and wait: with load 14 on 2 cores, 1 torch
    thread scored 4x faster than 2 (BENCHMARKS.md, "Speed"). "Now" matters: the 1-minute load average still counts
    a run that just ended, so in a sweep (one process per run, back to back) it made every run after the first take
    1 thread on an idle 2-core machine. So the cores are sampled over a quarter second (busy_cpus); the load average
    is the fallback where /proc/stat is not readable."""
    n = available_cpus()
    busy = busy_cpus()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return n
    return max(1, min(n, int(n - busy + 0.5)))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `threads` (e.g. --threads), else to the idle usable cores (affinity, cgroup
    quota, minus the load of other processes; torch's default counts the host's cores). A lower count set
    earlier is kept. Returns the count."""
    import torch

    current = torch.get_num_threads()
    n = threads if threads and threads > 0 else min(current, idle_cpus())
    if current != n:
        torch.set_num_threads(n)
    return n


def describe() -> dict[str, Any]:
    """Machine facts for benchmark tables and `doctor`: cores, native bf16 feature, torch's CPU capability."""
    import torch

    return {"cpus_available": available_cpus(), "cpu_count": os.cpu_count(), "native_bf16": cpu_native_bf16(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


# Model families whose activations overflow fp16 (NaN / garbage when trained or run in float16): unsloth_zoo
# 2026.10.9 `model_lists.py` FORCE_FLOAT32 (config.json `model_type`, "_" and "-" ignored). unsloth trains them in
# float32 where bf16 is not native (`models/loader.py`, `models/rl.py`); so does the suite (docs/gpu-paths.md).
FORCE_FLOAT32 = ("gemma3", "gemma3text", "gemma3n", "gemma4", "gemma4text", "embeddinggemma2", "gptoss", "glm4moe",
                 "glm4moelite", "qwen35", "qwen3moe")


def fp16_unsafe(model_type: str | None) -> bool:
    """True for a model family unsloth never runs in float16 (FORCE_FLOAT32)."""
    return bool(model_type) and str(model_type).lower().replace("_", "").replace("-", "") in FORCE_FLOAT32


def sft_precision(override: str | None = None, model_type: str | None = None) -> dict[str, Any]:
    """How LoRA training and the SFT evaluations run: weights dtype, bf16 autocast, the Trainer's bf16 flag.

    CPU with native bf16: fp32 weights under bf16 autocast (the Trainer's `bf16=True` on CPU is torch.autocast),
    so the adapters' optimizer state stays fp32 and the canary can compare against exact fp32. CUDA: the weights
    in pick_dtype's dtype, except float16 for a family that overflows it (`model_type` in FORCE_FLOAT32, e.g.
    Gemma 3 on a T4): float32 there, as unsloth does. Elsewhere fp32."""
    import torch

    device, dtype, why = pick_dtype(override, "cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and dtype == torch.float16 and fp16_unsafe(model_type):
        dtype, why = torch.float32, f"{why}; {model_type} overflows float16 (unsloth FORCE_FLOAT32): float32"
    bf16 = dtype == torch.bfloat16
    if device == "cpu":
        return {"device": device, "weights": torch.float32, "autocast": bf16, "bf16": bf16,
                "dtype": "bfloat16-autocast" if bf16 else "float32", "reason": why}
    return {"device": device, "weights": dtype, "autocast": False, "bf16": bf16,
            "dtype": str(dtype).removeprefix("torch."), "reason": why}
