"""The Ollama backend against a real HTTP server on 127.0.0.1 speaking Ollama's API (scripted answers)."""

from __future__ import annotations

import logging
import socket

import pytest
from prompting_fixtures import SCHEME

from eval.lm.prompts import load_prompt
from eval.scoring.labels import INVALID
from prompting.backends import BackendError, BackendOptions, get_backend
from prompting.fake_server import FakeServer, Reply
from prompting.run import predict

FAST = {"timeout": 2.0, "retries": 2, "backoff": 0.01}


def ask(server: FakeServer, prompts: list[str], model: str = "llama3.1:8b", **opts) -> dict:
    backend = get_backend("ollama")(model, BackendOptions(host=server.url, **{**FAST, **opts}), SCHEME)
    backend.check()
    out: dict = {}
    backend.answer_all(prompts, out.__setitem__, stop=("\n###",))
    return out


def label(answer, kind: str = "cot") -> str:
    return predict(answer, load_prompt(kind, SCHEME), get_backend("ollama")("m", BackendOptions(), SCHEME), SCHEME)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("endpoint", ["generate", "chat"])
def test_reasoning_closed_unclosed_words_and_digits(stream: bool, endpoint: str) -> None:
    replies = {
        "closed": Reply("The acting is good, so positive overall...</think>\nAnswer: 1"),
        "apart": Reply("negative", thinking="It says awful. Maybe positive? No."),  # Ollama's separate `thinking`
        "unclosed": Reply("Let me weigh it: positive points, negative points", done_reason="length"),
        "word": Reply("</think>\nnegative"),
    }
    with FakeServer(["llama3.1:8b"], lambda p, n: replies[p]) as srv:  # CoT: think left to the model
        out = ask(srv, list(replies), stream=stream, endpoint=endpoint, reasoning=True)
        sent = srv.requests[-1]
    assert sent[0] == f"/api/{endpoint}" and sent[1]["stream"] is stream
    got = {p: label(out[i]) for i, p in enumerate(replies)}
    assert got == {"closed": "positive", "apart": "negative", "unclosed": INVALID, "word": "negative"}
    assert out[1].text.startswith("<think>It says awful") and out[1].text.endswith("negative")  # reasoning kept
    assert out[2].truncated and out[2].meta["done_reason"] == "length"


def test_think_false_is_sent_and_ignoring_it_is_stripped() -> None:
    with FakeServer(["qwen3:8b"], lambda p, n: Reply("<think>hmm, negative?</think>\npositive")) as srv:
        out = ask(srv, ["x"], model="qwen3:8b", think="false")
        body = srv.requests[-1][1]
    assert body["think"] is False
    assert label(out[0], "zeroshot") == "positive"


def test_retry_after_server_error_then_success() -> None:
    script = lambda p, n: Reply(status=500) if n == 1 else Reply("positive")
    with FakeServer(["llama3.1:8b"], script) as srv:
        out = ask(srv, ["a", "b"])
    assert all(a.ok and a.text == "positive" and a.meta["attempts"] == 2 for a in out.values())


def test_slow_answer_times_out_and_becomes_an_error_not_a_crash() -> None:
    script = lambda p, n: Reply("positive", delay=1.0 if p == "slow" else 0.0)
    with FakeServer(["llama3.1:8b"], script) as srv:
        out = ask(srv, ["slow", "fast"], timeout=0.2, retries=1)
        assert srv.attempts["slow"] == 2
    assert not out[0].ok and "timed out" in out[0].error and "2 attempts" in out[0].error
    assert label(out[0]) == INVALID
    assert out[1].ok


def test_missing_model_names_the_pull_command() -> None:
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("positive")) as srv:
        with pytest.raises(BackendError, match=r"ollama pull mistral:7b"):
            ask(srv, ["x"], model="mistral")  # alias -> mistral:7b
        # the model disappears mid-run: the same hint, not a pile of error answers
        backend = get_backend("ollama")("llama3.1", BackendOptions(host=srv.url, **FAST), SCHEME)
        backend.check()
        srv.models.clear()
        with pytest.raises(BackendError, match=r"ollama pull llama3.1:8b"):
            backend.answer_all(["x"], lambda i, a: None)


def test_refused_connection_says_how_to_start_the_server() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = get_backend("ollama")("llama3.1", BackendOptions(host=f"http://127.0.0.1:{port}", **FAST), SCHEME)
    with pytest.raises(BackendError, match=r"ollama serve"):
        backend.check()
    with pytest.raises(BackendError, match=r"ollama serve"):  # the server went away mid-run
        backend.answer_all(["x"], lambda i, a: None)


@pytest.mark.parametrize("host", ["http://127.0.0.1:abc", "ftp://127.0.0.1:11434", "http://"])
def test_bad_host_url(host: str) -> None:
    with pytest.raises(BackendError, match="bad Ollama host URL"):
        get_backend("ollama")("llama3.1", BackendOptions(host=host), SCHEME)


def test_host_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("positive")) as srv:
        monkeypatch.setenv("OLLAMA_HOST", srv.url)
        backend = get_backend("ollama")("llama3.1", BackendOptions(**FAST), SCHEME)
        backend.check()
        assert ("/api/tags", {}) in srv.requests and srv.requests[-1][0] == "/api/show"


def test_options_num_ctx_keep_alive_json_schema_and_stop(caplog: pytest.LogCaptureFixture) -> None:
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply('{"label": "negative"}'), context_length=4096) as srv:
        with caplog.at_level(logging.WARNING, logger="prompting"):
            out = ask(srv, ["short", "long " * 4000], keep_alive="10m", format="json", max_new_tokens=8)
        body = srv.requests[-1][1]
    assert body["keep_alive"] == "10m"
    assert body["format"]["properties"]["label"]["enum"] == ["negative", "positive"]
    assert body["options"]["num_ctx"] == 4096  # sized for the longest prompt, capped at the model's context
    assert body["options"]["stop"] == ["\n###"] and body["options"]["temperature"] == 0
    assert "may not fit" in caplog.text  # a prompt too long is reported, not silently truncated
    assert label(out[0], "zeroshot") == "negative"


def test_concurrency_keeps_n_requests_in_flight() -> None:
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("positive"), delay=0.1) as srv:
        out = ask(srv, [f"p{i}" for i in range(12)], concurrency=4)
        assert srv.max_in_flight == 4
    assert len(out) == 12


def test_raw_prompt_keeps_the_templates_think_block_open() -> None:
    """--raw: the prompt is continued verbatim, so the CoT template's <think> is open and must be closed."""
    replies = {"closed": Reply("good acting</think>\npositive"), "never": Reply("positive, clearly")}
    with FakeServer(["llama3.1:8b"], lambda p, n: replies[p]) as srv:
        backend = get_backend("ollama")("llama3.1", BackendOptions(host=srv.url, raw=True, **FAST), SCHEME)
        out: dict = {}
        backend.answer_all(list(replies), out.__setitem__)
        assert srv.requests[-1][1]["raw"] is True
    cot = load_prompt("cot", SCHEME)
    assert [predict(out[i], cot, backend, SCHEME) for i in range(2)] == ["positive", INVALID]
