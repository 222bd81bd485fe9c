"""eval/run/record.py: the typed Record, its schema version, and the one loader every reader uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.run.record import SCHEMA, Record, RecordError, load_records, read_record

REPO = Path(__file__).resolve().parents[1]


def good() -> dict:
    return {"schema": SCHEMA, "run_id": "m__x__n8__eall__s0__abcd1234", "track": "baseline", "task": "t",
            "model": "m", "method": "x", "n_train": 8, "seed": 0, "n_eval": 10, "options": {},
            "metrics": {"accuracy": 0.5, "macro_f1": 0.4, "valid_rate": 1.0}, "labels": ["a", "b"],
            "split_hash": {"test": "h"}, "timing": {}, "versions": {}, "model_id": "m", "backend": "sklearn",
            "cost": {"train_s": 1.0, "eval_s": 0.1, "examples_per_s": 100.0, "peak_rss_mb": 300.0,
                     "cuda_peak_mb": None, "device": "cpu", "dtype": "float32"}}


def write(folder: Path, name: str, data: object) -> Path:
    p = folder / "runs" / "t" / "baseline" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_round_trip_and_documented_fields() -> None:
    rec = Record.from_dict(good())
    assert Record.from_dict(rec.to_dict()) == rec and rec.cost["device"] == "cpu" and rec.details == {}
    doc = (REPO / "docs" / "records.md").read_text()
    for name in rec.to_dict():
        assert f"`{name}`" in doc, f"docs/records.md does not describe {name}"


def test_schema_1_records_move_their_extras_under_details() -> None:
    v1 = {**good(), "schema": 1, "training": {"steps": 3}, "prompting": {"errors": 0}}
    del v1["cost"]
    rec = Record.from_dict(v1)
    assert rec.schema == SCHEMA and rec.details == {"training": {"steps": 3}, "prompting": {"errors": 0}}


def test_fields_from_newer_code_of_the_same_schema_are_kept() -> None:
    rec = Record.from_dict({**good(), "parse_status": {"valid": 10}})
    assert rec.to_dict()["parse_status"] == {"valid": 10} and "parse_status" not in rec.details


def test_every_committed_record_loads() -> None:
    records, problems = load_records(REPO / "results")
    assert records and problems == []


@pytest.mark.parametrize("mutate, message", [
    (lambda d: {**d, "schema": 99}, "schema 99 is newer than this code reads"),
    (lambda d: {k: v for k, v in d.items() if k != "schema"}, "schema None is not a run record schema"),
    (lambda d: {k: v for k, v in d.items() if k != "metrics"}, "missing field(s) metrics"),
    (lambda d: {**d, "metrics": {"accuracy": "high", "macro_f1": 0.1, "valid_rate": 1}}, "metrics.accuracy should"),
    (lambda d: {**d, "seed": "zero"}, "field seed should be a int"),
    (lambda d: {**d, "n_train": "lots"}, "n_train should be a whole number or 'full'"),
    (lambda d: [d], "not a run record (a JSON list"),
])
def test_a_bad_record_is_skipped_with_one_line(tmp_path: Path, mutate, message: str) -> None:
    write(tmp_path, "ok.json", good())
    bad = write(tmp_path, "bad.json", mutate(good()))
    with pytest.raises(RecordError):
        read_record(bad)
    records, problems = load_records(tmp_path)
    assert [r["run_id"] for r in records] == [good()["run_id"]]
    assert len(problems) == 1 and problems[0].startswith(f"skipped {bad}: ") and message in problems[0]
    assert "\n" not in problems[0]
