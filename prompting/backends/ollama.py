"""Ollama through the official `ollama` client (AsyncClient, `--concurrency` requests in flight).

Traps handled (docs/pitfalls.md#think, #ollama-context, #ollama-client): the timeout goes through the client's
httpx client (ollama-python #218/#518); `num_ctx` is set once from the longest prompt (an upper bound on its
tokens), because Ollama cuts over-long prompts at its default context and reloads the model when num_ctx changes
between requests; a prompt it cut anyway is flagged `prompt_truncated`, and its 400 on context overflow is one
invalid answer; a reasoning model's separate `thinking` field is kept in the raw output as a <think> block, and a
<think> block in the answer (a model ignoring think=false) is stripped by extraction; parallel answers also need
OLLAMA_NUM_PARALLEL on the server.
"""

from __future__ import annotations

import logging
import math
import os
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import ollama

from prompting.backends import Backend, BackendError, BackendOptions, label_schema
from prompting.backends._fanout import Retry, ask, fan_out
from prompting.cache import Answer

log = logging.getLogger("prompting")
DEFAULT_HOST = "http://127.0.0.1:11434"
# Token counts are bounded from above, per character: English BPE averages ~4 ASCII characters a token (3 leaves a
# margin); a CJK character is 0.7-1.5 tokens depending on the vocabulary, so "3 characters a token" undershoots
# Chinese 2-3x. Overestimating costs only KV-cache memory; underestimating makes Ollama cut the prompt
# (docs/pitfalls.md#ollama-context; the server's rules in docs/gpu-paths.md).
ASCII_PER_TOKEN = 3.0
TOKENS_PER_OTHER_CHAR = 1.5
TEMPLATE_TOKENS = 32  # the model's chat template around the prompt
NUM_KEEP = 4  # Ollama's default num_keep (api/types.go); the cut keeps these first tokens
# Ollama's refusal when context shift is off (llm/llama_server.go); the llama.cpp-server wordings say the same
CONTEXT_OVERFLOW = ("longer than the context length", "exceeds the available context size",
                    "input length exceeds the context length", "exceed_context_size_error")
# HTTP 500s that are the model failing to load, not a passing fault: retrying them and recording every item as an
# error only hides the cause (llm/server.go "model requires more system memory (X GiB) than is available (Y GiB)";
# a runner that cannot load the weights, "llama runner process has terminated: error loading model ...")
LOAD_FAILURES = ("requires more system memory", "error loading model", "unable to load model",
                 "not supported by your version of ollama", "unknown model architecture")


def max_prompt_tokens(prompt: str) -> int:
    """An upper bound on the tokens `prompt` takes (template included); see ASCII_PER_TOKEN."""
    ascii_chars = sum(c.isascii() for c in prompt)
    other = len(prompt) - ascii_chars
    return math.ceil(ascii_chars / ASCII_PER_TOKEN + other * TOKENS_PER_OTHER_CHAR) + TEMPLATE_TOKENS


