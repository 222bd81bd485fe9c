"""The one training path: TRL SFTTrainer on prompt/completion rows (loss on the answer + EOS only).

With the hf backend the loss reads the logits only at positions whose next token is a target. The answer is a few
tokens at the end of each row, but a causal LM's default forward projects every position onto the vocabulary:
for Gemma 3 (262k tokens) that is 8 x 256 x 262k floats per step: ~2 GB and a quarter of a CPU step at batch 8
(BENCHMARKS.md, "SFT"). `logits_to_keep` with a tensor of positions (transformers) computes the same loss from the
columns that matter. Unsloth has its own fused loss, so it keeps TRL's default.

The same loss also computes the tokens every row of a batch starts with only once. A chat template's system turn
and the instruction before the text are the same in every training prompt (SmolLM2-Instruct: ~50 of ~80 tokens on
rotten); a right-padded batch starts with them in every row. The prefix runs as one row with its KV cache kept for
the backward pass, the cache is repeated over the batch (`repeat_interleave`, which sums the rows' gradients back
into the one prefix), and the rows' own tokens attend to it. Loss and gradients are those of the full batch (a test
checks both); only LoRA dropout on the prefix tokens draws one mask for the batch instead of one per row. It is
skipped under gradient checkpointing (which drops the cache), for fewer than eval.lm.infer.MIN_PREFIX shared tokens,
for a sequence longer than a sliding window, for multimodal checkpoints and under a data-parallel wrapper.
docs/speed.md, "Training on a shared prefix".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def make_trainer(model: Any, tokenizer: Any, args: Any, rows: Sequence[dict], *, sparse_logits: bool) -> Any:
    from datasets import Dataset
    from trl import SFTTrainer

    cls = _sparse_logits_trainer() if sparse_logits else SFTTrainer
    trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(list(rows)), processing_class=tokenizer)
    if sparse_logits:
        trainer.model_accepts_loss_kwargs = False  # our loss is a per-batch mean; Trainer scales for accumulation
    return trainer


@contextmanager
def frozen_linears_cast(model: Any, dtype: Any, enabled: bool = True) -> Iterator[int]:
    """For the duration, every frozen `nn.Linear` of `model` (LoRA's base layers, the output layer) holds a `dtype`
    copy of its weight and bias; the fp32 tensors are put back on exit. Yields how many layers were swapped.

    Under CPU bf16 autocast a linear layer casts its fp32 weight to bf16 on every call, and torch caches that cast
    only for leaf tensors that require grad (c10 autocast `cached_cast`): LoRA's frozen base weights are cast again
    in every forward of every step. Casting once is the same arithmetic - autocast would round the same fp32 weight
    to the same bf16 value and call the same bf16 kernel - so training is bitwise unchanged (tests/test_sft.py)
    while each step skips re-reading all base weights in fp32 and writing them in bf16 (docs/speed.md). A tied
    output layer gets its own copy (untied for the duration), so the embedding lookup stays fp32 as before."""
    import torch

    swapped: list[tuple[Any, str, Any]] = []
    if enabled:
        for module in model.modules():
            if type(module) is not torch.nn.Linear or module.weight.requires_grad:
                continue
            for name in ("weight", "bias"):
                tensor = getattr(module, name)
                if tensor is not None and tensor.dtype == torch.float32:
                    swapped.append((module, name, tensor))
                    setattr(module, name, torch.nn.Parameter(tensor.detach().to(dtype), requires_grad=False))
    try:
        yield len({id(m) for m, _, _ in swapped})
    finally:
        for module, name, tensor in reversed(swapped):
            setattr(module, name, tensor)


def unwrap_training_forward(model: Any) -> Any:
    """The model as it was before the Trainer prepared it. Training with bf16, accelerate's `prepare_model` wraps
    `model.forward` in bf16 autocast with fp32 outputs (accelerate 1.16.0, accelerator.py, the `native_amp` branch)
    and nothing removes it after `train()`: the evaluation after training would run partly in bf16 whatever
    precision its canary chose and the record names (docs/serve.md). accelerate's own unwrapping restores the
    original forward; a model that was never wrapped is returned unchanged."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)


def completion_loss(model: Any, inputs: dict, *, share_prefix: bool = True, stats: dict | None = None) -> Any:
    """Mean cross-entropy over target tokens (labels != -100), from the logits at target positions only; the tokens
    all rows start with are computed once (`share_prefix`; module docstring). `stats` counts batches and the
    prefix tokens they shared."""
    import torch
    import torch.nn.functional as F

    from eval.lm.infer import decoder

    labels = inputs["labels"]
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)  # columns where any row has a target next
    kw = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids", *TOKEN_TYPE_KEYS) if k in inputs}
    kw.update(text_token_types(model, inputs["input_ids"], kw))
    multimodal = any(k in kw for k in TOKEN_TYPE_KEYS)  # its decoder takes other inputs: the full batch runs
    # a data-parallel wrapper (DDP, DataParallel: no `config` of its own) must see every forward itself, so the
    # prefix cannot go around it to the decoder
    wrapped = not hasattr(model, "config")
    p = shared_prefix_length(model, kw["input_ids"], kw.get("attention_mask"), int(keep.min()) if len(keep) else 0) \
        if share_prefix and not multimodal and not wrapped else 0
    if stats is not None:
        stats["batches"] = stats.get("batches", 0) + 1
        stats["prefix_tokens"] = stats.get("prefix_tokens", 0) + p
    if p:
        rows, width = kw["input_ids"].shape
        head = {k: v[:1, :p] for k, v in kw.items() if k != "position_ids"}
        cache = decoder(model)(**head, use_cache=True).past_key_values  # no output layer: no logit is read here
        cache.batch_repeat_interleave(rows)  # differentiable: the rows' gradients sum into the one prefix
        tail = {k: v[:, p:] for k, v in kw.items() if k != "attention_mask"}
        tail.setdefault("position_ids", torch.arange(p, width, device=kw["input_ids"].device).expand(rows, -1))
        logits = model(**tail, attention_mask=kw["attention_mask"], past_key_values=cache, use_cache=True,
                       logits_to_keep=keep - p).logits.float()
    else:
        logits = model(**kw, logits_to_keep=keep, use_cache=False).logits.float()
    picked = targets[:, keep]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), picked.reshape(-1), ignore_index=-100)


