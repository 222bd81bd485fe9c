"""Model loading for SFT: the only thing that differs between backends. Training is one TRL path for both.

- `unsloth`: `FastLanguageModel` 4-bit (or 16-bit) + its LoRA; CUDA only. Chosen by `auto` when CUDA is present and
  unsloth imports.
- `hf`: transformers + peft; 4-bit bitsandbytes (QLoRA) on CUDA, full precision LoRA on CPU (the offline
  `gemma3-270m` loads through `eval.lm.load_causal_lm`, which converts its GGUF package once).

Also here: saving (adapter, `--merge`, `--export-gguf` on unsloth) and the Ollama Modelfile for an exported GGUF.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.models import ModelInfo

BACKENDS = ("auto", "unsloth", "hf")


class BackendError(RuntimeError):
    """A backend was asked for and cannot run here; the message says why and what to do instead."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def unsloth_import_error() -> str | None:
    """None when unsloth imports, else the reason (unsloth raises on import without a GPU)."""
    try:
        importlib.import_module("unsloth")
    except Exception as exc:  # noqa: BLE001 - unsloth raises NotImplementedError/RuntimeError/ImportError
        return f"{type(exc).__name__}: {exc}"
    return None


def select_backend(requested: str = "auto") -> str:
    """`auto` -> unsloth when CUDA is present and unsloth imports, else hf. Asking for unsloth where it cannot run
    is one clear error naming the fallback."""
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested == "hf":
        return "hf"
    cuda = cuda_available()
    if requested == "unsloth":
        if not cuda:
            raise BackendError("--backend unsloth needs a CUDA GPU and none is visible; rerun with --backend hf "
                               "(transformers + peft, full-precision LoRA on CPU)")
        reason = unsloth_import_error()
        if reason:
            raise BackendError(f"--backend unsloth: unsloth does not import ({reason}); install it with "
                               "pip install -e '.[unsloth]' or rerun with --backend hf")
        return "unsloth"
    return "unsloth" if cuda and unsloth_import_error() is None else "hf"


def quantize_4bit(requested: str = "auto") -> bool:
    """`auto` -> 4-bit (QLoRA) on CUDA, full precision elsewhere (bitsandbytes 4-bit needs CUDA)."""
    if requested == "auto":
        return cuda_available()
    if requested == "4bit" and not cuda_available():
        raise BackendError("4-bit quantization (method qlora) needs CUDA; rerun with --quantization none (LoRA)")
    return requested == "4bit"


@dataclass
class Loaded:
    model: Any  # a peft model with fresh (zero-effect) LoRA adapters
    tokenizer: Any
    backend: str
    model_id: str
    quantized: bool
    info: dict = field(default_factory=dict)


def load(info: ModelInfo, backend: str, *, load_in_4bit: bool, max_seq_length: int, lora: dict,
         seed: int, dtype: Any = None) -> Loaded:
    """Load the model for `backend` and wrap it with LoRA. `lora`: r, alpha, dropout, target_modules.
    `dtype`: the hf backend's weights dtype (eval.hardware.sft_precision; None: its default)."""
    loaded = _load_unsloth(info, load_in_4bit, max_seq_length, lora, seed) if backend == "unsloth" else \
        _load_hf(info, load_in_4bit, lora, dtype)
    from eval.lm import ensure_pad_token  # pad != eos (FIELD-NOTES trap 7); load_causal_lm already did it

    loaded.info["pad_choice"] = ensure_pad_token(loaded.tokenizer, loaded.model)
    return loaded


def _load_unsloth(info: ModelInfo, load_in_4bit: bool, max_seq_length: int, lora: dict, seed: int) -> Loaded:
    from unsloth import FastLanguageModel

    model_id = info.id_for("unsloth") if load_in_4bit else info.id_for("hf")
    model, tok = FastLanguageModel.from_pretrained(model_name=model_id, max_seq_length=max_seq_length,
                                                   load_in_4bit=load_in_4bit, dtype=None)  # dtype None = auto
    model = FastLanguageModel.get_peft_model(model, r=lora["r"], target_modules=list(lora["target_modules"]),
                                             lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             use_gradient_checkpointing="unsloth", random_state=seed)
    return Loaded(model, tok, "unsloth", model_id, load_in_4bit, {"dtype": str(getattr(model, "dtype", None))})


