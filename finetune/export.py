"""What an SFT run leaves besides its record: the adapter (always, before the record) and the optional exports
(`--merge`, `--export-gguf` + Ollama Modelfile), done *after* the record is written.

An export can fail for reasons unrelated to the run (disk full, llama.cpp build, a GGUF tool change): the failure
is written into the record's `artifacts` and reported, and the training and both evaluations are kept.
Sources for each rule: docs/gpu-paths.md.

    saved = save_adapter(loaded, out)                       # before finish_run
    record = finish_run(..., extra={"artifacts": saved})
    export_after_record(loaded, out, record, merge=True, gguf="q4_k_m", modelfile_prompt=..., stop=[...])
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune.backends import BackendError, Loaded, ollama_modelfile

log = logging.getLogger("finetune")


def save_adapter(loaded: Loaded, out: Path) -> dict:
    """The LoRA adapter (+ tokenizer or processor). A failure (disk full, permissions) is returned as
    `adapter_error` for the record, so the evaluations are still written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        loaded.model.save_pretrained(out / "adapter")
        loaded.saveable_tokenizer.save_pretrained(out / "adapter")
    except Exception as exc:  # noqa: BLE001 - recorded, never loses the run
        msg = f"{type(exc).__name__}: {exc}"
        log.error("saving the adapter to %s failed (the run is still recorded): %s", out / "adapter", msg)
        return {"adapter_error": msg}
    return {"adapter": str(out / "adapter")}


def merge_16bit(loaded: Loaded, out: Path) -> Path:
    """Merged 16-bit weights under `out`. unsloth: its `merged_16bit` (dequantizes the base first). hf on a 4-bit
    base: peft's in-place merge would fold LoRA into the nf4 weights and save a lossy 4-bit model, so the base is
    reloaded in 16-bit, the saved adapter applied, then merged (what unsloth's merged_16bit does)."""
    if loaded.backend == "unsloth":
        loaded.model.save_pretrained_merged(str(out), loaded.saveable_tokenizer, save_method="merged_16bit")
        return out
    if not loaded.quantized:
        loaded.model.merge_and_unload().save_pretrained(out)
        loaded.saveable_tokenizer.save_pretrained(out)
        return out
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.backends import cuda_compute_dtype

    adapter = out.parent / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise BackendError(f"no saved adapter at {adapter}: save_adapter() runs before merging")
    import torch

    dtype = cuda_compute_dtype() if torch.cuda.is_available() else torch.bfloat16
    # on the CPU: the merge needs no GPU, and the GPU still holds the run's 4-bit model
    base = AutoModelForCausalLM.from_pretrained(loaded.model_id, dtype=dtype, device_map="cpu")
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged.save_pretrained(out)
    loaded.saveable_tokenizer.save_pretrained(out)
    return out


def export_gguf(loaded: Loaded, out: Path, method: str, *, modelfile_prompt: str, stop: Sequence[str] = (),
                num_ctx: int = 2048) -> dict:
    """GGUF through unsloth + our Modelfile (the exact SFT prompt). unsloth >= 2026.2 writes the files into the
    *sibling* folder `<out>_gguf` and returns their paths (`gguf_files`); we use what it returns."""
    if loaded.backend != "unsloth":
        raise BackendError("--export-gguf needs the unsloth backend (CUDA); on CPU use --merge and convert the "
                           "merged folder with llama.cpp's convert_hf_to_gguf.py")
    result = loaded.model.save_pretrained_gguf(str(out), loaded.saveable_tokenizer, quantization_method=method)
    files = _gguf_files(result, out)
    if not files:
        raise BackendError(f"unsloth reported no .gguf file (looked in its return value, {out}_gguf and {out})")
    text_model = next((f for f in files if "mmproj" not in f.name.lower()), files[0])  # a VLM also writes mmproj
    bos = getattr(loaded.tokenizer, "bos_token", None)
    adds_bos = gguf_adds_bos(text_model)
    removed = drop_chat_templates(text_model)  # else Ollama may ignore our TEMPLATE (docs/unsloth-cpu.md#modelfile)
    modelfile = text_model.parent / "Modelfile"  # replaces unsloth's, which uses the chat template, not our prompt
    modelfile.write_text(ollama_modelfile(text_model.name, modelfile_prompt, stop=stop, num_ctx=num_ctx,
                                          bos_token=bos, adds_bos=adds_bos), encoding="utf-8")
    return {"gguf": str(text_model), "gguf_files": [str(f) for f in files], "modelfile": str(modelfile),
            "gguf_removed_metadata": removed, "gguf_add_bos_token": adds_bos}


