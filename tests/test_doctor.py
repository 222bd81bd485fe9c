"""`python -m eval.doctor` against stand-ins: the fake Ollama/OpenAI server (prompting/fake_server.py) and a
simulated T4 (torch.cuda functions patched the way torch 2.13 answers on compute capability 7.5)."""

from __future__ import annotations

import socket

import pytest

from eval import doctor
from prompting.fake_server import FakeServer, Reply


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub line must not depend on this machine's network
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


def _by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def test_models_pulled_and_not_pulled(capsys: pytest.CaptureFixture) -> None:
    with FakeServer(["llama3.1:8b", "my-finetune"], lambda p, n: Reply("x")) as srv:
        code = doctor.main(["--model", "llama3.1", "--model", "mistral", "--model", "gemma3-270m",
                            "--host", srv.url, "--base-url", srv.url + "/v1"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"[ok] Ollama: {srv.url}, version 0.33.0, 2 model(s) pulled" in out
    assert "[ok] model llama3.1: via Ollama (llama3.1:8b)" in out
    assert "[!!] model mistral: no path here can load it" in out and "ollama pull mistral:7b" in out
    assert "[ok] OpenAI-compatible server" in out and "my-finetune" in out
    assert "HF_HUB_OFFLINE=1" in out and "offline packages: installed:" in out


def test_requested_server_that_does_not_answer_fails() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checks, code = doctor.run([], f"http://127.0.0.1:{port}", None)
    assert code == 1 and _by_name(checks)["Ollama"].status == doctor.BAD
    assert "ollama serve" in _by_name(checks)["Ollama"].fix
    checks, code = doctor.run([], None, None)  # not asked for: said plainly, not a failure
    assert _by_name(checks)["Ollama"].status in (doctor.OK, doctor.NO)


def test_cpu_machine_says_so_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    checks, facts = doctor.torch_checks()
    cuda = _by_name(checks)["CUDA"]
    assert cuda.status == doctor.NO and "CUDA build of torch" in cuda.fix and facts["cuda"] is False


def test_a_t4_reports_emulated_bf16_and_memory_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (7, 5))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (14 * 2**30, 15 * 2**30))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    checks, facts = doctor.torch_checks()
    by = _by_name(checks)
    assert "Tesla T4" in by["CUDA"].detail and "emulated only" in by["bf16"].detail
    small = doctor.model_checks("gemma3-270m", facts, False, None, None)
    big = doctor.model_checks("mistral-7b", facts, False, {"mistral:7b"}, None)
    assert "fits" in small.detail and "NOT fit" not in small.detail
    assert "QLoRA needs ~5 GiB" in big.detail and big.status == doctor.OK


def test_floors_come_from_this_checkout() -> None:
    need = doctor.floors()
    assert need["ollama"] == "0.6.2" and need["unsloth"] == "2026.3.1" and need["bitsandbytes"] == "0.45"


def test_the_openai_floor_takes_reasoning_effort() -> None:
    """--think on the openai backend sends `reasoning_effort`, which chat.completions.create takes from openai-python
    1.58.0 on ("add reasoning_effort to all methods", its CHANGELOG); with 1.40-1.57 every call raised TypeError."""
    import inspect

    openai = pytest.importorskip("openai")
    assert doctor._version_tuple(doctor.floors()["openai"]) >= (1, 58)
    from openai.resources.chat.completions import AsyncCompletions

    assert "reasoning_effort" in inspect.signature(AsyncCompletions.create).parameters, openai.__version__


# --- make gpu-check ----------------------------------------------------------------------------------------------

def test_gpu_check_refuses_clearly_on_cpu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import torch

    from finetune import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU visible" in err and "make doctor" in err


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_gpu_check_commands_are_valid_sft_command_lines(backend: str, tmp_path) -> None:
    """Every flag the smoke script passes exists in the real SFT CLI (so it runs without editing)."""
    pytest.importorskip("trl")
    from finetune import gpu_check
    from finetune.sft import parse_args

    cmd = gpu_check.sft_command("qwen3-1.7b", "drugs", backend, tmp_path)
    _, cfg = parse_args(cmd[2:])
    assert cfg.max_steps == gpu_check.STEPS and cfg.merge and cfg.quantization == "4bit" and cfg.backend == backend
    assert (cfg.export_gguf == "q4_k_m") == (backend == "unsloth")
    # a fixed LR: without one the SFT CLI runs the 3-LR search (~4 loads, ~80 steps) where the docs promise 20 steps
    assert cfg.learning_rate == gpu_check.LEARNING_RATE


def test_gpu_check_report_lines_from_a_record() -> None:
    from finetune.gpu_check import summarize

    record = {"model_id": "unsloth/Qwen3-1.7B-unsloth-bnb-4bit", "n_eval": 64,
              "metrics": {"accuracy": 0.7, "valid_rate": 1.0}, "before_training": {"accuracy": 0.4, "valid_rate": 0.5},
              "config": {"bf16": False, "optim": "adamw_8bit", "max_steps": 20, "model": {"dtype": "torch.float16"}},
              "timing": {"train_s": 31.2, "eval_s": 8.1},
              "details": {"artifacts": {"adapter": "a", "merged": "m", "gguf_error": "RuntimeError: quantize failed"}}}
    text = "\n".join(summarize(record))
    assert "bf16 False" in text and "accuracy 0.4" in text and "accuracy 0.7" in text
    assert "merged: ok (m)" in text and "gguf_error: FAILED RuntimeError" in text


def test_a_version_below_our_floor_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    real = md.version
    monkeypatch.setattr(md, "version", lambda pkg: "0.5.0" if pkg == "ollama" else real(pkg))
    checks = _by_name(doctor.version_checks())
    assert checks["ollama"].status == doctor.BAD and "pip install -U 'ollama>=0.6.2'" in checks["ollama"].fix
    assert "ollama" not in checks["versions"].detail
