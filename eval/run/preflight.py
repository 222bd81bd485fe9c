"""Preflight: everything that can be checked before a model is loaded, checked for every run of a command, and
reported at once, one line per problem naming the fix.

    problems = check(specs, results_dir, task)      # [] when all is well
    fail_if(problems)                               # raises PreflightError with the whole list

Checked here: the results directory is writable; the model is an alias, a local folder or a plausible id (near
matches listed); ad-hoc data named with --task is not pooled with other data under that name; the task has at
least two labels in its training pool; n_train is >= 1 for the training tracks and no larger than the pool, with
the flag the user typed (`--shots` for prompting); n_eval fits the test set; and the track's own `preflight(spec)`
(eval/tracks.py), e.g. an SFT export or backend that cannot run on this machine.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from eval.run.records import RunSpec

PROVIDERS = ("hf", "ollama", "openai", "unsloth")  # `provider/model` prefixes the tracks understand
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_OLLAMA_TAG = re.compile(r"^[A-Za-z0-9][\w.-]*:[\w.-]+$")


class PreflightError(ValueError):
    """One or more problems found before any work; `str()` is the whole report."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        head = self.problems[0] if len(self.problems) == 1 else f"{len(self.problems)} problems, nothing was run:"
        body = "" if len(self.problems) == 1 else "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(head + body)


def writable_problem(results_dir: str | Path) -> str | None:
    """None when records can be written under results_dir (checked by writing a temporary file there)."""
    path = Path(results_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".preflight-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot write records under {path} ({reason}): pick another folder with --results-dir"
    return None


def near(name: str, choices: Iterable[str], n: int = 3) -> str:
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def model_problem(track: str, model: str) -> str | None:
    """None when `model` is an alias, a local folder or looks like an id the track can load; else the problem with
    the closest aliases."""
    from eval.lm.models import aliases, resolve
    from eval.tracks import known

    t = known(track)
    if t is not None and t.model_is_name:
        return None  # e.g. the TF-IDF baseline: its model is its own label (tfidf-lr)
    name = model
    provider, _, rest = model.partition("/")
    if provider in PROVIDERS and rest:
        name = rest
    if resolve(name).alias or Path(name).expanduser().is_dir() or _HUB_ID.match(name) or _OLLAMA_TAG.match(name):
        return None
    unknown = (f"unknown model {model!r}: not an alias in eval/models.yaml, a local folder, an org/name hub id or a "
               "name:tag")
    if " " in name or not name:
        return f"{unknown}{near(name, aliases())}"
    if provider == "openai" and rest:
        return None  # whatever the server serves; its model list is checked when the run starts
    hint = near(name, aliases())
    if hint:  # a typo of an alias, not one of the hub's legacy ids without an org (gpt2, bert-base-cased)
        return f"{unknown}{hint}"
    if provider != "ollama" and os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hub_cache(name):
        return (f"model {model!r} is not an alias and not in the local hub cache, and HF_HUB_OFFLINE=1: use an alias "
                "with an offline package (eval/models.yaml) or a local folder")
    return None


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return True  # cannot tell: let the loader decide
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def data_problems(spec: RunSpec, task) -> list[str]:
    """n_train / n_eval against the task's pool and test set, and at least two labels to learn."""
    from eval.tracks import track

    out = []
    t = track(spec.track)
    flag, trained = t.n_train_flag, t.trained
    pool = len(task.pool)
    if trained and spec.n_train == 0:
        out.append(f"{flag} 0: the {spec.track} track learns from labelled examples; give at least 1 (or 'full')")
    elif isinstance(spec.n_train, int) and spec.n_train > pool:
        what = "training subsets come from" if trained else "few-shot examples come from"
        out.append(f"{flag} {spec.n_train} exceeds the {pool} training examples of {task.name} (the {what} there); "
                   f"use at most {pool}" + (" or 'full'" if trained else ""))
    if spec.n_eval is not None and not 1 <= spec.n_eval <= len(task.test_all):
        out.append(f"--n-eval {spec.n_eval} is outside 1..{len(task.test_all)} (the test set of {task.name}); "
                   "leave it out to use the whole test set")
    if trained and len({e.label for e in task.pool}) < 2:
        found = sorted({e.label for e in task.pool})
        out.append(f"task {task.name} has {len(found)} distinct label(s) in its training data ({', '.join(found)}); "
                   "a classifier needs at least 2: check --label-column and --labels")
    return out


def same_name_problem(spec: RunSpec, results_dir: str | Path) -> str | None:
    """Ad-hoc data named with --task: the records already under that name must be of the same file content, so one
    name (one results folder, one leaderboard table) never pools two data sets."""
    import json

    from eval.inputs.data import slug

    if not spec.data:
        return None
    mine = (spec.data.get("sha256"), spec.data.get("test_sha256"))
    for path in sorted((Path(results_dir) / "runs" / slug(spec.task)).glob("*/*.json")):
        try:
            ref = json.loads(path.read_text(encoding="utf-8")).get("data")
        except (OSError, ValueError, AttributeError):
            continue
        if ref is None:
            return (f"task name {spec.task!r} is taken by the named task's records under {path.parent.parent}: name "
                    "your data another --task")
        theirs = (ref.get("sha256"), ref.get("test_sha256"))
        if theirs != mine:
            return (f"task name {spec.task!r} already has runs of other data ({ref.get('file')}, sha256 "
                    f"{str(theirs[0])[:12]}…, in {path.parent.parent}): name this data another --task, or leave "
                    "--task out for a name derived from its content")
    return None


def check(specs: Sequence[RunSpec], results_dir: str | Path, task=None) -> list[str]:
    """All problems of these runs, each once, in the order found. `task` (the loaded TaskData) enables the data
    checks; without it (a sweep's dry run loads no data) they are skipped."""
    from eval.tracks import track

    problems: list[str] = []

    def add(p: str | None) -> None:
        if p and p not in problems:
            problems.append(p)

    add(writable_problem(results_dir))
    for spec in specs:
        add(model_problem(spec.track, spec.model))
        add(same_name_problem(spec, results_dir))
        if task is not None:
            for p in data_problems(spec, task):
                add(p)
        for p in track(spec.track).preflight(spec):
            add(p)
    return problems


def fail_if(problems: Sequence[str]) -> None:
    if problems:
        raise PreflightError(problems)

