"""What a served model is to the server: a `Predictor`, built by the run's track (its `Track.predictor`).

The server never names a track: `eval/tracks.py` says, per track, which function builds the predictor of a record
(`"module:function"`, imported only when a run of that track is served), and that function returns an object with
this shape. Each prediction is a dict: `label` (a task label, or eval.scoring.labels.INVALID for a generated answer
with no label in it), `scores` (per-label probabilities or log-likelihoods where the approach has them, else None),
`status` (eval.scoring.labels.parse_answer's parse status; "valid" for classifiers) and, optionally, `raw` (the
generated text) and `truncated` (the text was cut to the model's length, as in the evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Predictor(Protocol):
    labels: list[str]  # the task's labels
    batch_size: int  # texts per model call: the evaluation's batch size (the batcher's largest batch)
    score_kind: str | None  # "probability", "log-likelihood", or None (generated answers have no scores)
    facts: dict  # what was loaded (files, dtype, decoding): shown by GET /v1/info

    def too_long(self, text: str) -> str | None:
        """Why this text cannot be served (names the limit and where it comes from), or None."""
        ...

    def predict(self, texts: Sequence[str]) -> list[dict]:
        """One prediction per text, in order, computed as the evaluation computed its test items."""
        ...


class NoArtifacts(Exception):
    """The run kept nothing to serve. `what`: what is missing; `flag`: the track CLI flag that keeps it."""

    def __init__(self, what: str, flag: str) -> None:
        super().__init__(what)
        self.what, self.flag = what, flag


class ServeError(Exception):
    """A problem with what was asked to be served; the message names the fix (the CLI prints it, exit 2)."""
