"""Ollama's limits, against prompting/fake_server.py, which mirrors ollama v0.33.0-rc2 llm/llama_server.go (a prompt
over num_ctx - 1 tokens is cut to about half the context, or refused with HTTP 400 when context shift is off), and
against the API of the oldest ollama-python our floor ever allowed (0.5.0: no Client.close / AsyncClient.close)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import ollama
import pytest
from prompting_fixtures import SCHEME

from eval.lm.prompts import load_prompt
from eval.scoring.labels import INVALID
from prompting.backends import BackendOptions, get_backend
from prompting.backends import ollama as ollama_backend
from prompting.fake_server import FakeServer, Reply, fake_tokens
from prompting.run import predict

FAST = {"timeout": 5.0, "retries": 1, "backoff": 0.01}


def run(server: FakeServer, prompts: list[str], **opts) -> dict:
    backend = get_backend("ollama")("llama3.1:8b", BackendOptions(host=server.url, **{**FAST, **opts}), SCHEME)
    backend.check()
    out: dict = {}
    backend.answer_all(prompts, out.__setitem__)
    return out


# 7a. context shift off: Ollama answers 400; that prompt is one invalid answer and the run goes on
def test_context_overflow_400_is_one_invalid_answer() -> None:
    long = "a long review " * 400  # ~1,400 fake tokens
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("positive"), context_shift=False) as srv:
        out = run(srv, ["short", long, "also short"], num_ctx=512)
    assert out[0].ok and out[2].ok
    assert not out[1].ok and out[1].meta["context_overflow"] and "longer than the context" in out[1].error
    zeroshot = load_prompt("zeroshot", SCHEME)
    backend = get_backend("ollama")("m", BackendOptions(), SCHEME)
    assert predict(out[1], zeroshot, backend, SCHEME) == INVALID


# 7b. context shift on: the cut prompt's prompt_eval_count is ~num_ctx / 2, and it is still detected
def test_silently_cut_prompt_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    long = "the plot was slow but the acting was good " * 120  # ~1,300 fake tokens
    with FakeServer(["llama3.1:8b"], lambda p, n: seen.append(p) or Reply("positive")) as srv:
        with caplog.at_level(logging.WARNING, logger="prompting"):
            out = run(srv, [long, "short and fine"], num_ctx=512, concurrency=1)
    assert out[0].meta["prompt_tokens"] == 258  # 512 - (512 - 4) // 2: about half, never num_ctx - 1
    assert out[0].meta["prompt_truncated"] is True and "cut a prompt" in caplog.text
    assert "prompt_truncated" not in out[1].meta
    assert len(seen[0]) < len(long)  # the model really saw a shortened prompt


# 7c. Chinese text: the context is sized from an upper bound, so a long Chinese prompt is not cut
def test_chinese_prompt_gets_a_context_that_fits() -> None:
    text = "这部电影的剧情很精彩，演员的表演也非常出色。" * 140  # 3,080 characters, one fake token each
    seen: list[str] = []
    with FakeServer(["llama3.1:8b"], lambda p, n: seen.append(p) or Reply("positive"), context_length=32768) as srv:
        out = run(srv, [text], max_new_tokens=8)
        num_ctx = srv.requests[-1][1]["options"]["num_ctx"]
    assert num_ctx >= len(fake_tokens(text)) + 8
    assert seen == [text] and "prompt_truncated" not in out[0].meta


class _Ollama050AsyncClient(ollama.AsyncClient):
    """ollama-python 0.5.0's AsyncClient (ollama/_client.py of that wheel): no `close()`; its httpx client is
    `self._client`. Hiding the attribute reproduces `hasattr(client, "close") is False`."""

    def __getattribute__(self, name: str):
        if name == "close":
            raise AttributeError(name)
        return super().__getattribute__(name)


class _Ollama050Client(ollama.Client):
    """ollama-python 0.5.0's sync Client: no `close()` either."""

    def __getattribute__(self, name: str):
        if name == "close":
            raise AttributeError(name)
        return super().__getattribute__(name)


# 4. an ollama-python without close() must not crash the run in its `finally:`
def test_runs_with_an_ollama_client_that_has_no_close(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ollama, "AsyncClient", _Ollama050AsyncClient)
    monkeypatch.setattr(ollama, "Client", _Ollama050Client)
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("negative")) as srv:
        out = run(srv, ["a", "b"])
    assert [a.text for a in out.values()] == ["negative", "negative"]


def test_close_helpers_close_the_httpx_client() -> None:
    client = _Ollama050AsyncClient(host="http://127.0.0.1:9")
    asyncio.run(ollama_backend.aclose(client))
    assert client._client.is_closed
    sync = _Ollama050Client(host="http://127.0.0.1:9")
    ollama_backend.close(sync)
    assert isinstance(sync._client, httpx.Client) and sync._client.is_closed


def test_truncation_rule_matches_the_server() -> None:
    """The backend's cut size is the server's (same numbers as ollama's llm/llama_server_test.go table)."""
    assert ollama_backend.cut_size(8, 3) == 6
    assert ollama_backend.cut_size(4096, 4) == 2050 and ollama_backend.cut_size(4096, 5) == 2051
    assert not ollama_backend.prompt_was_cut("short", 3, 2048)
    assert not ollama_backend.prompt_was_cut("x" * 30000, 9000, 16384)  # fits: a count far from the cut size
