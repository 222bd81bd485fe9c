"""A stand-in for the `unsloth` package that behaves like unsloth 2026.10.9 where our code touches it, on CPU.

Mirrored from the released wheel (unsloth-2026.10.9-py3-none-any.whl):
- `unsloth/models/vision.py`, `FastBaseModel.from_pretrained`: `auto_processor = AutoProcessor if needs_processor
  ... else AutoTokenizer` - a VLM-capable config (gemma-3 4B `it`: a `vision_config`) gets a *processor* back, not
  a tokenizer. Like transformers' `Gemma3Processor.__call__(images=None, text=None, ...)`, calling it with a string
  takes the string as `images`, so there are no `input_ids`.
- `unsloth/save.py`, `_gguf_output_directory`: GGUF files land in the sibling folder f"{save_directory}_gguf" (not in
  `save_directory`), next to unsloth's own `Modelfile`; `unsloth_save_pretrained_gguf` returns a dict whose
  `gguf_files` lists them. The files are real GGUFs carrying what llama.cpp's converter writes from the tokenizer:
  `tokenizer.chat_template` (Qwen3's, abridged) and `tokenizer.ggml.add_bos_token`.
- `unsloth/_version.py`: `__version__`; `FastLanguageModel.get_peft_model` wraps the model with peft LoRA.

    mod = make_fake_unsloth(tiny_model_dir, vlm_ids={"unsloth/gemma-3-4b-it-unsloth-bnb-4bit"})
    monkeypatch.setitem(sys.modules, "unsloth", mod)
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any


class FakeProcessor:
    """Shaped like a transformers ProcessorMixin: `.tokenizer`, `.chat_template`, `save_pretrained`, and a
    `__call__(images=None, text=None)` whose first positional argument is images."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.chat_template = tokenizer.chat_template

    def __call__(self, images: Any = None, text: Any = None, **kwargs: Any) -> dict:
        if text is None:  # processor("some text"): the text went in as images; no token ids come out
            return {"pixel_values": [[0.0]]}
        return dict(self.tokenizer(text, **kwargs))

    def save_pretrained(self, path: Any) -> None:
        self.tokenizer.save_pretrained(path)
        Path(path, "processor_config.json").write_text('{"processor_class": "Gemma3Processor"}')


