"""The locked, tested set (requirements/) agrees with pyproject.toml; the version note of leaderboard and report."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from eval.run.versions import spread_text, version_spread

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
sys.path.insert(0, str(REQ))
import lock  # noqa: E402  (requirements/lock.py)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The base dependencies plus the extras, with the project's own `tune-or-prompt[...]` references expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = canonicalize_name(project["name"])
    optional = project["optional-dependencies"]
    out, todo, done = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for r in map(Requirement, optional[extra]):
            if canonicalize_name(r.name) == name:
                todo += sorted(r.extras)
            else:
                out.append(r)
    return out


def test_every_requirement_is_locked_inside_its_range():
    pins = lock.pins(lock.LOCK)
    torch_pin = (REQ / "torch.txt").read_text().strip()
    problems = []
    for req in project_requirements(lock.EXTRAS):
        if req.marker and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        version = torch_pin.split("==")[1] if name == "torch" else pins.get(name)
        if version is None:
            problems.append(f"{req} is not in requirements/lock.txt: run `make lock`")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req}: the lock has {version}, outside pyproject's range: run `make lock`")
    assert not problems, "\n".join(problems)


def test_the_lock_names_no_torch_build_and_no_cuda_libraries():
    """torch is pinned on its own so one lock serves CPU and GPU machines: a `torch==…+cpu` or nvidia-* line in the
    constraints would fight a user's CUDA build (or pull CUDA onto a CPU machine)."""
    pins = lock.pins(lock.LOCK)
    assert "torch" not in pins and "tune-or-prompt" not in pins
    assert not [n for n in pins if n.startswith("nvidia-")]
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", (REQ / "torch.txt").read_text().strip())


def test_offline_packages_are_pinned():
    lines = [ln for ln in (REQ / "offline.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9._-]+==[\w.]+", ln) for ln in lines), lines


def test_lock_diff_says_what_changed(tmp_path):
    old = {"torch": "2.13.0", "peft": "0.21.2", "gone": "1.0"}
    new = {"torch": "2.13.0", "peft": "0.22.0", "fresh": "3.1"}
    assert lock.changes(old, new) == ["- peft: 0.21.2 -> 0.22.0", "- fresh: new, 3.1", "- gone: dropped (was 1.0)"]
    f = tmp_path / "lock.txt"
    f.write_text("# header\nPeft==0.21.2\n    # via x\nsome_pkg==1.2.3 ; python_version >= '3.10'\n")
    assert lock.pins(f) == {"peft": "0.21.2", "some-pkg": "1.2.3"}


def _rec(**packages) -> dict:
    return {"env": {"packages": packages}}


def test_rows_made_with_different_library_versions_are_named():
    rows = [[_rec(torch="2.13.0+cpu", transformers="5.23.0")],
            [_rec(torch="2.13.0+cpu", transformers="5.24.0"), _rec(torch="2.13.0+cpu", transformers="5.23.0")],
            [_rec(transformers="5.23.0", peft="0.21.2")]]
    assert version_spread(rows) == {"transformers": {"5.23.0": [1, 2, 3], "5.24.0": [2]}}
    text = spread_text(rows)
    assert "transformers 5.23.0 (rows 1, 2, 3); 5.24.0 (rows 2)" in text and "torch" not in text
    assert spread_text([[_rec(torch="2.13.0")], [_rec(torch="2.13.0")], [{}]]) is None


def test_leaderboard_and_report_say_when_versions_differ(tmp_path):
    import json

    from decide_fixtures import write_results

    from eval.decide import leaderboard, report

    results, _ = write_results(tmp_path)
    path = sorted(results.glob("runs/*/encoders/*.json"))[0]  # one record made with another transformers
    rec = json.loads(path.read_text())
    rec["env"]["packages"]["transformers"] = "0.0.1"
    path.write_text(json.dumps(rec))
    out, _ = leaderboard.build(results, plots=False)
    assert "Library versions differ between these rows: transformers 0.0.1 (rows" in out.read_text()
    page, _ = report.build(results)
    assert "Library versions differ between these rows: transformers 0.0.1 (rows" in page.read_text()
