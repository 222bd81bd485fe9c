"""Ad-hoc data's task name (eval/inputs/data.py: adhoc_name, check_task_name; eval/run/preflight.py:
same_name_problem): two projects' train.csv never share a task, a results folder or a leaderboard table; `--task NAME`
names the data and enters the run id; a name that would pool two data sets is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baseline import train as baseline
from eval.inputs.data import adhoc_name, load_task
from tests.test_preflight import data_args, one_line_error, reviews


def run(argv: list[str]) -> int:
    return baseline.cli([*argv, "--class-weight", "none"])


def records(results: Path) -> list[Path]:
    return sorted(results.glob("runs/*/baseline/*.json"))


def test_two_train_csv_files_get_two_names_and_two_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = reviews((tmp_path / "shop").mkdir() or tmp_path / "shop" / "train.csv")
    b = reviews((tmp_path / "hotel").mkdir() or tmp_path / "hotel" / "train.csv", labels="xy")
    results = tmp_path / "results"
    assert run([*data_args(a), "--results-dir", str(results)]) == 0
    assert run([*data_args(b), "--results-dir", str(results)]) == 0
    err = capsys.readouterr().err
    folders = sorted(p.parent.parent.name for p in records(results))
    assert len(set(folders)) == 2 and folders[0].startswith("hotel-train-") and folders[1].startswith("shop-train-")
    for path in records(results):  # the record's task is its folder's name
        assert json.loads(path.read_text())["task"] == path.parent.parent.name
    assert "name it with --task NAME" in err  # the derived name is printed with how to set one


def test_the_name_follows_the_content_and_the_folder_spelling(tmp_path: Path) -> None:
    (tmp_path / "Sub_Dir").mkdir()
    f = reviews(tmp_path / "Sub_Dir" / "tiny_rare.csv")
    name = adhoc_name(f)
    assert name.startswith("sub-dir-tiny-rare-")  # spelled as its results folder is: one name everywhere
    td = load_task(data=str(f), text_column="text", label_column="label")
    assert td.name == name and td.derived_name
    f.write_text(f.read_text() + "one more review,a\n")
    assert adhoc_name(f) != name  # other content, other task


def test_task_names_ad_hoc_data_and_enters_the_run_id(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = reviews(tmp_path / "train.csv")
    results = tmp_path / "results"
    assert run([*data_args(f), "--results-dir", str(results)]) == 0
    assert run([*data_args(f), "--task", "my-reviews", "--results-dir", str(results)]) == 0
    (derived, named) = sorted(records(results), key=lambda p: p.parent.parent.name == "my-reviews")
    assert named.parent.parent.name == "my-reviews" and json.loads(named.read_text())["task"] == "my-reviews"
    assert derived.stem != named.stem  # the name is part of the run id
    capsys.readouterr()


@pytest.mark.parametrize(("name", "expect"), [("drugs", "is a task of eval/tasks/"),
                                              ("My Reviews", "e.g. --task my-reviews")])
def test_a_task_name_that_cannot_name_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, name: str,
                                                       expect: str) -> None:
    f = reviews(tmp_path / "train.csv")
    assert run([*data_args(f), "--task", name, "--results-dir", str(tmp_path / "results")]) == 2
    assert expect in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "results" / "runs").exists()


def test_one_name_for_two_data_sets_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = reviews(tmp_path / "a.csv"), reviews(tmp_path / "b.csv", labels="xy")
    results = tmp_path / "results"
    assert run([*data_args(a), "--task", "mine", "--results-dir", str(results)]) == 0
    before = records(results)
    assert run([*data_args(b), "--task", "mine", "--results-dir", str(results)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "already has runs of other data" in err and str(a) in err
    assert records(results) == before
    assert run([*data_args(b), "--task", "mine", "--results-dir", str(results), "--dry-run"]) == 2  # same check


def test_the_reproduce_command_names_the_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """recommend and report print Track.reproduce(spec): for ad-hoc data it names the files (a derived task name
    alone is no task), and running it plans the same run id."""
    import shlex

    from eval.run.records import RunSpec
    from eval.tracks import track

    f = reviews((tmp_path / "shop").mkdir() or tmp_path / "shop" / "train.csv")
    results = tmp_path / "results"
    assert run([*data_args(f), "--results-dir", str(results)]) == 0
    (path,) = records(results)
    spec = RunSpec.from_record(json.loads(path.read_text()))
    cmd = track("baseline").reproduce(spec)
    assert f"--data {f}" in cmd and "--text-column text" in cmd
    capsys.readouterr()
    assert baseline.cli([*shlex.split(cmd)[2:], "--results-dir", str(results), "--dry-run"]) == 0
    assert f"{path.stem}  done" in capsys.readouterr().out
