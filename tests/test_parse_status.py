"""One answer->(label, status) function for live runs and re-scoring; re-scoring a run's log reproduces its metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prompting_fixtures import SCHEME, oracle, write_reviews

from eval.scoring import rescore as score
from eval.scoring.labels import INVALID, parse_answer
from eval.scoring.metrics import compute_metrics
from prompting.fake_server import FakeServer, Reply
from prompting.run import PromptConfig, main


@pytest.mark.parametrize("raw, kw, expected", [
    ("positive", {}, ("positive", "valid")),
    ("I think 0", {}, ("negative", "valid")),
    ("no idea", {}, (INVALID, "no_label")),
    ("   ", {}, (INVALID, "empty")),
    ("<think>hmm positive?</think>", {}, (INVALID, "empty")),  # nothing after the reasoning
    (None, {}, (INVALID, "error")),
    ("positive", {"error": "HTTP 500"}, (INVALID, "error")),
    ("<think>it is positive because", {}, (INVALID, "truncated")),  # reasoning never closed
    ("The review says positive and then", {"truncated": True, "reasoning": True}, (INVALID, "truncated")),
    ("reasons</think> negative", {"truncated": True, "reasoning": True}, ("negative", "valid")),
    ("positive, because the", {"truncated": True}, ("positive", "valid")),  # a short answer cut after its label
    ("well, the", {"truncated": True}, (INVALID, "truncated")),
    ("still thinking, positive", {"think_open": True}, (INVALID, "truncated")),
    ("ok</think>positive", {"think_open": True}, ("positive", "valid")),
])
def test_parse_answer_label_and_status(raw, kw, expected):
    assert parse_answer(raw, SCHEME, **kw) == expected


def test_rescore_rows_with_flags_and_scored_rows():
    rows = [{"gold": "positive", "raw": "cut positive", "truncated": True, "reasoning": True},
            {"gold": "positive", "raw": "x</think>positive", "truncated": True, "reasoning": True},
            {"gold": "negative", "raw": '{"negative": -0.1, "positive": -3.0}', "scored": True, "pred": "negative"},
            {"gold": "negative", "pred": INVALID, "status": "error"}]
    gold, pred, status = score.rescore(rows, SCHEME)
    assert pred == [INVALID, "positive", "negative", INVALID]
    assert status == ["truncated", "valid", "valid", "error"]
    m = compute_metrics(gold, pred, list(SCHEME.labels), statuses=status)
    assert m["invalid"] == {"no_label": 0, "empty": 0, "truncated": 1, "error": 1}
    assert m["accuracy"] == 0.5 and m["accuracy_on_valid"] == 1.0


def test_rescoring_a_live_cot_run_reproduces_its_metrics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A chain-of-thought run whose answers are valid, truncated mid-reasoning (a label word inside the cut
    reasoning must not count), empty, label-free and failed: the record's metrics and the re-scored log agree."""
    def script(prompt: str, n: int) -> Reply:
        k = int(re.findall(r"review (\d+):", prompt)[-1]) % 5
        if k == 0:
            return Reply(f"Because of the words.</think>\n{oracle(prompt)}")
        if k == 1:
            return Reply(f"Let me think: it looks {oracle(prompt)} but", done_reason="length")
        if k == 2:
            return Reply("   ")
        if k == 3:
            return Reply("I cannot tell.</think> hard to say")
        return Reply(status=500)

    data = write_reviews(tmp_path / "reviews.csv", n=60)
    cfg = PromptConfig(model="llama3.1", task=None, data=str(data), text_column="text", label_column="label",
                       labels="negative,positive", results_dir=str(tmp_path / "results"), retries=0, timeout=5.0,
                       concurrency=1)
    with FakeServer(["llama3.1:8b"], script) as srv:
        cfg.host = srv.url
        assert main(cfg) == 0
    (path,) = sorted((tmp_path / "results" / "runs").rglob("*.json"))
    rec = json.loads(path.read_text())
    rows = [json.loads(x) for x in path.with_suffix(".jsonl").read_text().splitlines()]
    counts = rec["metrics"]["invalid"]
    assert counts["truncated"] > 0 and counts["empty"] > 0 and counts["no_label"] > 0 and counts["error"] > 0
    assert all(r["status"] in ("valid", "no_label", "empty", "truncated", "error") and r["text"] for r in rows)
    assert score.main([str(path.with_suffix(".jsonl")), "--labels", "negative,positive", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "accuracy_ci", "valid_rate", "macro_f1", "invalid", "accuracy_on_valid", "confusion"):
        assert again[key] == rec["metrics"][key], key
    assert set(rec["cost"]) >= {"train_s", "eval_s", "eval_ms_per_example", "examples_per_s", "peak_rss_mb",
                                "cuda_peak_mb", "device", "dtype"}
    assert rec["cost"]["peak_rss_mb"] > 0 and rec["cost"]["device"] == "server (ollama)"
