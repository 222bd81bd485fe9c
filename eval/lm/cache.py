"""Convert-once cache for causal LMs that ship as GGUF (e.g. the offline `gemma3-270m` package).

transformers dequantizes a GGUF into a real model in ~40 s on CPU; a safetensors checkpoint loads in ~2 s. So
the first load writes `<cache>/models/<alias>/` (config, generation config, tokenizer, model.safetensors,
`tune_or_prompt.json`) and later loads read it. `<cache>` is $TUNE_OR_PROMPT_CACHE or ~/.cache/tune-or-prompt.

- Atomic: everything is written to a temporary sibling folder and moved into place with `os.replace`, so several
  processes converting at once never see a half-written checkpoint; a loser of the race uses the winner's copy.
- Keyed by content (docs/pitfalls.md#content-keys): the cache records the source's sha256 and is rebuilt when it
  changes.
- `model.save_pretrained` refuses GGUF-loaded models ("quantized with gguf and is not serializable"), so the
  config (minus `quantization_config`), tokenizer and a de-duplicated state dict are saved directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

META_FILE = "tune_or_prompt.json"


def cache_root() -> Path:
    return Path(os.environ.get("TUNE_OR_PROMPT_CACHE") or Path.home() / ".cache" / "tune-or-prompt").expanduser()


def model_cache_dir(alias: str) -> Path:
    """Folder of one alias's converted checkpoint (aliases like `qwen3:8b` are made filesystem-safe)."""
    return cache_root() / "models" / re.sub(r"[^A-Za-z0-9._-]+", "_", alias)


def save_checkpoint(model: Any, tokenizer: Any, folder: Path) -> None:
    """Write a loadable safetensors checkpoint of any (also GGUF-loaded) transformers causal LM into `folder`.

    Tied tensors (lm_head = embed_tokens) are stored once, under their first name; from_pretrained re-ties them.
    """
    import copy

    from safetensors.torch import save_file

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain dequantized tensors
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    seen: set[int] = set()
    tensors = {}
    for name, tensor in model.state_dict().items():
        key = tensor.untyped_storage().data_ptr() + tensor.storage_offset()
        if key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.detach().to("cpu").contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def cached_checkpoint(alias: str, key: str, build: Callable[[Path], tuple[Any, Any]],
                      meta: dict | None = None) -> Path:
    """Folder of `alias`'s checkpoint for content `key`, building it with `build(scratch_dir)` on a miss.

    `build` gets a scratch folder (deleted afterwards) and returns (model, tokenizer). Returns the cache folder.
    """
    dest = model_cache_dir(alias)
    found = _read_meta(dest)
    if found is not None and found.get("key") == key:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        model, tokenizer = build(Path(tempfile.mkdtemp(prefix="scratch-", dir=tmp)))
        out = tmp / "checkpoint"
        out.mkdir()
        save_checkpoint(model, tokenizer, out)
        del model
        (out / META_FILE).write_text(json.dumps({"alias": alias, "key": key, **(meta or {})}, indent=1) + "\n")
        if dest.exists() and (_read_meta(dest) or {}).get("key") != key:
            stale = dest.with_name(f".stale-{dest.name}-{uuid.uuid4().hex}")
            try:
                os.replace(dest, stale)  # a stale or broken copy: move it aside, then delete it
                shutil.rmtree(stale, ignore_errors=True)
            except FileNotFoundError:
                pass  # another process moved it first
        try:
            os.replace(out, dest)
        except OSError:
            # another process finished first (the destination is a non-empty folder): use its copy if it matches
            if (_read_meta(dest) or {}).get("key") != key:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
