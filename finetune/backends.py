"""Model loading for SFT: the only thing that differs between backends. Training is one TRL path for both.

- `unsloth`: `FastLanguageModel` 4-bit (or 16-bit) + its LoRA; CUDA only. Chosen by `auto` when CUDA is present and
  unsloth (>= UNSLOTH_MIN) imports; when it does not, `auto` says why before falling back to hf.
- `hf`: transformers + peft; 4-bit bitsandbytes (QLoRA) on CUDA, full precision LoRA on CPU (the offline
  `gemma3-270m` loads through `eval.lm.load_causal_lm`, which converts its GGUF package once).

Saving and exports (adapter, `--merge`, `--export-gguf`, the Ollama Modelfile) live in finetune/export.py.
Why each rule here exists, with its public source: docs/gpu-paths.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eval.models import ModelInfo

BACKENDS = ("auto", "unsloth", "hf")
# First release after unsloth PR #4100 (merged 2026-02-24), which fixed garbage output from left-padded batched
# generation (issue #3699): older releases silently corrupt before/after accuracy at eval_batch_size > 1.
UNSLOTH_MIN = "2026.3.1"
log = logging.getLogger("finetune")


class BackendError(RuntimeError):
    """A backend was asked for and cannot run here; the message says why and what to do instead."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cuda_bf16() -> bool:
    """Native bf16 on the current CUDA device. `torch.cuda.is_bf16_supported()` alone also counts emulation, which
    is True on a T4 (compute capability 7.5) and runs bf16 slowly there (docs/pitfalls.md#bf16-support). The one
    decision lives in eval.hardware."""
    import torch

    from eval.hardware import cuda_native_bf16

    return torch.cuda.is_available() and cuda_native_bf16(torch)


def cuda_compute_dtype() -> Any:
    import torch

    return torch.bfloat16 if cuda_bf16() else torch.float16


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def unsloth_import_error() -> str | None:
    """None when unsloth imports and is new enough, else the reason (unsloth raises on import without a GPU)."""
    try:
        mod = importlib.import_module("unsloth")
    except Exception as exc:  # noqa: BLE001 - unsloth raises NotImplementedError/RuntimeError/ImportError
        return f"unsloth does not import ({type(exc).__name__}: {exc})"
    version = str(getattr(mod, "__version__", "") or "")
    if not version:
        import importlib.metadata as md

        try:
            version = md.version("unsloth")
        except md.PackageNotFoundError:
            return "cannot tell the unsloth version (no __version__, no package metadata)"
    if _version_tuple(version) < _version_tuple(UNSLOTH_MIN):
        return (f"unsloth {version} is older than {UNSLOTH_MIN}, the first release with the left-padding fix for "
                f"batched generation (unsloth PR #4100); upgrade: pip install -U 'unsloth>={UNSLOTH_MIN}'")
    return None


def select_backend(requested: str = "auto") -> str:
    """`auto` -> unsloth when CUDA is present and unsloth imports, else hf. Asking for unsloth where it cannot run
    is one clear error naming the fallback.

    unsloth is imported *before* torch when it is installed: it patches transformers/TRL at import time, and its
    patches may not apply to modules already imported."""
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested == "hf":
        return "hf"
    reason = unsloth_import_error() if _unsloth_present() else "unsloth is not installed (pip install -e '.[unsloth]')"
    cuda = cuda_available()
    if requested == "unsloth":
        if not cuda:
            raise BackendError("--backend unsloth needs a CUDA GPU and none is visible; rerun with --backend hf "
                               "(transformers + peft, full-precision LoRA on CPU)")
        if reason:
            raise BackendError(f"--backend unsloth: {reason}; install it with pip install -e '.[unsloth]' or rerun "
                               "with --backend hf")
        return "unsloth"
    if cuda and reason:
        log.warning("--backend auto: using hf, not unsloth, because %s", reason)
    return "unsloth" if cuda and reason is None else "hf"


def _unsloth_present() -> bool:
    """Installed (or already imported), without importing it: only then is an import attempt worth its cost."""
    if "unsloth" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("unsloth") is not None
    except (ImportError, ValueError):
        return True


def quantize_4bit(requested: str = "auto") -> bool:
    """`auto` -> 4-bit (QLoRA) on CUDA, full precision elsewhere (bitsandbytes 4-bit needs CUDA)."""
    if requested == "auto":
        return cuda_available()
    if requested == "4bit" and not cuda_available():
        raise BackendError("4-bit quantization (method qlora) needs CUDA; rerun with --quantization none (LoRA)")
    return requested == "4bit"


