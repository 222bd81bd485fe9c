"""Per-example answer cache keyed by content, so an interrupted run resumes where it stopped.

The key is a hash of everything that changes an answer: backend, model id, prompt version, generation options and
the rendered prompt (which contains the text and any few-shot examples). Nothing about hardware, batch layout or
example order goes in (lm-eval #2140). One sqlite file under `<results-dir>/cache/`; every answer is committed as
it arrives, so killing the process loses at most the requests in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Answer:
    """One model call's outcome. `text` is the raw output, reasoning included; `error` is set when it failed."""

    text: str | None = None
    error: str | None = None
    truncated: bool = False  # stopped by the token limit (a reasoning block cut off here is INVALID)
    meta: dict[str, Any] = field(default_factory=dict)  # tokens, done_reason, label scores, seconds

    @property
    def ok(self) -> bool:
        return self.error is None


def cache_key(identity: Mapping[str, Any], prompt: str) -> str:
    blob = json.dumps({"identity": identity, "prompt": prompt}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AnswerCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL, "
                         "error INTEGER NOT NULL, created REAL NOT NULL)")
        self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Answer] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self._db.execute(f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(chunk))})",
                                    chunk)
            for key, blob in rows:
                found[key] = Answer(**json.loads(blob))
        return found

    def put(self, key: str, answer: Answer) -> None:
        self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                         (key, json.dumps(asdict(answer), ensure_ascii=False), int(not answer.ok), time.time()))
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
