"""A scripted HTTP server on 127.0.0.1 that speaks Ollama's API and the OpenAI chat API, for tests and benchmarks.

Real sockets, real clients: `/api/tags`, `/api/show`, `/api/generate`, `/api/chat` (NDJSON streaming or one JSON
object, as the request asks), `/v1/models`, `/v1/chat/completions`. `script(prompt, attempt)` decides each answer
(`attempt` counts calls with the same prompt, so "fail once, then succeed" is one line).

    with FakeServer(models=["llama3.1:8b"], script=lambda p, n: Reply("positive"), delay=0.2) as srv:
        ...  # srv.url, srv.requests, srv.max_in_flight

Where it mirrors Ollama's server (ollama v0.33.0-rc2, commit fb30760; file and function named):
- a model that is not pulled: 404 `model '<name>' not found` (server/routes.go);
- an over-long prompt (`llm/llama_server.go`, `completionPromptTokens` and `contextShiftPromptLimit`): a prompt of
  more than `num_ctx - 1` tokens is either refused with HTTP 400 "the prompt is longer than the context length
  currently available to the model; ..." when context shift is off (`context_shift=False` here), or cut to
  `num_ctx - max((num_ctx - num_keep) // 2, 1)` tokens - the first `num_keep` (default 4, api/types.go) plus the
  tail - so `prompt_eval_count` comes back as about half the context, never `num_ctx`. The script sees the cut
  prompt, as the model would;
- `num_ctx` defaults to the server's context (4096 here) when the request does not set it;
- thinking (server/routes.go GenerateHandler/ChatHandler): a model in `thinking_models` thinks when the request
  leaves `think` unset (`req.Think = true`), and not with `think: false`; `think: true` (or a level) for any other
  model is HTTP 400 `"<model>" does not support thinking`. The reasoning counts against `num_predict` (one
  budget for the runner): a reply whose thinking uses it up comes back with an empty answer and done_reason
  "length"; the answer is cut to what is left;
- `options.stop`: the answer ends before the first stop string (llm/server.go), which is not returned;
- `load_failure`: every generate/chat is HTTP 500 with that message, as when the runner cannot load the model
  ("model requires more system memory (X GiB) than is available (Y GiB)", llm/server.go);
- `format` ("json" or a JSON schema): the runner decodes under a grammar built from it (llm/server.go, llama.cpp
  json-schema-to-grammar), so only conforming JSON can come out. A scripted reply that could not (not JSON, a
  missing required key, a value outside an enum) is a broken test, answered with HTTP 599 and the reason.
Tokens are approximated: one per non-ASCII character (CJK in a large-vocabulary tokenizer), one per 4 ASCII
characters (English BPE); this tokenizer adds no BOS, so num_keep is not incremented.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    thinking: str | None = None  # returned apart (Ollama `thinking`, OpenAI `reasoning_content`)
    status: int = 200  # != 200: answer with this HTTP error
    delay: float | None = None  # seconds; None = the server's default
    done_reason: str = "stop"


Script = Callable[[str, int], Reply]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that timed out hung up: fine
        pass


CONTEXT_ERROR = ("the prompt is longer than the context length currently available to the model; shorten the "
                 "prompt, adjust the context length in settings, or use a model with a longer context length")
NUM_KEEP = 4  # api/types.go DefaultOptions


def fake_tokens(text: str) -> list[str]:
    """The fake tokenizer: each non-ASCII character alone, ASCII runs in pieces of up to 4 characters."""
    return re.findall(r"[\x00-\x7f]{1,4}|[^\x00-\x7f]", text)


def context_shift_limit(num_ctx: int, num_keep: int) -> int:
    """llm/llama_server.go contextShiftPromptLimit: keep num_keep, free about half of the rest."""
    if num_ctx <= 1:
        return 0
    num_keep = max(0, min(num_keep, num_ctx - 1))
    return num_ctx - max((num_ctx - num_keep) // 2, 1)


def fit_prompt(prompt: str, num_ctx: int, context_shift: bool, num_keep: int = NUM_KEEP) -> tuple[str, int] | None:
    """(what the model sees, prompt_eval_count), or None when the server refuses (400): llm/llama_server.go."""
    tokens = fake_tokens(prompt)
    if len(tokens) <= num_ctx - 1:
        return prompt, len(tokens)
    if not context_shift:
        return None
    keep = min(num_keep, num_ctx - 1)
    limit = context_shift_limit(num_ctx, keep)
    discard = len(tokens) - limit
    kept = tokens[:keep] + tokens[keep + discard:]
    return "".join(kept), len(kept)


class FakeServer:
    def __init__(self, models: list[str], script: Script, delay: float = 0.0, context_length: int = 8192,
                 default_num_ctx: int = 4096, context_shift: bool = True, thinking_models: tuple[str, ...] = (),
                 load_failure: str | None = None) -> None:
        self.models = list(models)
        self.thinking_models = set(thinking_models)
        self.load_failure = load_failure
        self.default_num_ctx = default_num_ctx
        self.version = "0.33.0"
        self.context_shift = context_shift
        self.script = script
        self.delay = delay
        self.context_length = context_length
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def prompts(self) -> list[str]:
        return [_prompt_of(body) for path, body in self.requests if path in ("/api/generate", "/api/chat",
                                                                             "/v1/chat/completions")]

    def _reply_for(self, body: dict[str, Any], seen: str | None = None) -> Reply:
        """Attempts count per prompt as sent; the script gets the prompt as the model sees it (possibly cut)."""
        prompt = _prompt_of(body)
        with self._lock:
            self.attempts[prompt] += 1
            n = self.attempts[prompt]
        return self.script(prompt if seen is None else seen, n)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:  # headers and body go out as separate writes: no Nagle/delayed-ACK stalls
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append((self.path, {}))
                if self.path == "/api/version":  # server/routes.go: {"version": ...}
                    self._send(200, {"version": server.version})
                elif self.path == "/api/tags":
                    self._send(200, {"models": [{"name": m, "model": m, "size": 1} for m in server.models]})
                elif self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                                  "owned_by": "fake"} for m in server.models]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.requests.append((self.path, body))
                model = body.get("model")
                if self.path == "/api/show":
                    if model not in server.models:
                        return self._send(404, {"error": f"model '{model}' not found"})
                    return self._send(200, {"modelfile": "", "parameters": "", "template": "{{ .Prompt }}",
                                            "details": {"family": "fake"},
                                            "model_info": {"fake.context_length": server.context_length}})
                if self.path not in ("/api/generate", "/api/chat", "/v1/chat/completions"):
                    return self._send(404, {"error": "not found"})
                openai = self.path.startswith("/v1/")
                if model not in server.models:
                    if openai:
                        return self._send(404, {"error": {"message": f"model {model} not found", "type": "x"}})
                    return self._send(404, {"error": f"model '{model}' not found, try pulling it first"})
                if not openai:
                    think = body.get("think")
                    if model not in server.thinking_models and think not in (None, False):
                        return self._send(400, {"error": f'"{model}" does not support thinking'})
                    if server.load_failure:
                        return self._send(500, {"error": server.load_failure})
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    seen, n_prompt = _prompt_of(body), len(fake_tokens(_prompt_of(body)))
                    if not openai:
                        num_ctx = int((body.get("options") or {}).get("num_ctx") or server.default_num_ctx)
                        fitted = fit_prompt(seen, num_ctx, server.context_shift)
                        if fitted is None:
                            return self._send(400, {"error": CONTEXT_ERROR})
                        seen, n_prompt = fitted
                    reply = server._reply_for(body, seen)
                    problem = None if openai or reply.status != 200 else format_problem(reply.text, body.get("format"))
                    if problem:
                        return self._send(599, {"error": f"fake server: {problem}"})
                    time.sleep(server.delay if reply.delay is None else reply.delay)
                    if reply.status != 200:
                        err = {"error": {"message": "scripted failure"}} if openai else {"error": "scripted failure"}
                        return self._send(reply.status, err)
                    if openai:
                        return self._send(200, _openai_body(model, reply))
                    self._ollama(body, reply, n_prompt)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _ollama(self, body: dict[str, Any], reply: Reply, n_prompt: int) -> None:
                chat = self.path == "/api/chat"
                thinking_on = body["model"] in server.thinking_models and body.get("think") is not False
                think = reply.thinking if thinking_on or body["model"] not in server.thinking_models else None
                if body.get("think") is False:
                    think = None
                options = body.get("options") or {}
                text, done_reason = reply.text, reply.done_reason
                for stop in options.get("stop") or []:
                    if stop and stop in text:
                        text, done_reason = text[:text.index(stop)], "stop"
                budget = options.get("num_predict")
                if budget is not None and int(budget) >= 0:  # thinking and answer share num_predict
                    used = fake_tokens(think or "")
                    if len(used) >= int(budget):
                        think, text, done_reason = "".join(used[:int(budget)]), "", "length"
                    else:
                        answer = fake_tokens(text)
                        if len(answer) > int(budget) - len(used):
                            text, done_reason = "".join(answer[:int(budget) - len(used)]), "length"
                reply = Reply(text=text, thinking=think, status=reply.status, delay=reply.delay,
                              done_reason=done_reason)
                final = {"model": body["model"], "created_at": "2026-11-21T00:00:00Z", "done": True,
                         "done_reason": reply.done_reason, "prompt_eval_count": n_prompt,
                         "eval_count": len(fake_tokens((think or "") + reply.text))}
                if not body.get("stream", True):
                    return self._send(200, {**final, **_ollama_piece(chat, reply.text, think)})
                pieces = [reply.text[i:i + 7] for i in range(0, len(reply.text), 7)] or [""]
                lines = [{"model": body["model"], "done": False, **_ollama_piece(chat, p, None)} for p in pieces]
                if think:
                    lines.insert(0, {"model": body["model"], "done": False, **_ollama_piece(chat, "", think)})
                lines.append({**final, **_ollama_piece(chat, "", None)})
                data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def format_problem(text: str, fmt: Any) -> str | None:
    """Why `text` could not be decoded under Ollama's `format` (None when it could): the subset of JSON schema the
    suite sends (prompting.backends.label_schema: an object, required keys, string enums)."""
    if not fmt:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return f"format {fmt!r} allows only JSON, the scripted reply is {text!r}"
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "object" and not isinstance(value, dict):
        return f"the format wants an object, the scripted reply is {text!r}"
    for key in fmt.get("required", []):
        if key not in value:
            return f"the format requires {key!r}, the scripted reply is {text!r}"
    for key, spec in (fmt.get("properties") or {}).items():
        if key in value and "enum" in spec and value[key] not in spec["enum"]:
            return f"{key!r} must be one of {spec['enum']}, the scripted reply has {value[key]!r}"
    return None


def _prompt_of(body: dict[str, Any]) -> str:
    if "messages" in body:
        return str(body["messages"][-1]["content"])
    return str(body.get("prompt", ""))


def _ollama_piece(chat: bool, text: str, thinking: str | None) -> dict[str, Any]:
    if chat:
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            msg["thinking"] = thinking
        return {"message": msg}
    out: dict[str, Any] = {"response": text}
    if thinking:
        out["thinking"] = thinking
    return out


def _openai_body(model: str, reply: Reply) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.thinking:
        msg["reasoning_content"] = reply.thinking
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": msg, "finish_reason": "length" if reply.done_reason == "length"
                         else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
