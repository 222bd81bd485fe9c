"""Backends that answer prompts, registered by name and imported lazily (a missing extra costs nothing).

A model string `provider/name` picks the backend when `provider` is a registered name; the split is on the first
`/` only, so `hf/google/gemma-3-270m` is the hf backend with model `google/gemma-3-270m`, while a bare
`google/gemma-3-270m` (unknown prefix) stays whole and goes to the default backend.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from eval.scoring.labels import LabelScheme
from prompting.cache import Answer

BACKENDS = {
    "ollama": "prompting.backends.ollama:OllamaBackend",
    "openai": "prompting.backends.openai_compat:OpenAIBackend",
    "hf": "prompting.backends.hf:HFBackend",
}
DEFAULT_BACKEND = "ollama"
INSTALL_HINT = 'pip install -e ".[prompting]"'


class BackendError(RuntimeError):
    """A problem no retry fixes (server down, model missing, bad URL). The message names the fix."""


@dataclass
class BackendOptions:
    """What a backend needs beyond the model name. Fields that change answers go into `Backend.identity()`."""

    host: str | None = None  # ollama: --host, else $OLLAMA_HOST, else http://127.0.0.1:11434
    base_url: str | None = None  # openai: --base-url, else $OPENAI_BASE_URL
    api_key: str | None = None  # openai: else $OPENAI_API_KEY, else a placeholder (local servers ignore it)
    concurrency: int = 4  # requests in flight (ollama / openai); server side also needs OLLAMA_NUM_PARALLEL
    timeout: float = 120.0  # seconds per request
    retries: int = 3  # extra attempts for timeouts, 5xx and dropped connections
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_new_tokens: int = 512
    think: str | None = None  # None = model default; true/false; low/medium/high (ollama think, reasoning_effort)
    reasoning: bool = False  # the prompt asks the model to reason first (CoT); ollama: an unset think stays unset
    keep_alive: str | None = None  # ollama: how long the model stays loaded, e.g. "10m"
    format: str | None = None  # "json": a JSON schema whose label field is an enum of the verbalizers
    endpoint: str = "generate"  # ollama: generate (as users did in docs/reference-experiments.md C) | chat
    raw: bool = False  # ollama generate: send the prompt verbatim, without the model's chat template
    stream: bool = False  # ollama: stream NDJSON (the timeout then bounds the gap between chunks)
    num_ctx: int | None = None  # ollama: None = from the longest prompt (never silently truncated)
    mode: str = "generate"  # hf: generate | score (label verbalizers' logits at the last position)
    batch_size: int = 16  # hf
    threads: int | None = None  # hf: torch CPU threads (None: the cores available, eval.run.hardware)
    dtype: str = "auto"  # hf: auto (eval.run.hardware.pick_dtype) | float32 | bfloat16 | float16
    batch_check: bool = True  # hf: the batch canary (and bf16-vs-fp32 guard) before the first batch
    canary_k: int = 16  # hf: prompts the canary compares
    reuse_prefix: bool | None = None  # hf: reuse the shared prefix's KV cache (None: when >= 16 tokens)
    rescore_margin: float | None = None  # hf score + automatic CPU bf16: fp32 re-scoring below this margin (0: off)

    @classmethod
    def of(cls, config: Any, **values: Any) -> BackendOptions:
        """The options a run's config sets: every field the config has by the same name (prompting.run.PromptConfig,
        whose help documents them), then `values`; the rest keep the defaults above."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: getattr(config, k) for k in names if hasattr(config, k)}, **values})


class Backend:
    """Answers a list of prompts. Subclasses set `name` and implement `check`, `answer_all`, `identity`."""

    name: ClassVar[str] = ""
    raw_prompt: ClassVar[bool] = False  # True when the prompt is continued verbatim (a template's <think> is open)

    def __init__(self, model: str, options: BackendOptions, scheme: LabelScheme) -> None:
        from eval.lm.models import resolve

        self.alias = model  # what the user typed
        self.model = resolve(model).id_for(self.name)  # what the server is asked for (llama3.1 -> llama3.1:8b)
        self.options = options
        self.scheme = scheme

    @property
    def model_id(self) -> str:
        return self.model

    def identity(self) -> dict[str, Any]:
        """Everything that changes an answer (model id, decoding options): part of the cache key and the RunSpec."""
        raise NotImplementedError

    def check(self) -> None:
        """Fail fast with a BackendError naming the fix (server down, model not pulled) before any work."""

    def ready(self) -> None:
        """`check()` once, right before the first request (a run served from the cache needs no server)."""
        if not getattr(self, "_checked", False):
            self.check()
            self._checked = True

    def answer_all(self, prompts: Sequence[str], on_answer: Callable[[int, Answer], None],
                   stop: Sequence[str] = ()) -> None:
        """Call `on_answer(i, answer)` once per prompt as answers arrive (any order); generation may end at a
        `stop` string. Raises BackendError only: a failed request is an answer with `error` set."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def split_model(model: str, backend: str | None = None) -> tuple[str, str]:
    """`ollama/llama3.1` -> ("ollama", "llama3.1"); an explicit `backend` wins over a missing prefix."""
    prefix, sep, rest = model.partition("/")
    if sep and prefix in BACKENDS:
        if backend and backend != prefix:
            raise ValueError(f"--backend {backend} contradicts the model prefix {prefix}/")
        return prefix, rest
    return backend or DEFAULT_BACKEND, model


def get_backend(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise ImportError(f"the {name} backend needs {e.name!r}: {INSTALL_HINT}") from e


def label_schema(scheme: LabelScheme) -> dict[str, Any]:
    """JSON schema for `--format json`: {"label": one of the canonical verbalizers}."""
    words = [scheme.verbalizer(lab) for lab in scheme.labels]
    return {"type": "object", "properties": {"label": {"type": "string", "enum": words}}, "required": ["label"]}
