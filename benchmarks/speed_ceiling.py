"""The compute ceiling of a causal LM on this CPU: the tokens/s its multiply-adds alone allow.

    peaks = cpu_peaks(cpu_flags(), cores=2, ghz=2.6)      # every peak this CPU's flags support, by dtype
    best = best_peak(peaks, "bfloat16")                    # Peak(unit="AMX (amx_bf16)", gflops=5324.8, ...)
    ceiling_tokens_per_s(best.gflops, 357_898_112)         # peak / (2 x non-embedding params) tokens/s

A forward pass costs ~2 FLOP (one multiply-add) per non-embedding parameter per token (Kaplan et al. 2020,
"Scaling Laws for Neural Language Models", C_forward ~ 2N; the attention term 2 x n_layer x n_ctx x d_model is left
out: small at these prompt lengths). A core's peak is the multiply-adds its vector (or matrix) units retire per
cycle: FMA lanes per instruction (register width / element width, or the dot-product lanes of VNNI/BF16 dot
instructions) x instructions per cycle (FMA ports), x 2 FLOP per multiply-add, x GHz x cores. Which units exist is
read from the CPU's feature flags (/proc/cpuinfo), never assumed; the FMA port count is not in the flags, so it is a
stated parameter (2 for Intel Xeon Scalable server cores, whose port 0 and port 5 both run 512-bit FMAs; 1 halves
every vector peak). AMX has one tile unit per core: TDPBF16PS multiplies a 16x32 by a 32x16 bf16 tile (8,192
multiply-adds) at a throughput of one per 16 cycles, i.e. 512 multiply-adds = 1,024 FLOP per cycle per core (Intel
64 and IA-32 Architectures Optimization Reference Manual, AMX chapter); TDPBSSD (int8) twice that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# (dtype, unit, required flags, multiply-adds per instruction per port, ports per core, how the lanes arise)
_UNITS: tuple[tuple[str, str, tuple[str, ...], int, str, str], ...] = (
    ("float32", "AVX-512 FMA", ("avx512f",), 16, "fma", "512-bit / 32-bit = 16 fp32 lanes"),
    ("float32", "AVX2 FMA", ("avx2", "fma"), 8, "fma", "256-bit / 32-bit = 8 fp32 lanes"),
    ("bfloat16", "AMX", ("amx_bf16", "amx_tile"), 512, "amx",
     "TDPBF16PS 16x16x32 = 8192 multiply-adds per 16 cycles = 512 per cycle"),
    ("bfloat16", "AVX512-BF16 (VDPBF16PS)", ("avx512_bf16",), 32, "fma", "512-bit / 16-bit = 32 bf16 pairs"),
    ("int8", "AMX", ("amx_int8", "amx_tile"), 1024, "amx",
     "TDPBSSD 16x16x64 = 16384 multiply-adds per 16 cycles = 1024 per cycle"),
    ("int8", "AVX512-VNNI (VPDPBUSD)", ("avx512_vnni",), 64, "fma", "512-bit / 8-bit = 64 u8 x s8 pairs"),
    ("int8", "AVX-VNNI (VPDPBUSD, 256-bit)", ("avx_vnni",), 32, "fma", "256-bit / 8-bit = 32 u8 x s8 pairs"),
)


@dataclass(frozen=True)
class Peak:
    dtype: str
    unit: str
    flag: str  # the /proc/cpuinfo flags that show the unit exists
    macs_per_cycle: int  # multiply-adds per cycle per core: lanes x ports
    gflops: float  # cores x GHz x macs_per_cycle x 2
    arithmetic: str  # the product written out


def cpu_ghz(cpuinfo: str) -> float | None:
    """The clock /proc/cpuinfo reports ("cpu MHz", highest over the cores), in GHz; None without one. Under a
    hypervisor this is the nominal (TSC) clock; turbo raises and a heavy AVX-512/AMX licence lowers the real one."""
    mhz = [float(line.split(":", 1)[1]) for line in cpuinfo.splitlines()
           if line.startswith("cpu MHz") and line.split(":", 1)[1].strip()]
    return max(mhz) / 1000.0 if mhz else None


def cpu_peaks(flags: Iterable[str], *, cores: int, ghz: float, fma_ports: int = 2) -> list[Peak]:
    """Every (dtype, unit) peak the CPU's flags support, best first within a dtype."""
    have = set(flags)
    out = []
    for dtype, unit, need, lanes, kind, why in _UNITS:
        if not all(f in have for f in need):
            continue
        ports = 1 if kind == "amx" else fma_ports
        macs = lanes * ports
        gflops = cores * ghz * macs * 2
        port_txt = "1 tile unit" if kind == "amx" else f"{ports} FMA ports"
        arith = (f"{cores} cores x {ghz:.2f} GHz x {lanes} lanes ({why}) x {port_txt} x 2 FLOP = "
                 f"{gflops:,.0f} GFLOP/s")
        out.append(Peak(dtype, unit, "+".join(need), macs, gflops, arith))
    return out


def best_peak(peaks: list[Peak], dtype: str) -> Peak | None:
    """The highest peak for `dtype` ("float32", "bfloat16", "int8"), None when no unit supports it natively."""
    found = [p for p in peaks if p.dtype == dtype]
    return max(found, key=lambda p: p.gflops) if found else None


def non_embedding_params(total: int, embedding: int, head: int, tied: bool) -> int:
    """Parameters a token's forward pass multiplies through: all, minus the input embedding (a lookup, no
    multiply-adds) and minus an untied output layer (the LM head, computed for the scored position only; with tied
    embeddings it is the same tensor and `total` counts it once)."""
    return total - embedding - (0 if tied else head)


def flop_per_token(params: int) -> int:
    """Forward FLOP per token: one multiply-add (2 FLOP) per non-embedding parameter."""
    return 2 * params


def ceiling_tokens_per_s(gflops: float, params: int) -> float:
    """Tokens/s the arithmetic allows at `gflops`: peak FLOP/s / (2 x params)."""
    return gflops * 1e9 / flop_per_token(params)
