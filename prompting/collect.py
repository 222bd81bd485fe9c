"""Ask a backend for the prompts the cache cannot answer, writing each answer to the cache as it arrives.

Progress goes to a tqdm bar (examples/s and ETA). An interruption (Ctrl-C, kill, a BackendError) loses only the
requests in flight; the next run with the same content asks only for what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from prompting.backends import Backend
from prompting.cache import Answer, AnswerCache, cache_key


@dataclass
class Collected:
    answers: list[Answer]
    asked: int  # prompts sent to the model this time
    from_cache: int
    wall_s: float  # time spent asking (0 when everything came from the cache)


def collect(backend: Backend, prompts: Sequence[str], cache: AnswerCache, identity: Mapping[str, Any],
            retry_errors: bool = False, desc: str = "answers", stop: Sequence[str] = ()) -> Collected:
    keys = [cache_key(identity, p) for p in prompts]
    known = cache.get_many(keys)
    if retry_errors:
        known = {k: a for k, a in known.items() if a.ok}
    # identical prompts (duplicate texts) are asked once
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    todo_keys = [k for k in first if k not in known]
    todo_prompts = [prompts[first[k]] for k in todo_keys]
    t0 = time.perf_counter()
    if todo_keys:
        backend.ready()
        actual = {**identity, **backend.identity()}
        if actual != dict(identity):  # loading revealed other weights than predicted: key on what was loaded
            return collect(backend, prompts, cache, actual, retry_errors, desc, stop)
        with tqdm(total=len(todo_keys), desc=desc, unit="ex", dynamic_ncols=True) as bar:
            def on_answer(i: int, answer: Answer) -> None:
                cache.put(todo_keys[i], answer)
                known[todo_keys[i]] = answer
                bar.update(1)
                if not answer.ok:
                    bar.set_postfix_str(f"last error: {answer.error[:60]}")

            backend.answer_all(todo_prompts, on_answer, stop=stop)
    wall = time.perf_counter() - t0 if todo_keys else 0.0
    asked = set(todo_keys)
    return Collected(answers=[known[k] for k in keys], asked=len(asked),
                     from_cache=sum(k not in asked for k in keys), wall_s=wall)
