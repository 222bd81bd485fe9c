"""The HTTP API of a served run (FastAPI; uvicorn runs it): docs/serve.md.

    POST /v1/classify {"texts": ["...", ...]}  -> a label per text (+ per-label scores, parse status), run id
    GET  /health                                -> the process answers
    GET  /ready                                 -> the model is loaded and the server is not draining (else 503)
    GET  /v1/info                               -> run id, task, labels, the record's metrics with their CI, limits
    GET  /docs, /openapi.json                   -> OpenAPI

Bad input gets a 4xx whose `detail` is one line naming the fix, checked before the model is called: an empty list,
non-strings (422), too many texts per request or a text over the model's limit (413), a body that is not JSON (415).
"""

# no `from __future__ import annotations`: FastAPI reads the request and response models from live annotations

import logging
import os
import socket
import time
from contextlib import asynccontextmanager
from typing import Any

from eval.serve.batching import Batcher
from eval.serve.load import Served

log = logging.getLogger("eval.serve")


def create_app(served: Served, *, max_texts: int = 64, max_batch: int | None = None, max_wait_ms: float = 0.0,
               batching: bool = True) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictStr

    predictor, rec = served.predictor, served.record
    batch = max_batch or predictor.batch_size
    batcher = Batcher(predictor.predict, max_batch=batch, max_wait_ms=max_wait_ms, enabled=batching)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's lifespan protocol
        await batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False  # draining: /ready says 503 while queued requests finish
        await batcher.close()
        log.info("stopped: every queued request was answered (%d model calls, %d texts)", batcher.stats["batches"],
                 batcher.stats["texts"])

    class ClassifyRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[StrictStr] = Field(min_length=1, description=f"the texts to classify (1 to {max_texts})")

    class Prediction(BaseModel):
        label: str = Field(description="one of the task's labels, or INVALID: a generated answer without a label")
        scores: dict[str, float] | None = Field(None, description=f"per label: {predictor.score_kind or 'none'}")
        status: str = Field(description="parse status (eval.scoring.labels.parse_answer): valid for classifiers")
        raw: str | None = Field(None, description="the generated answer, for generating LLMs")
        truncated: bool = Field(False, description="the text was cut to the model's length, as in the evaluation")

    class ClassifyResponse(BaseModel):
        run_id: str
        track: str
        model: str
        predictions: list[Prediction]
        latency_ms: float

    app = FastAPI(title=f"tune-or-prompt: {rec['track']} {rec['model']} {rec['method']}", lifespan=lifespan,
                  description=f"Serves run {rec['run_id']} ({served.describe()}). docs/serve.md")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        msg = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        hint = ' (send {"texts": ["a text", ...]})'
        return JSONResponse(status_code=422, content={"detail": msg + hint, "errors": _plain(errors)})

    @app.middleware("http")
    async def request_log(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        response = await call_next(request)
        response.headers["x-served-by"] = f"{socket.gethostname()}:{os.getpid()}"  # which replica answered
        log.info("%s %s %d %.1f ms", request.method, request.url.path, response.status_code,
                 (time.perf_counter() - t0) * 1000)
        return response

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = state["ready"]
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "run_id": served.run_id})

    @app.get("/v1/info")
    async def info() -> dict:
        m = rec["metrics"]
        return {"run_id": served.run_id, "track": rec["track"], "task": rec["task"], "model": rec["model"],
                "method": rec["method"], "n_train": rec["n_train"], "seed": rec["seed"], "labels": rec["labels"],
                "record": str(served.path), "model_id": rec.get("model_id"),
                "metrics": {"n": m.get("n"), "accuracy": m.get("accuracy"), "accuracy_ci": m.get("accuracy_ci"),
                            "macro_f1": m.get("macro_f1"), "valid_rate": m.get("valid_rate"),
                            "majority_baseline": m.get("majority_baseline"), "ci": "95% bootstrap over test items"},
                "served": {**predictor.facts, "score_kind": predictor.score_kind},
                "limits": {"max_texts": max_texts, "batching": batching, "max_batch": batcher.max_batch,
                           "max_wait_ms": batcher.max_wait * 1000},
                "batches": dict(batcher.stats), "notes": served.notes}

    @app.post("/v1/classify", response_model=ClassifyResponse,
              responses={413: {"description": "too many texts, or a text over the model's limit"},
                         415: {"description": "the body is not JSON"}, 422: {"description": "not {texts: [str]}"}})
    async def classify(body: ClassifyRequest) -> Any:
        t0 = time.perf_counter()
        if len(body.texts) > max_texts:
            return JSONResponse(status_code=413, content={
                "detail": f"{len(body.texts)} texts in one request; this server takes at most {max_texts} "
                          "(split the list, or start it with --max-texts)"})
        for i, text in enumerate(body.texts):
            if not text.strip():
                return JSONResponse(status_code=422, content={"detail": f"texts[{i}] is empty"})
            problem = predictor.too_long(text)
            if problem:
                return JSONResponse(status_code=413, content={"detail": f"texts[{i}]: {problem}"})
        if not state["ready"]:
            return JSONResponse(status_code=503, content={"detail": "the server is shutting down"})
        try:
            preds = await batcher.submit(body.texts)
        except Exception as exc:  # the model call failed: this request (and its batch) get the reason, not a crash
            log.exception("model call failed")
            return JSONResponse(status_code=500, content={"detail": f"the model call failed: {exc}"})
        return {"run_id": served.run_id, "track": rec["track"], "model": rec["model"], "predictions": preds,
                "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.middleware("http")
    async def json_only(request: Request, call_next: Any) -> Any:
        if request.method == "POST":
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return JSONResponse(status_code=415, content={
                    "detail": f"the body must be JSON (Content-Type: application/json), got {kind or 'none'!r}"})
        return await call_next(request)

    app.state.batcher = batcher
    return app


def _plain(errors: Any) -> Any:
    """Pydantic's error list as JSON (its `ctx` may hold exception objects)."""
    import json

    return json.loads(json.dumps(errors, default=str))
