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


def test_gemma3_on_a_gpu_without_native_bf16_trains_in_float32_not_float16(monkeypatch: pytest.MonkeyPatch) -> None:
    """unsloth_zoo 2026.10.9 `model_lists.py` FORCE_FLOAT32 lists gemma3 (activations overflow float16: NaN or
    garbage); unsloth trains such families in float32 where bf16 is not native. The hf path picked float16 on a T4."""
    from eval.run.hardware import fp16_unsafe, sft_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # a T4 (torch 2.13 torch/cuda/__init__.py is_bf16_supported): bf16 only emulated
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert fp16_unsafe("gemma3") and fp16_unsafe("gemma3_text") and not fp16_unsafe("llama")
    gemma = sft_precision("auto", "gemma3_text")
    assert gemma["weights"] == torch.float32 and gemma["bf16"] is False and "FORCE_FLOAT32" in gemma["reason"]
    assert sft_precision("auto", "llama")["weights"] == torch.float16  # other families keep fp16 there
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100
    assert sft_precision("auto", "gemma3")["weights"] == torch.bfloat16
