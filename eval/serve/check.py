"""The parity check: a served run, asked for its own test items, answers what its per-example file recorded.

The test texts go through the HTTP app in-process (httpx over ASGI, several requests in flight so the dynamic
batcher really gathers them), and each label is compared with the `pred` of the run's JSONL (INVALID included)."""

from __future__ import annotations

import asyncio
from typing import Any

from eval.run.records import load_examples
from eval.serve.load import Served
from eval.serve.predictor import ServeError


async def _ask(client: Any, texts: list[str], per_request: int, concurrency: int) -> list[dict]:
    chunks = [texts[i:i + per_request] for i in range(0, len(texts), per_request)]
    out: list[list[dict] | None] = [None] * len(chunks)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            r = await client.post("/v1/classify", json={"texts": chunks[i]})
            if r.status_code != 200:
                raise ServeError(f"the server refused test item(s) {i * per_request}..: {r.text}")
            out[i] = r.json()["predictions"]

    await asyncio.gather(*(one(i) for i in range(len(chunks))))
    return [p for chunk in out for p in (chunk or [])]


async def _ask_app(app: Any, texts: list[str], per_request: int, concurrency: int) -> list[dict]:
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve", timeout=None) as client:
            return await _ask(client, texts, per_request, concurrency)


async def _ask_url(url: str, texts: list[str], per_request: int, concurrency: int) -> list[dict]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        return await _ask(client, texts, per_request, concurrency)


def _texts(record: dict, rows: list[dict]) -> list[str]:
    """The rows' texts: in the rows (records since the text was logged), else the task's test items by id."""
    if all("text" in r for r in rows):
        return [r["text"] for r in rows]
    from eval.inputs.dataref import load_ref

    task = load_ref(record["task"], record.get("data"))
    by_id = {e.id: e.text for e in task.test(record.get("n_eval_requested"))}
    missing = [r["id"] for r in rows if r["id"] not in by_id]
    if missing:
        raise ServeError(f"test items {missing[:3]} of the record are not in task {record['task']}'s test split "
                         "any more (the data changed since the run)")
    return [by_id[r["id"]] for r in rows]


def parity(served: Served, app: Any = None, *, url: str | None = None, per_request: int = 8,
           concurrency: int = 4) -> dict:
    """{n, agree, rate, mismatches}: the labels the app (in-process) or the server at `url` gives the record's test
    items, against its per-example file."""
    rows = load_examples(served.record)
    if not rows:
        raise ServeError(f"{served.path}: its per-example file is missing, so there is nothing to check against")
    texts = _texts(served.record, rows)
    ask = _ask_url(url, texts, per_request, concurrency) if url else _ask_app(app, texts, per_request, concurrency)
    preds = asyncio.run(ask)
    mismatches = [{"id": r["id"], "recorded": r["pred"], "served": p["label"]} for r, p in zip(rows, preds)
                  if p["label"] != r["pred"]]
    n = len(rows)
    return {"n": n, "agree": n - len(mismatches), "rate": (n - len(mismatches)) / n, "mismatches": mismatches}
