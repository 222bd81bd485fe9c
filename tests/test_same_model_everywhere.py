"""Results must not change with the calendar or with which weights happened to load (issue 12, items 12 and 13)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prompting_fixtures import SCHEME

from eval.lm.models import resolve
from prompting.backends import BackendError, BackendOptions, get_backend
from prompting.cache import AnswerCache, cache_key

# The date logic of Llama 3.1/3.2's chat template (tokenizer_config.json of meta-llama/Llama-3.2-1B-Instruct):
# today's date through strftime_now unless date_string is passed.
LLAMA_DATE_TEMPLATE = (
    "{{- bos_token }}{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- endif %}<|start_header_id|>system<|end_header_id|>\n\nToday Date: {{ date_string }}<|eot_id|>"
    "{%- for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
    "{%- endfor %}{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}"
)


def test_llama_chat_prompt_does_not_carry_todays_date(tiny_causal_lm: Path) -> None:
    from transformers import AutoTokenizer

    from eval.lm.causal import CHAT_DATE, build_prompt

    tok = AutoTokenizer.from_pretrained(tiny_causal_lm)
    tok.chat_template = LLAMA_DATE_TEMPLATE
    prompt = build_prompt(tok, "Review: great. Sentiment:")
    assert f"Today Date: {CHAT_DATE}" in prompt
    assert dt.date.today().strftime("%d %b %Y") not in prompt


def test_one_alias_means_one_model() -> None:
    base, it = resolve("gemma3-270m"), resolve("gemma3-270m-it")
    assert base.base and base.ollama is None  # the base model has no Ollama build
    assert it.ollama == "gemma3:270m" and it.hf == "google/gemma-3-270m-it"
    with pytest.raises(BackendError, match="gemma3-270m-it"):
        get_backend("ollama")("gemma3-270m", BackendOptions(), SCHEME)
    assert get_backend("ollama")("gemma3-270m-it", BackendOptions(), SCHEME).model == "gemma3:270m"


def test_answers_are_cached_under_the_weights_actually_loaded(tiny_causal_lm: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub was predicted, other weights loaded (as when a gated hub model falls back to the offline GGUF):
    nothing may be stored under the hub's key."""
    import prompting.backends.hf as hf
    from prompting.collect import collect

    monkeypatch.setattr(hf, "predicted_weights", lambda name: "hub:google/gemma-3-270m")
    backend = get_backend("hf")(str(tiny_causal_lm), BackendOptions(max_new_tokens=2, batch_size=2), SCHEME)
    predicted = {**backend.identity(), "prompt_version": "1"}
    prompts = ["review : the movie was great", "review : the film was terrible"]
    with AnswerCache(tmp_path / "cache.sqlite") as cache:
        got = collect(backend, prompts, cache, predicted)
        assert backend.identity()["weights"] == f"local:{Path(tiny_causal_lm).resolve()}"
        assert cache.get_many([cache_key(predicted, p) for p in prompts]) == {}
        actual = {**backend.identity(), "prompt_version": "1"}
        assert len(cache.get_many([cache_key(actual, p) for p in prompts])) == 2
    assert got.asked == 2 and all(a.ok for a in got.answers)