def cut_size(num_ctx: int, num_keep: int) -> int:
    """How many tokens Ollama keeps of a prompt over num_ctx - 1 (llm/llama_server.go contextShiftPromptLimit):
    num_keep plus about half of the rest, so prompt_eval_count of a cut prompt is ~num_ctx / 2, never num_ctx."""
    num_keep = max(0, min(num_keep, num_ctx - 1))
    return num_ctx - max((num_ctx - num_keep) // 2, 1)


def prompt_was_cut(prompt: str, prompt_eval_count: int | None, num_ctx: int | None) -> bool:
    """True when Ollama evidently truncated `prompt`: the prompt may be over the context (by its upper bound) and
    the count the server reports is the size of a cut (num_keep 4, or 5 with the tokenizer's BOS), or fills the
    whole context (older runners). A prompt that fits is never flagged unless it lands within one token of the cut
    size while its bound exceeds the context - rare by construction."""
    if not num_ctx or not prompt_eval_count or max_prompt_tokens(prompt) < num_ctx - 1:
        return False
    cuts = {cut_size(num_ctx, keep) for keep in (NUM_KEEP, NUM_KEEP + 1)}
    return prompt_eval_count >= num_ctx - 1 or any(abs(prompt_eval_count - c) <= 1 for c in cuts)


async def aclose(client: Any) -> None:
    """Close an AsyncClient on every ollama-python: `close()` exists from 0.6.2 only (0.5.x keeps the httpx client
    in `_client`; docs/pitfalls.md#ollama-client)."""
    close = getattr(client, "close", None)
    if close is not None:
        await close()
    elif getattr(client, "_client", None) is not None:
        await client._client.aclose()


def close(client: Any) -> None:
    """The same for the sync Client."""
    fn = getattr(client, "close", None)
    if fn is not None:
        fn()
    elif getattr(client, "_client", None) is not None:
        client._client.close()


def check_host(host: str) -> str:
    """Validate a host the way users write it (`localhost:11434`, `http://box:11434`); raise a BackendError if bad."""
    url = host if "://" in host else f"http://{host}"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BackendError(f"bad Ollama host URL {host!r} ({e}): use http://HOST:PORT, e.g. {DEFAULT_HOST}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(f"bad Ollama host URL {host!r}: use http://HOST:PORT, e.g. {DEFAULT_HOST}")
    del port
    return host


def think_value(think: str | None) -> bool | str | None:
    from eval.run.cli import parse_think  # --think is parsed once, for every backend

    return parse_think(think)  # True / False / None, or low / medium / high (gpt-oss style levels)


def explicit_think(think: str | None, reasoning: bool) -> str | None:
    """What `think` to send. Unset, Ollama decides for the model: thinking ON for every thinking-capable one
    (server/routes.go GenerateHandler/ChatHandler: `if req.Think == nil { req.Think = true }` when the model has
    the thinking capability), and the thinking counts against num_predict, so a zero-/few-shot answer budget of 16
    tokens is spent inside <think> and Qwen3 / DeepSeek-R1 runs came back nearly all INVALID. So a prompt that asks
    for the answer at once (not chain of thought) sends "false" (a model without thinking accepts false; only true
    gets 400 "does not support thinking"); a chain-of-thought prompt leaves the model its default."""
    if think is None and not reasoning:
        return "false"
    return think


class OllamaBackend(Backend):
    name = "ollama"

    def __init__(self, model: str, options: BackendOptions, scheme: Any) -> None:
        super().__init__(model, options, scheme)
        from eval.lm.models import resolve

        info = resolve(model)
        if info.alias and not info.ollama:  # one alias, one model: never the nearest Ollama build under our name
            it = f"{model}-it" if resolve(f"{model}-it").ollama else None
            raise BackendError(f"{model!r} has no Ollama build in eval/models.yaml"
                               + (f"; Ollama's build is the instruction-tuned model, alias {it!r}" if it else "")
                               + "; or pass an Ollama tag directly")
        self.host = check_host(options.host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST)
        self.context_length: int | None = None  # the model's trained context, from /api/show
        self.num_ctx: int | None = options.num_ctx
        self.raw_prompt = bool(options.raw and options.endpoint == "generate")  # type: ignore[misc]
        self.think = explicit_think(options.think, options.reasoning)

    def identity(self) -> dict[str, Any]:
        o = self.options
        # num_ctx is left out on purpose: sized to fit every prompt it does not change answers, and it depends on
        # the longest prompt of the run (so a bigger --n-eval would otherwise miss the cache).
        return {"backend": "ollama", "model": self.model, "endpoint": o.endpoint, "raw": self.raw_prompt,
                "think": self.think, "format": o.format, "max_new_tokens": o.max_new_tokens, "temperature": 0}

    # -- preflight ---------------------------------------------------------------------------------------------
    def _unreachable(self) -> BackendError:
        return BackendError(f"cannot reach Ollama at {self.host}: start the server with `ollama serve` "
                            f"(or point --host / OLLAMA_HOST at a running one)")

    def _not_pulled(self) -> BackendError:
        return BackendError(f"model {self.model!r} is not available on the Ollama server at {self.host}: "
                            f"run `ollama pull {self.model}`")

    def check(self) -> None:
        client = ollama.Client(host=self.host, timeout=min(self.options.timeout, 30.0))
        try:
            try:
                client.list()  # /api/tags: is the server there at all, and is it Ollama
            except (ollama.ResponseError, ValueError) as e:  # an error page or not JSON: another server listens
                status = f"HTTP {e.status_code}" if isinstance(e, ollama.ResponseError) else "not JSON"
                raise BackendError(f"a server answers at {self.host} but not Ollama's API ({status} on /api/tags): "
                                   "point --host / OLLAMA_HOST at Ollama (default port 11434); an OpenAI-compatible "
                                   "server goes in --base-url with --model openai/NAME") from None
            info = client.show(self.model)
        except ConnectionError:
            raise self._unreachable() from None
        except (httpx.TimeoutException, httpx.TransportError) as e:
            raise BackendError(f"Ollama at {self.host} did not answer ({type(e).__name__}): is it the right host? "
                               f"Start it with `ollama serve`") from None
        except ollama.ResponseError as e:
            if e.status_code == 404:
                raise self._not_pulled() from None
            raise BackendError(f"Ollama at {self.host} refused /api/show for {self.model!r}: {e.error}") from None
        finally:
            close(client)
        for key, value in (info.modelinfo or {}).items():
            if key.endswith(".context_length"):
                self.context_length = int(value)

    # -- context size ------------------------------------------------------------------------------------------
    def plan_context(self, prompts: Sequence[str]) -> None:
        """Pick one num_ctx that fits the longest prompt plus the answer; warn about prompts that cannot fit."""
        if not prompts or self.options.num_ctx:
            return
        need = [max_prompt_tokens(p) + self.options.max_new_tokens for p in prompts]
        want = max(2048, math.ceil(max(need) / 1024) * 1024)
        limit = self.context_length or want
        self.num_ctx = min(want, limit)
        too_long = sum(n > self.num_ctx for n in need)
        if too_long:
            log.warning("%d of %d prompts (~%d tokens at most) may not fit %s's context of %d tokens: Ollama would "
                        "cut them to about half the context (answers are flagged prompt_truncated). Shorten the "
                        "texts or use a longer-context model.",
                        too_long, len(prompts), max(need), self.model, self.num_ctx)

    # -- requests ----------------------------------------------------------------------------------------------
    def _request_kwargs(self, stop: Sequence[str]) -> dict[str, Any]:
        o = self.options
        options: dict[str, Any] = {"temperature": 0, "num_predict": o.max_new_tokens}
        if stop:
            options["stop"] = list(stop)
        if self.num_ctx:
            options["num_ctx"] = self.num_ctx
        kw: dict[str, Any] = {"model": self.model, "options": options, "think": think_value(self.think),
                              "keep_alive": o.keep_alive, "stream": o.stream}
        if o.format == "json":
            kw["format"] = label_schema(self.scheme)
        return {k: v for k, v in kw.items() if v is not None}

    async def _call(self, client: ollama.AsyncClient, prompt: str, stop: Sequence[str]) -> Answer:
        kw = self._request_kwargs(stop)
        chat = self.options.endpoint == "chat"
        try:
            if chat:
                resp = await client.chat(messages=[{"role": "user", "content": prompt}], **kw)
            else:
                resp = await client.generate(prompt=prompt, raw=self.raw_prompt or None, **kw)
            if self.options.stream:
                parts = [part async for part in resp]
            else:
                parts = [resp]
        except ConnectionError:
            raise Retry(f"connection to {self.host} failed", fatal=self._unreachable()) from None
        except httpx.TimeoutException:
            raise Retry(f"timed out after {self.options.timeout:g}s") from None
        except (httpx.TransportError, httpx.DecodingError) as e:
            raise Retry(f"{type(e).__name__}: {e}") from None
        except ollama.ResponseError as e:
            if e.status_code == 404:
                raise self._not_pulled() from None
            if e.status_code == 400 and any(m in str(e.error) for m in CONTEXT_OVERFLOW):
                # context shift off: one over-long prompt is one invalid answer, never the end of the run
                return Answer(error=f"prompt longer than the context (num_ctx {self.num_ctx}): {e.error}",
                              meta={"context_overflow": True, "num_ctx": self.num_ctx})
            if e.status_code >= 500 and any(m in str(e.error).lower() for m in LOAD_FAILURES):
                raise BackendError(f"Ollama at {self.host} cannot load {self.model!r}: {e.error} (a smaller model or "
                                   "quantization, or free memory on the server, then rerun: answers so far are kept)"
                                   ) from None
            if e.status_code in (408, 429) or e.status_code >= 500 or e.status_code == -1:
                raise Retry(f"HTTP {e.status_code}: {e.error}") from None
            msg = f"Ollama rejected the request for {self.model!r}: HTTP {e.status_code} {e.error}"
            raise BackendError(msg) from None
        return self._answer(parts, chat, prompt)

    def _answer(self, parts: list[Any], chat: bool, prompt: str = "") -> Answer:
        thinking, text = [], []
        for p in parts:
            src = p.message if chat else p
            thinking.append(src.thinking or "")
            text.append((src.content if chat else src.response) or "")
        last = parts[-1]
        raw = "".join(text)
        reasoning = "".join(thinking)
        if reasoning:  # think=true: Ollama returns the reasoning apart; keep it in the log as a closed block
            raw = f"<think>{reasoning}</think>\n{raw}"
        meta = {"done_reason": last.done_reason, "prompt_tokens": last.prompt_eval_count,
                "output_tokens": last.eval_count, "num_ctx": self.num_ctx}
        if prompt_was_cut(prompt, last.prompt_eval_count, self.num_ctx):
            meta["prompt_truncated"] = True
            log.warning("Ollama cut a prompt to %d tokens (num_ctx %d): the model saw only its start and end",
                        last.prompt_eval_count, self.num_ctx)
        return Answer(text=raw, truncated=last.done_reason == "length", meta=meta)

    def answer_all(self, prompts: Sequence[str], on_answer: Callable[[int, Answer], None],
                   stop: Sequence[str] = ()) -> None:
        self.plan_context(prompts)
        o = self.options
        state: dict[str, ollama.AsyncClient] = {}

        async def setup() -> None:
            state["client"] = ollama.AsyncClient(host=self.host, timeout=o.timeout)

        async def teardown() -> None:
            await aclose(state["client"])

        async def one(prompt: str) -> Answer:
            return await ask(lambda: self._call(state["client"], prompt, stop), o.retries, o.backoff)

        fan_out(prompts, one, o.concurrency, on_answer, setup=setup, teardown=teardown)
