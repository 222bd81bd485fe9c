"""The CUDA paths of the SFT track, exercised on CPU against stand-ins that behave like the real libraries
(tests/fake_unsloth.py mirrors unsloth 2026.10.9). Each test names the defect it guards (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytest.importorskip("trl")

from fake_unsloth import make_fake_unsloth  # noqa: E402

from eval.lm.models import resolve  # noqa: E402
from eval.scoring.labels import LabelScheme  # noqa: E402
from finetune import backends  # noqa: E402
from finetune.config import SFTArgs  # noqa: E402
from finetune.formatting import Formatter, load_template  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEME = LabelScheme.from_labels(["negative", "positive"])
GEMMA_4B = "unsloth/gemma-3-4b-it-unsloth-bnb-4bit"


@pytest.fixture
def cuda_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def _load_unsloth(monkeypatch: pytest.MonkeyPatch, tiny: Path, **fake_kw) -> tuple[backends.Loaded, list]:
    calls: list = []
    monkeypatch.setitem(sys.modules, "unsloth", make_fake_unsloth(tiny, calls=calls, **fake_kw))
    loaded = backends.load(resolve("gemma3-4b"), "unsloth", load_in_4bit=True, max_seq_length=128,
                           lora=SFTArgs().lora(), seed=0)
    return loaded, calls


# 1. unsloth returns a processor for gemma-3 4B: the text must go through its tokenizer
def test_unsloth_processor_is_unwrapped_to_its_tokenizer(monkeypatch, tiny_causal_lm: Path, cuda_here) -> None:
    loaded, _ = _load_unsloth(monkeypatch, tiny_causal_lm, vlm_ids={GEMMA_4B})
    assert loaded.processor is not None and loaded.info["processor"] == "FakeProcessor"
    assert loaded.tokenizer("the movie was great")["input_ids"], "a text tokenizer, not the processor"
    fmt = Formatter(loaded.tokenizer, SCHEME, load_template(), max_seq_length=96)
    assert fmt.prompt_budget > 0 and "the movie" in fmt.prompt("the movie")
    assert backends.text_tokenizer(loaded.tokenizer) is loaded.tokenizer  # a tokenizer passes through
    # handed the processor itself, the formatter and eval.lm.causal.encode still tokenize the text
    from eval.lm.causal import encode

    assert Formatter(loaded.processor, SCHEME, load_template(), max_seq_length=96).prompt_budget > 0
    assert encode(loaded.processor, "the movie was great") == encode(loaded.tokenizer, "the movie was great")


# 2. GGUF: unsloth writes to the sibling <dir>_gguf and returns the file list; an export failure is recorded
def test_gguf_export_uses_the_files_unsloth_returns(monkeypatch, tiny_causal_lm: Path, cuda_here,
                                                    tmp_path: Path) -> None:
    from finetune.export import export_after_record, save_adapter

    loaded, calls = _load_unsloth(monkeypatch, tiny_causal_lm, vlm_ids={GEMMA_4B})
    out = tmp_path / "artifacts"
    record = tmp_path / "run.json"
    record.write_text(json.dumps({"run_id": "r", "details": {"artifacts": save_adapter(loaded, out)}}))
    prompt = "<s>user : Classify {{ .Prompt }} </s> assistant :"
    done = export_after_record(loaded, out, record, merge=True, gguf="q4_k_m", modelfile_prompt=prompt,
                               stop=["</s>"])
    assert "gguf_error" not in done and "merged_error" not in done, done
    gguf = Path(done["gguf"])
    assert gguf.parent == Path(f"{out / 'gguf'}_gguf") and gguf.name.endswith(".Q4_K_M.gguf")
    assert len(done["gguf_files"]) == 2  # the VLM's mmproj file is listed but not the FROM line
    modelfile = Path(done["modelfile"]).read_text()
    assert modelfile.splitlines()[0] == f"FROM ./{gguf.name}"
    # 10. no literal BOS in the template: Ollama adds it itself
    assert 'TEMPLATE """user : Classify {{ .Prompt }}' in modelfile
    rec = json.loads(record.read_text())
    art = rec["details"]["artifacts"]
    assert art["gguf"] == done["gguf"] and art["adapter"].endswith("adapter")
    assert ("save_pretrained_merged", {"save_method": "merged_16bit"}) in calls
    assert Path(out / "adapter" / "processor_config.json").exists()  # the processor is saved with the adapter


