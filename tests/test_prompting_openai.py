"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (`/v1/models`, `/v1/chat/completions`)."""

from __future__ import annotations

import socket

import pytest
from prompting_fixtures import SCHEME

from eval.lm.prompts import load_prompt
from eval.scoring.labels import INVALID
from prompting.backends import BackendError, BackendOptions, get_backend
from prompting.fake_server import FakeServer, Reply
from prompting.run import predict

FAST = {"timeout": 2.0, "retries": 2, "backoff": 0.01}


def ask(server: FakeServer, prompts: list[str], model: str = "qwen3:8b", **opts) -> dict:
    backend = get_backend("openai")(model, BackendOptions(base_url=server.url + "/v1", **{**FAST, **opts}), SCHEME)
    backend.check()
    out: dict = {}
    backend.answer_all(prompts, out.__setitem__)
    return out


def label(answer) -> str:
    return predict(answer, load_prompt("cot", SCHEME), get_backend("openai")("m", BackendOptions(), SCHEME), SCHEME)


def test_reasoning_apart_inline_unclosed_digits() -> None:
    replies = {
        "apart": Reply("Answer: 0", thinking="awful acting; positive? no"),  # vLLM / Ollama reasoning_content
        "inline": Reply("<think>mixed</think>\npositive"),
        "unclosed": Reply("<think>weighing positive and", done_reason="length"),
    }
    with FakeServer(["qwen3:8b"], lambda p, n: replies[p]) as srv:
        out = ask(srv, list(replies), think="false")
        body = srv.requests[-1][1]
    assert body["reasoning_effort"] == "none" and body["temperature"] == 0
    assert [label(out[i]) for i in range(3)] == ["negative", "positive", INVALID]
    assert out[0].text.startswith("<think>awful")


def test_retry_timeout_and_json_schema() -> None:
    def script(p: str, n: int) -> Reply:
        if p == "flaky":
            return Reply(status=503) if n == 1 else Reply('{"label": "positive"}')
        return Reply("positive", delay=1.0)

    with FakeServer(["qwen3:8b"], script) as srv:
        out = ask(srv, ["flaky", "slow"], timeout=0.2, retries=1, format="json")
        body = srv.requests[-1][1]
    assert out[0].ok and out[0].meta["attempts"] == 2 and label(out[0]) == "positive"
    assert not out[1].ok and "timed out" in out[1].error
    assert body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == ["negative", "positive"]


def test_missing_model_and_refused_connection() -> None:
    with FakeServer(["qwen3:8b"], lambda p, n: Reply("positive")) as srv:
        with pytest.raises(BackendError, match=r"not served .*qwen3:8b"):
            ask(srv, ["x"], model="llama3.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = get_backend("openai")("m", BackendOptions(base_url=f"http://127.0.0.1:{port}/v1", **FAST), SCHEME)
    with pytest.raises(BackendError, match=r"cannot reach .*vllm serve"):
        backend.check()
    with pytest.raises(BackendError, match="bad --base-url"):
        get_backend("openai")("m", BackendOptions(base_url="127.0.0.1:8000"), SCHEME)
