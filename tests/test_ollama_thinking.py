"""Ollama and thinking models, and permanent load failures (issue 20), against prompting/fake_server.py,
which follows ollama's server/routes.go: an unset `think` means thinking ON for a thinking-capable model, thinking
counts against num_predict, `think: true` on another model is 400 "does not support thinking"; a model that cannot
load answers 500 with the reason."""

from __future__ import annotations

import pytest
from prompting_fixtures import SCHEME

from eval.lm.prompts import load_prompt
from eval.scoring.labels import INVALID
from prompting.backends import BackendError, BackendOptions, get_backend
from prompting.defaults import ANSWER_TOKENS, SERVER_COT_TOKENS, default_max_new_tokens
from prompting.fake_server import FakeServer, Reply
from prompting.run import predict

FAST = {"timeout": 5.0, "retries": 2, "backoff": 0.01, "concurrency": 1}
REASONING = "Let me think about the tone of this review carefully before I answer. " * 4  # ~70 fake tokens


def _ask(srv: FakeServer, model: str, prompts: list[str], **opts) -> dict:
    backend = get_backend("ollama")(model, BackendOptions(host=srv.url, **{**FAST, **opts}), SCHEME)
    backend.check()
    out: dict = {}
    backend.answer_all(prompts, out.__setitem__)
    return out


def _label(answer) -> str:
    return predict(answer, load_prompt("zeroshot", SCHEME), get_backend("ollama")("m", BackendOptions(), SCHEME),
                   SCHEME)


def test_zero_shot_on_a_thinking_model_asks_for_the_answer_at_once() -> None:
    """Qwen3 / DeepSeek-R1 with --think unset and the 16-token answer budget: before, no `think` was sent, Ollama
    turned thinking on and the reasoning used up num_predict (empty answer, INVALID). Now think=false is sent."""
    script = lambda p, n: Reply("positive", thinking=REASONING)  # noqa: E731
    with FakeServer(["qwen3:8b"], script, thinking_models=("qwen3:8b",)) as srv:
        out = _ask(srv, "qwen3:8b", ["a review"], max_new_tokens=ANSWER_TOKENS)
        body = srv.requests[-1][1]
        assert body["think"] is False and body["options"]["num_predict"] == ANSWER_TOKENS
        assert _label(out[0]) == "positive"
        # what the old request (no think) got from the same server: the budget went to thinking
        before = _ask(srv, "qwen3:8b", ["a review"], max_new_tokens=ANSWER_TOKENS, reasoning=True)
        assert "think" not in srv.requests[-1][1]
        assert _label(before[0]) == INVALID and before[0].truncated


def test_think_false_is_safe_on_a_model_without_thinking_and_true_is_refused_clearly() -> None:
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("negative")) as srv:
        assert _label(_ask(srv, "llama3.1:8b", ["x"])[0]) == "negative"  # think=false sent, accepted
        with pytest.raises(BackendError, match="does not support thinking"):
            _ask(srv, "llama3.1:8b", ["x"], think="true")


def test_thinking_on_purpose_gets_the_reasoning_budget() -> None:
    """--think true on a zero-/few-shot prompt: thinking and answer share num_predict, so the default budget is the
    reasoning one, not 16 tokens."""
    assert default_max_new_tokens(False, "ollama") == ANSWER_TOKENS
    assert default_max_new_tokens(False, "ollama", thinking=True) == SERVER_COT_TOKENS
    from prompting.run import PromptConfig, max_new_tokens

    assert max_new_tokens(PromptConfig(model="ollama/qwen3:8b", think="true"), "zeroshot") == SERVER_COT_TOKENS
    assert max_new_tokens(PromptConfig(model="ollama/qwen3:8b", think="false"), "zeroshot") == ANSWER_TOKENS
    script = lambda p, n: Reply("positive", thinking=REASONING)  # noqa: E731
    with FakeServer(["qwen3:8b"], script, thinking_models=("qwen3:8b",)) as srv:
        out = _ask(srv, "qwen3:8b", ["r"], think="true", max_new_tokens=SERVER_COT_TOKENS)
        assert srv.requests[-1][1]["think"] is True and _label(out[0]) == "positive"


def test_a_model_that_cannot_load_stops_the_run_with_the_servers_reason() -> None:
    """Ollama answers 500 when the runner cannot load the model (llm/server.go); retrying every 5xx recorded every
    item as an error after 3 attempts each. Now the first one stops the run with the message."""
    oom = "model requires more system memory (44.0 GiB) than is available (7.6 GiB)"
    with FakeServer(["llama3.1:70b"], lambda p, n: Reply("positive"), load_failure=oom) as srv:
        with pytest.raises(BackendError, match=r"cannot load 'llama3.1:70b': model requires more system memory"):
            _ask(srv, "llama3.1:70b", ["a", "b", "c"])
        assert sum(path == "/api/generate" for path, _ in srv.requests) == 1


def test_the_fake_server_decodes_under_the_format_as_ollama_does() -> None:
    """Ollama constrains decoding to `format` (a grammar from the JSON schema): the stand-in never hands a client
    output that could not have come out, so a test cannot pass on an impossible reply."""
    from prompting.fake_server import format_problem

    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["negative", "positive"]}},
              "required": ["label"]}
    assert format_problem('{"label": "negative"}', schema) is None
    assert "only JSON" in format_problem("negative", schema)
    assert "requires 'label'" in format_problem('{"answer": "negative"}', schema)
    assert "must be one of" in format_problem('{"label": "neutral"}', schema)
    assert format_problem("anything", None) is None
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("positive")) as srv:
        out = _ask(srv, "llama3.1:8b", ["x"], format="json", retries=0)
    assert out[0].error and "only JSON" in out[0].error