def _load_hf(info: ModelInfo, load_in_4bit: bool, lora: dict, dtype: Any = None) -> Loaded:
    from peft import LoraConfig, get_peft_model

    if load_in_4bit:
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        from eval.hardware import sft_precision

        model_id = info.id_for("hf")
        dtype = dtype or sft_precision()["weights"]  # bf16 only where native (a T4 emulates it: fp16)
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(model_id, quantization_config=bnb, device_map={"": 0},
                                                     dtype=dtype)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        tok = AutoTokenizer.from_pretrained(model_id)
        meta = {"dtype": str(dtype), "quantization": "bnb-nf4"}
    else:
        from eval.lm import load_causal_lm

        model, tok, lm_info = load_causal_lm(info.name, dtype=dtype)
        model_id, meta = str(lm_info["model_id"]), dict(lm_info)
    config = LoraConfig(task_type="CAUSAL_LM", r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=list(lora["target_modules"]), bias="none")
    return Loaded(get_peft_model(model, config), tok, "hf", model_id, load_in_4bit, meta)


def for_inference(loaded: Loaded) -> None:
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(loaded.model)
    loaded.model.eval()


def for_training(loaded: Loaded) -> None:
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        switch = getattr(FastLanguageModel, "for_training", None)
        if switch is not None:
            switch(loaded.model)
    loaded.model.train()


def save(loaded: Loaded, out: Path, *, merge: bool = False, gguf: str | None = None,
         modelfile_prompt: str | None = None, stop: Sequence[str] = (), num_ctx: int = 2048) -> dict:
    """Adapter always; merged weights with `merge`; a GGUF + Ollama Modelfile with `gguf` (unsloth only)."""
    out.mkdir(parents=True, exist_ok=True)
    saved = {"adapter": str(out / "adapter")}
    loaded.model.save_pretrained(out / "adapter")
    loaded.tokenizer.save_pretrained(out / "adapter")
    if merge:
        if loaded.backend == "unsloth":
            loaded.model.save_pretrained_merged(str(out / "merged"), loaded.tokenizer, save_method="merged_16bit")
        else:
            loaded.model.merge_and_unload().save_pretrained(out / "merged")
            loaded.tokenizer.save_pretrained(out / "merged")
        saved["merged"] = str(out / "merged")
    if gguf:
        if loaded.backend != "unsloth":
            raise BackendError("--export-gguf needs the unsloth backend (CUDA); on CPU use --merge and convert the "
                               "merged folder with llama.cpp's convert_hf_to_gguf.py")
        loaded.model.save_pretrained_gguf(str(out / "gguf"), loaded.tokenizer, quantization_method=gguf)
        files = sorted((out / "gguf").glob("*.gguf"))
        if not files:
            raise BackendError(f"unsloth wrote no .gguf file under {out / 'gguf'}")
        text = ollama_modelfile(files[-1].name, modelfile_prompt or "{{ .Prompt }}", stop=stop, num_ctx=num_ctx)
        (out / "gguf" / "Modelfile").write_text(text, encoding="utf-8")
        saved.update(gguf=str(files[-1]), modelfile=str(out / "gguf" / "Modelfile"))
    return saved


def ollama_modelfile(gguf_file: str, template: str, *, stop: Sequence[str] = (), num_ctx: int = 2048,
                     temperature: float = 0.0) -> str:
    """An Ollama Modelfile for a tuned GGUF. `template` is the exact SFT prompt with the input as `{{ .Prompt }}`,
    so `ollama run <name> "<text>"` sees the prompt it was trained on and answers with a label word."""
    if "{{ .Prompt }}" not in template:
        raise ValueError("the Modelfile template must contain '{{ .Prompt }}' where the input goes")
    if '"""' in template:
        raise ValueError('the Modelfile template cannot contain """ (it delimits the TEMPLATE block)')
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{template}"""', f"PARAMETER temperature {temperature:g}",
             f"PARAMETER num_ctx {int(num_ctx)}"]
    lines += [f"PARAMETER stop {_quote(s)}" for s in stop if s]
    return "\n".join(lines) + "\n"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["BACKENDS", "BackendError", "Loaded", "select_backend", "quantize_4bit", "load", "save",
           "ollama_modelfile", "for_inference", "for_training", "cuda_available"]
