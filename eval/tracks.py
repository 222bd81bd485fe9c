"""The Track contract: everything the harness knows about a track, in one place.

A track is a module (imported lazily: a missing extra costs nothing until the track is used, then raises an install
hint) that defines:

- `Config`: its typed config dataclass; each field's metadata says whether it changes the result (`role="result"`,
  part of `RunSpec.options` and the run id) or not (`"runtime"`, `"spec"`, `"cli"`; see eval.cli.option);
- `config_from_options(model, method, options) -> Config`: how a sweep block becomes a config (the track's config
  files filled in, unknown keys fail);
- `make_spec(config, data, n_train, seed, n_eval) -> RunSpec`: the one place a run's identity is built; the track's
  CLI and eval/sweep.py both call it, so the same run has the same run id whichever way it is started;
- `config_from_spec(spec) -> Config`: the inverse, so a spec alone reproduces the run;
- `run_one(spec, results_dir) -> Path`: run it and return the record path;
- optionally `preflight(spec) -> list[str]`: cheap checks (no model load) that name the fix.

`data` is a `DataRef`: the task name and, for ad-hoc `--data` files, their reference with content hashes
(eval.dataref). Building the config *is* the validation: an unknown option or a bad value fails there, before any
work, in the CLI and in `eval/sweep.py --dry-run` alike.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from eval.records import RunSpec


@dataclass(frozen=True)
class DataRef:
    """The data of a run: a task name, plus the file reference of ad-hoc `--data` (None for a named task)."""

    task: str
    ref: dict | None = None

    @classmethod
    def of(cls, spec: RunSpec) -> DataRef:
        return cls(spec.task, spec.data)

    def load(self) -> Any:
        from eval.dataref import load_ref

        return load_ref(self.task, self.ref)


@dataclass(frozen=True)
class Track:
    name: str
    module: str  # where Config, config_from_options, make_spec, config_from_spec and run_one live
    extra: str  # the pyproject extra that installs its dependencies ("" for the base install)
    gpu: bool = False  # wants an accelerator (executors ask Ray for one when the cluster has it)
    server: bool = False  # shares one model server: the sweep's max_concurrency caps these runs
    cpus: int = 1  # CPUs a run asks for without a GPU

    def load(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            if exc.name == self.module:
                raise
            hint = f"pip install -e '.[{self.extra}]'" if self.extra else "pip install -e ."
            raise ImportError(f"the {self.name} track needs packages that are not installed ({exc.name}): "
                              f"{hint}") from exc

    # --- the contract, delegated to the track module ---------------------------------------------------------
    def config_from_options(self, model: str, method: str, options: dict) -> Any:
        return self.load().config_from_options(model, method, dict(options))

    def make_spec(self, config: Any, data: DataRef, n_train: int | str, seed: int, n_eval: int | None) -> RunSpec:
        return self.load().make_spec(config, data, n_train, seed, n_eval)

    def config_from_spec(self, spec: RunSpec) -> Any:
        return self.load().config_from_spec(spec)

    def respec(self, spec: RunSpec) -> RunSpec:
        """spec -> config -> spec: what this checkout builds from `spec` (equal to it unless something it depends
        on changed: a prompt file, a config default, the weights this machine would load)."""
        rebuilt = self.make_spec(self.config_from_spec(spec), DataRef.of(spec), spec.n_train, spec.seed,
                                 spec.n_eval)
        return dataclasses.replace(rebuilt, runtime={**rebuilt.runtime, **spec.runtime})

    def preflight(self, spec: RunSpec) -> list[str]:
        hook = getattr(self.load(), "preflight", None)
        return list(hook(spec)) if hook else []

    def run(self, spec: RunSpec, results_dir: str) -> Path:
        return self.load().run_one(spec, results_dir)

    def label(self, record: dict) -> str:
        """How the leaderboard names a run's series."""
        return f"{record.get('model')} {record.get('method')}"


TRACKS: dict[str, Track] = {t.name: t for t in (
    Track("baseline", "eval.baseline", ""),
    Track("encoders", "encoders.train", "encoders", gpu=True, cpus=2),
    Track("finetune", "finetune.sft", "finetune", gpu=True, cpus=2),
    Track("prompting", "prompting.run", "prompting", server=True),
)}


def track(name: str) -> Track:
    if name not in TRACKS:
        raise ValueError(f"unknown track {name!r}; tracks are {', '.join(TRACKS)}")
    return TRACKS[name]


def spec_mismatch(spec: RunSpec, rebuilt: RunSpec) -> str | None:
    """None when equal; else which parts differ, for a one-line error."""
    if rebuilt == spec:
        return None
    a, b = spec.identity(), rebuilt.identity()
    diffs = [k for k in a if k != "options" and a.get(k) != b.get(k)]
    oa, ob = a.get("options") or {}, b.get("options") or {}
    diffs += [f"options.{k} ({oa.get(k)!r} in the spec, {ob.get(k)!r} here)" for k in sorted(set(oa) | set(ob))
              if oa.get(k) != ob.get(k)]
    return ", ".join(diffs) or "data reference"


def run_spec(spec: RunSpec, results_dir: str) -> Path:
    """Run one spec (what every executor calls). The spec must be what this checkout builds for it; otherwise the
    record would carry a run id that does not describe the run (a prompt file or default changed since it was
    planned), so it stops with the difference and the fix."""
    from eval.preflight import check, fail_if

    t = track(spec.track)
    diff = spec_mismatch(spec, t.respec(spec))
    if diff:
        raise ValueError(f"run {spec.run_id} was planned with other settings than this checkout gives it: {diff}; "
                         "plan it again (rerun the sweep or the track command) to get its current run id")
    fail_if(check([spec], results_dir, DataRef.of(spec).load()))
    return t.run(spec, results_dir)


def runner(name: str) -> Any:
    """The track's `run_one` (kept for callers of the earlier registry)."""
    return track(name).load().run_one
