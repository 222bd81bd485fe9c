import json
import re

import pytest

from baseline import train as baseline
from eval.decide import leaderboard
from eval.inputs.data import load_task
from eval.run.records import RunSpec, finish_run, is_done, load_records, record_path
from eval.run.runner import should_run
from eval.scoring import rescore as score
from eval.scoring.labels import INVALID


@pytest.fixture
def task(tmp_path):
    import pandas as pd

    rows = [(f"text {i} {'good' if i % 2 else 'bad'} words", "pos" if i % 2 else "neg") for i in range(80)]
    path = tmp_path / "tiny.csv"
    pd.DataFrame(rows, columns=["t", "y"]).to_csv(path, index=False)
    return load_task(data=str(path), text_column="t", label_column="y")


def spec(**kw):
    base = dict(track="prompting", task="tiny", model="m", method="zeroshot", n_train=0, seed=0)
    return RunSpec(**{**base, **kw})


def test_run_id_is_derived_from_content():
    a, b = spec(options={"x": 1, "y": 2}), spec(options={"y": 2, "x": 1})
    assert a.run_id == b.run_id and a.run_id != spec(options={"x": 2}).run_id
    assert a.run_id != spec(seed=1).run_id
    assert spec(n_train="FULL").n_train == "full" and spec(n_train="16").n_train == 16
    assert re.fullmatch(r"m__zeroshot__n0__eall__s0__[0-9a-f]{8}", a.run_id)


