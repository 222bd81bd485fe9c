"""Evaluation of the SFT model, identical before and after training, on the same prompts.

- generate: greedy, a few new tokens, batched with left padding and sorted by length (eval.lm.causal.generate), then
  the harness extraction (never guesses: no label word -> INVALID, counted wrong and in the valid rate);
- score: one forward pass per prompt reading the last position's logits over the verbalizers' first tokens, or the
  full verbalizer log-likelihood when first tokens are shared (eval.lm.causal.score_labels) -> valid by construction.

Both reuse the prompts' shared prefix (the instruction) once per evaluation (eval/lm/infer.py). Before each
evaluation the canary (eval/lm/canary.py) compares batch-1 and batch-N labels on the first 16 prompts, and bf16
autocast against fp32 when autocast is on; the batch size / precision that agree are used and recorded.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finetune.formatting import Formatter

MODES = {"generate": ("generate",), "score": ("score",), "both": ("generate", "score")}


@dataclass
class ModeResult:
    preds: list[str]
    raws: list[str]
    seconds: float
    statuses: list[str] | None = None  # parse status per example (eval.scoring.labels.parse_answer); None: scored
    run: dict = field(default_factory=dict)  # what ran: batch size, precision, prefix tokens, the canary outcome

    def row_fields(self) -> list[dict]:
        """What each per-example row needs so eval/scoring/rescore.py re-scores it exactly: the parse status, or for
        label scoring (whose raw output is the label scores, not text) a `scored` mark so the stored label is kept."""
        if self.statuses is None:
            return [{"scored": True, "status": "valid"} for _ in self.preds]
        return [{"status": s} for s in self.statuses]


def predict_generate(model: Any, tok: Any, prompts: Sequence[str], fmt: Formatter, *, batch_size: int,
                     max_new_tokens: int) -> ModeResult:
    from eval.lm.causal import generate
    from eval.scoring.labels import parse_answer

    t0 = time.perf_counter()
    stats: dict = {}
    raws = generate(model, tok, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size, stats=stats)
    parsed = [parse_answer(r, fmt.scheme) for r in raws]
    return ModeResult([p for p, _ in parsed], raws, time.perf_counter() - t0, [s for _, s in parsed], stats)


def predict_score(model: Any, tok: Any, prompts: Sequence[str], fmt: Formatter, *, batch_size: int) -> ModeResult:
    from eval.lm.causal import score_labels

    t0 = time.perf_counter()
    stats: dict = {}
    # the candidates and the prefix that joins them to the prompt are exactly the trained completions
    scores = score_labels(model, tok, list(prompts), fmt.verbalizers, batch_size=batch_size,
                          prefix=fmt.answer_prefix, stats=stats)
    labels = list(fmt.scheme.labels)
    preds = [labels[max(range(len(row)), key=row.__getitem__)] for row in scores]
    raws = [json.dumps({lab: round(s, 4) for lab, s in zip(labels, row)}) for row in scores]
    return ModeResult(preds, raws, time.perf_counter() - t0, run=stats)


def evaluate(model: Any, tok: Any, prompts: Sequence[str], fmt: Formatter, *, eval_mode: str, batch_size: int,
             max_new_tokens: int, batch_check: bool = True, autocast: bool = False) -> dict[str, ModeResult]:
    """{mode: predictions} for each mode of `eval_mode` (generate | score | both).

    The canary runs first, on the first mode (generate when asked for); its batch size and precision are used for
    every mode. `autocast`: bf16 autocast over fp32 weights (a CPU with native bf16), checked against fp32."""
    from eval.lm.canary import AutocastSwitch, run_canary

    modes = MODES[eval_mode]
    switch = AutocastSwitch(str(getattr(model, "device", "cpu")).split(":")[0]) if autocast else None

    def run(mode: str, sub: Sequence[str], bs: int) -> ModeResult:
        with switch.context() if switch else contextlib.nullcontext():
            if mode == "generate":
                return predict_generate(model, tok, sub, fmt, batch_size=bs, max_new_tokens=max_new_tokens)
            return predict_score(model, tok, sub, fmt, batch_size=bs)

    canary = run_canary(lambda sub, bs: run(modes[0], sub, bs).preds, prompts, batch_size, precision=switch,
                        enabled=batch_check)
    size = int(canary["batch_size_used"])
    out: dict[str, ModeResult] = {}
    for mode in modes:
        out[mode] = run(mode, prompts, size)
        out[mode].run.update(batch_size=size, precision=canary["dtype_used"] or "as loaded", canary=canary)
    return out
