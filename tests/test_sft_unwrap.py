"""The evaluation after training runs the forward the record names: accelerate's bf16 training wrapper is removed
(finetune/trainer.py unwrap_training_forward; docs/serve.md)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
accelerate = pytest.importorskip("accelerate")


def _tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))


@pytest.fixture
def fresh_accelerate_state():
    """accelerate's state is a process-wide singleton that an earlier Trainer in this process has set up: start
    from a clean one (its own reset, accelerate/state.py `_reset_state`) and leave a clean one behind."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_the_bf16_training_wrapper_is_removed_before_evaluation(fresh_accelerate_state):
    from accelerate import Accelerator

    from finetune.trainer import unwrap_training_forward

    model = _tiny_lm()
    ids = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        clean = model(ids).logits
    acc = Accelerator(cpu=True, mixed_precision="bf16")  # what the Trainer does when it trains with bf16
    if not acc.native_amp:
        pytest.skip("accelerate sets no bf16 autocast on this CPU")
    model = acc.prepare_model(model)
    assert "_original_forward" in model.__dict__  # the wrapper is on: accelerate 1.16 prepare_model
    with torch.no_grad():
        wrapped = model(ids).logits
    assert not torch.equal(wrapped, clean)  # it computes in bf16: another answer than the fp32 model's
    model = unwrap_training_forward(model)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, clean)


def test_a_model_that_was_never_wrapped_is_unchanged():
    from finetune.trainer import unwrap_training_forward

    model = _tiny_lm()
    ids = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        before = model(ids).logits
        assert torch.equal(unwrap_training_forward(model)(ids).logits, before)