def test_failed_export_is_recorded_and_never_raises(monkeypatch, tiny_causal_lm: Path, cuda_here,
                                                    tmp_path: Path) -> None:
    from finetune.export import export_after_record, save_adapter

    loaded, _ = _load_unsloth(monkeypatch, tiny_causal_lm, gguf_fails=True)
    record = tmp_path / "run.json"
    record.write_text(json.dumps({"run_id": "r", "metrics": {"accuracy": 0.5}}))
    done = export_after_record(loaded, tmp_path / "a", record, gguf="q4_k_m")
    rec = json.loads(record.read_text())
    assert "exit status 137" in rec["details"]["artifacts"]["gguf_error"] and rec["metrics"] == {"accuracy": 0.5}
    assert done == rec["details"]["artifacts"]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert "adapter_error" in save_adapter(loaded, blocked)  # cannot mkdir under a file: recorded, not raised


def test_export_that_cannot_run_here_is_refused_before_training(tiny_causal_lm: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """--export-gguf on the hf backend could only fail after training: preflight refuses it first, in one line,
    and nothing is trained or written (an export that fails after training is recorded: the test above)."""
    from finetune.sft import cli

    argv = ["--model", str(tiny_causal_lm), "--task", "drugs", "--n-train", "8", "--seeds", "0", "--n-eval", "4",
            "--results-dir", str(tmp_path), "--max-seq-length", "64", "--max-steps", "1", "--batch-size", "4",
            "--backend", "hf", "--eval-mode", "score", "--export-gguf", "q4_k_m"]
    assert cli(argv) == 2
    assert "--export-gguf needs the unsloth backend" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json"))


# 3. 4-bit under accelerate launch: each rank on its own GPU
def test_quantized_model_is_placed_on_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    from eval.run.distributed import cuda_device_map

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert cuda_device_map() == {"": 3}
    monkeypatch.delenv("LOCAL_RANK")
    assert cuda_device_map() == {"": 0}
    src = Path(backends.__file__).read_text()
    assert 'device_map={"": 0}' not in src and "device_map=cuda_device_map()" in src


# 5. bitsandbytes missing: torch's AdamW instead of a crash; the 4-bit hf path says what to install
def test_without_bitsandbytes(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with caplog.at_level("WARNING", logger="finetune"):
        assert backends.optimizer_name(cuda=True) == "adamw_torch"
    assert "pip install bitsandbytes" in caplog.text
    assert backends.optimizer_name(cuda=False) == "adamw_torch"
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    assert backends.optimizer_name(cuda=True) == "adamw_8bit"
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(backends.BackendError, match="needs bitsandbytes.*--quantization none"):
        backends.load(resolve("qwen3-4b"), "hf", load_in_4bit=True, max_seq_length=64, lora=SFTArgs().lora(), seed=0)


def test_auto_says_why_unsloth_is_not_used(monkeypatch, cuda_here, caplog: pytest.LogCaptureFixture,
                                           tiny_causal_lm: Path) -> None:
    monkeypatch.setitem(sys.modules, "unsloth", None)  # installed but the import fails
    with caplog.at_level("WARNING", logger="finetune"):
        assert backends.select_backend("auto") == "hf"
    assert "using hf, not unsloth, because" in caplog.text
    # 8. a release from before the left-padding fix is refused, with the upgrade command
    monkeypatch.setitem(sys.modules, "unsloth", make_fake_unsloth(tiny_causal_lm, version="2026.2.1"))
    with pytest.raises(backends.BackendError, match=r"older than 2026\.3\.1.*pip install -U"):
        backends.select_backend("unsloth")
    monkeypatch.setitem(sys.modules, "unsloth", make_fake_unsloth(tiny_causal_lm, version="2026.10.9"))
    assert backends.select_backend("unsloth") == "unsloth"


# 9. a T4 emulates bf16: is_bf16_supported() says True, the native check says False
def test_bf16_on_a_t4_is_not_native(monkeypatch: pytest.MonkeyPatch, cuda_here) -> None:
    import torch

    def t4_is_bf16_supported(including_emulation: bool = True) -> bool:  # torch 2.13 torch/cuda/__init__.py
        return including_emulation  # capability 7.5: emulated only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", t4_is_bf16_supported)
    assert backends.cuda_bf16() is False and backends.cuda_compute_dtype() == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100 / 4090
    assert backends.cuda_bf16() is True and backends.cuda_compute_dtype() == torch.bfloat16


# 11. --merge on a 4-bit hf model: reload the base in 16 bit, apply the adapter, merge
def test_hf_qlora_merge_reloads_the_base_in_16_bit(tiny_causal_lm: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from finetune.export import merge_16bit, save_adapter

    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    # what transformers leaves on a model loaded with a BitsAndBytesConfig; a peft merge keeps it in the config
    base.config.quantization_config = BitsAndBytesConfig(load_in_4bit=True)
    peft_model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"],
                                                 init_lora_weights=False))
    loaded = backends.Loaded(peft_model, AutoTokenizer.from_pretrained(tiny_causal_lm), "hf", str(tiny_causal_lm),
                             quantized=True)
    save_adapter(loaded, tmp_path)
    merged_dir = merge_16bit(loaded, tmp_path / "merged")
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config, "the merged folder must not be a 4-bit model"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    ref = peft_model.merge_and_unload()
    w, r = merged.model.layers[0].self_attn.q_proj.weight, ref.model.layers[0].self_attn.q_proj.weight
    assert torch.allclose(w, r, atol=2e-2)  # bf16 storage


# 6. phi4-mini: the config picks hf and the QLoRA sweep no longer overrides it
def test_phi4_mini_runs_on_hf_in_the_config_and_the_sweep() -> None:
    import yaml

    from finetune.sft import _config_file_values

    sweep = yaml.safe_load((REPO / "sweeps" / "imdb_qlora.yaml").read_text())
    cfg = SFTArgs.from_options({**_config_file_values("phi4-mini"), **sweep["options"]})
    assert cfg.backend == "hf"
    assert SFTArgs.from_options({**_config_file_values("qwen3-4b"), **sweep["options"]}).backend == "auto"


# 14. unsloth is imported before transformers/TRL/peft, so its patches apply (on CUDA, where `auto` picks it)
def test_backend_selection_imports_unsloth_before_transformers(tmp_path: Path) -> None:
    """unsloth 2026.10.9 `_gpu_init.py` checks `trl`, `transformers`, `peft` (torch may come first: the CUDA check
    needs it, and unsloth imports it itself). The probe stands in for that check; CUDA is faked in the child."""
    pkg = tmp_path / "unsloth"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import sys, os\n"
        "seen = sorted(m for m in ('trl', 'transformers', 'peft') if m in sys.modules)\n"
        "open(os.environ['PROBE'], 'w').write(repr(seen))\n"
        "__version__ = '2026.10.9'\n")
    probe = tmp_path / "probe.txt"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "PROBE": str(probe)}
    code = ("import torch; torch.cuda.is_available = lambda: True\n"
            "import finetune.sft\n"
            "from finetune.backends import select_backend; print(select_backend('auto'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "unsloth"
    assert probe.read_text() == "[]", "transformers/TRL/peft were imported before unsloth"


# issue 20: the unsloth loader got dtype=None while the Trainer's bf16 followed --dtype
def test_unsloth_gets_our_dtype_and_the_trainer_follows_what_loaded(monkeypatch, tiny_causal_lm: Path,
                                                                    cuda_here) -> None:
    """On a T4 with --dtype bfloat16, unsloth (models/loader.py) loads fp16 and its trainer then raises "Model is in
    float16 precision but you want to use bfloat16" (models/rl.py): the Trainer's bf16 must follow the model."""
    import torch

    from eval.run.hardware import sft_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)  # T4
    precision = sft_precision("bfloat16")
    assert precision["weights"] == torch.bfloat16 and precision["bf16"] is True  # what was asked
    calls: list = []
    monkeypatch.setitem(sys.modules, "unsloth", make_fake_unsloth(tiny_causal_lm, calls=calls))
    loaded = backends.load(resolve("qwen3-4b"), "unsloth", load_in_4bit=False, max_seq_length=64,
                           lora=SFTArgs().lora(), seed=0, dtype=precision["weights"])
    assert calls[0][1]["dtype"] == torch.bfloat16  # ours, not None (unsloth's own choice)
    followed = backends.follow_loaded_dtype(precision, loaded.model)
    assert loaded.model.dtype == torch.float16 and followed["bf16"] is False and followed["dtype"] == "float16"
    assert loaded.info["dtype"] == "float16"  # the record says the dtype that trained
    # an A100: bf16 is kept as asked
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    loaded = backends.load(resolve("qwen3-4b"), "unsloth", load_in_4bit=False, max_seq_length=64,
                           lora=SFTArgs().lora(), seed=0, dtype=torch.bfloat16)
    assert backends.follow_loaded_dtype(sft_precision("bfloat16"), loaded.model)["bf16"] is True
