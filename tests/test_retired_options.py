"""A retired option stays in every spec at its one old value, so the records made while it existed keep their run
ids, and a spec asking for another value is refused in one line (encoders/config.py: RETIRED)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.run.records import RunSpec
from eval.tracks import DataRef, track

REPO = Path(__file__).resolve().parents[1]


def test_a_run_keeps_the_id_it_had_while_the_option_existed() -> None:
    """The demo's first encoder run (sweeps/demo.yaml), whose id was computed while `pad_to_max` was an option."""
    t = track("encoders")
    cfg = t.config_from_options("minilm-l6", "full", {"loss": "weighted-ce", "lr": 1.5e-4, "max_length": 96,
                                                      "max_steps": 128, "evals": 3, "refit": False})
    spec = t.make_spec(cfg, DataRef("rotten"), 16, 0, 100)
    assert spec.options["pad_to_max"] is False and not hasattr(cfg, "pad_to_max")
    assert spec.run_id == "minilm-l6__full__n16__e100__s0__340e056e"


def test_committed_records_with_the_option_still_load() -> None:
    recs = [json.loads(p.read_text()) for p in sorted((REPO / "results" / "runs").glob("*/encoders/*.json"))]
    recs = [r for r in recs if "pad_to_max" in r["options"]]
    assert recs, "the committed encoder records were made while pad_to_max existed"
    for rec in recs:
        spec = RunSpec.from_record(rec)
        cfg = track("encoders").config_from_spec(spec)
        assert (cfg.model, cfg.method) == (rec["model"], rec["method"])


def test_a_retired_option_with_another_value_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\['pad_to_max'\] are retired: they can only be \[False\]"):
        track("encoders").config_from_options("minilm-l6", "full", {"pad_to_max": True})
