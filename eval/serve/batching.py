"""Dynamic batching: requests that arrive together share one model call.

The pattern of Hugging Face Text Embeddings Inference, Triton's dynamic batcher and Ray Serve's `@serve.batch`: the
first waiting request opens a batch, which takes the requests queued behind it until it holds `max_batch` texts or
`max_wait_ms` have passed (0, the default: it takes what queued while the previous call ran, so a lone request
never waits and a busy server still batches), then runs as one model call in a worker thread (one call at a time:
the model's threads already use the cores). Answers do not depend on the batch: each predictor sorts, pads and (for
LLMs) reuses the prompt prefix exactly as its evaluation did (docs/serve.md), and tests/test_serve.py checks that
batching on and off give the same labels. Off (`enabled=False`), each request is its own model call, one at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class _Item:
    texts: list[str]
    future: asyncio.Future
    t_in: float


class Batcher:
    def __init__(self, predict: Callable[[Sequence[str]], list[dict]], *, max_batch: int, max_wait_ms: float,
                 enabled: bool = True) -> None:
        self.predict = predict
        self.max_batch = max(1, int(max_batch)) if enabled else 1
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000 if enabled else 0.0
        self.enabled = enabled
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.queue: asyncio.Queue[_Item] | None = None
        self.task: asyncio.Task | None = None
        self.stats = {"batches": 0, "texts": 0, "largest_batch": 0}

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def submit(self, texts: list[str]) -> list[dict]:
        assert self.queue is not None, "Batcher.start() first"
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(_Item(list(texts), fut, time.perf_counter()))
        return await fut

    async def close(self) -> None:
        """Finish every queued request, then stop (graceful shutdown: in-flight requests get their answers)."""
        if self.queue is not None:
            await self.queue.join()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.pool.shutdown(wait=True)

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            size = len(items[0].texts)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                left = deadline - loop.time()
                try:
                    nxt = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                items.append(nxt)
                size += len(nxt.texts)
            texts = [t for it in items for t in it.texts]
            try:
                out = await loop.run_in_executor(self.pool, self.predict, texts)
                if len(out) != len(texts):
                    raise RuntimeError(f"the predictor returned {len(out)} answers for {len(texts)} texts")
                start = 0
                for it in items:
                    if not it.future.done():
                        it.future.set_result(out[start:start + len(it.texts)])
                    start += len(it.texts)
                self.stats["batches"] += 1
                self.stats["texts"] += len(texts)
                self.stats["largest_batch"] = max(self.stats["largest_batch"], len(texts))
            except Exception as exc:  # the request(s) get the error; the server keeps serving
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(exc)
            finally:
                for _ in items:
                    self.queue.task_done()
