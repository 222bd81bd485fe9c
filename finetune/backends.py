"""Model loading for SFT: the only thing that differs between backends. Training is one TRL path for both.

- `unsloth`: `FastLanguageModel` 4-bit (or 16-bit) + its LoRA. Chosen by `auto` when CUDA is present and unsloth
  (>= UNSLOTH_MIN) imports; when it does not, `auto` says why before falling back to hf. On a CPU only when asked
  for (`--backend unsloth`: unsloth >= 2026.10's CPU backend, text LoRA; docs/unsloth-cpu.md). The backend is
  decided before unsloth is imported, and unsloth is imported only when chosen (its import patches TRL).
- `hf`: transformers + peft; 4-bit bitsandbytes (QLoRA) on CUDA, full precision LoRA on CPU (the offline
  `gemma3-270m` loads through `eval.lm.causal.load_causal_lm`, which converts its GGUF package once).

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

from eval.lm.models import ModelInfo

BACKENDS = ("auto", "unsloth", "hf")
# First release after unsloth PR #4100 (merged 2026-02-24), which fixed garbage output from left-padded batched
# generation (issue #3699): older releases silently corrupt before/after accuracy at eval_batch_size > 1.
UNSLOTH_MIN = "2026.3.1"
# The release whose CPU backend this suite runs in CI (tests/test_unsloth_real.py; docs/unsloth-cpu.md); older ones
# raised on import without a GPU
UNSLOTH_CPU_TESTED = "2026.10.9"
log = logging.getLogger("finetune")


class BackendError(RuntimeError):
    """A backend was asked for and cannot run here; the message says why and what to do instead."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cuda_bf16() -> bool:
    """Native bf16 on the current CUDA device. `torch.cuda.is_bf16_supported()` alone also counts emulation, which
    is True on a T4 (compute capability 7.5) and runs bf16 slowly there (docs/pitfalls.md#bf16-support). The one
    decision lives in eval.run.hardware."""
    import torch

    from eval.run.hardware import cuda_native_bf16

    return torch.cuda.is_available() and cuda_native_bf16(torch)


def cuda_compute_dtype() -> Any:
    import torch

    return torch.bfloat16 if cuda_bf16() else torch.float16


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def unsloth_version() -> str | None:
    """The installed unsloth's version from its package metadata, without importing it (importing patches
    transformers/TRL process-wide; docs/unsloth-cpu.md), or None when it is not installed."""
    import importlib.metadata as md

    mod = sys.modules.get("unsloth")
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        return md.version("unsloth")
    except md.PackageNotFoundError:
        return None


def unsloth_import_error() -> str | None:
    """None when unsloth is new enough and imports, else the reason. It imports unsloth: call it only once unsloth
    is the chosen backend (on CUDA for `auto`, or asked for by name), never for an hf run."""
    version = unsloth_version()
    if version and _version_tuple(version) < _version_tuple(UNSLOTH_MIN):
        return (f"unsloth {version} is older than {UNSLOTH_MIN}, the first release with the left-padding fix for "
                f"batched generation (unsloth PR #4100); upgrade: pip install -U 'unsloth>={UNSLOTH_MIN}'")
    try:
        mod = importlib.import_module("unsloth")
    except Exception as exc:  # noqa: BLE001 - unsloth raises NotImplementedError/RuntimeError/ImportError
        return f"unsloth does not import ({type(exc).__name__}: {exc})"
    version = str(getattr(mod, "__version__", "") or "") or version
    if not version:
        return "cannot tell the unsloth version (no __version__, no package metadata)"
    if _version_tuple(version) < _version_tuple(UNSLOTH_MIN):
        return (f"unsloth {version} is older than {UNSLOTH_MIN}, the first release with the left-padding fix for "
                f"batched generation (unsloth PR #4100); upgrade: pip install -U 'unsloth>={UNSLOTH_MIN}'")
    return None


