"""Label schemes and answer extraction.

`parse_answer(raw_text, scheme, ...)` turns a model's raw output into `(label, status)`: one of the scheme's labels
with status `valid`, or `INVALID` with the reason (`no_label`, `empty`, `truncated`, `error`); `extract` is its label.
Rules (each one is a trap this field is known for):
- closed `<think>…</think>` blocks are removed; a block still open at the end (cut off by the token limit) is INVALID;
  a stray `</think>` (the prompt opened the block) keeps only what follows it;
- the *last* label mention wins (models repeat the instruction's label list before answering);
- verbalizers match case-insensitively, in words or digits as the scheme defines, on word boundaries for
  alphanumeric verbalizers and anywhere for CJK ones (Chinese has no spaces);
- no match is INVALID: extraction never guesses, and INVALID is counted wrong in accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

INVALID = "[invalid]"

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def _is_wordish(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


@dataclass(frozen=True)
class LabelScheme:
    """Class labels and the strings that name them in model output.

    `verbalizers[label][0]` is the canonical verbalizer: the SFT target, the label-scoring candidate and the word
    prompts ask for. Later entries are also accepted by extraction (e.g. the digit a prompt may ask for instead).
    """

    labels: tuple[str, ...]
    verbalizers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    version: str = "1"
    topic: str = ""  # what the labels classify ("sentiment"), named in prompts when set; the task YAML gives it

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError(f"a label scheme needs at least two distinct labels, got {list(self.labels)}")
        verbs = {lab: tuple(self.verbalizers.get(lab) or (lab,)) for lab in self.labels}
        unknown = sorted(set(self.verbalizers) - set(self.labels))
        if unknown:
            raise ValueError(f"verbalizers given for unknown labels {unknown}; labels are {list(self.labels)}")
        seen: dict[str, str] = {}
        for lab, words in verbs.items():
            for w in words:
                key = w.casefold()
                if key in seen and seen[key] != lab:
                    raise ValueError(f"verbalizer {w!r} names both {seen[key]!r} and {lab!r}")
                seen[key] = lab
        object.__setattr__(self, "verbalizers", verbs)
        object.__setattr__(self, "_lookup", seen)
        object.__setattr__(self, "_pattern", _compile(seen))

    @classmethod
    def from_labels(cls, labels: Sequence[str], verbalizers: Mapping[str, Sequence[str]] | None = None,
                    version: str = "1", topic: str = "") -> LabelScheme:
        verbs = {k: tuple(str(x) for x in v) for k, v in (verbalizers or {}).items()}
        return cls(labels=tuple(str(x) for x in labels), verbalizers=verbs, version=str(version), topic=topic)

    def verbalizer(self, label: str) -> str:
        """The canonical word for a label (training target, scoring candidate)."""
        return self.verbalizers[label][0]

    def label_of(self, verbalizer: str) -> str:
        return self._lookup[verbalizer.casefold()]  # type: ignore[attr-defined]

    def extract(self, raw: str | None, think_open: bool = False) -> str:
        return extract(raw, self, think_open=think_open)

    def to_dict(self) -> dict:
        out = {"labels": list(self.labels), "verbalizers": {k: list(v) for k, v in self.verbalizers.items()},
                "version": self.version}
        if self.topic:  # only when set: records of tasks without a topic keep their shape
            out["topic"] = self.topic
        return out


def _compile(lookup: Mapping[str, str]) -> re.Pattern[str]:
    parts = []
    for word in sorted(lookup, key=len, reverse=True):  # longest first: "very positive" before "positive"
        pat = re.escape(word)
        if _is_wordish(word[0]):
            pat = r"(?<![A-Za-z0-9_])" + pat
        if _is_wordish(word[-1]):
            pat = pat + r"(?![A-Za-z0-9_])"
        parts.append(pat)
    return re.compile("|".join(parts), re.IGNORECASE)


def strip_think(raw: str, think_open: bool = False) -> str | None:
    """Remove reasoning. Returns None when the reasoning never closed (the answer was cut off).

    `think_open=True` means the prompt itself opened a `<think>` block, so the output must close it.
    """
    text = raw
    if think_open:
        close = list(_THINK_CLOSE.finditer(text))
        if not close:
            return None
        text = text[close[-1].end():]
    text = _THINK_BLOCK.sub(" ", text)
    if _THINK_OPEN.search(text):
        return None
    close = list(_THINK_CLOSE.finditer(text))
    if close:  # a stray closing tag: the block was opened before the output started
        text = text[close[-1].end():]
    return text


def extract(raw: str | None, scheme: LabelScheme, think_open: bool = False) -> str:
    """Map raw model output to a label of `scheme`, or INVALID. Never guesses. (`parse_answer` also says why.)"""
    return parse_answer(raw, scheme, think_open=think_open)[0]

# Why an answer is not a label (docs/decide.md, "Parse status"). `valid` is the only status that carries a label.
STATUSES = ("valid", "no_label", "empty", "truncated", "error")


def parse_answer(raw: str | None, scheme: LabelScheme, *, think_open: bool = False, truncated: bool = False,
                 reasoning: bool = False, error: str | None = None) -> tuple[str, str]:
    """The one place a raw model answer becomes `(label, status)`; live runs and eval/scoring/rescore.py both call it,
    so a re-scoring reproduces a run's metrics exactly.

    - `error` set, or no text at all (`raw is None`): the request failed after its retries -> `error`;
    - `truncated`: the backend stopped at the token limit. For a prompt that asks for reasoning first
      (`reasoning=True`), text without a closed `</think>` is reasoning cut off -> `truncated`, never a guess from
      the half-written reasoning; for short answers a label found before the cut still counts;
    - a `<think>` block left open (or, with `think_open`, never closed) -> `truncated`;
    - nothing but whitespace (after removing reasoning) -> `empty`, or `truncated` when the limit was hit;
    - text without any verbalizer -> `no_label` (`truncated` when the limit was hit).
    """
    if error is not None or raw is None:
        return INVALID, "error"
    text = str(raw)
    if truncated and reasoning and "</think>" not in text.lower():
        return INVALID, "truncated"
    body = strip_think(text, think_open=think_open)
    if body is None:
        return INVALID, "truncated"
    last = None
    for m in scheme._pattern.finditer(body):  # type: ignore[attr-defined]
        last = m
    if last is not None:
        return scheme._lookup[last.group(0).casefold()], "valid"  # type: ignore[attr-defined]
    if truncated:
        return INVALID, "truncated"
    return INVALID, "empty" if not body.strip() else "no_label"
