"""prompting/backends/_fanout.py: requests in flight up to the concurrency, retries with backoff, a give-up that
becomes an error answer (counted INVALID, never a crash), and a fatal error that stops the run."""

from __future__ import annotations

import asyncio

import pytest

from prompting.backends import BackendError
from prompting.backends._fanout import Retry, ask, fan_out
from prompting.cache import Answer


def test_fan_out_caps_requests_in_flight_and_reports_every_answer() -> None:
    in_flight, peak, got = 0, 0, {}

    async def one(prompt: str) -> Answer:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01 if prompt.endswith("0") else 0.001)
        in_flight -= 1
        return Answer(text=prompt.upper())

    prompts = [f"p{i}" for i in range(10)]
    fan_out(prompts, one, concurrency=3, on_answer=lambda i, a: got.__setitem__(i, a.text))
    assert peak == 3 and got == {i: f"P{i}" for i in range(10)}


def test_a_retry_that_succeeds_counts_its_attempts() -> None:
    calls = []

    async def flaky() -> Answer:
        calls.append(1)
        if len(calls) < 3:
            raise Retry("503 from the server")
        return Answer(text="positive")

    answer = asyncio.run(ask(flaky, retries=3, backoff=0.001))
    assert answer.text == "positive" and answer.meta["attempts"] == 3 and "seconds" in answer.meta


def test_giving_up_is_an_error_answer_not_a_crash() -> None:
    async def down() -> Answer:
        raise Retry("timed out after 1 s")

    answer = asyncio.run(ask(down, retries=2, backoff=0.001))
    assert not answer.ok and "timed out" in answer.error and "3 attempts" in answer.error


def test_a_fatal_retry_stops_the_run_when_attempts_run_out() -> None:
    async def gone() -> Answer:
        raise Retry("connection refused", fatal=BackendError("the server went away: restart it"))

    with pytest.raises(BackendError, match="went away"):
        asyncio.run(ask(gone, retries=1, backoff=0.001))


def test_setup_and_teardown_run_around_the_requests() -> None:
    events = []

    async def setup() -> None:
        events.append("setup")

    async def teardown() -> None:
        events.append("teardown")

    async def one(prompt: str) -> Answer:
        events.append(prompt)
        return Answer(text=prompt)

    fan_out(["a"], one, concurrency=1, on_answer=lambda i, a: None, setup=setup, teardown=teardown)
    assert events == ["setup", "a", "teardown"]