def select_backend(requested: str = "auto") -> str:
    """The backend, decided *before* unsloth is imported, and unsloth imported only when it is the one chosen.

    - `hf`: unsloth is never imported. Importing it patches transformers and TRL for the whole process (on CPU,
      unsloth_zoo 2026.10.9 `cpu/trainer.py`: TrainingArguments/SFTConfig `__post_init__` turn `adamw_torch` into
      `adamw_torch_fused`, and `trl.SFTTrainer` is replaced), so an hf run must not see it.
    - `auto`: unsloth on CUDA when it is installed, new enough and imports; else hf. On a CPU `auto` is hf and
      unsloth stays unimported: its CPU mode trains text LoRA only, slower than our hf path (docs/unsloth-cpu.md).
    - `unsloth`: asked for on purpose, also on a CPU (unsloth >= 2026.10 has a CPU backend: text LoRA, no 4-bit
      kernels, no GGUF without llama.cpp); imported here, before transformers/TRL/peft (unsloth 2026.10.9
      `_gpu_init.py` warns when `trl`, `transformers` or `peft` came first: its patches may not apply).
    torch may be imported first (unsloth imports it itself; the CUDA check needs it)."""
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested == "hf":
        return "hf"
    present = _unsloth_present()
    if requested == "unsloth":
        reason = unsloth_import_error() if present else "unsloth is not installed"
        if reason:
            raise BackendError(f"--backend unsloth: {reason}; install it with pip install -e '.[unsloth]' (on a CPU: "
                               "make install-unsloth, its own venv) or rerun with --backend hf")
        return "unsloth"
    if not cuda_available():
        return "hf"  # unsloth is not imported: nothing of it touches an hf run
    reason = unsloth_import_error() if present else "unsloth is not installed (pip install -e '.[unsloth]')"
    if reason:
        log.warning("--backend auto: using hf, not unsloth, because %s", reason)
        return "hf"
    return "unsloth"


def _unsloth_present() -> bool:
    """Installed (or already imported), without importing it: only then is an import attempt worth its cost."""
    if "unsloth" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("unsloth") is not None
    except (ImportError, ValueError):
        return True


def llama_cpp_missing() -> str | None:
    """None when the llama.cpp build unsloth's GGUF export uses is already there, else what is missing. unsloth_zoo
    2026.10.9 `llama_cpp.py`: the folder is $UNSLOTH_LLAMA_CPP_PATH or ~/.unsloth/llama.cpp, with an executable
    `llama-quantize` (or `quantize`) and `convert_hf_to_gguf.py`; when they are missing `install_llama_cpp()`
    clones llama.cpp from GitHub and builds it (git, cmake, network). Checked without importing unsloth_zoo."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("UNSLOTH_LLAMA_CPP_PATH") or Path.home() / ".unsloth" / "llama.cpp")
    quantizer = next((folder / n for n in ("llama-quantize", "quantize") if os.access(folder / n, os.X_OK)), None)
    if quantizer is None or not (folder / "convert_hf_to_gguf.py").exists():
        return f"no built llama.cpp in {folder} (llama-quantize + convert_hf_to_gguf.py)"
    return None


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
         seed: int, dtype: Any = None, gradient_checkpointing: bool | None = None) -> Loaded:
    """Load the model for `backend` and wrap it with LoRA. `lora`: r, alpha, dropout, target_modules.
    `dtype`: the weights dtype both backends load in (eval.run.hardware.sft_precision; None: the backend's default).
    `gradient_checkpointing`: unsloth's own (None: on with CUDA, off on a CPU, where it only saves memory)."""
    if backend == "unsloth":
        loaded = _load_unsloth(info, load_in_4bit, max_seq_length, lora, seed, dtype, gradient_checkpointing)
    else:
        loaded = _load_hf(info, load_in_4bit, lora, dtype)
    from eval.lm.causal import ensure_pad_token  # pad != eos (docs/pitfalls.md#pad-eos); load_causal_lm did it

    loaded.info["pad_choice"] = ensure_pad_token(loaded.tokenizer, loaded.model)
    return loaded


def unsloth_model_source(info: ModelInfo, load_in_4bit: bool) -> tuple[str, str]:
    """(what unsloth's from_pretrained loads, its source) decided as for every track (eval/lm/weights.py): a local
    folder; an alias's offline package (converted once to a safetensors folder, `python -m eval.lm.models ALIAS`) when
    offline or the hub is unreachable; else the hub id, unsloth's pre-quantized 4-bit repo when loading 4-bit."""
    from eval.lm.weights import locate

    where = locate(info.name)
    if where.kind == "local":
        return where.ref, "local"
    if where.kind == "offline":
        from eval.lm.models import prepare

        return str(prepare(info.name)), f"offline:{where.ref}"
    return (info.id_for("unsloth") if load_in_4bit else info.id_for("hf")), "hub"


def _load_unsloth(info: ModelInfo, load_in_4bit: bool, max_seq_length: int, lora: dict, seed: int,
                  dtype: Any = None, gradient_checkpointing: bool | None = None) -> Loaded:
    model_id, source = unsloth_model_source(info, load_in_4bit)
    from unsloth import FastLanguageModel

    # our dtype, not unsloth's auto (dtype=None): the Trainer's bf16 flag follows the same decision, so a T4 asked
    # for bf16 no longer loads fp16 and fails ("Model is in float16 precision but you want to use bfloat16"), and
    # the record's dtype is the one that trained (docs/unsloth-cpu.md#dtype)
    model, tok = FastLanguageModel.from_pretrained(model_name=model_id, max_seq_length=max_seq_length,
                                                   load_in_4bit=load_in_4bit, dtype=dtype)
    gc = cuda_available() if gradient_checkpointing is None else gradient_checkpointing
    model = FastLanguageModel.get_peft_model(model, r=lora["r"], target_modules=list(lora["target_modules"]),
                                             lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             use_gradient_checkpointing="unsloth" if gc else False,
                                             random_state=seed)
    text = text_tokenizer(tok)
    import importlib.metadata as md

    meta = {"dtype": str(getattr(model, "dtype", None)).removeprefix("torch."), "source": source,
            "unsloth": unsloth_version()}
    try:
        meta["unsloth_zoo"] = md.version("unsloth_zoo")  # where unsloth's CPU trainer, loader and GGUF code live
    except md.PackageNotFoundError:
        pass
    if text is not tok:
        meta["processor"] = type(tok).__name__
    return Loaded(model, text, "unsloth", model_id, load_in_4bit, meta, processor=tok if text is not tok else None)


def model_type_of(info: Any) -> str | None:
    """config.json's `model_type` of what this run loads (a local/offline folder or the hub id), None if unknown;
    read before loading, so the dtype can avoid float16 for a family that overflows it (eval.run.hardware)."""
    from eval.lm.weights import locate

    where = locate(info.name)
    ref = where.ref if where.kind == "local" else info.id_for("hf")
    if where.kind == "offline":
        return None  # the offline packages are small CPU models; nothing there trains in float16
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(ref), "model_type", None)
    except (OSError, ValueError):
        return None


