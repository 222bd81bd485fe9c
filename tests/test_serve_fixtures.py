"""Parity on committed runs (#21, "done when"): one run of each track, made by its own CLI with its artifacts kept
(tests/fixtures/served/README.md has the commands), is served in-process and answers every one of its test items
as its per-example file recorded. A fresh run in tests/test_serve.py checks the code on this machine against
itself; these check that a run recorded once (another checkout, another venv: CI's clone) is served as evaluated.

A CPU kernel that rounds otherwise on another machine can flip an item whose two best labels are nearly tied; the
failure then lists those items with the served margin between their two best labels (and the recorded one, where
the record kept scores), so a near-tie is told apart from a real divergence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from eval.run.records import load_examples  # noqa: E402
from eval.serve.app import create_app  # noqa: E402
from eval.serve.check import describe, parity, recorded_scores  # noqa: E402
from eval.serve.load import load  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "served"
TRACKS = ["baseline", "encoders", "finetune", "prompting"]


def fixture_record(track: str) -> Path:
    found = sorted((FIXTURES / "runs").glob(f"*/{track}/*.json"))
    assert len(found) == 1, f"tests/fixtures/served holds {len(found)} {track} records, not one (its README.md)"
    return found[0]


def assert_served_as_recorded(record: Path) -> dict:
    """100% of the test items, batched (several requests of 3 texts in flight, so the batcher gathers them)."""
    served = load(str(record))
    assert served.path == record
    res = parity(served, create_app(served), per_request=3, concurrency=4)
    n_rows = len(load_examples(served.record))
    assert res["n"] == n_rows == served.record["n_eval"] > 0
    lines = "\n  ".join(describe(m) for m in res["mismatches"])
    assert res["agree"] == res["n"], (f"{record.name}: {res['n'] - res['agree']}/{res['n']} test items served "
                                      f"otherwise than recorded:\n  {lines}")
    return res


def test_the_fixture_folder_holds_one_run_per_track_with_its_artifacts() -> None:
    for track in TRACKS:
        record = fixture_record(track)
        rec = json.loads(record.read_text())
        assert rec["track"] == track and (record.with_suffix(".jsonl")).is_file()
        art = record.parent / "artifacts" / rec["run_id"]
        assert (track == "prompting") != art.is_dir(), art  # prompting needs none: the record is the run
    sizes = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert sizes < 5_000_000, f"tests/fixtures/served is {sizes:,} bytes; its budget is 5 MB"


@pytest.mark.parametrize("track", ["baseline", "encoders"])
def test_a_committed_classifier_run_is_served_as_recorded(track: str) -> None:
    res = assert_served_as_recorded(fixture_record(track))
    assert all(p["scores"] and p["status"] == "valid" for p in res["predictions"])


@pytest.mark.slow  # loads SmolLM2-135M (its offline GGUF, converted once per machine) and scores 24 items
def test_a_committed_sft_run_is_served_from_its_adapter_as_recorded() -> None:
    record = fixture_record("finetune")
    res = assert_served_as_recorded(record)
    # a score-mode record keeps each item's log-likelihoods: the served ones are the adapter's (training moved them by
    # 0.1-0.4 from the base model's), not the base model's with an adapter that did not load
    rows = load_examples(json.loads(record.read_text()) | {"_path": str(record)})
    far = []
    for row, pred in zip(rows, res["predictions"]):
        rec = recorded_scores(row)
        assert rec is not None and pred["scores"], row["id"]
        if max(abs(rec[k] - pred["scores"][k]) for k in rec) > 0.01:
            far.append((row["id"], rec, pred["scores"]))
    assert not far, f"served log-likelihoods differ from the recorded ones by > 0.01: {far[:5]}"


@pytest.mark.slow  # loads SmolLM2-135M and generates up to 16 tokens for 24 items
def test_a_committed_in_process_prompting_run_is_served_as_recorded() -> None:
    record = fixture_record("prompting")
    res = assert_served_as_recorded(record)
    rows = load_examples(json.loads(record.read_text()) | {"_path": str(record)})
    assert any(r["pred"] == "[invalid]" for r in rows)  # unparseable answers are part of the contract too
    assert [p["status"] for p in res["predictions"]] == [r["status"] for r in rows]


def test_a_moved_encoder_run_finds_its_offline_base_in_this_environment(tmp_path: Path) -> None:
    """run.json keeps the absolute folder of the venv the run trained in; CI's clone has its own .venv."""
    from encoders.modeling import base_here, locate_model

    record = fixture_record("encoders")
    art = record.parent / "artifacts" / record.stem
    meta = json.loads((art / "run.json").read_text())
    moved = tmp_path / "artifacts" / record.stem
    shutil.copytree(art, moved)
    elsewhere = "/elsewhere/.venv/lib/python3.11/site-packages/" + "/".join(Path(meta["base_model"]).parts[-2:])
    assert base_here({**meta, "base_model": elsewhere}, moved) == locate_model(meta["model"])[0]
    assert base_here({**meta, "base_model": "/elsewhere/mlm"}, moved) == "/elsewhere/mlm"  # not this run's stage
    (moved / "mlm").mkdir()
    assert base_here({**meta, "base_model": f"/elsewhere/{record.stem}/mlm"}, moved) == str(moved / "mlm")
    assert base_here({**meta, "base_model": "sentence-transformers/all-MiniLM-L6-v2"}, moved).startswith("sentence")