def gguf_adds_bos(path: Path) -> bool:
    """The GGUF's `tokenizer.ggml.add_bos_token`: whether the runner prepends BOS itself (False when unset)."""
    import gguf

    field = gguf.GGUFReader(path, "r").get_field(gguf.Keys.Tokenizer.ADD_BOS)
    return bool(field.contents()) if field is not None else False


def drop_chat_templates(path: Path) -> list[str]:
    """Rewrite the GGUF without its `tokenizer.chat_template*` keys; returns the keys removed.

    unsloth writes the tokenizer's chat template into its GGUFs (llama.cpp's convert_hf_to_gguf.py). Ollama then has
    two templates, the Modelfile's TEMPLATE (a Go template) and the GGUF's Jinja one, and uses the GGUF's when it has
    more capabilities (ollama server/images.go `shouldPreferChatTemplate`, server/routes.go `shouldUseGoTemplate`):
    one that mentions tools (Qwen3, Llama 3.x, Mistral v0.3, Phi-4-mini) or thinking tags always has, so the export
    answered without the SFT instruction or label list. Without a GGUF template the Modelfile's is the only one.
    The copy is gguf-py's own (gguf/scripts/gguf_new_metadata.py `copy_with_new_metadata`), written beside the file
    and moved over it, so a failure leaves the original."""
    import os

    import gguf
    from gguf.scripts.gguf_new_metadata import copy_with_new_metadata

    reader = gguf.GGUFReader(path, "r")
    keys = [f.name for f in reader.fields.values() if f.name.startswith(gguf.Keys.Tokenizer.CHAT_TEMPLATE)]
    if not keys:
        return []
    tmp = path.with_name(path.name + ".tmp")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    writer = gguf.GGUFWriter(tmp, arch=arch.contents() if arch is not None else "llama", endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    try:
        copy_with_new_metadata(reader, writer, {}, keys)
        del reader  # its memory map, before the file is replaced
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return keys


def _gguf_files(result: Any, out: Path) -> list[Path]:
    if isinstance(result, dict) and result.get("gguf_files"):
        return [Path(f) for f in result["gguf_files"]]
    if isinstance(result, (list, tuple)) and result:
        return [Path(f) for f in result]
    # a release that returns nothing: the sibling folder (>= 2026.2), then the folder itself (older)
    for folder in (Path(f"{out}_gguf"), out):
        found = sorted(folder.glob("*.gguf"))
        if found:
            return found
    return []


def export_after_record(loaded: Loaded, out: Path, record: Path, *, merge: bool = False, gguf: str | None = None,
                        modelfile_prompt: str = "{{ .Prompt }}", stop: Sequence[str] = (),
                        num_ctx: int = 2048) -> dict:
    """Run the requested exports one by one; each result or error goes into the record's `artifacts`. Never
    raises for an export failure: the run is already recorded."""
    done: dict[str, Any] = {}
    jobs = []
    if merge:
        jobs.append(("merged", lambda: {"merged": str(merge_16bit(loaded, out / "merged"))}))
    if gguf:
        jobs.append(("gguf", lambda: export_gguf(loaded, out / "gguf", gguf, modelfile_prompt=modelfile_prompt,
                                                  stop=stop, num_ctx=num_ctx)))
    for name, job in jobs:
        try:
            done.update(job())
        except Exception as exc:  # noqa: BLE001 - any export failure is recorded, never loses the run
            msg = f"{type(exc).__name__}: {exc}"
            done[f"{name}_error"] = msg
            log.error("export %s failed (the run is recorded in %s): %s", name, record, msg)
            log.debug("%s", traceback.format_exc())
    if done:
        _update_artifacts(record, done)
    return done


def _update_artifacts(record: Path, found: dict) -> None:
    from eval.run.records import atomic_write

    data = json.loads(record.read_text(encoding="utf-8"))
    details = data.setdefault("details", {})  # a track's own fields live under `details` (docs/records.md)
    details["artifacts"] = {**(details.get("artifacts") or {}), **found}
    atomic_write(record, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