def follow_loaded_dtype(precision: dict, model: Any) -> dict:
    """On CUDA the Trainer's bf16 flag follows the dtype the model really loaded in: unsloth 2026.10.9
    (`models/loader.py`) turns a bf16 request into fp16 on a GPU without native bf16 ("Device does not support
    bfloat16. Will change to float16.") and its trainer then refuses bf16=True ("Model is in float16 precision but
    you want to use bfloat16", `models/rl.py`); the record says what trained. On a CPU the weights stay fp32 under
    the bf16 autocast (eval.run.hardware.sft_precision), so nothing changes there."""
    import torch

    loaded = getattr(model, "dtype", None)
    if precision.get("device") == "cpu" or not isinstance(loaded, torch.dtype) or loaded == precision["weights"]:
        return precision
    if loaded not in (torch.float16, torch.bfloat16, torch.float32):
        return precision  # a 4-bit model reports its storage dtype; the compute dtype was what we asked for
    log.warning("the model loaded in %s (asked: %s); training and the record follow it", loaded, precision["weights"])
    return {**precision, "weights": loaded, "bf16": loaded == torch.bfloat16,
            "dtype": str(loaded).removeprefix("torch."), "reason": f"{precision['reason']}; loaded as {loaded}"}


def _load_hf(info: ModelInfo, load_in_4bit: bool, lora: dict, dtype: Any = None) -> Loaded:
    from peft import LoraConfig, get_peft_model

    if load_in_4bit:
        reason = bitsandbytes_error()
        if reason:
            raise BackendError(f"4-bit loading (method qlora) on the hf backend needs bitsandbytes, which does not "
                               f"import ({reason}): pip install bitsandbytes, or rerun with --quantization none")
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        from eval.run.distributed import cuda_device_map

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
        from eval.lm.causal import load_causal_lm

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
                     temperature: float = 0.0, bos_token: str | None = None, adds_bos: bool = False) -> str:
    """An Ollama Modelfile for a tuned GGUF. `template` is the exact SFT prompt with the input as `{{ .Prompt }}`,
    so `ollama run <name> "<text>"` sees the prompt it was trained on and answers with a label word.

    A leading `bos_token` is dropped from the template only when the runner adds BOS itself (`adds_bos`: the
    GGUF's `tokenizer.ggml.add_bos_token`), else a Llama/Mistral export would get two; without it the literal BOS
    stays, as the training prompts had it (finetune/formatting.py keeps BOS the same way). Values are quoted as
    Ollama's Modelfile parser reads them (docs/unsloth-cpu.md#modelfile): it strips one pair of `"` or of triple quotes
    and undoes no escapes."""
    if bos_token and adds_bos and template.startswith(bos_token):
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
    """A Modelfile value as ollama's parser (parser/parser.go `unquote`) gives it back: one pair of `"` is stripped
    (triple quotes when the value holds a `"`); backslashes stay literal (it undoes no escapes)."""
    if '"""' in s:
        raise ValueError(f'a Modelfile value cannot contain """: {s!r}')
    return f'"""{s}"""' if '"' in s else f'"{s}"'


__all__ = ["BACKENDS", "UNSLOTH_MIN", "BackendError", "Loaded", "select_backend", "quantize_4bit", "load",
           "ollama_modelfile", "for_inference", "for_training", "cuda_available", "cuda_bf16", "optimizer_name",
           "text_tokenizer"]
