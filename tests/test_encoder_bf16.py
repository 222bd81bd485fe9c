"""Encoders on a T4 (issue 20): `torch.cuda.is_bf16_supported()` counts emulation and says True at compute
capability 7.5, so `precision: auto` autocast in emulated bf16 (slow) and the record said bf16. The encoder track
now asks eval.run.hardware.cuda_native_bf16, the check the SFT path uses (docs/pitfalls.md#bf16-support)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from encoders.config import EncoderConfig  # noqa: E402
from encoders.loop import autocast_dtype  # noqa: E402


def _gpu(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    # torch 2.13 torch/cuda/__init__.py: is_bf16_supported(including_emulation=True); a T4 is True only with emulation
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: True if including_emulation else native)


def test_auto_precision_on_a_t4_is_not_emulated_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu(monkeypatch, native=False)
    cfg = EncoderConfig(model="minilm-l6")
    assert cfg.precision == "auto"
    assert autocast_dtype(cfg, torch.device("cuda")) is None  # fp32, not emulated bf16
    _gpu(monkeypatch, native=True)  # an A100 / RTX 4090
    assert autocast_dtype(cfg, torch.device("cuda")) == torch.bfloat16
    assert autocast_dtype(cfg, torch.device("cpu")) is None
