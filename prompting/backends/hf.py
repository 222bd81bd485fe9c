"""In-process transformers model (the offline default, `hf/gemma3-270m`), built on eval/lm.py.

`--mode generate`: greedy, left-padded batches (eval.lm.generate). `--mode score`: the log-probability of each label
verbalizer after the prompt, read at the last position only (eval.lm.score_labels); the answer is the best label,
so it is valid by construction. Prompts go through the model's chat template when it has one (not for aliases
marked `base` in eval/models.yaml); a base model continues the prompt verbatim, so a template's open <think> is
really open. Answers are reported batch by batch, so progress shows and an interrupted run resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from eval.models import resolve
from prompting.backends import Backend, BackendError, BackendOptions
from prompting.cache import Answer

log = logging.getLogger("prompting")


def predicted_weights(name: str) -> str:
    """Which weights eval.lm.load_causal_lm will load, known without loading them (part of the cache key:
    the offline GGUF package is a 4-bit quantisation, not the hub's weights)."""
    from eval.weights import locate

    return locate(name).label


def loaded_weights(info: dict) -> str:
    """The `predicted_weights` string for what eval.lm.load_causal_lm actually loaded (its info dict)."""
    source = str(info["source"])
    if source.startswith("offline:"):
        return "offline:" + source.split(":")[1]
    if source == "local":
        return f"local:{info['model_id']}"
    return f"hub:{info['model_id']}"


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, options: BackendOptions, scheme: Any) -> None:
        super().__init__(model, options, scheme)
        info = resolve(model)
        # base models (no chat template) see the prompt verbatim; None = use the template when there is one
        self.chat: bool | None = False if info.base else None
        self.chat_rule = self.chat  # what identity() reports: fixed before loading, so cache keys never move
        self.raw_prompt = self.chat is False  # type: ignore[misc]
        self.weights = predicted_weights(model)
        from eval.lm import device_and_dtype

        self.device, dtype = device_and_dtype()
        self.dtype = str(dtype).removeprefix("torch.")  # scores depend on dtype (FIELD-NOTES trap 2)
        self.lm: tuple[Any, Any, dict] | None = None

    @property
    def model_id(self) -> str:
        return self.lm[2]["model_id"] if self.lm else self.model

    def identity(self) -> dict[str, Any]:
        o = self.options
        return {"backend": "hf", "model": self.alias, "weights": self.weights, "mode": o.mode,
                "max_new_tokens": o.max_new_tokens if o.mode == "generate" else None,
                "think": o.think, "chat": self.chat_rule, "dtype": self.dtype}

    def check(self) -> None:
        from eval.lm import load_causal_lm

        if self.options.threads:
            import torch

            torch.set_num_threads(self.options.threads)

        try:
            self.lm = load_causal_lm(self.alias)
        except (OSError, ModuleNotFoundError, ValueError) as e:
            raise BackendError(f"cannot load {self.alias!r} in-process: {e}. Offline, use an alias with an offline "
                               f"package (e.g. hf/gemma3-270m) or a local model folder") from None
        tok = self.lm[1]
        if self.chat is None:
            self.chat = bool(getattr(tok, "chat_template", None))
            self.raw_prompt = not self.chat  # type: ignore[misc]
        info = self.lm[2]
        loaded = loaded_weights(info)
        if loaded != self.weights:
            # e.g. a gated hub model that failed to download fell back to the offline GGUF: answers are keyed on
            # the weights actually loaded (prompting/collect.py re-keys after ready()), never under the hub's key
            log.warning("loaded %s from %s, expected %s: answers are cached under the weights loaded", self.alias,
                        info["source"], self.weights)
            self.weights = loaded
        log.info("loaded %s (%s, %s, %s)", info["model_id"], info["source"], info["dtype"], info["device"])

    def answer_all(self, prompts: Sequence[str], on_answer: Callable[[int, Answer], None],
                   stop: Sequence[str] = ()) -> None:
        from eval.lm import build_prompt, encode, generate, score_labels

        self.ready()
        assert self.lm is not None
        model, tok, info = self.lm
        o = self.options
        from eval.cli import parse_think  # --think is parsed once, for every backend

        think = parse_think(o.think) is True
        texts = [build_prompt(tok, p, chat=self.chat, enable_thinking=think) for p in prompts]
        limit = getattr(model.config, "max_position_embeddings", None)
        words = [self.scheme.verbalizer(lab) for lab in self.scheme.labels]
        meta = {"raw_prompt": self.raw_prompt, "dtype": info["dtype"], "batch_size": o.batch_size}
        # longest first, one batch per call: little padding, and progress (and the cache) advance every batch
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        step = max(1, o.batch_size)
        for start in range(0, len(order), step):
            part = order[start:start + step]
            batch = [texts[i] for i in part]
            t0 = time.perf_counter()
            if limit:
                for i in part:
                    n = len(encode(tok, texts[i]))
                    if n + o.max_new_tokens > limit:
                        log.warning("prompt %d has %d tokens, over %s's context of %d", i, n, self.alias, limit)
            if o.mode == "score":
                # the prompt ends in the answer slot ("### Response:\n"): the label follows without a space
                prefix = "" if batch[0][-1:].isspace() else " "
                scores = score_labels(model, tok, batch, words, batch_size=o.batch_size, prefix=prefix)
                each = {**meta, "seconds": round((time.perf_counter() - t0) / len(part), 4)}
                for i, row in zip(part, scores, strict=True):
                    best = max(range(len(words)), key=lambda j: row[j])
                    on_answer(i, Answer(text=words[best], meta={**each, "scores": dict(zip(words, row))}))
            else:
                outs = generate(model, tok, batch, max_new_tokens=o.max_new_tokens, batch_size=o.batch_size)
                each = {**meta, "seconds": round((time.perf_counter() - t0) / len(part), 4)}
                for i, out in zip(part, outs, strict=True):
                    n_out = len(tok(out, add_special_tokens=False)["input_ids"])
                    on_answer(i, Answer(text=out, truncated=n_out >= o.max_new_tokens,
                                        meta={**each, "output_tokens": n_out}))
