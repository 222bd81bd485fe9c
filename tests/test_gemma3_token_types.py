"""hf backend + gemma-3 4B (Gemma3ForConditionalGeneration) on transformers 5.2-5.5 (issue 20): the sparse-logits
loss (finetune/trainer.py completion_loss) passed no token_type_ids, which that model requires in training
(transformers 5.2 models/gemma3/modeling_gemma3.py `create_causal_mask_mapping`: `if is_training and
token_type_ids is None: raise ValueError(...)`). The stand-in below has that forward around a tiny causal LM."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from finetune.trainer import completion_loss  # noqa: E402


class Gemma3LikeForConditionalGeneration(torch.nn.Module):
    """The part of transformers 5.2's Gemma3ForConditionalGeneration.forward that matters here: a vision config,
    a `token_type_ids` argument (0 = text, 1 = image) that must be given in training."""

    def __init__(self, lm) -> None:
        super().__init__()
        self.lm = lm
        self.config = lm.config
        self.config.vision_config = types.SimpleNamespace(model_type="siglip_vision_model")
        self.seen = None

    def forward(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None, logits_to_keep=0,
                use_cache=None, **kwargs):
        if self.training and token_type_ids is None:
            raise ValueError("`token_type_ids` is required as a model input when training")
        self.seen = token_type_ids
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       logits_to_keep=logits_to_keep, use_cache=use_cache)


def test_the_sparse_loss_gives_a_multimodal_gemma3_its_text_token_types(tiny_causal_lm: Path) -> None:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    model = Gemma3LikeForConditionalGeneration(lm).train()
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 8, 9]])
    labels = torch.tensor([[-100, -100, -100, 8, 9], [-100, -100, -100, -100, 9]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    loss = completion_loss(model, inputs)
    assert torch.isfinite(loss) and model.seen is not None and not model.seen.any()  # all text
    assert torch.allclose(loss, completion_loss(lm.train(), inputs))  # same loss as the text model's
    # token types the batch brings are passed through, not replaced
    inputs["token_type_ids"] = torch.zeros_like(ids)
    completion_loss(model, inputs)
    assert model.seen is inputs["token_type_ids"]