def bitsandbytes_error() -> str | None:
    """None when bitsandbytes imports, else why (the hf 4-bit path and the 8-bit optimizer need it)."""
    try:
        importlib.import_module("bitsandbytes")
    except Exception as exc:  # noqa: BLE001 - bitsandbytes raises RuntimeError on a broken CUDA setup
        return f"{type(exc).__name__}: {exc}"
    return None


def optimizer_name(cuda: bool) -> str:
    """adamw_8bit on CUDA when bitsandbytes imports (a third of AdamW's optimizer memory), else torch's AdamW."""
    if not cuda:
        return "adamw_torch"
    reason = bitsandbytes_error()
    if reason:
        log.warning("bitsandbytes does not import (%s): using adamw_torch instead of adamw_8bit "
                    "(pip install bitsandbytes for the 8-bit optimizer)", reason)
        return "adamw_torch"
    return "adamw_8bit"


def text_tokenizer(tok: Any) -> Any:
    """The text tokenizer inside a multimodal processor, or `tok` itself. unsloth hands back a processor (e.g.
    `Gemma3Processor`) for VLM-capable configs; calling it with text treats the text as `images` and yields no
    input_ids (the "empty prompt" failure; docs/pitfalls.md#unsloth-processor). Plain tokenizers have no
    `.tokenizer` attribute."""
    inner = getattr(tok, "tokenizer", None)
    return inner if inner is not None and callable(inner) else tok


@dataclass
class Loaded:
    model: Any  # a peft model with fresh (zero-effect) LoRA adapters
    tokenizer: Any  # always a text tokenizer (see text_tokenizer)
    backend: str
    model_id: str
    quantized: bool
    info: dict = field(default_factory=dict)
    processor: Any = None  # what the loader returned when it was a multimodal processor (saved with exports)

    @property
    def saveable_tokenizer(self) -> Any:
        return self.processor if self.processor is not None else self.tokenizer


def load(info: ModelInfo, backend: str, *, load_in_4bit: bool, max_seq_length: int, lora: dict,
         seed: int, dtype: Any = None) -> Loaded:
    """Load the model for `backend` and wrap it with LoRA. `lora`: r, alpha, dropout, target_modules.
    `dtype`: the hf backend's weights dtype (eval.hardware.sft_precision; None: its default)."""
    loaded = _load_unsloth(info, load_in_4bit, max_seq_length, lora, seed) if backend == "unsloth" else \
        _load_hf(info, load_in_4bit, lora, dtype)
    from eval.lm import ensure_pad_token  # pad != eos (docs/pitfalls.md#pad-eos); load_causal_lm did it

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
    text = text_tokenizer(tok)
    meta = {"dtype": str(getattr(model, "dtype", None))}
    if text is not tok:
        meta["processor"] = type(tok).__name__
    return Loaded(model, text, "unsloth", model_id, load_in_4bit, meta, processor=tok if text is not tok else None)


def _load_hf(info: ModelInfo, load_in_4bit: bool, lora: dict, dtype: Any = None) -> Loaded:
    from peft import LoraConfig, get_peft_model

    if load_in_4bit:
        reason = bitsandbytes_error()
        if reason:
            raise BackendError(f"4-bit loading (method qlora) on the hf backend needs bitsandbytes, which does not "
                               f"import ({reason}): pip install bitsandbytes, or rerun with --quantization none")
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        from eval.distributed import cuda_device_map

        model_id = info.id_for("hf")
        dtype = dtype or cuda_compute_dtype()
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(model_id, quantization_config=bnb, device_map=cuda_device_map(),
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


def ollama_modelfile(gguf_file: str, template: str, *, stop: Sequence[str] = (), num_ctx: int = 2048,
                     temperature: float = 0.0, bos_token: str | None = None) -> str:
    """An Ollama Modelfile for a tuned GGUF. `template` is the exact SFT prompt with the input as `{{ .Prompt }}`,
    so `ollama run <name> "<text>"` sees the prompt it was trained on and answers with a label word.

    A leading `bos_token` is dropped from the template: Ollama's runner adds BOS itself when the GGUF's tokenizer
    says so, and a literal one in the template gives Llama/Mistral exports two (the training path drops it too)."""
    if bos_token and template.startswith(bos_token):
        template = template[len(bos_token):]
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


__all__ = ["BACKENDS", "UNSLOTH_MIN", "BackendError", "Loaded", "select_backend", "quantize_4bit", "load",
           "ollama_modelfile", "for_inference", "for_training", "cuda_available", "cuda_bf16", "optimizer_name",
           "text_tokenizer"]
