"""The Track contract: everything the harness knows about a track, in one place.

The harness never names a track: what it asks (what a track learns from, its size flag, where it sorts, whether it
is an LLM, the command that reproduces a run, its preflight and doctor checks) is answered by the track's entry in
`TRACKS` below or by its module. A track is a module, imported lazily (a missing extra costs nothing until the track
is used, then raises an install hint), that implements `TrackModule`:

- `Config`: its typed config dataclass; each field's metadata says whether it changes the result (`role="result"`,
  part of `RunSpec.options` and the run id) or not (`"runtime"`, `"spec"`, `"cli"`; see eval.run.cli.option);
- `config_from_options(model, method, options) -> Config`: how a sweep block becomes a config (the track's config
  files filled in, unknown keys fail);
- `make_spec(config, data, n_train, seed, n_eval) -> RunSpec`: the one place a run's identity is built; the track's
  CLI and eval/run/sweep.py both call it, so the same run has the same run id whichever way it is started;
- `config_from_spec(spec) -> Config`: the inverse, so a spec alone reproduces the run;
- `run_one(spec, results_dir, task=None) -> Path`: run it and return the record path (`task`: the loaded data,
  when the caller has it);
- `preflight(spec) -> list[str]`: cheap checks (no model load) that name the fix;
- `command(model, method, task, n, seeds, n_eval, options) -> str`: the arguments of its CLI that add this run;
- `cli(argv) -> int`: its command line (eval/run/runner.py's `track_cli` loop);
- `doctor_checks(facts) -> list[eval.doctor.Check]`: what `python -m eval.doctor` says about it on this machine.

`data` is a `DataRef`: the task name and, for ad-hoc `--data` files, their reference with content hashes
(eval.inputs.dataref). Building the config *is* the validation: an unknown option or a bad value fails there, before
any work, in the CLI and in `eval/run/sweep.py --dry-run` alike. tests/test_track_battery.py runs the same checks over
every registered track; a new track that passes them is done (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from eval.run.records import RunSpec


@dataclass(frozen=True)
class DataRef:
    """The data of a run: a task name, plus the file reference of ad-hoc `--data` (None for a named task)."""

    task: str
    ref: dict | None = None

    @classmethod
    def of(cls, spec: RunSpec) -> DataRef:
        return cls(spec.task, spec.data)

    def load(self) -> Any:
        from eval.inputs.dataref import load_ref

        return load_ref(self.task, self.ref)


def data_flags(ref: dict | None, labels_flag: str = "--labels") -> str:
    """The flags (leading space) that give a command the ad-hoc data of a data reference (eval/inputs/dataref.py), with
    the encoding each file was read with, so the command reads the same text; "" for a named task. `labels_flag`:
    the flag of the label list (settle and recommend take it as --label-names: their --labels is the budget)."""
    if not ref:
        return ""
    import shlex

    pairs = [("--data", ref.get("file")), ("--test-data", ref.get("test_file")),
             ("--text-column", ref.get("text_column")), ("--label-column", ref.get("label_column")),
             (labels_flag, ",".join(ref["labels"]) if ref.get("labels") else None),
             ("--encoding", ref.get("encoding") if ref.get("encoding") not in (None, "utf-8") else None)]
    return "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in pairs if value)


class TrackModule(Protocol):
    """What a track module defines, with these signatures (checked for every track by tests/test_track_battery.py)."""

    Config: type

    def config_from_options(self, model: str, method: str, options: dict) -> Any: ...

    def make_spec(self, cfg: Any, data: DataRef, n_train: int | str, seed: int, n_eval: int | None) -> RunSpec: ...

    def config_from_spec(self, spec: RunSpec) -> Any: ...

    def run_one(self, spec: RunSpec, results_dir: str, task: Any = None) -> Path: ...

    def preflight(self, spec: RunSpec) -> list[str]: ...

    def command(self, model: str, method: str, task: str, n: int | str, seeds: str, n_eval: str,
                options: dict | None) -> str: ...

    def cli(self, argv: list[str] | None = None) -> int: ...

    def doctor_checks(self, facts: dict) -> list: ...


CONTRACT = ("Config", "config_from_options", "make_spec", "config_from_spec", "run_one", "preflight", "command",
            "cli", "doctor_checks")


@dataclass(frozen=True)
class Track:
    """A registered track: its facts, and its module's contract behind typed methods."""

    name: str
    module: str  # where the TrackModule functions live
    script: str  # the command users type, relative to the repo root
    extra: str  # the pyproject extra that installs its dependencies ("" for the base install)
    kind: Literal["reference", "encoder", "llm"]  # what sort of model it runs (the report pairs encoders with LLMs)
    learns_from: Literal["labels", "shots"] = "labels"  # its n_train: training examples, or examples in the prompt
    n_train_flag: str = "--n-train"  # the flag that sets n_train on its command line
    model_is_name: bool = False  # its `model` is only a name on the leaderboard (nothing to resolve or load)
    line_style: str = "-"  # matplotlib line style of its learning curves
    gpu: bool = False  # wants an accelerator (executors ask Ray for one when the cluster has it)
    server: bool = False  # shares one model server: the sweep's max_concurrency caps these runs
    cpus: int = 1  # CPUs a run asks for without a GPU
    # its seed changes the run beyond which labelled examples it draws (initialisation, data order, sampling): False
    # for a deterministic fit or greedy decoding, whose seed matters only through the subset of the pool it picks
    seeded_training: bool = False
    # the run eval/decide/recommend.py suggests when a task has no records: (model, method, why); prompting-style
    # tracks (learns_from="shots") are suggested zero-shot
    starter: tuple[str, str, str] | None = None
    # "module:function" building the predictor of one of its records for `python -m eval.serve` (docs/serve.md):
    # function(record: dict, artifacts: Path) -> eval.serve.predictor.Predictor, imported only when serving
    predictor: str = ""

    @property
    def trained(self) -> bool:
        """Its labelled examples are training data (for a prompting track they are shots in the prompt)."""
        return self.learns_from == "labels"

    def seed_matters(self, n_train: int | str, pool: int | None = None) -> bool:
        """Another seed can change this run's result: the track's training is seeded, or the seed picks which of
        the pool's examples are used (0 < n < pool; zero-shot and the whole pool use no choice)."""
        if self.seeded_training:
            return True
        return n_train not in (0, "0", "full", None) and (pool is None or int(n_train) < pool)

    @property
    def is_llm(self) -> bool:
        return self.kind == "llm"

    @property
    def order(self) -> int:
        """Where its rows sort in tables: the order of `TRACKS`."""
        return list(TRACKS).index(self.name)

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
        return list(self.load().preflight(spec))

    def run(self, spec: RunSpec, results_dir: str, task: Any = None) -> Path:
        return self.load().run_one(spec, results_dir, task)

    def command(self, model: str, method: str, task: str, n: int | str, seeds: str, n_eval: str = "",
                options: dict | None = None, data: dict | None = None) -> str:
        """The shell command that adds this run (`n_eval`: the flag text, e.g. " --n-eval 50", or ""; `data`: the
        data reference of ad-hoc data, whose files the command must name: its task name alone is no task)."""
        args = self.load().command(model, method, task, n, seeds, n_eval, options)
        return f"python {self.script} {args}{data_flags(data)}"

    def changed_options(self, spec: RunSpec) -> dict:
        """The result-changing settings of `spec` that differ from what this track's command gives by default for
        the same model and method (nested mappings left out): the flags that make its command reproduce `spec`."""
        from eval.run.cli import fields_with_role

        cfg, default = self.config_from_spec(spec), self.config_from_options(spec.model, spec.method, {})
        return {k: getattr(cfg, k) for k in fields_with_role(type(cfg), "result")
                if getattr(cfg, k) != getattr(default, k) and not isinstance(getattr(cfg, k), dict)}

    def reproduce(self, spec: RunSpec) -> str:
        """The command that runs `spec` again (the same run id)."""
        n_eval = f" --n-eval {spec.n_eval}" if spec.n_eval else ""
        return self.command(spec.model, spec.method, spec.task, spec.n_train, str(spec.seed), n_eval,
                            self.changed_options(spec), spec.data)

    def cli(self, argv: list[str] | None = None) -> int:
        return self.load().cli(argv)

    def doctor_checks(self, facts: dict) -> list:
        return list(self.load().doctor_checks(facts))


