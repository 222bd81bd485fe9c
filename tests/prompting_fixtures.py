"""Shared helpers for the prompting tests: a tiny local data set and a scheme with words and digits."""

from __future__ import annotations

import csv
from pathlib import Path

from eval.scoring.labels import LabelScheme

SCHEME = LabelScheme.from_labels(["negative", "positive"], {"negative": ["negative", "0"],
                                                            "positive": ["positive", "1"]})

GOOD = ["great", "lovely", "superb", "wonderful", "excellent", "fine", "brilliant", "pleasant", "nice", "fantastic"]
BAD = ["awful", "terrible", "dreadful", "horrible", "poor", "nasty", "bad", "boring", "weak", "dull"]


def write_reviews(path: Path, n: int = 100) -> Path:
    """n short reviews, half positive: 'review 7: a great film' -> positive."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            pos = i % 2 == 0
            word = (GOOD if pos else BAD)[i % 10]
            w.writerow([f"review {i}: a {word} film", "positive" if pos else "negative"])
    return path


def oracle(prompt: str) -> str:
    """The right label for the last input of a rendered prompt (what a perfect model would say)."""
    last = prompt.rsplit("### Input:", 1)[-1]
    return "positive" if any(f" {w} " in last for w in GOOD) else "negative"
