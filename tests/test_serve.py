"""`python -m eval.serve`: a served run answers its own test items exactly as its per-example file recorded (every
track, on small real runs), bad input gets a 4xx and the server keeps answering, batching changes no answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from eval.serve.app import create_app  # noqa: E402
from eval.serve.check import parity  # noqa: E402
from eval.serve.cli import main as serve_main  # noqa: E402
from eval.serve.load import load  # noqa: E402


def only_record(results: Path, track: str) -> Path:
    (path,) = [p for p in results.glob(f"runs/*/{track}/*.json")]
    return path


def assert_parity(record: Path, capsys: pytest.CaptureFixture, **kw: object) -> None:
    """The CLI's --check and, batching on and off, the app's answers equal the per-example file."""
    capsys.readouterr()
    assert serve_main([str(record), "--check"]) == 0
    out = capsys.readouterr().out
    assert "(100.0%)" in out, out
    served = load(str(record))
    for batching in (True, False):
        res = parity(served, create_app(served, batching=batching, **kw), per_request=3, concurrency=4)
        assert res["agree"] == res["n"] > 0, res["mismatches"][:5]


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from baseline import train as baseline

    results = tmp_path_factory.mktemp("baseline")
    assert baseline.cli(["--task", "drugs", "--n-train", "64", "--seeds", "0", "--class-weight", "balanced",
                         "--n-eval", "60", "--results-dir", str(results), "--save-model"]) == 0
    return only_record(results, "baseline")


def test_the_baseline_is_served_from_json_and_safetensors_with_parity(baseline_run: Path, capsys) -> None:
    art = baseline_run.parent / "artifacts" / baseline_run.stem
    assert sorted(p.name for p in art.iterdir()) == ["tfidf.json", "tfidf.safetensors"]  # no pickle anywhere
    assert_parity(baseline_run, capsys)


def test_a_run_without_artifacts_says_how_to_keep_them(tmp_path: Path, capsys) -> None:
    from baseline import train as baseline

    assert baseline.cli(["--task", "drugs", "--n-train", "16", "--seeds", "0", "--class-weight", "none",
                         "--n-eval", "20", "--results-dir", str(tmp_path)]) == 0
    record = only_record(tmp_path, "baseline")
    capsys.readouterr()
    assert serve_main([str(record), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "kept no artifacts" in err and "python baseline/train.py --task drugs --n-train 16" in err
    assert "--save-model --overwrite" in err
    # the command it prints keeps the run id (the option is outside it) and leaves a servable run
    from eval.run.records import RunSpec

    args = err.split("python baseline/train.py ", 1)[1].split() + ["--results-dir", str(tmp_path)]
    assert baseline.cli(args) == 0
    assert only_record(tmp_path, "baseline") == record and RunSpec.from_record(json.loads(record.read_text()))
    assert serve_main([str(record), "--check"]) == 0


def test_unknown_runs_are_refused_in_one_line(tmp_path: Path, capsys) -> None:
    assert serve_main(["nope__x__n1__eall__s0__00000000", "--results-dir", str(tmp_path)]) == 2
    assert "no record" in capsys.readouterr().err


def test_bad_input_gets_a_4xx_and_the_server_keeps_answering(baseline_run: Path) -> None:
    from fastapi.testclient import TestClient

    served = load(str(baseline_run))
    served.predictor.max_chars = 50
    with TestClient(create_app(served, max_texts=3)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").status_code == 200
        info = client.get("/v1/info").json()
        assert info["run_id"] == served.run_id and info["metrics"]["accuracy_ci"] and info["labels"]
        bad = [({"texts": []}, 422, "at least 1"), ({"texts": ["ok", 3]}, 422, "texts.1"),
               ({"texts": "a text"}, 422, "valid list"), ({"text": ["a"]}, 422, "texts"),
               ({"texts": ["a", "b", "c", "d"]}, 413, "at most 3"), ({"texts": ["x" * 51]}, 413, "at most 50"),
               ({"texts": ["  "]}, 422, "empty")]
        for body, status, words in bad:
            r = client.post("/v1/classify", json=body)
            assert r.status_code == status and words in r.json()["detail"], (body, r.text)
            ok = client.post("/v1/classify", json={"texts": ["worked wonders"]})
            assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] in info["labels"]
        r = client.post("/v1/classify", content="texts=hello", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "application/json" in r.json()["detail"]
        r = client.post("/v1/classify", content="{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        p = client.post("/v1/classify", json={"texts": ["worked wonders", "awful side effects"]}).json()
        assert p["run_id"] == served.run_id and len(p["predictions"]) == 2
        assert abs(sum(p["predictions"][0]["scores"].values()) - 1) < 1e-4
        assert "/v1/classify" in client.get("/openapi.json").json()["paths"]


# --- encoders ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["full", "lora", "setfit"])
def test_an_encoder_run_is_served_with_parity(tiny: dict, tmp_path: Path, method: str, capsys) -> None:
    from encoders import train as enc_train

    argv = ["--data", tiny["csv"], "--text-column", "text", "--label-column", "label", "--model",
            tiny["paths"]["bert"], "--method", method, "--n-train", "12", "--seeds", "0", "--results-dir",
            str(tmp_path), "--min-steps", "2", "--max-steps", "2", "--evals", "1", "--batch-size", "6",
            "--max-length", "24", "--lr", "1e-3", "--no-refit", "--eval-batch-size", "4", "--setfit-iterations", "2"]
    assert enc_train.cli(argv) == 0
    record = only_record(tmp_path, "encoders")
    assert_parity(record, capsys)
    served = load(str(record))
    assert served.predictor.too_long("the drug " * 200) and "context" in served.predictor.too_long("the drug " * 200)


# --- prompting, in-process ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,shots", [("generate", 0), ("score", 2)])
def test_an_in_process_prompting_run_is_served_with_parity(tiny_causal_lm: Path, tmp_path: Path, mode: str,
                                                           shots: int, capsys) -> None:
    from prompting_fixtures import write_reviews

    from prompting.run import PromptConfig, main

    data = write_reviews(tmp_path / "reviews.csv", 60)
    cfg = PromptConfig(model=f"hf/{tiny_causal_lm}", task=None, data=str(data), text_column="text",
                       label_column="label", results_dir=str(tmp_path), mode=mode, shots=[shots],
                       prompt="zeroshot" if shots == 0 else None, n_eval=[12], batch_size=4, max_new_tokens=4,
                       threads=1)
    assert main(cfg) == 0
    record = only_record(tmp_path, "prompting")
    assert_parity(record, capsys)
    served = load(str(record))
    preds = served.predictor.predict(["review 1: a lovely film"])
    assert preds[0]["status"] and (preds[0]["scores"] is not None) == (mode == "score")
    assert served.predictor.facts["prefix_tokens"] == json.loads(record.read_text())["details"]["prompting"][
        "runtime"]["prefix_tokens"]


def test_a_prompting_run_against_a_server_is_forwarded_to_it_with_parity(tmp_path: Path, capsys) -> None:
    from prompting_fixtures import oracle, write_reviews

    from prompting.fake_server import FakeServer, Reply
    from prompting.run import PromptConfig, main

    data = write_reviews(tmp_path / "reviews.csv")
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply("unsure" if "about nothing" in p else oracle(p))) as srv:
        cfg = PromptConfig(model="llama3.1", task=None, data=str(data), text_column="text", label_column="label",
                           results_dir=str(tmp_path), host=srv.url, retries=0, timeout=5.0, shots=[2],
                           n_eval=[12])
        assert main(cfg) == 0
        asked = len(srv.prompts())
        record = only_record(tmp_path, "prompting")
        assert_parity(record, capsys)
        assert len(srv.prompts()) > asked  # answered by the run's server, not from the run's answer cache
        served = load(str(record))
        (p,) = served.predictor.predict(["a text about nothing"])
        assert p["label"] == "[invalid]" and p["status"] != "valid" and p["raw"] == "unsure"


# --- finetune (SFT) --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eval_mode", ["generate", "score"])
def test_an_sft_run_is_served_from_its_adapter_with_parity(tiny_causal_lm: Path, tmp_path: Path, eval_mode: str,
                                                           capsys) -> None:
    pytest.importorskip("trl")
    from finetune.sft import cli

    argv = ["--model", str(tiny_causal_lm), "--task", "drugs", "--n-train", "12", "--seeds", "0", "--n-eval", "10",
            "--results-dir", str(tmp_path), "--max-seq-length", "64", "--max-steps", "3", "--batch-size", "4",
            "--learning-rate", "1e-2", "--backend", "hf", "--eval-mode", eval_mode, "--eval-batch-size", "4"]
    assert cli(argv) == 0
    record = only_record(tmp_path, "finetune")
    assert_parity(record, capsys)
    served = load(str(record))
    assert served.predictor.facts["prefix_tokens"] == served.predictor.facts["recorded_prefix_tokens"] or \
        served.predictor.facts["recorded_prefix_tokens"] is None


# --- Ray Serve -------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # a local Ray cluster and Serve's controller and proxy take a minute to start on 2 cores
@pytest.mark.ray
def test_ray_serve_with_two_replicas_passes_the_parity_check(baseline_run: Path) -> None:
    pytest.importorskip("ray.serve")
    import asyncio

    import httpx

    from eval.serve import ray_serve

    served = load(str(baseline_run))
    try:
        url = ray_serve.deploy(served.path, replicas=2, host="127.0.0.1", port=8798, app_kw={}, blocking=False)
        res = parity(served, url=url, per_request=2, concurrency=8)
        assert res["agree"] == res["n"] > 0, res["mismatches"][:5]

        async def who() -> set[str]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                rs = await asyncio.gather(*(c.post("/v1/classify", json={"texts": ["fine"]}) for _ in range(32)))
            return {r.headers["x-served-by"] for r in rs}

        assert len(asyncio.run(who())) == 2  # both replicas answered (Ray Serve's proxy spreads the requests)
    finally:
        ray_serve.shutdown()


# --- a committed record, on the offline model it names ---------------------------------------------------------------
COMMITTED_PROMPTING = (Path(__file__).resolve().parents[1] / "results" / "runs" / "drugs" / "prompting"
                       / "hf-gemma3-270m__fewshot-score__n2__e32__s0__f4f30173.json")


@pytest.mark.slow  # loads gemma3-270m (the offline package) and scores 32 items
def test_a_committed_prompting_record_is_served_with_parity(capsys) -> None:
    if not COMMITTED_PROMPTING.exists():
        pytest.skip("the committed record is not in this checkout")
    assert_parity(COMMITTED_PROMPTING, capsys)


def test_the_run_recommend_picks_is_served(tiny: dict, tmp_path: Path, capsys) -> None:
    from baseline import train as baseline

    assert baseline.cli(["--data", tiny["csv"], "--text-column", "text", "--label-column", "label", "--n-train",
                         "30", "--seeds", "0", "--results-dir", str(tmp_path), "--save-model"]) == 0  # two approaches
    task = json.loads(next(tmp_path.glob("runs/*/baseline/*.json")).read_text())["task"]
    capsys.readouterr()
    assert serve_main(["--task", task, "--labels", "30", "--results-dir", str(tmp_path), "--check"]) == 0
    captured = capsys.readouterr()
    assert "recommend picks baseline" in captured.err and "(100.0%)" in captured.out


# --- the batcher -----------------------------------------------------------------------------------------------------
def test_the_batcher_gathers_concurrent_requests_and_drains_on_close() -> None:
    import asyncio
    import time

    from eval.serve.batching import Batcher

    calls: list[list[str]] = []

    def predict(texts):  # a model call that takes a while, so requests queue behind it
        calls.append(list(texts))
        time.sleep(0.05)
        return [{"label": t.upper()} for t in texts]

    async def scenario(enabled: bool) -> tuple[list, list]:
        b = Batcher(predict, max_batch=8, max_wait_ms=0, enabled=enabled)
        await b.start()
        tasks = [asyncio.create_task(b.submit([f"t{i}", f"u{i}"])) for i in range(6)]
        await asyncio.sleep(0)  # every request is queued before the close
        await b.close()  # graceful: what is queued is answered first
        return [t.result() for t in tasks], list(calls)

    got, seen = asyncio.run(scenario(True))
    assert got == [[{"label": f"T{i}"}, {"label": f"U{i}"}] for i in range(6)]  # each request gets its own answers
    assert len(seen) < 6 and max(len(c) for c in seen) <= 8  # gathered, never over max_batch
    calls.clear()
    got_off, seen_off = asyncio.run(scenario(False))
    assert got_off == got and len(seen_off) == 6  # off: one model call per request


def test_a_failing_model_call_fails_its_requests_and_the_server_goes_on(baseline_run: Path) -> None:
    from fastapi.testclient import TestClient

    served = load(str(baseline_run))
    real = served.predictor.predict

    def flaky(texts):
        if "boom" in texts:
            raise RuntimeError("the model failed")
        return real(texts)

    served.predictor.predict = flaky
    with TestClient(create_app(served), raise_server_exceptions=False) as client:
        r = client.post("/v1/classify", json={"texts": ["boom"]})
        assert r.status_code == 500 and "the model failed" in r.json()["detail"]
        assert client.post("/v1/classify", json={"texts": ["worked wonders"]}).status_code == 200


def test_the_command_serves_on_loopback_says_what_and_where_and_stops_gracefully(baseline_run: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "eval.serve", str(baseline_run), "--port", str(port)], cwd=repo,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        r = httpx.post(f"{url}/v1/classify", json={"texts": ["worked wonders"]}, timeout=30)
        assert r.status_code == 200 and r.headers["x-served-by"]
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn's graceful shutdown, then the batcher drains
        err = proc.communicate(timeout=60)[1]
    # uvicorn re-raises the captured SIGTERM once it has shut down, so the exit status is the signal's
    assert proc.returncode in (0, -signal.SIGTERM) and "stopped: every queued request was answered" in err, err
    first = err.splitlines()[0] if err else ""
    assert "serving baseline tfidf-lr" in err and f"http://127.0.0.1:{port}" in err, first
    assert "POST /v1/classify 200" in err  # the request log line, with its latency
