"""Any OpenAI-compatible chat server through the `openai` client: vLLM, llama.cpp server, LM Studio, Ollama's /v1.

Retries are ours (the client's own are switched off) so a request that keeps failing becomes an error answer.
`--think` maps to `reasoning_effort` (false -> "none": how Ollama's /v1 turns thinking off, ollama #12561); reasoning
returned apart (`reasoning_content` / `reasoning`, as vLLM and Ollama do) is kept in the raw output as a <think>
block.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import openai

from prompting.backends import Backend, BackendError, BackendOptions, label_schema
from prompting.backends._fanout import Retry, ask, fan_out
from prompting.cache import Answer

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
START_HINT = ("start an OpenAI-compatible server there (vLLM: `vllm serve MODEL`; llama.cpp: `llama-server -m FILE`; "
              "Ollama: `ollama serve` with --base-url http://127.0.0.1:11434/v1) or fix --base-url")


def reasoning_effort(think: str | None) -> str | None:
    from eval.run.cli import parse_think  # --think is parsed once, for every backend

    value = parse_think(think)
    if value is None:
        return None
    return {False: "none", True: "medium"}.get(value, value)  # type: ignore[call-overload]


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str, options: BackendOptions, scheme: Any) -> None:
        super().__init__(model, options, scheme)
        self.base_url = (options.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise BackendError(f"bad --base-url {self.base_url!r}: use http://HOST:PORT/v1, e.g. {DEFAULT_BASE_URL}")
        self.api_key = options.api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"

    def identity(self) -> dict[str, Any]:
        o = self.options
        return {"backend": "openai", "model": self.model, "think": o.think, "format": o.format,
                "max_new_tokens": o.max_new_tokens, "temperature": 0}

    def _client(self, timeout: float) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=timeout, max_retries=0)

    def _unreachable(self) -> BackendError:
        return BackendError(f"cannot reach an OpenAI-compatible server at {self.base_url}: {START_HINT}")

    def check(self) -> None:
        import asyncio

        async def models() -> list[str]:
            client = self._client(min(self.options.timeout, 30.0))
            try:
                return [m.id async for m in client.models.list()]
            finally:
                await client.close()

        try:
            available = asyncio.run(models())
        except (openai.APIConnectionError, openai.APITimeoutError):
            raise self._unreachable() from None
        except openai.APIStatusError as e:
            raise BackendError(f"{self.base_url}/models answered HTTP {e.status_code}: is this the /v1 root of an "
                               f"OpenAI-compatible server? {START_HINT}") from None
        if available and self.model not in available:
            raise BackendError(f"model {self.model!r} is not served at {self.base_url}; it serves {available}. "
                               f"Load it in the server (for Ollama's /v1: `ollama pull {self.model}`)")

    async def _call(self, client: openai.AsyncOpenAI, prompt: str, stop: Sequence[str]) -> Answer:
        o = self.options
        kw: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                              "max_tokens": o.max_new_tokens, "temperature": 0}
        if stop:
            kw["stop"] = list(stop)[:4]
        if (effort := reasoning_effort(o.think)) is not None:
            kw["reasoning_effort"] = effort
        if o.format == "json":
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": "label", "schema": label_schema(self.scheme)}}
        try:
            resp = await client.chat.completions.create(**kw)
        except openai.APITimeoutError:
            raise Retry(f"timed out after {o.timeout:g}s") from None
        except openai.APIConnectionError:
            raise Retry(f"connection to {self.base_url} failed", fatal=self._unreachable()) from None
        except openai.NotFoundError as e:
            raise BackendError(f"model {self.model!r} not found at {self.base_url}: {e.message}") from None
        except openai.APIStatusError as e:
            if e.status_code in (408, 429) or e.status_code >= 500:
                raise Retry(f"HTTP {e.status_code}: {e.message}") from None
            raise BackendError(f"{self.base_url} rejected the request: HTTP {e.status_code} {e.message}") from None
        if not resp.choices:
            raise Retry("the server answered without choices")
        choice = resp.choices[0]
        text = choice.message.content or ""
        extra = choice.message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning")
        if reasoning:
            text = f"<think>{reasoning}</think>\n{text}"
        usage = resp.usage
        meta = {"finish_reason": choice.finish_reason, "prompt_tokens": usage.prompt_tokens if usage else None,
                "output_tokens": usage.completion_tokens if usage else None}
        return Answer(text=text, truncated=choice.finish_reason == "length", meta=meta)

    def answer_all(self, prompts: Sequence[str], on_answer: Callable[[int, Answer], None],
                   stop: Sequence[str] = ()) -> None:
        o = self.options
        state: dict[str, openai.AsyncOpenAI] = {}

        async def setup() -> None:
            state["client"] = self._client(o.timeout)

        async def teardown() -> None:
            await state["client"].close()

        async def one(prompt: str) -> Answer:
            return await ask(lambda: self._call(state["client"], prompt, stop), o.retries, o.backoff)

        fan_out(prompts, one, o.concurrency, on_answer, setup=setup, teardown=teardown)