# What unsloth's GGUF export writes as `tokenizer.chat_template` for Qwen3 (llama.cpp convert_hf_to_gguf.py copies
# the tokenizer's chat template; abridged from Qwen/Qwen3-4B tokenizer_config.json): it mentions tools, tool calls,
# tool responses and <think></think>, which is what Ollama's template choice looks at (tests/ollama_rules.py).
QWEN3_CHAT_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n# Tools\\n<tools>' }}{%- for tool in tools %}{{- tool | tojson }}"
    "{%- endfor %}{{- '</tools>\\nFor each function call, return <tool_call></tool_call><|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == \"tool\" %}{{- '<tool_response>\\n' + message.content + "
    "'\\n</tool_response>' }}{%- elif message.role == \"assistant\" %}{%- set content = "
    "message.content.split('</think>')[-1] %}{%- if message.tool_calls %}{%- for tool_call in message.tool_calls %}"
    "{{- '<tool_call>' + tool_call.function.name + '</tool_call>' }}{%- endfor %}{%- endif %}{{- '<|im_start|>"
    "assistant\\n<think>\\n\\n</think>\\n\\n' + content + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>' + "
    "message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def _write_gguf(path: Path, *, chat_template: str | None = QWEN3_CHAT_TEMPLATE, add_bos: bool | None = None) -> None:
    """A real GGUF (gguf-py's writer) with the metadata unsloth's export leaves there: architecture, the tokenizer's
    chat template and, where the tokenizer says so, `tokenizer.ggml.add_bos_token`; one small tensor."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, arch="qwen3")
    writer.add_name(path.stem)
    if chat_template:
        writer.add_chat_template(chat_template)
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# ids whose hub config has a `vision_config` (Gemma3ForConditionalGeneration); gemma-3 270m/1b are text-only
GEMMA3_VLM_IDS = frozenset({"unsloth/gemma-3-4b-it-unsloth-bnb-4bit", "google/gemma-3-4b-it"})


def make_fake_unsloth(tiny: Path, *, vlm_ids: frozenset[str] = GEMMA3_VLM_IDS, version: str = "2026.10.9",
                      calls: list | None = None, gguf_fails: bool = False,
                      chat_template: str | None = QWEN3_CHAT_TEMPLATE, add_bos: bool | None = True,
                      ) -> types.ModuleType:
    calls = [] if calls is None else calls
    mod = types.ModuleType("unsloth")
    mod.__version__ = version

    def save_pretrained_gguf(self: Any, save_directory: str, tokenizer: Any = None,
                             quantization_method: str = "fast_quantized", **kw: Any) -> dict:
        calls.append(("save_pretrained_gguf", {"save_directory": save_directory, "method": quantization_method}))
        if gguf_fails:
            raise RuntimeError("Unsloth: llama.cpp quantize failed (exit status 137)")
        gguf_dir = Path(f"{save_directory}_gguf")
        gguf_dir.mkdir(parents=True, exist_ok=True)
        name = Path(save_directory).name
        files = [gguf_dir / f"{name}.{quantization_method.upper()}.gguf"]
        if any(str(i) in vlm_ids for i in calls_ids(calls)):
            files.append(gguf_dir / f"{name}.BF16-mmproj.gguf")
        for f in files:
            _write_gguf(f, chat_template=chat_template, add_bos=add_bos)
        (gguf_dir / "Modelfile").write_text(f"FROM ./{files[0].name}\n")
        return {"save_directory": save_directory, "gguf_directory": str(gguf_dir),
                "gguf_files": [str(f) for f in files], "modelfile_location": str(gguf_dir / "Modelfile")}

    def save_pretrained_merged(self: Any, save_directory: str, tokenizer: Any = None, save_method: str = "lora",
                               **kw: Any) -> None:
        calls.append(("save_pretrained_merged", {"save_method": save_method}))
        self.merge_and_unload().save_pretrained(save_directory)
        tokenizer.save_pretrained(save_directory)

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(model_name: str, **kw: Any) -> tuple[Any, Any]:
            calls.append(("from_pretrained", {"model_name": model_name, **kw}))
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model, tok = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
            # unsloth/models/loader.py: dtype None -> bf16 where supported else fp16; an explicit bf16 without
            # native bf16 -> fp16 ("Device does not support bfloat16. Will change to float16.")
            dtype = kw.get("dtype")
            try:
                native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
            except (AssertionError, RuntimeError):  # CUDA faked by a test on a CPU-only torch: no bf16 to ask
                native = False
            if dtype is None or (dtype == torch.bfloat16 and not native):
                dtype = torch.bfloat16 if dtype is None and native else torch.float16
            model = model.to(dtype)
            return model, (FakeProcessor(tok) if model_name in vlm_ids else tok)

        @staticmethod
        def get_peft_model(model: Any, **kw: Any) -> Any:
            calls.append(("get_peft_model", kw))
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(task_type="CAUSAL_LM", r=kw["r"], lora_alpha=kw["lora_alpha"],
                                lora_dropout=kw["lora_dropout"], target_modules=kw["target_modules"])
            peft_model = get_peft_model(model, config)
            # unsloth patches these onto the model it returns
            peft_model.save_pretrained_gguf = types.MethodType(save_pretrained_gguf, peft_model)
            peft_model.save_pretrained_merged = types.MethodType(save_pretrained_merged, peft_model)
            return peft_model

        @staticmethod
        def for_inference(model: Any) -> None:
            calls.append(("for_inference", {}))

        @staticmethod
        def for_training(model: Any) -> None:
            calls.append(("for_training", {}))

    mod.FastLanguageModel = FastLanguageModel
    mod.FastModel = FastLanguageModel
    mod.calls = calls
    return mod


def calls_ids(calls: list) -> list[str]:
    return [kw["model_name"] for name, kw in calls if name == "from_pretrained"]


# --- an installed stand-in package, for subprocesses: what importing the real one does to the process ---

_PACKAGE_INIT = '''"""Stand-in for an installed unsloth {version} (tests/fake_unsloth.py)."""
import json, os, sys

# unsloth 2026.10.9 `_gpu_init.py`: critical_modules = ["trl", "transformers", "peft"] already imported -> warning
already_imported = [m for m in ("trl", "transformers", "peft") if m in sys.modules]
with open(os.environ["FAKE_UNSLOTH_PROBE"], "w") as fh:
    json.dump({{"imported_before": already_imported}}, fh)
if already_imported:
    import warnings
    warnings.warn(f"WARNING: Unsloth should be imported before [{{', '.join(already_imported)}}]", stacklevel=2)
__version__ = "{version}"

# unsloth_zoo 2026.10.9 `cpu/trainer.py` install_cpu_training_defaults (run by `_cpu_init.py` on import without a
# GPU): TrainingArguments/SFTConfig __post_init__ turn adamw_torch into adamw_torch_fused; trl.SFTTrainer is replaced
import functools
from transformers import TrainingArguments


def _patch_post_init(cls):
    original = cls.__post_init__
    if getattr(original, "_unsloth_cpu", False):
        return

    @functools.wraps(original)
    def __post_init__(self, *args, **kwargs):
        if str(getattr(self.optim, "value", self.optim)) in ("adamw_torch", "adamw_torch_fused"):
            self.optim = "adamw_torch_fused"
        return original(self, *args, **kwargs)

    __post_init__._unsloth_cpu = True
    cls.__post_init__ = __post_init__


_patch_post_init(TrainingArguments)
try:
    import trl
    from trl.trainer import sft_trainer
except Exception:
    trl = None
if trl is not None:
    if "__post_init__" in vars(trl.SFTConfig):
        _patch_post_init(trl.SFTConfig)
    base = sft_trainer.SFTTrainer

    class SFTTrainer(base):
        _unsloth_cpu = True

    SFTTrainer.__module__ = base.__module__
    for module in (sft_trainer, trl, sys.modules.get("trl.trainer")):
        if module is not None:
            setattr(module, "SFTTrainer", SFTTrainer)


class FastLanguageModel:
    @staticmethod
    def from_pretrained(*args, **kwargs):
        raise RuntimeError("fake unsloth: from_pretrained is not part of this stand-in")


FastModel = FastLanguageModel
'''


def write_fake_unsloth_package(root: Path, version: str = "2026.10.9") -> Path:
    """An importable `unsloth` under `root` (put it on PYTHONPATH) with its package metadata, whose import has the
    real import-time side effects on a CPU (unsloth 2026.10.9 `_gpu_init.py`, `_cpu_init.py`; unsloth_zoo
    2026.10.9 `cpu/trainer.py`): it records which of trl/transformers/peft came first (into $FAKE_UNSLOTH_PROBE,
    and warns as the real one does), patches TrainingArguments/SFTConfig to adamw_torch_fused and replaces
    trl.SFTTrainer. The probe file exists only if something imported it."""
    pkg = root / "unsloth"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(_PACKAGE_INIT.format(version=version))
    dist = root / f"unsloth-{version}.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: unsloth\nVersion: {version}\n")
    return root
