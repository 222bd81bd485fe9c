"""Help that is true (#23 point 7): each track CLI's --help, rendered with a model's own config file, shows as the
default of every option the value the command then applies; and the README names what exists."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

import eval.run.cli as ecli

# options the command defines itself (one run per value), outside the config file's defaults
OWN_FLAGS = {"baseline.train": {"class_weight"}}
CASES = [
    ("baseline.train", ["--task", "drugs"]),
    ("encoders.train", ["--task", "drugs", "--model", "minilm-l6", "--method", "full"]),
    ("encoders.train", ["--task", "drugs", "--model", "minilm-l6", "--method", "setfit"]),
    ("finetune.sft", ["--task", "drugs", "--model", "gemma3-270m"]),
    ("prompting.run", ["--task", "drugs", "--model", "hf/gemma3-270m"]),
    ("prompting.run", ["--task", "drugs", "--model", "hf/qwen2.5-coder-0.5b"]),
]


class Parsed(Exception):
    pass


def applied_and_help(modname: str, argv: list[str], monkeypatch, capsys) -> tuple[object, str]:
    try:
        mod = importlib.import_module(modname)
    except ImportError as exc:
        pytest.skip(f"{modname}: {exc}")
    real = ecli.parse_track_args
    got: dict = {}

    def spy(*args, **kwargs):
        got["cfg"], _ = real(*args, **kwargs)
        raise Parsed

    monkeypatch.setattr(ecli, "parse_track_args", spy)
    if hasattr(mod, "parse_track_args"):
        monkeypatch.setattr(mod, "parse_track_args", spy)
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: the default is not wrapped
    with pytest.raises(Parsed):
        mod.cli(argv)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        mod.cli([*argv, "--help"])
    return got["cfg"], capsys.readouterr().out


@pytest.mark.parametrize(("modname", "argv"), CASES)
def test_help_shows_the_defaults_that_apply(modname: str, argv: list[str], monkeypatch, capsys) -> None:
    cfg, text = applied_and_help(modname, argv, monkeypatch, capsys)
    fields = {f.name for f in dataclasses.fields(cfg)}
    given = {a.lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    checked = 0
    entries: list[str] = []  # one per option: its flag line and the help under it (a long flag moves it down)
    for line in text.splitlines():
        if re.match(r"\s{2}-", line):
            entries.append(line)
        elif entries and line.startswith("   ") and line.strip():
            entries[-1] += " " + line.strip()
    for line in entries:
        m = re.match(r"\s+--([\w-]+)(?:, --no-[\w-]+)?\b.*\(default: (.*?)(?:, from [^)]+)?\)$", line)
        if not m or m.group(1).replace("-", "_") not in fields:
            continue
        name = m.group(1).replace("-", "_")
        if name in given or name in OWN_FLAGS.get(modname, set()):
            continue  # the command line set it: help shows the default without it
        value = getattr(cfg, name)
        shown = m.group(2)
        assert shown == str(value), f"{modname} {' '.join(argv)}: --{m.group(1)} shows {shown!r}, applies {value!r}"
        checked += 1
    assert checked >= (1 if modname == "baseline.train" else 5), text
    from eval.inputs.data import task_names

    task_entry = next(e for e in entries if re.match(r"\s+--task\b", e))
    assert all(t in task_entry for t in task_names()), task_entry  # rotten and chnsenti too


def test_the_readme_lists_what_exists() -> None:
    readme = Path("README.md").read_text(encoding="utf-8")
    for spec in sorted(Path("sweeps").glob("*.yaml")):
        assert f"`{spec.stem}`" in readme or spec.name in readme, f"sweeps/{spec.name} is not in the README"
    from eval.inputs.data import task_names

    help_text = ecli.task_help()
    for task in task_names():  # every --task help lists every task (rotten and chnsenti included)
        assert task in help_text
