"""Batched greedy generation and label scoring for causal LMs (re-exported by eval/lm/causal.py), with shared-prefix
reuse.

- Batches are padded on the *left* (right padding corrupts decoder-only outputs: transformers' padding docs,
  unsloth #3699); position ids count real tokens only, so batch 1 = batch N.
- Label scoring reads only the last positions' logits (`logits_to_keep`), never the vocabulary at every
  position. Multi-token verbalizers cost one extra batched pass over the candidates' tokens on top of the
  prompts' cache, not one prompt pass per candidate.
- **Shared-prefix reuse** (docs/speed.md): the instruction, the few-shot examples and a chat template's system turn
  are the same tokens at the start of every prompt. Their KV cache is computed once per call and copied into every
  batch, so each item only runs its own suffix. A batch is laid out `[prefix][left pads][suffix]`: the 2-D
  attention mask hides the pads and position ids continue from the prefix, so every real token sees the same
  context at the same position as without reuse (tested: identical labels). Skipped when the shared part is short,
  or when a sliding-window layer could see the pads shift its window.
- Each prompt is tokenized once per call (`ids=` lets a caller that already tokenized pass the ids).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MIN_PREFIX = 16  # shared tokens below this are not worth a cache copy per batch
# bf16 with fp32's labels (docs/speed.md): bf16 label scores whose top-two margin (nats) is below a threshold are
# re-scored in fp32. The threshold is RESCORE_FACTOR x the largest bf16-vs-fp32 pair_error measured on the run's own
# canary items (never below RESCORE_FLOOR, bf16's logit spacing), or RESCORE_MARGIN when no fp32 reference ran
# (--no-batch-check). Both constants come from benchmarks/bench_bf16_exact.py's calibration (BENCHMARKS.md).
RESCORE_FACTOR = 3.0
RESCORE_FLOOR = 0.1
RESCORE_MARGIN = 0.5
RESCORE_RULE = (f"fp32 head; fp32 below {RESCORE_FACTOR:g}x canary error (min {RESCORE_FLOOR:g}, else "
                f"{RESCORE_MARGIN:g})")


def calibrated_margin(low: Sequence[Sequence[float]], high: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(threshold, largest pair_error) from the same items scored in bf16 (`low`) and fp32 (`high`)."""
    worst = max((pair_error(a, b) for a, b in zip(low, high, strict=True)), default=0.0)
    return max(RESCORE_FLOOR, RESCORE_FACTOR * worst), worst


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt, adding BOS only when the text does not already start with it.

    Chat templates write BOS into the text; adding it again (a double BOS) measurably shifts outputs.
    """
    tokenizer = getattr(tokenizer, "tokenizer", None) or tokenizer  # a multimodal processor: its text tokenizer
    bos = tokenizer.bos_token
    add = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add)["input_ids"])


def pad_id(tokenizer: Any) -> int:
    """Pad id for our own left padding; masked out, so EOS is an acceptable stand-in when there is no pad."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_pad(rows: Sequence[Sequence[int]], pad: int, device: Any, start: int = 0) -> tuple[Any, Any, Any]:
    """Left-padded ids, attention mask and position ids; positions count real tokens only (from `start`, the
    length of a cached prefix), so padding does not shift them and batch-1 equals batch-N."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0) + start
    return ids.to(device), mask.to(device), pos.to(device)


def _batches(order: list[int], batch_size: int, progress: bool, desc: str) -> list[list[int]]:
    chunks = [order[i:i + max(1, batch_size)] for i in range(0, len(order), max(1, batch_size))]
    if progress:
        from tqdm.auto import tqdm

        return list(tqdm(chunks, desc=desc, unit="batch"))
    return chunks


@dataclass
class Prefix:
    """The KV cache of the tokens every prompt starts with (batch 1), computed once per call."""

    ids: list[int]
    cache: Any

    def for_batch(self, n: int) -> Any:
        """A private copy for a batch of n rows (generate and forward append to the cache they are given)."""
        cache = copy.deepcopy(self.cache)
        if n > 1:
            cache.batch_repeat_interleave(n)
        return cache


def sliding_window(model: Any) -> int | None:
    """The model's attention window when it uses one (text config of a multimodal model), else None."""
    cfg = getattr(model.config, "get_text_config", lambda: model.config)()
    window = getattr(cfg, "sliding_window", None)
    return window if window and getattr(cfg, "use_sliding_window", True) else None


