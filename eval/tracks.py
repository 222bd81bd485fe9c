"""Track registry: the one contract a sweep (or any caller) needs to run a RunSpec of any track.

Each track module exposes `run_one(spec: RunSpec, results_dir: str) -> Path` (the record path). Everything the run
needs beyond the task/model/method/n_train/seed/n_eval is in `spec.options`, so a spec alone reproduces the run.
A track may also expose `canonical_options(model, method, options) -> dict`: the options exactly as its own CLI
would write them (config-file defaults filled in), so that a sweep and the CLI give the same run the same run id.
Modules are imported lazily: a missing extra costs nothing until its track is used, then raises an install hint.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path

from eval.records import RunSpec

TRACKS: dict[str, tuple[str, str]] = {
    # track: (module:function, extra that installs its dependencies)
    "baseline": ("eval.baseline:run_one", ""),
    "encoders": ("encoders.train:run_one", "encoders"),
    "finetune": ("finetune.sft:run_one", "finetune"),
    "prompting": ("prompting.run:run_one", "prompting"),
}


def runner(track: str) -> Callable[[RunSpec, str], Path]:
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; tracks are {', '.join(TRACKS)}")
    target, extra = TRACKS[track]
    module, func = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install -e '.[{extra}]'" if extra else "pip install -e ."
        raise ImportError(f"the {track} track needs packages that are not installed ({exc.name}): {hint}") from exc
    return getattr(mod, func)


def run_spec(spec: RunSpec, results_dir: str) -> Path:
    return runner(spec.track)(spec, results_dir)


def canonical(spec: RunSpec) -> RunSpec:
    """`spec` as the track's own CLI would write it. Unchanged when the track has no `canonical_options` hook, its
    module does not import here, or the options are invalid (validation reports those with their fix)."""
    if spec.track not in TRACKS:
        return spec
    try:
        mod = importlib.import_module(TRACKS[spec.track][0].split(":")[0])
    except ImportError:
        return spec
    hook = getattr(mod, "canonical_options", None)
    if hook is None:
        return spec
    try:
        options = hook(spec.model, spec.method, dict(spec.options))
    except (ValueError, TypeError, FileNotFoundError, SystemExit):
        return spec
    return dataclasses.replace(spec, options=options)
