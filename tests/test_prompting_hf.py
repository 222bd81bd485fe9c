"""The in-process hf backend on a tiny causal LM built in the test (conftest `tiny_causal_lm` / `tiny_base_lm`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prompting_fixtures import SCHEME, write_reviews

from eval.scoring.labels import INVALID
from prompting.backends import BackendOptions, get_backend
from prompting.run import PromptConfig, main


def answers(folder: Path, prompts: list[str], **opts) -> list:
    backend = get_backend("hf")(str(folder), BackendOptions(**opts), SCHEME)
    out: dict = {}
    backend.answer_all(prompts, out.__setitem__)
    return [out[i] for i in range(len(prompts))], backend


WORDS = ["great", "bad", "fine boring"] * 3
PROMPTS = [f"review {i}: the movie was {w}\n### Response:\n" for i, w in enumerate(WORDS)]


@pytest.mark.parametrize("mode", ["generate", "score"])
def test_batched_equals_one_at_a_time(tiny_causal_lm: Path, mode: str) -> None:
    one, _ = answers(tiny_causal_lm, PROMPTS, mode=mode, batch_size=1, max_new_tokens=4)
    many, backend = answers(tiny_causal_lm, PROMPTS, mode=mode, batch_size=4, max_new_tokens=4)
    assert [a.text for a in one] == [a.text for a in many]
    assert backend.chat is True and backend.raw_prompt is False  # it has a chat template
    if mode == "score":
        assert all(a.text in ("negative", "positive") and set(a.meta["scores"]) == {"negative", "positive"}
                   for a in many)
        for a, b in zip(one, many):
            assert a.meta["scores"] == pytest.approx(b.meta["scores"], abs=1e-4)


def test_base_model_sees_the_prompt_verbatim(tiny_base_lm: Path) -> None:
    out, backend = answers(tiny_base_lm, PROMPTS[:2], max_new_tokens=3)
    assert backend.raw_prompt is True and out[0].meta["raw_prompt"] is True


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("*.json"))]


@pytest.mark.parametrize("mode,shots", [("generate", 0), ("score", 0), ("generate", 2), ("score", 2)])
def test_run_end_to_end_on_the_tiny_model(tiny_causal_lm: Path, tmp_path: Path, mode: str, shots: int) -> None:
    data = write_reviews(tmp_path / "reviews.csv", 60)
    cfg = PromptConfig(model=f"hf/{tiny_causal_lm}", task=None, data=str(data), text_column="text",
                       label_column="label", results_dir=str(tmp_path / "results"), mode=mode, shots=[shots],
                       prompt="zeroshot" if shots == 0 else None, n_eval=[4, 8], batch_size=4, max_new_tokens=4,
                       threads=1)
    assert main(cfg) == 0
    recs = records(tmp_path / "results")
    assert sorted(r["n_eval"] for r in recs) == [4, 8]
    method = {("generate", 0): "zeroshot", ("score", 0): "score", ("generate", 2): "fewshot",
              ("score", 2): "fewshot-score"}[(mode, shots)]
    for r in recs:
        assert r["method"] == method and r["n_train"] == shots and r["backend"] == "hf"
        assert r["options"]["weights"].startswith("local:") and r["options"]["mode"] == mode
        if mode == "score":
            assert r["metrics"]["valid_rate"] == 1.0  # valid by construction
    if mode == "generate":  # eval/scoring/rescore.py re-extracts the logged raw answers to the same labels
        from eval.scoring.labels import LabelScheme
        from eval.scoring.rescore import rescore

        scheme = LabelScheme.from_labels(["negative", "positive"])
        for p in sorted((tmp_path / "results" / "runs").rglob("*.jsonl")):
            rows = [json.loads(x) for x in p.read_text().splitlines()]
            assert rescore(rows, scheme)[1] == [r["pred"] for r in rows]
    assert main(cfg) == 0  # done: skipped without loading anything


def test_score_mode_refuses_servers_and_cot(tmp_path: Path) -> None:
    data = write_reviews(tmp_path / "reviews.csv", 60)
    base = dict(task=None, data=str(data), text_column="text", label_column="label", results_dir=str(tmp_path))
    assert main(PromptConfig(model="ollama/llama3.1", mode="score", **base)) == 2
    assert main(PromptConfig(model="hf/x", mode="score", prompt="cot", **base)) == 2
    assert INVALID  # (imported for readers: INVALID is what a non-answer becomes)