def shared_prefix(model: Any, rows: Sequence[Sequence[int]], *, reuse: bool | None = None,
                  extra_tokens: int = 0) -> Prefix | None:
    """The KV cache of the longest token prefix all `rows` share (each row keeps >= 1 token of its own), or None
    when reuse is off (`reuse=False`), the prefix is under MIN_PREFIX tokens (`reuse=None`, auto), or the model
    has a sliding window that the batch (plus `extra_tokens` generated) could exceed: pads in the middle would
    move which real tokens fall inside the window."""
    import torch

    if reuse is False or not rows or (reuse is None and len(rows) < 2):
        return None
    first, n = rows[0], min(len(r) for r in rows) - 1
    for r in rows[1:]:
        k = 0
        while k < n and r[k] == first[k]:
            k += 1
        n = k
    if n < (1 if reuse else MIN_PREFIX):
        return None
    window = sliding_window(model)
    if window and max(map(len, rows)) * 2 + extra_tokens > window:
        return None  # conservative: the padded batch is at most twice the longest prompt
    with torch.inference_mode():
        ids = torch.tensor([list(first[:n])], dtype=torch.long, device=model.device)
        out = decoder(model)(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    return Prefix(list(first[:n]), out.past_key_values)


def decoder(model: Any) -> Any:
    """The transformer under the LM head (peft's LoRA layers are injected in place, so they are in it), or the model
    itself when it has no separate one or is multimodal (its decoder has a config of its own; the full model builds
    the masks its token types need). A prefix or cache computed through it skips the output layer, whose
    vocabulary-sized matrix (Gemma 3: 262k x 640, more than half of gemma3-270m) would otherwise be read for one
    logit nobody uses."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    get = getattr(base, "get_decoder", None)
    inner = get() if get is not None else None
    if inner is None or inner is base or getattr(inner, "config", None) is not getattr(base, "config", None):
        return model
    return inner


def _resolve_prefix(model: Any, rows: Sequence[Sequence[int]], reuse: bool | Prefix | None,
                    extra_tokens: int = 0) -> Prefix | None:
    """A Prefix computed once by the caller (for a whole run) is used when every row starts with it."""
    if isinstance(reuse, Prefix):
        n = len(reuse.ids)
        if all(len(r) > n and list(r[:n]) == reuse.ids for r in rows):
            return reuse
        reuse = None
    return shared_prefix(model, rows, reuse=reuse, extra_tokens=extra_tokens)


def _inputs(rows: Sequence[Sequence[int]], pad: int, device: Any, prefix: Prefix | None) -> dict[str, Any]:
    """Model inputs for one batch: left-padded rows, or (with a prefix) their suffixes + the prefix's cache."""
    import torch

    if prefix is None:
        ids, mask, pos = left_pad(rows, pad, device)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
    p = len(prefix.ids)
    ids, mask, pos = left_pad([r[p:] for r in rows], pad, device, start=p)
    full = torch.cat([torch.ones((len(rows), p), dtype=mask.dtype, device=mask.device), mask], dim=1)
    return {"input_ids": ids, "attention_mask": full, "position_ids": pos,
            "past_key_values": prefix.for_batch(len(rows))}


def generate(
    model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int, batch_size: int = 16,
    progress: bool = False, reuse_prefix: bool | Prefix | None = None, ids: Sequence[Sequence[int]] | None = None,
    stats: dict | None = None,
) -> list[str]:
    """Greedy continuations of `prompts`, in input order, new tokens only, special tokens removed.

    Prompts are sorted by token length (longest first, so an out-of-memory shows up in the first batch) to
    minimise padding, and padded on the left. The shared prefix's cache is reused unless `reuse_prefix=False`
    (None: when >= MIN_PREFIX tokens are shared; a `Prefix` from `shared_prefix`: that one, computed once per
    run). `ids` are the prompts' token ids when the caller already has them. `stats` (a dict) receives
    {"prefix_tokens": n} (0: no reuse). tokenizer.padding_side is restored after.
    """
    import torch

    if not prompts:
        return []
    encoded = [list(r) for r in ids] if ids is not None else [encode(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    pad = pad_id(tokenizer)
    prefix = _resolve_prefix(model, encoded, reuse_prefix, extra_tokens=max_new_tokens)
    if stats is not None:
        stats["prefix_tokens"] = len(prefix.ids) if prefix else 0
    out: list[str] = [""] * len(prompts)
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # for anything generate() itself pads; our own padding is left already
    try:
        with torch.inference_mode():
            for batch in _batches(order, batch_size, progress, "generate"):
                kw = _inputs([encoded[i] for i in batch], pad, model.device, prefix)
                kw.pop("position_ids")  # generate derives them from the mask (cumsum), the same numbers
                if prefix is not None:  # generate wants the whole sequence; the cache covers its first columns
                    head = torch.tensor([prefix.ids] * len(batch), dtype=torch.long, device=model.device)
                    kw["input_ids"] = torch.cat([head, kw["input_ids"]], dim=1)
                width = kw["input_ids"].shape[1]
                seqs = model.generate(**kw, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                      top_p=None, top_k=None, pad_token_id=pad)
                texts = tokenizer.batch_decode(seqs[:, width:], skip_special_tokens=True)
                for i, text in zip(batch, texts, strict=True):
                    out[i] = text
    finally:
        tokenizer.padding_side = saved_side
    return out


def margin(row: Sequence[float]) -> float:
    """Top-two gap of one item's label scores (log-probs): how far the prediction is from changing."""
    top = sorted(row, reverse=True)
    return top[0] - top[1] if len(top) > 1 else float("inf")


def near_ties(rows: Sequence[Sequence[float]], threshold: float) -> list[int]:
    """Indices of the items whose top-two margin is below `threshold` (docs/speed.md: re-scored in fp32)."""
    return [i for i, r in enumerate(rows) if margin(r) < threshold]


def pair_error(low: Sequence[float], high: Sequence[float]) -> float:
    """The largest change low precision makes to any difference of two label scores of one item:
    max_jk |(low_j - low_k) - (high_j - high_k)|. bf16's argmax equals fp32's whenever bf16's top-two margin exceeds
    it, so its distribution is what calibrates RESCORE_MARGIN (docs/speed.md)."""
    d = [a - b for a, b in zip(low, high, strict=True)]
    return max(d) - min(d)


def rescore_near_ties(rows: list[list[float]], threshold: float,
                      rescore: Callable[[list[int]], list[list[float]]]) -> list[int]:
    """Replace the rows of the near ties (`near_ties(rows, threshold)`) by `rescore(indices)` (the same items scored
    in fp32 by the caller) in place; returns the indices re-scored. docs/speed.md has the rule and its calibration."""
    idx = near_ties(rows, threshold)
    if idx:
        for i, row in zip(idx, rescore(idx), strict=True):
            rows[i] = row
    return idx


class NearTieQueue:
    """The near ties of a whole run, re-scored in fp32 a full batch at a time (a few items per bf16 batch would
    each pay a small, inefficient fp32 batch).

        queue = NearTieQueue(RESCORE_MARGIN, batch_size, rescore)   # rescore(keys) -> fp32 rows, in order
        done = queue.add(keys, rows)   # [(key, row, False)] for the clear items; near ties wait
        done += queue.flush()          # [(key, fp32 row, True)] once batch_size wait (queue.flush(True): all)
    """

    def __init__(self, threshold: float, batch_size: int, rescore: Callable[[list[Any]], list[list[float]]]) -> None:
        self.threshold, self.batch_size, self.rescore = threshold, max(1, batch_size), rescore
        self.pending: list[Any] = []
        self.items = self.rescored = 0

    def add(self, keys: Sequence[Any], rows: Sequence[list[float]]) -> list[tuple[Any, list[float], bool]]:
        self.items += len(keys)
        ties = set(near_ties(rows, self.threshold))
        self.pending += [keys[i] for i in sorted(ties)]
        return [(k, r, False) for i, (k, r) in enumerate(zip(keys, rows, strict=True)) if i not in ties]

    def flush(self, all_: bool = False) -> list[tuple[Any, list[float], bool]]:
        done: list[tuple[Any, list[float], bool]] = []
        while self.pending and (all_ or len(self.pending) >= self.batch_size):
            keys, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
            self.rescored += len(keys)
            done += [(k, r, True) for k, r in zip(keys, self.rescore(keys), strict=True)]
        return done


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
    reuse_prefix: bool | Prefix | None = None,
    ids: Sequence[Sequence[int]] | None = None, stats: dict | None = None, fp32_head: bool = False,
) -> list[list[float]]:
    """Log-probability of each candidate continuing each prompt; argmax is the prediction (always valid).

    method "first_token": the last position's log-prob of each candidate's first token: exact for single-token
    candidates; for multi-token ones it scores the token that greedy decoding would commit to first. "full": the
    sum of every candidate token's log-prob: the prompts run once (their cache kept), then all candidates' later
    tokens run in one batched pass on that cache. "auto" takes "first_token" when every candidate is one token
    with distinct first tokens, else "full", so "auto" always returns true log-likelihoods.
    `prefix` joins prompt and candidate (None: `answer_prefix(prompt)`, the rule the SFT track appends with).
    `reuse_prefix` / `ids` / `stats` as in `generate`. `fp32_head` (a bf16/fp16 model): the candidates' first-token
    logits are computed in fp32 from the hidden state the output layer receives, so they are not rounded to bf16's
    spacing (0.125 at magnitude 16-32, which ties labels exactly); the normaliser stays the model's own. It cuts the
    bf16-vs-fp32 error of the label margins ~3x (docs/speed.md), at one small matmul per batch.
    """
    if method not in {"auto", "first_token", "full"}:
        raise ValueError(f"method must be auto, first_token or full, got {method!r}")
    if len(candidates) < 2:
        raise ValueError("score_labels needs at least two candidates")
    cand = [[candidate_ids(tokenizer, p, c, prefix) for c in candidates] for p in prompts]
    first_distinct = all(len({row_ids[0] for row_ids in row}) == len(row) for row in cand)
    if method == "auto":
        single = all(len(c) == 1 for row in cand for c in row)
        method = "first_token" if first_distinct and single else "full"
    if method == "first_token" and not first_distinct:
        raise ValueError("first_token scoring needs candidates whose first tokens differ")
    encoded = [list(r) for r in ids] if ids is not None else [encode(tokenizer, p) for p in prompts]
    return _score(model, tokenizer, encoded, cand, full=method == "full", batch_size=batch_size,
                  progress=progress, reuse=reuse_prefix, stats=stats, fp32_head=fp32_head)


def _head_input(model: Any) -> tuple[Any, list]:
    """(the output layer, a list that receives its input on the next forward) via a forward hook."""
    head = model.get_output_embeddings()
    seen: list = []
    handle = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    return handle, seen


def _fp32_first_logits(model: Any, hidden: Any, first: Any) -> Any:
    """The candidates' first-token logits in fp32 from the output layer's input (B x 1 x H) at the last position:
    x . W[token] (+ bias), with the model's final logit soft-capping where it has one (Gemma 2)."""
    import torch

    head = model.get_output_embeddings()
    x = hidden[:, -1, :].float()
    logits = torch.einsum("bh,bch->bc", x, head.weight[first].float())
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[first].float()
    cfg = getattr(model.config, "get_text_config", lambda: model.config)()
    cap = getattr(cfg, "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits


def _score(model: Any, tokenizer: Any, encoded: list[list[int]], cand: list[list[list[int]]], *, full: bool,
           batch_size: int, progress: bool, reuse: bool | Prefix | None, stats: dict | None,
           fp32_head: bool = False) -> list[list[float]]:
    import torch

    fp32_head = fp32_head and model.dtype in (torch.bfloat16, torch.float16)

    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    prefix = _resolve_prefix(model, encoded, reuse)
    if stats is not None:
        stats["prefix_tokens"] = len(prefix.ids) if prefix else 0
    pad = pad_id(tokenizer)
    out: list[list[float]] = [[] for _ in encoded]
    with torch.inference_mode():
        for batch in _batches(order, batch_size, progress, "score"):
            kw = _inputs([encoded[i] for i in batch], pad, model.device, prefix)
            need_rest = full and any(len(c) > 1 for i in batch for c in cand[i])
            handle, seen = _head_input(model) if fp32_head else (None, [])
            try:
                res = model(**kw, use_cache=need_rest, logits_to_keep=1)
            finally:
                if handle is not None:
                    handle.remove()
            logits = res.logits[:, -1, :].float()
            first = torch.tensor([[c[0] for c in cand[i]] for i in batch], device=logits.device)
            if fp32_head and seen:
                scores = _fp32_first_logits(model, seen[-1], first) - logits.logsumexp(-1, keepdim=True)
            else:
                scores = logits.log_softmax(-1).gather(1, first)
            if need_rest:
                scores = scores + _rest_logprobs(model, res.past_key_values, kw, [cand[i] for i in batch], pad)
            for i, row in zip(batch, scores.tolist(), strict=True):
                out[i] = row
    return out


def _rest_logprobs(model: Any, cache: Any, kw: dict, cands: list[list[list[int]]], pad: int) -> Any:
    """Sum of log p(candidate token j | prompt, tokens < j) for j >= 1, every (prompt, candidate) in one pass.

    The prompts' cache is repeated once per candidate; each row feeds its candidate's tokens but the last,
    right-padded (pads come after the real tokens, so causal attention never lets them change a real one)."""
    import torch

    b, c = len(cands), len(cands[0])
    width = max(len(x) for row in cands for x in row) - 1
    ids = torch.full((b * c, width), pad, dtype=torch.long)
    mask = torch.zeros((b * c, width), dtype=torch.long)
    for r, x in enumerate(x for row in cands for x in row):
        ids[r, : len(x) - 1] = torch.tensor(x[:-1], dtype=torch.long)
        mask[r, : len(x) - 1] = 1
    ids, mask = ids.to(model.device), mask.to(model.device)
    cache.batch_repeat_interleave(c)
    prompt_mask = kw["attention_mask"].repeat_interleave(c, dim=0)
    last = kw["position_ids"][:, -1:].repeat_interleave(c, dim=0)
    pos = last + 1 + torch.arange(width, device=ids.device).unsqueeze(0)
    logits = model(input_ids=ids, attention_mask=torch.cat([prompt_mask, mask], dim=1), position_ids=pos,
                   past_key_values=cache, use_cache=False, logits_to_keep=width).logits
    logp = logits.float().log_softmax(-1)
    total = torch.zeros(b * c, device=logp.device)
    for r, x in enumerate(x for row in cands for x in row):
        if len(x) > 1:
            target = torch.tensor(x[1:], device=logp.device).unsqueeze(1)
            total[r] = logp[r, : len(x) - 1].gather(1, target).sum()
    return total.view(b, c)
