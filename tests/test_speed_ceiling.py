"""The compute-ceiling arithmetic of benchmarks/bench_speed.py llama (benchmarks/speed_ceiling.py)."""

import pytest

from benchmarks.speed_ceiling import (
    best_peak,
    ceiling_tokens_per_s,
    cpu_ghz,
    cpu_peaks,
    flop_per_token,
    non_embedding_params,
)

SPR = {"fma", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8"}


def test_peaks_follow_the_flags_and_the_product():
    peaks = cpu_peaks(SPR, cores=2, ghz=2.6)
    # AMX: 512 multiply-adds per cycle per core, one tile unit: 2 x 2.6 x 512 x 2
    assert best_peak(peaks, "bfloat16").unit == "AMX"
    assert best_peak(peaks, "bfloat16").gflops == pytest.approx(2 * 2.6 * 512 * 2)
    # AVX512-BF16: 32 bf16 pairs per instruction x 2 FMA ports
    avx = next(p for p in peaks if p.unit.startswith("AVX512-BF16"))
    assert avx.macs_per_cycle == 64 and avx.gflops == pytest.approx(665.6)
    # fp32: 16 lanes x 2 ports; AVX-512 beats AVX2's 8 lanes
    assert best_peak(peaks, "float32").gflops == pytest.approx(2 * 2.6 * 16 * 2 * 2)
    assert "2 cores x 2.60 GHz x 16 lanes" in best_peak(peaks, "float32").arithmetic
    # one FMA port halves the vector peaks, not AMX's
    one = cpu_peaks(SPR, cores=2, ghz=2.6, fma_ports=1)
    assert best_peak(one, "float32").gflops == pytest.approx(166.4)
    assert best_peak(one, "bfloat16").gflops == pytest.approx(5324.8)


def test_no_native_unit_no_peak():
    peaks = cpu_peaks({"avx2", "fma"}, cores=4, ghz=3.0)
    assert best_peak(peaks, "bfloat16") is None and best_peak(peaks, "int8") is None
    assert best_peak(peaks, "float32").gflops == pytest.approx(4 * 3.0 * 8 * 2 * 2)


def test_qwen_half_billion_ceiling():
    # Qwen2.5-0.5B: 494,032,768 parameters, a 151,936 x 896 embedding tied with the LM head
    params = non_embedding_params(494_032_768, 151_936 * 896, 151_936 * 896, tied=True)
    assert params == 357_898_112
    assert flop_per_token(params) == 715_796_224
    assert ceiling_tokens_per_s(5324.8, params) == pytest.approx(5324.8e9 / 715_796_224)
    assert non_embedding_params(1000, 100, 100, tied=False) == 800


def test_cpu_ghz_reads_the_highest_core():
    text = "processor\t: 0\ncpu MHz\t\t: 2599.998\nprocessor\t: 1\ncpu MHz\t\t: 3100.000\n"
    assert cpu_ghz(text) == pytest.approx(3.1)
    assert cpu_ghz("processor\t: 0\n") is None