def test_a_near_tie_that_flips_is_reported_with_its_margins() -> None:
    """What the failure says when an item flips: its id, both labels, the margins (and raw answers if generated)."""
    from eval.serve.check import mismatch

    row = {"id": "test-7", "pred": "positive", "scored": True, "raw": '{"negative": -0.7001, "positive": -0.7}'}
    line = describe(mismatch(row, {"label": "negative", "scores": {"negative": -0.69995, "positive": -0.70001}}))
    assert line.startswith("test-7: recorded 'positive', served 'negative'") and "served margin 6e-05" in line
    assert "recorded margin 0.0001" in line
    gen = describe(mismatch({"id": "t", "pred": "positive", "raw": "Positive"}, {"label": "[invalid]", "raw": "Pos"}))
    assert "generated: recorded 'Positive', served 'Pos'" in gen


# --- committed records without artifacts: one line, with the command that re-runs them with artifacts kept -----------
RESULTS = Path(__file__).resolve().parents[1] / "results"


def committed_without_artifacts(track: str) -> list[Path]:
    return [p for p in sorted((RESULTS / "runs").glob(f"*/{track}/*.json"))
            if not (p.parent / "artifacts" / p.stem).exists()]


@pytest.mark.parametrize("track", ["baseline", "encoders", "finetune"])
def test_committed_runs_without_artifacts_say_so_in_one_line_with_the_command(track: str, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    """For every committed record of the track: one line, naming what is missing and a command whose own --dry-run
    plans the run id the line says the re-run gets (the record's, or the id this checkout gives its settings)."""
    import shlex

    from eval.serve.predictor import ServeError
    from eval.tracks import track as track_of

    records = committed_without_artifacts(track)
    if not records:
        pytest.skip(f"no committed {track} record without artifacts in this checkout")
    t = track_of(track)
    for record in records:
        with pytest.raises(ServeError) as err:
            load(str(record))
        line = str(err.value)
        assert "\n" not in line and f"run {record.stem} kept no artifacts" in line, line
        cmd = line.split("re-run it with them kept: ", 1)[1]
        expected = record.stem
        if " (this checkout records that run as " in cmd:
            cmd, note = cmd.split(" (this checkout records that run as ", 1)
            expected = note.split(",", 1)[0]
            assert expected != record.stem and "since options." in note, line
        words = shlex.split(cmd)
        assert words[:2] == ["python", t.script] and words[-1] == "--overwrite", line
        capsys.readouterr()
        assert t.cli([*words[2:], "--results-dir", str(tmp_path), "--dry-run"]) == 0, (line, capsys.readouterr())
        planned = [w.split()[1] for w in capsys.readouterr().out.splitlines() if w.startswith(f"{track} ")]
        assert planned == [expected], (line, planned)
