"""Evaluation of the SFT model, identical before and after training, on the same prompts.

- generate: greedy, a few new tokens, batched with left padding and sorted by length (eval.lm.generate), then the
  harness extraction (never guesses: no label word -> INVALID, counted wrong and in the valid rate);
- score: one forward pass per prompt reading the last position's logits over the verbalizers' first tokens, or the
  full verbalizer log-likelihood when first tokens are shared (eval.lm.score_labels) -> valid by construction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finetune.formatting import Formatter

MODES = {"generate": ("generate",), "score": ("score",), "both": ("generate", "score")}


@dataclass
class ModeResult:
    preds: list[str]
    raws: list[str]
    seconds: float
    statuses: list[str] | None = None  # parse status per example (eval.labels.parse_answer); None: scored

    def row_fields(self) -> list[dict]:
        """What each per-example row needs so eval/score.py re-scores it exactly: the parse status, or for label
        scoring (whose raw output is the label scores, not text) a `scored` mark so the stored label is kept."""
        if self.statuses is None:
            return [{"scored": True, "status": "valid"} for _ in self.preds]
        return [{"status": s} for s in self.statuses]


def predict_generate(model: Any, tok: Any, prompts: Sequence[str], fmt: Formatter, *, batch_size: int,
                     max_new_tokens: int) -> ModeResult:
    from eval.labels import parse_answer
    from eval.lm import generate

    t0 = time.perf_counter()
    raws = generate(model, tok, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size)
    parsed = [parse_answer(r, fmt.scheme) for r in raws]
    return ModeResult([p for p, _ in parsed], raws, time.perf_counter() - t0, [s for _, s in parsed])


def predict_score(model: Any, tok: Any, prompts: Sequence[str], fmt: Formatter, *, batch_size: int) -> ModeResult:
    from eval.lm import score_labels

    t0 = time.perf_counter()
    # the candidates and the prefix that joins them to the prompt are exactly the trained completions
    scores = score_labels(model, tok, list(prompts), fmt.verbalizers, batch_size=batch_size,
                          prefix=fmt.answer_prefix)
    labels = list(fmt.scheme.labels)
    preds = [labels[max(range(len(row)), key=row.__getitem__)] for row in scores]
    raws = [json.dumps({lab: round(s, 4) for lab, s in zip(labels, row)}) for row in scores]
    return ModeResult(preds, raws, time.perf_counter() - t0)


def evaluate(model: Any, tok: Any, prompts: Sequence[str], fmt: Formatter, *, eval_mode: str, batch_size: int,
             max_new_tokens: int) -> dict[str, ModeResult]:
    """{mode: predictions} for each mode of `eval_mode` (generate | score | both)."""
    out: dict[str, ModeResult] = {}
    for mode in MODES[eval_mode]:
        if mode == "generate":
            out[mode] = predict_generate(model, tok, prompts, fmt, batch_size=batch_size,
                                         max_new_tokens=max_new_tokens)
        else:
            out[mode] = predict_score(model, tok, prompts, fmt, batch_size=batch_size)
    return out
