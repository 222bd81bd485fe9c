"""In-process transformers model (the offline default, `hf/gemma3-270m`), built on eval/lm/causal.py.

`--mode generate`: greedy, left-padded batches (eval.lm.causal.generate). `--mode score`: the log-probability of each
label verbalizer after the prompt, read at the last position only (eval.lm.causal.score_labels); the answer is the best
label, so it is valid by construction. Prompts go through the model's chat template when it has one (not for aliases
marked `base` in eval/models.yaml); a base model continues the prompt verbatim, so a template's open <think> is
really open. Answers are reported batch by batch, so progress shows and an interrupted run resumes.

Speed (docs/speed.md): the dtype comes from eval.run.hardware.pick_dtype (bf16 on CPUs with AVX512-BF16/AMX, `--dtype`
overrides); torch threads from the cores actually available (`--threads` overrides); the prompts' shared prefix
(instruction, few-shot examples, system turn) is run once and its KV cache reused for every batch. Before the first
batch, the canary (eval/lm/canary.py) checks batch-1 vs batch-N labels, and bf16 vs fp32 when bf16 was chosen
automatically on a CPU; `--no-batch-check` skips it. What ran is in every answer's meta and in `run_info`.
Label scoring under that automatic bf16 gives fp32's labels: the candidates' logits come from an fp32 output layer
and the near ties (bf16 top-two margin below 3x the canary's measured bf16/fp32 error) are re-scored in fp32, a
full batch at a time (docs/speed.md, "bf16 with fp32's labels"); `run_info["rescore"]` says how many.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from eval.lm.models import resolve
from prompting.backends import Backend, BackendError, BackendOptions
from prompting.cache import Answer

log = logging.getLogger("prompting")


def predicted_weights(name: str) -> str:
    """Which weights eval.lm.causal.load_causal_lm will load, known without loading them (part of the cache key:
    the offline GGUF package is a 4-bit quantisation, not the hub's weights)."""
    from eval.lm.weights import locate

    return locate(name).label


def loaded_weights(info: dict) -> str:
    """The `predicted_weights` string for what eval.lm.causal.load_causal_lm actually loaded (its info dict)."""
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
        from eval.run.hardware import pick_dtype

        self.device, dtype, self.dtype_reason = pick_dtype(options.dtype)
        self.dtype = str(dtype).removeprefix("torch.")  # scores depend on dtype (lm-eval PR #1992)
        # bf16 picked automatically on a CPU is checked against fp32 by the canary, so fp32 weights load first
        self.guard_dtype = options.dtype in (None, "auto") and self.device == "cpu" and self.dtype == "bfloat16"
        # label scoring under that automatic bf16 re-scores its near ties in fp32, so its labels are fp32's
        # (docs/speed.md, "bf16 with fp32's labels"): the threshold is --rescore-margin, else calibrated on the
        # canary's items (eval.lm.infer.calibrated_margin); off for fp32, an explicit --dtype and generation
        given = options.rescore_margin
        self.rescore_on = self.guard_dtype and options.mode == "score" and (given is None or given > 0)
        self.rescore_margin: float | None = float(given) if self.rescore_on and given else None
        self.calibration: dict[str, Any] | None = None
        self.switch: Any = None  # the CastSwitch kept for the re-scoring (fp32 and bf16 tensors by reference)
        self.lm: tuple[Any, Any, dict] | None = None
        self.run_info: dict[str, Any] = {"dtype_reason": self.dtype_reason}  # what ran: dtype, prefix, canary

    @property
    def model_id(self) -> str:
        return self.lm[2]["model_id"] if self.lm else self.model

    def identity(self) -> dict[str, Any]:
        o = self.options
        ident = {"backend": "hf", "model": self.alias, "weights": self.weights, "mode": o.mode,
                 "max_new_tokens": o.max_new_tokens if o.mode == "generate" else None,
                 "think": o.think, "chat": self.chat_rule, "dtype": self.dtype}
        if self.rescore_on:  # it changes labels: part of the run id and the cache key (only then, so fp32 and
            from eval.lm.infer import RESCORE_RULE  # generation keys stay what they were)

            ident["rescore"] = RESCORE_RULE if self.options.rescore_margin is None else "fp32 below --rescore-margin"
            if self.options.rescore_margin is not None:
                ident["rescore_margin"] = float(self.options.rescore_margin)
        return ident

    def check(self) -> None:
        from eval.lm.causal import load_causal_lm
        from eval.run.hardware import configure_threads

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
        from eval.lm.causal import build_prompt, encode, generate, score_labels, shared_prefix
        from eval.lm.infer import (
            RESCORE_FACTOR,
            RESCORE_FLOOR,
            NearTieQueue,
            calibrated_margin,
            rescore_near_ties,
        )

        self.ready()
        assert self.lm is not None
        model, tok, _ = self.lm
        o = self.options
        from eval.run.cli import parse_think  # --think is parsed once, for every backend

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

        high_prefix: list[Any] = []  # the shared prefix's fp32 cache for the re-scoring, computed once if needed

        def rescoring() -> bool:
            return self.switch is not None and self.rescore_on and self.switch.is_low

        fp32_seen: dict[tuple[int, ...], list[list[float]]] = {}  # the canary's fp32 reference scores

        def fp32_rows(items: list[int], bs: int) -> list[list[float]]:
            """fp32 scores of these items (the near ties of bf16 scoring), the model back in bf16 after."""
            switch = self.switch
            switch.high()
            try:
                if not high_prefix:
                    high_prefix.append(shared_prefix(model, ids, reuse=o.reuse_prefix, extra_tokens=o.max_new_tokens))
                reuse = high_prefix[0] if high_prefix[0] is not None else False
                return score_labels(model, tok, [texts[i] for i in items], words, batch_size=bs, prefix=join,
                                    ids=[ids[i] for i in items], reuse_prefix=reuse)
            finally:
                switch.low()

        def labels(idx: Sequence[int], bs: int) -> list[str]:  # the canary compares extracted labels
            sub, sub_ids = [texts[i] for i in idx], [ids[i] for i in idx]
            if o.mode == "score":
                rows = score_labels(model, tok, sub, words, batch_size=bs, prefix=join, ids=sub_ids,
                                    reuse_prefix=o.reuse_prefix, fp32_head=self.rescore_on)
                if self.switch is not None and not self.switch.is_low:
                    fp32_seen[tuple(idx)] = [list(r) for r in rows]
                if rescoring():  # the canary's dtype check compares fp32 with what the run does
                    if self.rescore_margin is None and tuple(idx) in fp32_seen:  # calibrate on these items
                        margin, worst = calibrated_margin(rows, fp32_seen[tuple(idx)])
                        self.rescore_margin = margin
                        self.calibration = {"items": len(idx), "max_pair_error": round(worst, 4),
                                            "factor": RESCORE_FACTOR, "floor": RESCORE_FLOOR}
                    if self.rescore_margin is not None:
                        rescore_near_ties(rows, self.rescore_margin,
                                          lambda pos: fp32_rows([idx[j] for j in pos], bs))
                return [words[max(range(len(r)), key=r.__getitem__)] for r in rows]
            outs = generate(model, tok, sub, max_new_tokens=o.max_new_tokens, batch_size=bs, ids=sub_ids,
                            reuse_prefix=o.reuse_prefix)
            return [self.scheme.extract(t) for t in outs]

        batch_size = self._canary(len(texts), labels)
        prefix = shared_prefix(model, ids, reuse=o.reuse_prefix, extra_tokens=o.max_new_tokens)
        self.run_info.update(dtype=str(model.dtype).removeprefix("torch."), batch_size=batch_size,
                             prefix_tokens=len(prefix.ids) if prefix else 0)
        if rescoring() and self.rescore_margin is None:  # no canary ran (--no-batch-check): the fixed default
            from eval.lm.infer import RESCORE_MARGIN

            self.rescore_margin = RESCORE_MARGIN
        rescore = self.run_info.setdefault("rescore", self._rescore_info())
        queue = NearTieQueue(self.rescore_margin, batch_size, lambda keys: fp32_rows(keys, batch_size)) \
            if o.mode == "score" and rescoring() else None
        meta = {"raw_prompt": self.raw_prompt, "dtype": self.run_info["dtype"], "batch_size": batch_size,
                "prefix_tokens": self.run_info["prefix_tokens"]}

        def emit(done: list[tuple[int, list[float], bool]], each: dict) -> None:
            for i, row, again in done:
                best = max(range(len(words)), key=lambda j: row[j])
                extra = {"rescored_fp32": True} if again else {}
                on_answer(i, Answer(text=words[best], meta={**each, **extra, "scores": dict(zip(words, row))}))

        # longest first, one batch per call: little padding, and progress (and the cache) advance every batch;
        # near ties wait for a full fp32 batch (NearTieQueue), the rest are answered at once
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        each: dict = meta
        for start in range(0, len(order), batch_size):
            part = order[start:start + batch_size]
            t0 = time.perf_counter()
            if o.mode == "score":
                batch = [texts[i] for i in part]
                scores = score_labels(model, tok, batch, words, batch_size=batch_size, prefix=join,
                                      ids=[ids[i] for i in part], reuse_prefix=prefix if prefix else False,
                                      fp32_head=self.rescore_on)
                done = list(zip(part, scores, [False] * len(part)))
                if queue is not None:
                    done = queue.add(part, scores) + queue.flush()
                each = {**meta, "seconds": round((time.perf_counter() - t0) / len(part), 4)}
                emit(done, each)
            else:
                outs = generate(model, tok, [texts[i] for i in part], max_new_tokens=o.max_new_tokens,
                                batch_size=batch_size, ids=[ids[i] for i in part],
                                reuse_prefix=prefix if prefix else False)
                each = {**meta, "seconds": round((time.perf_counter() - t0) / len(part), 4)}
                for i, out in zip(part, outs, strict=True):
                    n_out = len(tok(out, add_special_tokens=False)["input_ids"])
                    on_answer(i, Answer(text=out, truncated=n_out >= o.max_new_tokens,
                                        meta={**each, "output_tokens": n_out}))
        if queue is not None:
            emit(queue.flush(True), each)
            rescore["items"] += queue.items
            rescore["rescored"] += queue.rescored

    def _canary(self, n: int, labels: Callable[[Sequence[int], int], list[str]]) -> int:
        """Batch-1 vs batch-N (and bf16 vs fp32) labels on the first prompts; returns the batch size to use."""
        from eval.lm.canary import CastSwitch, run_canary

        assert self.lm is not None
        o = self.options
        switch = CastSwitch(self.lm[0]) if self.guard_dtype else None
        if self.rescore_on and switch is not None:
            self.switch = switch  # kept for the run: near ties are re-scored in fp32 (both tensor sets kept)
        if switch is not None and not o.batch_check:
            switch.low()  # no check asked for: bf16 as picked
            switch = None
        first = list(range(min(n, o.canary_k)))
        outcome = run_canary(lambda sub, bs: labels(first[:len(sub)], bs), [str(i) for i in first], o.batch_size,
                             k=o.canary_k, precision=switch, enabled=o.batch_check, say=log.warning)
        if self.switch is not None and not self.switch.is_low:
            self.switch = None  # the canary chose fp32: every label is fp32's already, nothing to re-score
        if switch is not None and self.switch is None:
            switch.release()
        self.guard_dtype = False  # the dtype is settled for this backend's later calls (fp32 copy released)
        self.run_info["canary"] = outcome
        return int(outcome["batch_size_used"])

    def _rescore_info(self) -> dict[str, Any]:
        """What the record says about the near-tie re-scoring (counted over the items this backend scored)."""
        o = self.options
        if not self.rescore_on:
            if o.mode == "generate" and self.dtype == "bfloat16":
                why = "generation: bf16 can change generated text (docs/speed.md); --dtype float32 is the exact path"
            elif o.rescore_margin == 0:
                why = "off (--rescore-margin 0): plain bf16 labels"
            else:
                why = f"not applied: {self.dtype} {'as asked by --dtype' if o.dtype not in (None, 'auto') else ''}"
            return {"active": False, "reason": why.strip()}
        if self.switch is None:
            return {"active": False, "margin": self.rescore_margin, "reason": "the canary chose fp32 for this run"}
        how = ("--rescore-margin" if o.rescore_margin is not None else
               {"calibrated on the canary's items": self.calibration} if self.calibration else
               "eval.lm.infer.RESCORE_MARGIN (no canary ran)")
        return {"active": True, "margin": round(self.rescore_margin or 0.0, 4), "margin_from": how, "items": 0,
                "rescored": 0, "rule": "bf16 scores; items whose bf16 top-two label margin is below `margin` nats "
                                       "are re-scored in fp32 (docs/speed.md)"}