TRACKS: dict[str, Track] = {t.name: t for t in (
    Track("baseline", "baseline.train", "baseline/train.py", "", "reference", model_is_name=True, line_style=":",
          starter=("tfidf-lr", "tfidf-lr-balanced", "the reference line every approach has to beat"),
          predictor="baseline.model:predictor"),
    Track("encoders", "encoders.train", "encoders/train.py", "encoders", "encoder", gpu=True, cpus=2,
          seeded_training=True, predictor="encoders.serve:predictor",
          starter=("minilm-l6", "full", "a fine-tuned encoder at this budget")),
    Track("finetune", "finetune.sft", "finetune/sft.py", "finetune", "llm", line_style="--", gpu=True, cpus=2,
          seeded_training=True, predictor="finetune.serve:predictor"),
    Track("prompting", "prompting.run", "prompting/run.py", "prompting", "llm", learns_from="shots",
          n_train_flag="--shots", line_style="-.", server=True,
          starter=("hf/qwen2.5-coder-0.5b", "zeroshot", "zero-shot prompting (needs no labels)"),
          predictor="prompting.serve:predictor"),
)}


def track(name: str) -> Track:
    if name not in TRACKS:
        raise ValueError(f"unknown track {name!r}; tracks are {', '.join(TRACKS)}")
    return TRACKS[name]


def known(name: str) -> Track | None:
    """The registered track of this name, or None (records from another checkout may name other tracks)."""
    return TRACKS.get(name)


def sort_key(name: str) -> int:
    """Where a track's rows sort: registry order, unknown tracks last."""
    t = known(name)
    return t.order if t else len(TRACKS)


def is_trained(name: str) -> bool:
    """Its labels are training data (an unknown track counts as not trained, as the tables always did)."""
    t = known(name)
    return t.trained if t else False
