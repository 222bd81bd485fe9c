"""Concurrent requests with retries, shared by the HTTP backends.

`fan_out` keeps `concurrency` requests in flight and reports each answer as it arrives. `ask` classifies a failure:
`Retry` (timeout, 5xx, dropped connection) is retried with exponential backoff and, if it keeps failing, becomes an
error answer (counted INVALID, never a crash); a BackendError raised by `one`
(server down, model missing) stops the run; answers already reported are kept by the caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from prompting.backends import BackendError
from prompting.cache import Answer


class Retry(Exception):
    """A failure worth another attempt; the message is what gets recorded if attempts run out.

    With `fatal` set (e.g. the server went away mid-run) running out of attempts raises it instead: recording every
    remaining example as an error would only force a `--retry-errors` rerun.
    """

    def __init__(self, message: str, fatal: BackendError | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal


async def ask(call: Callable[[], Awaitable[Answer]], retries: int, backoff: float) -> Answer:
    last: Retry | None = None
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
        start = time.perf_counter()
        try:
            answer = await call()
        except Retry as e:
            last = e
            continue
        answer.meta.setdefault("seconds", round(time.perf_counter() - start, 3))
        if attempt:
            answer.meta["attempts"] = attempt + 1
        return answer
    if last is not None and last.fatal is not None:
        raise last.fatal
    return Answer(error=f"{last} (gave up after {retries + 1} attempts)")


def fan_out(prompts: Sequence[str], one: Callable[[str], Awaitable[Answer]], concurrency: int,
            on_answer: Callable[[int, Answer], None],
            setup: Callable[[], Awaitable[None]] | None = None,
            teardown: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run `one(prompt)` for every prompt, at most `concurrency` at a time, calling `on_answer` in arrival order."""

    async def main() -> None:
        if setup:
            await setup()
        sem = asyncio.Semaphore(max(1, concurrency))

        async def numbered(i: int) -> tuple[int, Answer]:
            async with sem:
                return i, await one(prompts[i])

        tasks = [asyncio.create_task(numbered(i)) for i in range(len(prompts))]
        try:
            for fut in asyncio.as_completed(tasks):
                i, answer = await fut
                on_answer(i, answer)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if teardown:
                await teardown()

    asyncio.run(main())