def test_finish_run_writes_record_and_examples(task, tmp_path):
    s = spec(task=task.name, n_eval=8)
    test = task.test(8)
    preds = [e.label for e in test[:6]] + [INVALID, INVALID]
    raws = [f"raw {i}" for i in range(8)]
    path = finish_run(s, task, test, preds, results_dir=tmp_path, model_id="mid", backend="fake",
                      timing={"eval_s": 2.0}, raws=raws, before_preds=[INVALID] * 8, versions={"prompt": "3"},
                      row_fields=[{}] * 7 + [{"truncated": True, "pred": "ignored: harness fields win"}])
    rec = json.loads(path.read_text())
    assert path == record_path(s, tmp_path) and is_done(s, tmp_path)
    for key in ("track", "model", "model_id", "backend", "method", "task", "n_train", "n_eval", "seed",
                "split_hash", "metrics", "before_training", "timing", "versions", "env"):
        assert key in rec, key
    assert rec["metrics"]["accuracy"] == 0.75 and rec["metrics"]["valid_rate"] == 0.75
    assert rec["before_training"]["valid_rate"] == 0.0
    assert rec["timing"]["eval_examples_per_s"] == 4.0
    assert rec["versions"] == {"task": task.config.version, "labels": task.config.version, "prompt": "3"}
    assert rec["env"]["packages"]["numpy"]
    rows = [json.loads(x) for x in path.with_suffix(".jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[-1] == {"id": test[-1].id, "gold": test[-1].label, "pred": INVALID,
                                           "correct": False, "raw": "raw 7", "before_pred": INVALID,
                                           "truncated": True, "status": "no_label", "text": test[-1].text}
    assert rec["cost"]["eval_s"] == 2.0 and rec["cost"]["eval_ms_per_example"] == 250.0
    assert not should_run(s, tmp_path) and should_run(s, tmp_path, overwrite=True)
    assert not list(path.parent.glob(".*.tmp"))  # atomic writes leave no temp files


def test_corrupt_record_is_not_done_and_leaderboard_names_it(task, tmp_path):
    s = spec(task=task.name)
    p = record_path(s, tmp_path)
    p.parent.mkdir(parents=True)
    p.write_text("{ not json")
    assert not is_done(s, tmp_path)
    records, problems = load_records(tmp_path)
    assert records == [] and problems == [f"skipped {p}: not valid JSON (Expecting property name enclosed in double "
                                          "quotes at line 1)"]
    out, problems = leaderboard.build(tmp_path, plots=False)
    assert "Skipped files" in out.read_text()


def test_baseline_cli_records_skip_and_leaderboard(tmp_path, capsys):
    data = tmp_path / "d.csv"
    import pandas as pd

    words = {"pos": "great lovely fine", "neg": "awful bad poor"}
    rows = [(f"{words['pos' if i % 2 else 'neg']} item {i}", "pos" if i % 2 else "neg") for i in range(120)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    args = ["--data", str(data), "--task", "d", "--text-column", "text", "--label-column", "label", "--n-train", "8",
            "32", "full", "--seeds", "0", "1", "--results-dir", str(tmp_path / "res")]
    assert baseline.cli(args) == 0
    records, _ = load_records(tmp_path / "res")
    assert len(records) == 12 and {r["track"] for r in records} == {"baseline"}
    assert all(r["metrics"]["accuracy"] > 0.9 for r in records if r["n_train"] == "full")
    capsys.readouterr()
    assert baseline.cli(args) == 0
    assert "0 run(s) written, 12 already done" in capsys.readouterr().err

    out, problems = leaderboard.build(tmp_path / "res")
    md = out.read_text()
    assert not problems and "Majority-class baseline" in md and "[95% CI]" not in md.split("|")[0]
    table = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 6  # 2 methods x 3 sizes, seeds aggregated
    accs = [float(line.split("|")[9].split()[0]) for line in table]
    assert accs == sorted(accs, reverse=True)  # ranked by accuracy
    assert (tmp_path / "res" / "plots" / "d_learning_curve.png").stat().st_size > 1000
    first = md
    leaderboard.build(tmp_path / "res")
    assert out.read_text() == first  # regenerating gives the same file


def test_leaderboard_from_hand_written_records(tmp_path):
    """Records of three tracks, written by hand: before/after columns, collapsed mark, seed aggregation."""
    def rec(track, model, method, n_train, seed, acc, valid=1.0, before=None, collapsed=False, n=100, test="abc"):
        d = tmp_path / "runs" / "t" / track
        d.mkdir(parents=True, exist_ok=True)
        r = {"schema": 2, "run_id": f"{model}-{method}-{n_train}-{seed}", "labels": ["neg", "pos"], "versions": {},
             "model_id": model, "backend": "test",
             "track": track, "task": "t", "model": model, "method": method, "n_train": n_train, "seed": seed,
             "n_eval": n, "options": {}, "n_train_examples": 500 if n_train == "full" else n_train,
             "split_hash": {"test": test}, "timing": {"train_s": 12.5, "eval_s": 3.0},
             "metrics": {"n": n, "accuracy": acc, "accuracy_ci": [acc - 0.05, acc + 0.05], "valid_rate": valid,
                         "macro_f1": acc - 0.1, "collapsed": collapsed,
                         "majority_baseline": {"label": "pos", "accuracy": 0.6}},
             "before_training": before}
        (d / f"{model}-{method}-{n_train}-{seed}.json").write_text(json.dumps(r))

    rec("encoders", "minilm-l6", "full", 16, 0, 0.70)
    rec("encoders", "minilm-l6", "full", 16, 1, 0.80)
    rec("encoders", "minilm-l6", "full", "full", 0, 0.9)
    rec("finetune", "gemma3-270m", "lora", 256, 0, 0.85, before={"accuracy": 0.1, "valid_rate": 0.2})
    rec("prompting", "gemma3-270m", "zeroshot", 0, 0, 0.6, valid=0.9, collapsed=True)
    rec("prompting", "gemma3-270m", "score", 0, 0, 0.99, n=20, test="first20")
    out, _ = leaderboard.build(tmp_path)
    md = out.read_text()
    # rows on other test items get their own ranked table, never a rank among the 100-item rows
    big, small = md.split("### Test set: 20 items")
    assert "### Test set: 100 items" in big and "· score |" not in big
    assert "| 1 | gemma3-270m · prompting · score" in small
    md = big
    lines = [line for line in md.splitlines() if line.startswith("| ") and "model" not in line]
    assert lines[0].split("|")[2].strip().startswith("minilm-l6 ·") and "full (500)" in lines[0]
    assert "0.100 / 0.200" in lines[1]  # before-training accuracy / valid rate of the SFT run
    enc16 = next(line for line in lines if "| 16 |" in line)
    assert "0.750" in enc16 and "0,1" in enc16 and "0.071" in enc16  # mean and sd over two seeds
    assert "collapsed" in lines[-1]
    assert "**0.600**" in md and "plots/t_learning_curve.png" in md


def test_score_cli_rescore_raw_and_pred(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"gold": "positive", "raw": "<think>negative?</think> positive"},
        {"gold": "negative", "raw": "<think>never closed"},
        {"gold": "negative", "pred": "negative"},
        {"gold": "negative", "pred": "banana"},
    ]) + "\n")
    assert score.main([str(f), "--labels", "negative,positive", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["accuracy"] == 0.5 and m["valid_rate"] == 0.5 and m["n"] == 4
    (tmp_path / "bad.jsonl").write_text('{"raw": "x"}\n')
    assert score.main([str(tmp_path / "bad.jsonl"), "--labels", "a,b"]) == 2
    assert "no 'gold' field" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("")
    assert score.main([str(tmp_path / "empty.jsonl"), "--labels", "a,b"]) == 2
    assert "empty" in capsys.readouterr().err


def test_env_names_the_threads_and_cpu_kernels_a_torch_run_used():
    """The same run id on another thread count or kernel set can round differently: the record says which ran."""
    torch = pytest.importorskip("torch")
    from eval.run.records import env_info

    env = env_info()
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
