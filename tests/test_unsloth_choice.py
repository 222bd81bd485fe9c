"""The SFT backend is decided before unsloth is imported, and unsloth is imported only when it is the chosen backend
(issue 20; docs/unsloth-cpu.md). Importing unsloth patches transformers/TRL for the whole process, so these run in
subprocesses with an installed stand-in (tests/fake_unsloth.py `write_fake_unsloth_package`) that has the real
import-time side effects of unsloth 2026.10.9 on a CPU (`_gpu_init.py`'s import-order check, unsloth_zoo
`cpu/trainer.py`'s adamw_torch -> adamw_torch_fused and replaced trl.SFTTrainer). tests/test_unsloth_real.py checks
the same against the real unsloth in its own venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from fake_unsloth import write_fake_unsloth_package  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, code: str, version: str = "2026.10.9") -> tuple[str, dict | None]:
    """Run `code` with the stand-in unsloth installed; (stdout, what its import recorded, or None: not imported)."""
    root = write_fake_unsloth_package(tmp_path / "site", version)
    probe = tmp_path / "probe.json"
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{REPO}", "FAKE_UNSLOTH_PROBE": str(probe),
           "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, (json.loads(probe.read_text()) if probe.exists() else None)


def test_an_hf_run_beside_unsloth_gets_the_optimizer_it_asked_for(tmp_path: Path) -> None:
    """`--backend hf` and `--backend auto` on a CPU never import unsloth: the TrainingArguments keep adamw_torch and
    TRL's own SFTTrainer trains (before: `auto` imported unsloth to check it, which switched both)."""
    code = (
        "import json\n"
        "from finetune.backends import select_backend\n"
        "picked = [select_backend('hf'), select_backend('auto')]\n"
        "from finetune.config import SFTArgs, trainer_args\n"
        "args = trainer_args(SFTArgs(learning_rate=1e-4), output_dir='out', n_examples=8, seed=0, cuda=False,\n"
        "                    bf16=False)\n"
        "import trl\n"
        "print(json.dumps({'picked': picked, 'optim': str(getattr(args.optim, 'value', args.optim)),\n"
        "                  'patched': bool(getattr(trl.SFTTrainer, '_unsloth_cpu', False))}))\n")
    stdout, probe = _run(tmp_path, code)
    got = json.loads(stdout.strip().splitlines()[-1])
    assert got == {"picked": ["hf", "hf"], "optim": "adamw_torch", "patched": False}
    assert probe is None, "unsloth was imported for an hf run"


def test_backend_unsloth_on_a_cpu_on_purpose_imports_it_before_transformers(tmp_path: Path) -> None:
    """`--backend unsloth` is allowed on a CPU (unsloth >= 2026.10 trains text LoRA there) and imports unsloth before
    transformers/TRL/peft, after everything the SFT CLI imports at module level."""
    code = ("import finetune.sft\n"
            "from finetune.backends import select_backend\n"
            "print(select_backend('unsloth'))\n")
    stdout, probe = _run(tmp_path, code)
    assert stdout.strip().splitlines()[-1] == "unsloth"
    assert probe == {"imported_before": []}


def test_the_lr_search_decides_the_backend_before_importing_transformers(tmp_path: Path) -> None:
    """finetune/select.py `choose` (run when no --learning-rate is given) imported torch/transformers before
    selecting the backend, so unsloth came after them. The stand-in's from_pretrained stops the search after that."""
    code = (
        "import finetune.sft\n"
        "from eval.inputs.data import load_task\n"
        "from eval.tracks import DataRef\n"
        "from finetune.config import SFTArgs\n"
        "from finetune.select import choose\n"
        "task = load_task('rotten')\n"
        "cfg = SFTArgs(model='smollm2-135m', backend='unsloth')\n"
        "spec = finetune.sft.make_spec(cfg, DataRef(task.name, None), 16, 0, 8)\n"
        "try:\n"
        "    choose(spec, cfg, task)\n"
        "except RuntimeError as exc:\n"
        "    print('stopped:', exc)\n")
    stdout, probe = _run(tmp_path, code)
    assert "stopped: fake unsloth" in stdout
    assert probe == {"imported_before": []}


@pytest.mark.parametrize(("version", "status"), [("2026.10.9", "ok"), ("2026.3.1", "--")])
def test_doctor_says_what_unsloth_does_on_a_cpu_without_importing_it(tmp_path: Path, version: str,
                                                                      status: str) -> None:
    code = ("from finetune.doctor import doctor_checks\n"
            "c = next(c for c in doctor_checks({'cuda': False}) if c.name == 'unsloth')\n"
            "print(c.status, '|', c.detail, '|', c.fix)\n")
    stdout, probe = _run(tmp_path, code, version)
    line = stdout.strip().splitlines()[-1]
    assert probe is None, "doctor imported unsloth (it patches transformers/TRL)"
    assert version in line
    assert line.startswith(status)
    if status == "ok":
        assert "--backend unsloth" in line and "auto uses hf" in line and "needs a CUDA GPU" not in line
    else:
        assert "need CUDA" in line and "pip install -U" in line


def test_gguf_export_with_unsloth_on_a_cpu_needs_a_built_llama_cpp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                   tiny_causal_lm: Path) -> None:
    """unsloth_zoo 2026.10.9 `cpu/loader.py` save_pretrained_gguf calls `install_llama_cpp()`, which clones and
    builds llama.cpp from GitHub when ~/.unsloth/llama.cpp (or $UNSLOTH_LLAMA_CPP_PATH) has no build: the
    preflight says so before any work instead of the run failing (or hanging) after training."""
    import torch
    from fake_unsloth import make_fake_unsloth

    from eval.tracks import DataRef
    from finetune import sft

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "unsloth", make_fake_unsloth(tiny_causal_lm))
    monkeypatch.setenv("UNSLOTH_LLAMA_CPP_PATH", str(tmp_path / "llama.cpp"))
    cfg = sft.SFTArgs(model="smollm2-135m", backend="unsloth", export_gguf="q8_0", learning_rate=1e-4)
    spec = sft.make_spec(cfg, DataRef("rotten", None), 16, 0, 8)
    problems = sft.preflight(spec)
    assert len(problems) == 1 and "no built llama.cpp" in problems[0] and "--merge" in problems[0]
    built = tmp_path / "llama.cpp"
    built.mkdir()
    (built / "convert_hf_to_gguf.py").write_text("")
    (built / "llama-quantize").write_text("#!/bin/sh\n")
    (built / "llama-quantize").chmod(0o755)
    assert sft.preflight(spec) == []
