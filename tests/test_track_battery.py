"""One check battery over every registered track (the spirit of scikit-learn's `parametrize_with_checks`): a new
track in eval/tracks.py that passes these is wired into the harness (docs/architecture.md).

Each track is exercised on its first run in sweeps/demo.yaml (every track has one there) and on every run of
every shipped sweep:
- its module implements the TrackModule contract with the same signatures;
- spec -> config -> spec round-trips (the spec alone reproduces the run);
- the command the Track gives for a spec (`Track.reproduce`, what eval/decide/recommend.py prints) plans the same
  run id;
- `--dry-run` runs exactly the checks the run runs: a problem stops both with exit 2 and the same report, and
  nothing is written;
- a bad input gets one line naming it (an unknown option, an unknown task), never a traceback;
- a killed run resumes and its record validates: for the tracks that run in seconds here (the others' own
  resume tests are in tests/test_prompting_run.py, tests/test_encoders.py and tests/test_sft.py).
"""

from __future__ import annotations

import inspect
import shlex
from pathlib import Path

import pytest

from eval.run.record import load_records, read_record
from eval.run.runner import spec_mismatch
from eval.run.sweep import load_sweep
from eval.tracks import CONTRACT, TRACKS, Track, TrackModule

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
DEMO = load_sweep(REPO / "sweeps" / "demo.yaml")
NAMES = list(TRACKS)


def sample(t: Track):
    runs = [s for s in DEMO.runs if s.track == t.name]
    assert runs, f"track {t.name} has no run in sweeps/demo.yaml"
    return runs[0]


def argv_of(t: Track, spec) -> list[str]:
    words = shlex.split(t.reproduce(spec))
    assert words[:2] == ["python", t.script] and (REPO / t.script).exists()
    return words[2:]


@pytest.mark.parametrize("name", NAMES)
def test_the_module_implements_the_contract_with_its_signatures(name: str) -> None:
    mod = TRACKS[name].load()
    for attr in CONTRACT:
        assert hasattr(mod, attr), f"{name}: {attr}"
        if attr == "Config":
            continue
        want = [p for p in inspect.signature(getattr(TrackModule, attr)).parameters if p != "self"]
        got = list(inspect.signature(getattr(mod, attr)).parameters)
        assert got[:len(want)] == want, f"{name}.{attr}{inspect.signature(getattr(mod, attr))}"
        extra = [p for p in inspect.signature(getattr(mod, attr)).parameters.values()][len(want):]
        assert all(p.default is not p.empty or p.kind is p.VAR_KEYWORD for p in extra), f"{name}.{attr}"


@pytest.mark.parametrize("name", NAMES)
def test_spec_config_spec_round_trips_on_every_shipped_run(name: str) -> None:
    t = TRACKS[name]
    runs = [s for p in SWEEPS for s in load_sweep(p).runs if s.track == name]
    assert runs
    for spec in runs:
        assert spec_mismatch(spec, t.respec(spec)) is None, spec.run_id


@pytest.mark.parametrize("name", NAMES)
def test_the_tracks_command_plans_the_sweeps_run_id(name: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    t = TRACKS[name]
    spec = sample(t)
    assert t.cli([*argv_of(t, spec), "--results-dir", str(tmp_path), "--dry-run"]) == 0
    ids = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith(name)]
    assert ids == [spec.run_id]


@pytest.mark.parametrize("name", NAMES)
def test_dry_run_runs_the_same_checks_as_the_run(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    t = TRACKS[name]
    argv = argv_of(t, sample(t))
    blocker = tmp_path / "file"
    blocker.write_text("")
    i = argv.index("--n-eval")
    too_many = [*argv[:i + 1], "999999", *argv[i + 2:], "--results-dir", str(blocker / "results")]
    reports = []
    for extra in (["--dry-run"], []):
        assert t.cli([*too_many, *extra]) == 2
        err = capsys.readouterr().err
        assert "--n-eval 999999 is outside" in err and "cannot write records" in err and "2 problems" in err
        reports.append(err)
    assert reports[0] == reports[1]
    assert not (blocker.parent / "results").exists()


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_get_one_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    t = TRACKS[name]
    spec = sample(t)
    with pytest.raises(ValueError, match="no_such_option") as exc:
        t.config_from_options(spec.model, spec.method, {"no_such_option": 1})
    assert "\n" not in str(exc.value)
    argv = argv_of(t, spec)
    argv[argv.index("--task") + 1] = "no-such-task"
    assert t.cli([*argv, "--results-dir", str(tmp_path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "no-such-task" in err[0]


FAST = [n for n in NAMES if TRACKS[n].kind == "reference"]  # runs in seconds on a CPU with no model


@pytest.mark.parametrize("name", FAST)
def test_a_killed_run_resumes_and_its_record_validates(name: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    t = TRACKS[name]
    spec = sample(t)
    argv = [*argv_of(t, spec), "--results-dir", str(tmp_path), "--seeds", "0", "1"]
    mod = t.load()
    real, calls = mod.run_one, []

    def killed_after_one(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the second run
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "run_one", killed_after_one)
    assert t.cli(argv) == 130
    assert len(load_records(tmp_path)[0]) == 1  # the finished run kept its record, the killed one wrote nothing
    monkeypatch.setattr(mod, "run_one", real)
    assert t.cli(argv) == 0  # the same command runs only what is missing
    records, problems = load_records(tmp_path)
    assert not problems and sorted(r["seed"] for r in records) == [0, 1]
    for r in records:  # each validates against the typed Record (eval/run/record.py) and has its examples
        assert read_record(Path(r["_path"])).run_id == r["run_id"]
        assert len(Path(r["_path"]).with_suffix(".jsonl").read_text().splitlines()) == r["n_eval"]
    assert spec.run_id in {r["run_id"] for r in records}