def shared_prefix_length(model: Any, ids: Any, mask: Any, first_target: int) -> int:
    """How many leading tokens every row shares (real tokens, before the first logit position any loss reads), or 0
    when sharing them is not worth it or not exact here (module docstring)."""
    from eval.lm.infer import MIN_PREFIX, sliding_window

    if ids.shape[0] < 2 or getattr(model, "is_gradient_checkpointing", False):
        return 0
    window = sliding_window(model)
    if window and ids.shape[1] > window:
        return 0
    same = (ids == ids[:1]).all(dim=0)
    if mask is not None:
        same &= (mask == 1).all(dim=0)
    differs = (~same).nonzero()
    n = int(differs[0]) if len(differs) else ids.shape[1]
    n = min(n, first_target)  # the logit at position t predicts token t + 1: every read position stays in the tail
    return n if n >= MIN_PREFIX else 0


# Multimodal causal LMs mark image tokens with these (0 = text). transformers 5.2-5.5
# models/gemma3/modeling_gemma3.py `create_causal_mask_mapping`: `if is_training and token_type_ids is None: raise
# ValueError("`token_type_ids` is required as a model input when training")` - so Gemma3ForConditionalGeneration
# (gemma-3 4B+) would not train on the hf path; newer releases name it mm_token_type_ids.
TOKEN_TYPE_KEYS = ("token_type_ids", "mm_token_type_ids")


def text_token_types(model: Any, input_ids: Any, given: dict) -> dict:
    """All-zero (text) token types for a multimodal model whose forward takes them and the batch has none: this
    track trains on text only, so zeros give the ordinary causal mask."""
    import inspect

    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "vision_config", None) is None:
        return {}
    params = inspect.signature(base.forward).parameters
    return {k: torch.zeros_like(input_ids) for k in TOKEN_TYPE_KEYS if k in params and k not in given}


def _sparse_logits_trainer() -> type:
    from trl import SFTTrainer

    class SparseLogitsSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss projects only the target positions onto the vocabulary (same value)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.prefix_stats: dict = {}  # completion_loss: batches and the prefix tokens they shared

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            # accelerate puts its mixed-precision autocast on model.forward only; the shared prefix runs through the
            # decoder directly (no output layer), so the whole loss runs under the same autocast
            with self.accelerator.autocast():
                loss = completion_loss(model, inputs, stats=self.prefix_stats)
            return (loss, None) if return_outputs else loss

    return SparseLogitsSFTTrainer
