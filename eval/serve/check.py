"""The parity check: a served run, asked for its own test items, answers what its per-example file recorded.

The test texts go through the HTTP app in-process (httpx over ASGI, several requests in flight so the dynamic
batcher really gathers them), and each label is compared with the `pred` of the run's JSONL (INVALID included)."""

from __future__ import annotations

import asyncio
import json
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


def margin(scores: dict[str, float] | None) -> float | None:
    """The best label's score minus the runner-up's (probabilities or log-likelihoods): how far an answer is from a
    tie. None without scores (a generated answer has none)."""
    from eval.lm.infer import margin as top_two_gap  # the near-tie rule's own gap (docs/speed.md)

    return top_two_gap(list(scores.values())) if scores and len(scores) > 1 else None


def recorded_scores(row: dict) -> dict[str, float] | None:
    """The per-label scores a row of the per-example file kept: score-mode LLM runs log them as the row's `raw`
    (a JSON object of log-likelihoods, `scored: true`); other rows have none."""
    if not row.get("scored") or not isinstance(row.get("raw"), str):
        return None
    try:
        scores = json.loads(row["raw"])
    except json.JSONDecodeError:
        return None
    return {str(k): float(v) for k, v in scores.items()} if isinstance(scores, dict) else None


def mismatch(row: dict, pred: dict) -> dict:
    """One item answered otherwise than recorded, with what tells a near-tie (a CPU kernel's rounding on another
    machine) from a real difference: the served margin between its two best labels and, where the record kept
    scores, the recorded one; the raw answers of generated runs."""
    rec_scores = recorded_scores(row)
    return {"id": row["id"], "recorded": row["pred"], "served": pred["label"],
            "served_margin": margin(pred.get("scores")), "recorded_margin": margin(rec_scores),
            "served_scores": pred.get("scores"), "recorded_scores": rec_scores,
            "recorded_raw": None if rec_scores else row.get("raw"), "served_raw": pred.get("raw")}


def describe(m: dict) -> str:
    """One line per mismatch for --check and test failures."""
    parts = [f"{m['id']}: recorded {m['recorded']!r}, served {m['served']!r}"]
    for side in ("served", "recorded"):
        if m.get(f"{side}_margin") is not None:
            parts.append(f"{side} margin {m[f'{side}_margin']:.6g} (scores {m[f'{side}_scores']})")
    if m.get("served_margin") is None and (m.get("served_raw") is not None or m.get("recorded_raw") is not None):
        parts.append(f"generated: recorded {m.get('recorded_raw')!r}, served {m.get('served_raw')!r}")
    return "; ".join(parts)


def parity(served: Served, app: Any = None, *, url: str | None = None, per_request: int = 8,
           concurrency: int = 4) -> dict:
    """{n, agree, rate, mismatches, predictions}: the labels the app (in-process) or the server at `url` gives the
    record's test items, against its per-example file; each mismatch carries its margins (`mismatch`)."""
    rows = load_examples(served.record)
    if not rows:
        raise ServeError(f"{served.path}: its per-example file is missing, so there is nothing to check against")
    texts = _texts(served.record, rows)
    ask = _ask_url(url, texts, per_request, concurrency) if url else _ask_app(app, texts, per_request, concurrency)
    preds = asyncio.run(ask)
    mismatches = [mismatch(r, p) for r, p in zip(rows, preds) if p["label"] != r["pred"]]
    n = len(rows)
    return {"n": n, "agree": n - len(mismatches), "rate": (n - len(mismatches)) / n, "mismatches": mismatches,
            "predictions": preds}
