"""In-process transformers model (the offline default, `hf/gemma3-270m`), built on eval/lm.py.

`--mode generate`: greedy, left-padded batches (eval.lm.generate). `--mode score`: the log-probability of each label
verbalizer after the prompt, read at the last position only (eval.lm.score_labels); the answer is the best label,
so it is valid by construction. Prompts go through the model's chat template when it has one (not for aliases
marked `base` in eval/models.yaml); a base model continues the prompt verbatim, so a template's open <think> is
really open. Answers are reported batch by batch, so progress shows and an interrupted run resumes.

Speed (docs/speed.md): the dtype comes from eval.hardware.pick_dtype (bf16 on CPUs with AVX512-BF16/AMX, `--dtype`
overrides); torch threads from the cores actually available (`--threads` overrides); the prompts' shared prefix
(instruction, few-shot examples, system turn) is run once and its KV cache reused for every batch. Before the first
batch, the canary (eval/canary.py) checks batch-1 vs batch-N labels, and bf16 vs fp32 when bf16 was chosen
automatically on a CPU; `--no-batch-check` skips it. What ran is in every answer's meta and in `run_info`.
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
        from eval.hardware import pick_dtype

        self.device, dtype, self.dtype_reason = pick_dtype(options.dtype)
        self.dtype = str(dtype).removeprefix("torch.")  # scores depend on dtype (lm-eval PR #1992)
        # bf16 picked automatically on a CPU is checked against fp32 by the canary, so fp32 weights load first
        self.guard_dtype = options.dtype in (None, "auto") and self.device == "cpu" and self.dtype == "bfloat16"
        self.lm: tuple[Any, Any, dict] | None = None
        self.run_info: dict[str, Any] = {"dtype_reason": self.dtype_reason}  # what ran: dtype, prefix, canary

    @property
    def model_id(self) -> str:
        return self.lm[2]["model_id"] if self.lm else self.model

    def identity(self) -> dict[str, Any]:
        o = self.options
        return {"backend": "hf", "model": self.alias, "weights": self.weights, "mode": o.mode,
                "max_new_tokens": o.max_new_tokens if o.mode == "generate" else None,
                "think": o.think, "chat": self.chat_rule, "dtype": self.dtype}

    def check(self) -> None:
        from eval.hardware import configure_threads
        from eval.lm import load_causal_lm

        self.run_info["threads"] = configure_threads(self.options.threads)
        try:
            self.lm = load_causal_lm(self.alias, dtype="float32" if self.guard_dtype else self.dtype)
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
        from eval.lm import build_prompt, encode, generate, score_labels, shared_prefix

        self.ready()
        assert self.lm is not None
        model, tok, _ = self.lm
        o = self.options
        from eval.cli import parse_think  # --think is parsed once, for every backend

        think = parse_think(o.think) is True
        texts = [build_prompt(tok, p, chat=self.chat, enable_thinking=think) for p in prompts]
        ids = [encode(tok, t) for t in texts]  # tokenized once, used for the length check and every pass
        limit = getattr(model.config, "max_position_embeddings", None)
        for i, row in enumerate(ids):
            if limit and len(row) + o.max_new_tokens > limit:
                log.warning("prompt %d has %d tokens, over %s's context of %d", i, len(row), self.alias, limit)
        words = [self.scheme.verbalizer(lab) for lab in self.scheme.labels]
        # the prompt ends in the answer slot ("### Response:\n"): the label follows without a space
        join = "" if texts and texts[0][-1:].isspace() else " "

        def labels(idx: Sequence[int], bs: int) -> list[str]:  # the canary compares extracted labels
            sub, sub_ids = [texts[i] for i in idx], [ids[i] for i in idx]
            if o.mode == "score":
                rows = score_labels(model, tok, sub, words, batch_size=bs, prefix=join, ids=sub_ids,
                                    reuse_prefix=o.reuse_prefix)
                return [words[max(range(len(r)), key=r.__getitem__)] for r in rows]
            outs = generate(model, tok, sub, max_new_tokens=o.max_new_tokens, batch_size=bs, ids=sub_ids,
                            reuse_prefix=o.reuse_prefix)
            return [self.scheme.extract(t) for t in outs]

        batch_size = self._canary(len(texts), labels)
        prefix = shared_prefix(model, ids, reuse=o.reuse_prefix, extra_tokens=o.max_new_tokens)
        self.run_info.update(dtype=str(model.dtype).removeprefix("torch."), batch_size=batch_size,
                             prefix_tokens=len(prefix.ids) if prefix else 0)
        meta = {"raw_prompt": self.raw_prompt, "dtype": self.run_info["dtype"], "batch_size": batch_size,
                "prefix_tokens": self.run_info["prefix_tokens"]}
        # longest first, one batch per call: little padding, and progress (and the cache) advance every batch
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            part = order[start:start + batch_size]
            t0 = time.perf_counter()
            if o.mode == "score":
                batch = [texts[i] for i in part]
                scores = score_labels(model, tok, batch, words, batch_size=batch_size, prefix=join,
                                      ids=[ids[i] for i in part], reuse_prefix=prefix if prefix else False)
                each = {**meta, "seconds": round((time.perf_counter() - t0) / len(part), 4)}
                for i, row in zip(part, scores, strict=True):
                    best = max(range(len(words)), key=lambda j: row[j])
                    on_answer(i, Answer(text=words[best], meta={**each, "scores": dict(zip(words, row))}))
            else:
                outs = generate(model, tok, [texts[i] for i in part], max_new_tokens=o.max_new_tokens,
                                batch_size=batch_size, ids=[ids[i] for i in part],
                                reuse_prefix=prefix if prefix else False)
                each = {**meta, "seconds": round((time.perf_counter() - t0) / len(part), 4)}
                for i, out in zip(part, outs, strict=True):
                    n_out = len(tok(out, add_special_tokens=False)["input_ids"])
                    on_answer(i, Answer(text=out, truncated=n_out >= o.max_new_tokens,
                                        meta={**each, "output_tokens": n_out}))

    def _canary(self, n: int, labels: Callable[[Sequence[int], int], list[str]]) -> int:
        """Batch-1 vs batch-N (and bf16 vs fp32) labels on the first prompts; returns the batch size to use."""
        from eval.canary import CastSwitch, run_canary

        assert self.lm is not None
        o = self.options
        switch = CastSwitch(self.lm[0]) if self.guard_dtype else None
        if switch is not None and not o.batch_check:
            switch.low()  # no check asked for: bf16 as picked
            switch = None
        first = list(range(min(n, o.canary_k)))
        outcome = run_canary(lambda sub, bs: labels(first[:len(sub)], bs), [str(i) for i in first], o.batch_size,
                             k=o.canary_k, precision=switch, enabled=o.batch_check, say=log.warning)
        if switch is not None:
            switch.release()
        self.guard_dtype = False  # the dtype is settled for this backend's later calls (fp32 copy released)
        self.run_info["canary"] = outcome
        return int(outcome["batch_size_used"])
