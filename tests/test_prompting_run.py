"""prompting/run.py end to end against a scripted Ollama server: records per size, few-shot, errors, resume."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prompting_fixtures import GOOD, oracle, write_reviews

from eval.scoring.labels import INVALID
from prompting.fake_server import FakeServer, Reply
from prompting.run import PromptConfig, main

RUN = Path(__file__).resolve().parents[1] / "prompting" / "run.py"


def cot_reply(prompt: str, n: int) -> Reply:
    return Reply(f"The words decide it.</think>\n{oracle(prompt)}")


def records(results: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((results / "runs").rglob("*.json")):
        rec = json.loads(p.read_text())
        rec["examples"] = [json.loads(x) for x in p.with_suffix(".jsonl").read_text().splitlines()]
        out[p.name] = rec
    return out


def config(tmp_path: Path, url: str, **kw) -> PromptConfig:
    data = write_reviews(tmp_path / "reviews.csv")
    base = dict(model="llama3.1", task=None, data=str(data), text_column="text", label_column="label",
                results_dir=str(tmp_path / "results"), host=url, retries=0, timeout=5.0)
    return PromptConfig(**{**base, **kw})


def test_one_call_per_example_reused_across_sizes(tmp_path: Path) -> None:
    with FakeServer(["llama3.1:8b"], cot_reply) as srv:
        assert main(config(tmp_path, srv.url, n_eval=[8, 16])) == 0
        assert len(srv.prompts()) == 16  # the 8 are the first 8 of the 16
        recs = records(tmp_path / "results")
        assert main(config(tmp_path, srv.url, n_eval=[8, 16])) == 0  # done: skipped, nothing asked
        assert len(srv.prompts()) == 16
    assert sorted(r["n_eval"] for r in recs.values()) == [8, 16]
    for rec in recs.values():
        assert rec["track"] == "prompting" and rec["method"] == "cot" and rec["n_train"] == 0
        assert rec["model"] == "ollama/llama3.1" and rec["model_id"] == "llama3.1:8b"
        assert rec["options"]["prompt"] == "cot_zeroshot@1+sft_instruction@1"
        assert rec["metrics"]["accuracy"] == 1.0 and rec["metrics"]["valid_rate"] == 1.0
        assert "</think>" in rec["examples"][0]["raw"]  # the reasoning stays in the per-example log


def test_few_shot_k_is_n_train_and_the_seed_picks_the_shots(tmp_path: Path) -> None:
    with FakeServer(["llama3.1:8b"], lambda p, n: Reply(oracle(p))) as srv:
        assert main(config(tmp_path, srv.url, shots=[2], seeds=[0, 1], n_eval=[4])) == 0
        prompts = srv.prompts()
    recs = list(records(tmp_path / "results").values())
    assert {(r["method"], r["n_train"], r["n_train_examples"], r["seed"]) for r in recs} == {
        ("fewshot", 2, 2, 0), ("fewshot", 2, 2, 1)}
    assert len({r["run_id"] for r in recs}) == 2
    assert all(p.count("### Input:") == 3 for p in prompts)
    assert recs[0]["details"]["prompting"]["few_shot_ids"] != recs[1]["details"]["prompting"]["few_shot_ids"]


def test_failed_requests_are_invalid_and_retry_errors_reasks_only_them(tmp_path: Path) -> None:
    broken: dict = {"on": True, "prompt": None}

    def script(p: str, n: int) -> Reply:
        broken["prompt"] = broken["prompt"] or p  # the first prompt asked keeps failing
        if broken["on"] and p == broken["prompt"]:
            return Reply(status=500)
        return cot_reply(p, n)

    with FakeServer(["llama3.1:8b"], script) as srv:
        assert main(config(tmp_path, srv.url)) == 0
        (rec,) = records(tmp_path / "results").values()
        bad = [e for e in rec["examples"] if e["pred"] == INVALID]
        assert rec["details"]["prompting"]["errors"] == len(bad) == 1 and bad[0]["raw"] is None
        assert rec["details"]["prompting"]["error_examples"][0]["error"].startswith("HTTP 500")
        asked = len(srv.prompts())
        assert main(config(tmp_path, srv.url, overwrite=True)) == 0  # the cached error is reused
        assert len(srv.prompts()) == asked
        broken["on"] = False
        assert main(config(tmp_path, srv.url, overwrite=True, retry_errors=True)) == 0
        assert len(srv.prompts()) == asked + 1
    (rec,) = records(tmp_path / "results").values()
    assert rec["details"]["prompting"]["errors"] == 0 and rec["metrics"]["accuracy"] == 1.0


def test_server_down_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeServer(["llama3.1:8b"], cot_reply) as srv:
        url = srv.url
    assert main(config(tmp_path, url)) == 2
    assert "ollama serve" in capsys.readouterr().err


def test_kill_and_resume_gives_the_same_record(tmp_path: Path) -> None:
    with FakeServer(["llama3.1:8b"], cot_reply, delay=0.05) as srv:
        cfg = config(tmp_path, srv.url, n_eval=[20], concurrency=1)
        args = [sys.executable, str(RUN), "--model", "llama3.1", "--data", cfg.data, "--text-column", "text",
                "--label-column", "label", "--n-eval", "20", "--host", srv.url, "--concurrency", "1",
                "--results-dir", str(tmp_path / "resumed")]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        db = tmp_path / "resumed" / "cache" / "prompting.sqlite"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if sqlite3.connect(db).execute("SELECT COUNT(*) FROM answers").fetchone()[0] >= 5:
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "resumed" / "runs").exists()  # killed before any record
        before = len(srv.prompts())
        assert subprocess.run(args, capture_output=True).returncode == 0
        assert len(srv.prompts()) - before <= 20 - 5 + 1  # only the missing ones (+ one in flight at the kill)
        assert main(cfg) == 0  # the uninterrupted reference
    (resumed,) = records(tmp_path / "resumed").values()
    (straight,) = records(tmp_path / "results").values()
    assert resumed["run_id"] == straight["run_id"]
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["examples"] == straight["examples"]


def test_a_sweep_spec_runs_under_its_own_run_id_and_shares_the_cache(tmp_path: Path) -> None:
    """eval/tracks.py's contract as eval/run/sweep.py uses it: the spec's names, the spec's run id, no repeated calls,
    and the CLI would have planned the very same spec."""
    from eval.inputs.dataref import data_ref
    from eval.run.runner import run_spec
    from eval.tracks import DataRef, track

    t = track("prompting")
    opts = {"backend": "ollama", "prompt": "cot_zeroshot", "mode": "generate"}
    with pytest.raises(ValueError, match="concurency"):
        t.config_from_options("llama3.1", "cot-zeroshot", {**opts, "concurency": 8})
    with FakeServer(["llama3.1:8b"], cot_reply) as srv:
        cli = config(tmp_path, srv.url)
        data = DataRef("reviews", data_ref(data=cli.data, text_column="text", label_column="label"))
        cfg = t.config_from_options("llama3.1", "cot-zeroshot", {**opts, "host": srv.url, "retries": 0})
        paths = []
        for n in (8, 4):  # as a sweep over n_eval would, in any order
            spec = t.make_spec(cfg, data, 0, 0, n)
            assert spec == t.make_spec(cli, data, 0, 0, n)  # the CLI's spec for the same run
            assert t.respec(spec) == spec  # spec -> config -> spec
            paths.append(run_spec(spec, str(tmp_path / "sweep")))
            assert paths[-1].name == f"{spec.run_id}.json"
        assert len(srv.prompts()) == 8  # the 4 came from the cache
    rec = json.loads(paths[0].read_text())
    assert rec["metrics"]["accuracy"] == 1.0 and rec["versions"]["prompt"] == "cot_zeroshot@1+sft_instruction@1"
    assert rec["data"]["sha256"] and rec["data"]["text_column"] == "text"  # reproducible from the record


def _plain_reader(prompt: str, n: int) -> Reply:
    """A model that reads the plain "Text:/Answer:" layout and says `positive` to anything else."""
    if "\nAnswer:" not in prompt:
        return Reply("positive")
    last = prompt.rsplit("Text:", 1)[-1]
    return Reply("positive" if any(f" {w} " in last for w in GOOD) else "negative")


def test_the_few_shot_variant_is_chosen_on_the_shots_not_the_test_items(tmp_path: Path) -> None:
    """--variants: each variant predicts every shot from the other k-1 (leave-one-out); the best is used for the
    test items, and the record says what was compared and chosen. A tie would keep the first listed."""
    from eval.tracks import track

    with FakeServer(["llama3.1:8b"], _plain_reader) as srv:
        cfg = config(tmp_path, srv.url, shots=[4], n_eval=[6], variants=["fewshot", "fewshot_plain"])
        assert main(cfg) == 0
        prompts = srv.prompts()
    (rec,) = records(tmp_path / "results").values()
    sel = rec["details"]["prompting"]["prompt_selection"]
    assert [s["variant"].split("@")[0] for s in sel["scores"]] == ["fewshot", "fewshot_plain"]
    assert sel["scores"][1]["accuracy"] == 1.0 and sel["scores"][0]["accuracy"] < 1.0 and sel["scores"][0]["n"] == 4
    assert sel["chosen"].startswith("fewshot_plain@") and rec["details"]["prompting"]["prompt_used"] == sel["chosen"]
    assert rec["options"]["variants"] == [s["variant"] for s in sel["scores"]]
    assert rec["metrics"]["accuracy"] == 1.0 and rec["timing"]["select_s"] is not None
    # 4 leave-one-out prompts per variant (3 examples each), then the 6 test items with the chosen one (4 examples)
    assert len(prompts) == 2 * 4 + 6
    assert [p.count("Text:") for p in prompts[4:8]] == [4] * 4 and all(p.count("Text:") == 5 for p in prompts[8:])
    shots = {e["text"] for e in rec["examples"]}
    assert not any(t in p for p in prompts[:8] for t in shots)  # no test item is seen while choosing
    from eval.run.records import RunSpec

    spec = RunSpec.from_record(rec)
    assert track("prompting").respec(spec).run_id == spec.run_id == rec["run_id"]  # rebuilt from the record


def test_bad_variants_fail_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no prompt template 'fewshot_nope'.*fewshot_plain"):
        config(tmp_path, "http://127.0.0.1:9", variants=["fewshot", "fewshot_nope"])
    with pytest.raises(ValueError, match="do not apply to --prompt zeroshot"):
        config(tmp_path, "http://127.0.0.1:9", prompt="zeroshot", variants=["fewshot_plain"])
    from eval.tracks import DataRef
    from prompting.run import make_spec

    cfg = config(tmp_path, "http://127.0.0.1:9", variants=["fewshot", "fewshot_plain"])
    with pytest.raises(ValueError, match="at least 2 shots"):
        make_spec(cfg, DataRef("x"), 1, 0, None)
    one = make_spec(config(tmp_path, "http://127.0.0.1:9", variants=["fewshot_plain"]), DataRef("x"), 4, 0, None)
    assert one.options["prompt"].startswith("fewshot_plain@") and "variants" not in one.options


def test_variants_leave_the_zero_shot_runs_of_a_command_alone(tmp_path: Path) -> None:
    """--shots 0 4 --variants fewshot_plain: the 4-shot run uses the variant; the 0-shot run keeps its own template
    (a few-shot file rendered as a zero-shot prompt would send its section markers to the model)."""
    with FakeServer(["llama3.1:8b"], _plain_reader) as srv:
        assert main(config(tmp_path, srv.url, shots=[0, 4], n_eval=[4], mode="generate", prompt=None,
                           variants=["fewshot_plain"], max_new_tokens=16)) == 0
        prompts = srv.prompts()
    recs = {r["n_train"]: r for r in records(tmp_path / "results").values()}
    assert recs[0]["options"]["prompt"].startswith("cot_zeroshot@")
    assert recs[0]["details"]["prompting"]["prompt_used"].startswith("cot_zeroshot@")
    assert recs[4]["details"]["prompting"]["prompt_used"].startswith("fewshot_plain@")
    assert not any("===" in p for p in prompts)
