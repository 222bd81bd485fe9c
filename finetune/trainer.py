"""The one training path: TRL SFTTrainer on prompt/completion rows (loss on the answer + EOS only).

With the hf backend the loss reads the logits only at positions whose next token is a target. The answer is a few
tokens at the end of each row, but a causal LM's default forward projects every position onto the vocabulary:
for Gemma 3 (262k tokens) that is 8 x 256 x 262k floats per step: ~2 GB and a quarter of a CPU step at batch 8
(BENCHMARKS.md, "SFT"). `logits_to_keep` with a tensor of positions (transformers) computes the same loss from the
columns that matter. Unsloth has its own fused loss, so it keeps TRL's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def make_trainer(model: Any, tokenizer: Any, args: Any, rows: Sequence[dict], *, sparse_logits: bool) -> Any:
    from datasets import Dataset
    from trl import SFTTrainer

    cls = _sparse_logits_trainer() if sparse_logits else SFTTrainer
    trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(list(rows)), processing_class=tokenizer)
    if sparse_logits:
        trainer.model_accepts_loss_kwargs = False  # our loss is a per-batch mean; Trainer scales for accumulation
    return trainer


def completion_loss(model: Any, inputs: dict) -> Any:
    """Mean cross-entropy over target tokens (labels != -100), from the logits at target positions only."""
    import torch.nn.functional as F

    labels = inputs["labels"]
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)  # columns where any row has a target next
    kw = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    logits = model(**kw, logits_to_keep=keep, use_cache=False).logits.float()
    picked = targets[:, keep]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), picked.reshape(-1), ignore_index=-100)


def _sparse_logits_trainer() -> type:
    from trl import SFTTrainer

    class SparseLogitsSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss projects only the target positions onto the vocabulary (same value)."""

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            loss = completion_loss(model, inputs)
            return (loss, None) if return_outputs else loss

    return SparseLogitsSFTTrainer
