"""Sweeps: a grid of runs in one YAML file, expanded to RunSpecs, planned, validated and run (locally or on Ray).

    python eval/sweep.py sweeps/demo.yaml --dry-run                # plan + validation, runs nothing
    python eval/sweep.py sweeps/demo.yaml                          # run what is not done yet, one run at a time
    python eval/sweep.py sweeps/demo.yaml --max-parallel 2         # two runs at once, each in its own process
    python eval/sweep.py sweeps/imdb_encoders.yaml --executor ray  # one Ray task per run (RAY_ADDRESS honoured)
    python -m eval.run.sweep --run-one '{"track": "baseline", ...}' --results-dir results  # one run (executors)

A spec file (sweeps/*.yaml; the first line is the command that runs it):

    name: demo                      # required; names the log folder results/logs/<name>/
    description: ...                # optional, free text
    max_concurrency: 4              # optional: at most this many prompting runs at once (they share one server)
    resources: {encoders: {num_cpus: 2}}   # optional, Ray only: override a track's per-run resource request
    task: drugs                     # any block key written here is the default for every block
    seeds: [0, 1]
    blocks:                         # optional; without it the top level is the only block
      - track: baseline             # block keys: track task model method n_train seeds n_eval options
        model: tfidf-lr
        method: tfidf-lr
        n_train: [16, 64, full]     # 'full' = the whole training pool; 0 = zero-shot prompting
        options:
          C: 10.0                   # a plain option is fixed: the same value in every run (lists stay lists)
          grid:                     # options under `grid:` expand: one run per value (cartesian product)
            class_weight: [balanced, none]

`track`, `task`, `model`, `method`, `n_train`, `seeds` and `n_eval` take one value or a list; every block expands to
the cartesian product in the order task > model > method > option grid > n_train > n_eval > seed, blocks in file
order, so the plan (and every run id) is stable. Block `options` are merged over top-level `options` (and their
`grid:` entries likewise). A run that two blocks both produce is kept once. Unknown keys fail with the known ones.

Every run is built by its track's contract (eval/tracks.py): `config_from_options(model, method, options)` then
`make_spec(config, data, n_train, seed, n_eval)`, the same `make_spec` the track's CLI calls, so a sweep's run and
the same run started from the track command have one run id. Building the config is the option check: an unknown
option or a bad value is a problem of the plan.

Validation (always, before anything runs; `--dry-run` stops after it; eval/run/preflight.py): tracks exist, every
block's options build a config, tasks exist and their data loads, n_train / n_eval fit each task's data, models are
aliases in eval/models.yaml or plausible ids (`org/name`, `name:tag`, `provider/...`), the results dir is writable, and
(when the sweep runs here) each track can run on this machine. All problems are reported at once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eval.inputs.data import DataError, parse_n_train, task_path  # noqa: E402
from eval.run.cli import type_problems  # noqa: E402
from eval.run.preflight import model_problem  # noqa: E402
from eval.run.records import RunSpec, is_done, varying_options  # noqa: E402
from eval.tracks import TRACKS, DataRef, track  # noqa: E402

BLOCK_KEYS = ("track", "task", "model", "method", "n_train", "seeds", "n_eval", "options")
SPEC_KEYS = ("name", "description", "max_concurrency", "resources", "blocks", *BLOCK_KEYS)
REQUIRED_BLOCK_KEYS = ("track", "task", "model", "method")


class SweepError(ValueError):
    """A spec file problem; the message names the file, the place and the fix."""


@dataclass
class Sweep:
    name: str
    path: Path
    runs: list[RunSpec]
    description: str = ""
    max_concurrency: int | None = None
    resources: dict[str, dict] = field(default_factory=dict)
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)  # runs that could not be built (bad track or options)


# --- loading and expansion ------------------------------------------------------------------------------------------

def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_keys(data: dict, known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SweepError(f"{where}: unknown keys {unknown}; known keys are {list(known)}")


def _merge_options(base: dict | None, over: dict | None, where: str) -> dict:
    """Block options over top-level options; `grid:` entries merged key by key rather than replaced."""
    for opts, w in ((base, "top level"), (over, where)):
        if opts is not None and not isinstance(opts, dict):
            raise SweepError(f"{w}: options must be a mapping (option: value, grid: {{option: [values]}})")
        if opts and "grid" in opts and not isinstance(opts["grid"], dict):
            raise SweepError(f"{w}: options.grid must be a mapping of option -> list of values")
    merged = {**(base or {}), **(over or {})}
    grid = {**((base or {}).get("grid") or {}), **((over or {}).get("grid") or {})}
    merged.pop("grid", None)
    if grid:
        merged["grid"] = grid
    return merged


def _option_sets(options: dict) -> list[dict]:
    """Fixed options plus one combination of the `grid:` values (keys in file order)."""
    fixed = {k: v for k, v in options.items() if k != "grid"}
    grid = options.get("grid") or {}
    clash = sorted(set(grid) & set(fixed))
    if clash:
        raise SweepError(f"options {clash} are both fixed and in grid:; keep each option in one place")
    keys = list(grid)
    return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*(_as_list(grid[k]) for k in keys))]


def expand_block(block: dict, where: str, problems: list[str]) -> list[RunSpec]:
    """The block's runs, each built by its track's `make_spec`; a combination whose config does not build is a
    problem (one line per distinct message), not a run."""
    found: list[str] = []  # every problem of the block, not just the first
    missing = [k for k in REQUIRED_BLOCK_KEYS if block.get(k) in (None, [], "")]
    if missing:
        raise SweepError(f"{where}: missing {missing} (set them in the block or at the top level)")

    def each(key: str, default: object, parse) -> list:
        out = []
        for v in _as_list(block.get(key, default)):
            try:
                out.append(parse(v))
            except (DataError, TypeError, ValueError) as exc:
                found.append(f"{key}: {exc}" if key == "n_train" else f"{key}: {v!r} is not a whole number")
        return out

    n_trains = each("n_train", "full", parse_n_train)
    n_evals = each("n_eval", None, lambda n: None if n is None else int(n))
    seeds = each("seeds", [0], int)
    runs = []
    for name, task, model, method, opts in itertools.product(
            _as_list(block["track"]), _as_list(block["task"]), _as_list(block["model"]), _as_list(block["method"]),
            _option_sets(block.get("options") or {})):
        label = f"{where}: {name}/{task}/{model}/{method}"
        try:
            t = track(str(name))
            wrong = type_problems(t.load().Config, opts, choices=False)
            if wrong:  # every option of the wrong type at once, before the config's own (first-problem) checks
                raise ValueError("; ".join(wrong))
            cfg = t.config_from_options(str(model), str(method), opts)
            runs += [t.make_spec(cfg, DataRef(str(task)), "full" if n is None else n, seed, n_eval)
                     for n in n_trains for n_eval in n_evals for seed in seeds]
        except (DataError, TypeError, ValueError, ImportError, FileNotFoundError) as exc:
            msg = f"{label}: {exc}"
            if found:  # the block's sizes are wrong too: one error with all of it
                found.append(f"{name}/{task}/{model}/{method}: {exc}")
            elif msg not in problems:
                problems.append(msg)
    if found:
        raise SweepError(f"{where}: {'; '.join(dict.fromkeys(found))}")
    return runs


def load_sweep(path: str | Path) -> Sweep:
    """Parse and expand a spec file (structure only; `validate` checks tracks, tasks, models and options)."""
    path = Path(path)
    if not path.exists():
        known = ", ".join(sorted(p.name for p in Path("sweeps").glob("*.yaml"))) or "none in ./sweeps"
        raise SweepError(f"no sweep spec at {path}; specs: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep spec is a mapping with keys {list(SPEC_KEYS)}")
    _check_keys(data, SPEC_KEYS, str(path))
    if not data.get("name"):
        raise SweepError(f"{path}: missing `name:` (it names the sweep's log folder)")
    mc = data.get("max_concurrency")
    if mc is not None and (not isinstance(mc, int) or mc < 1):
        raise SweepError(f"{path}: max_concurrency must be a whole number >= 1, got {mc!r}")
    resources = data.get("resources") or {}
    if not isinstance(resources, dict) or any(t not in TRACKS or not isinstance(r, dict)
                                               for t, r in resources.items()):
        raise SweepError(f"{path}: resources maps a track ({', '.join(TRACKS)}) to Ray options, "
                         "e.g. {encoders: {num_cpus: 2}}")
    defaults = {k: data[k] for k in BLOCK_KEYS if k in data}
    blocks = data.get("blocks")
    if blocks is None:
        blocks = [{}]
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SweepError(f"{path}: blocks must be a list of mappings with keys {list(BLOCK_KEYS)}")
    runs: list[RunSpec] = []
    seen: set[str] = set()
    duplicates = 0
    problems: list[str] = []
    for i, block in enumerate(blocks):
        where = f"{path} blocks[{i}]" if data.get("blocks") is not None else str(path)
        _check_keys(block, BLOCK_KEYS, where)
        merged = {**defaults, **block, "options": _merge_options(defaults.get("options"), block.get("options"), where)}
        for spec in expand_block(merged, where, problems):
            key = spec.run_id
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            runs.append(spec)
    return Sweep(name=str(data["name"]), path=path, runs=runs, description=str(data.get("description") or ""),
                 max_concurrency=mc, resources=resources, duplicates=duplicates, problems=problems)


# --- validation -----------------------------------------------------------------------------------------------------

def validate(sweep: Sweep, results_dir: str | Path | None = None, here: bool = True
             ) -> tuple[list[str], list[str]]:
    """(problems, notes), every problem at once. Problems stop the sweep: runs that did not build, unknown tasks or
    models, an unwritable results dir, n_train / n_eval that do not fit a task's data (eval/run/preflight.py). What
    the tracks say cannot run on this machine (e.g. 4-bit without CUDA) is a problem when `here` (the sweep is
    about to run here) and a note otherwise (a dry run may plan for another machine). Notes also say what could
    not be checked (a task whose data does not load here)."""
    from eval.inputs.data import load_task
    from eval.run.preflight import data_problems, writable_problem
    from eval.tracks import track

    problems: list[str] = list(sweep.problems)
    notes: list[str] = []

    def add(where: list[str], msg: str | None) -> None:
        if msg and msg not in where:
            where.append(msg)

    if results_dir is not None:
        add(problems, writable_problem(results_dir))
    tasks: dict[str, object] = {}
    for spec in sweep.runs:
        where = f"{spec.track}/{spec.task}/{spec.model}/{spec.method}"
        if spec.task not in tasks:
            tasks[spec.task] = None
            try:
                task_path(spec.task)
                tasks[spec.task] = load_task(spec.task)
            except DataError as exc:
                add(problems if "unknown task" in str(exc) else notes,
                    f"{where}: {exc}" if "unknown task" in str(exc)
                    else f"data checks for task {spec.task} skipped: its data does not load here "
                    f"({str(exc).splitlines()[0]})")
        add(problems, f"{where}: {m}" if (m := model_problem(spec.track, spec.model)) else None)
        if tasks[spec.task] is not None:
            for p in data_problems(spec, tasks[spec.task]):
                add(problems, f"{where}: {p}")
        for p in track(spec.track).preflight(spec):
            add(problems if here else notes, f"{where}: {p}" + ("" if here else " (on this machine)"))
    return problems, notes


# --- plan -----------------------------------------------------------------------------------------------------------

def _varying_options(runs: list[RunSpec]) -> dict[tuple[str, str, str], list[str]]:
    """Per (track, model, method): the option keys that vary between its runs (eval.run.records.varying_options)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r.track, r.model, r.method), []).append(r.options)
    return dict(zip(groups, varying_options(groups.values())))


def format_plan(sweep: Sweep, results_dir: str | Path) -> tuple[str, list[RunSpec]]:
    """The plan table and the runs still to do. Status comes from the record files, so the plan is always current.
    The options column shows only the options that vary within a track+model+method (the rest are in the records)."""
    opt_keys = _varying_options(sweep.runs)
    header = ["#", "track", "task", "model", "method", "n_train", "n_eval", "seed", "options", "status"]
    rows, todo = [], []
    for i, r in enumerate(sweep.runs, 1):
        done = is_done(r, results_dir)
        if not done:
            todo.append(r)
        keys = opt_keys[(r.track, r.model, r.method)]
        opts = " ".join(f"{k}={r.options[k]}" for k in keys if k in r.options) or "-"
        rows.append([str(i), r.track, r.task, r.model, r.method, str(r.n_train),
                     "all" if r.n_eval is None else str(r.n_eval), str(r.seed), opts, "done" if done else "todo"])
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    n, m = len(sweep.runs), len(sweep.runs) - len(todo)
    dup = f" ({sweep.duplicates} duplicate run(s) across blocks kept once)" if sweep.duplicates else ""
    lines += ["", f"sweep {sweep.name}: {n} runs, {m} already done, {len(todo)} to run{dup}"]
    return "\n".join(lines), todo


# --- one run (the entry point every executor uses) ------------------------------------------------------------------

def run_one_json(spec_json: str, results_dir: str) -> int:
    """Run one spec given as JSON; on failure print the traceback and return 1, so the caller's log has the cause."""
    from eval.run.runner import run_spec

    try:
        spec = RunSpec(**json.loads(spec_json))
        run_spec(spec, results_dir)
    except Exception:  # noqa: BLE001 -- any failure of a run is reported, never hidden
        traceback.print_exc()
        return 1
    return 0


# --- CLI ------------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", help="a sweep spec, e.g. sweeps/demo.yaml")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and validate; run nothing")
    ap.add_argument("--executor", choices=["local", "ray"], default="local")
    ap.add_argument("--max-parallel", type=int, default=None,
                    help="local: runs at once, each in its own process (default 1); ray: cap on tasks in flight "
                         "(default: as many as the cluster's resources allow)")
    ap.add_argument("--results-dir", default="results", help="where run records go (default: results/)")
    ap.add_argument("--overwrite", action="store_true", help="rerun runs whose records exist")
    ap.add_argument("--no-leaderboard", action="store_true", help="skip regenerating the leaderboard at the end")
    ap.add_argument("--run-one", metavar="SPEC_JSON", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_one:
        return run_one_json(args.run_one, args.results_dir)
    if not args.spec:
        ap.error("give a sweep spec, e.g. python eval/sweep.py sweeps/demo.yaml")
    if args.max_parallel is not None and args.max_parallel < 1:
        ap.error("--max-parallel must be >= 1")
    try:
        sweep = load_sweep(args.spec)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan, todo = format_plan(sweep, args.results_dir)
    if args.overwrite:
        todo = list(sweep.runs)
    print(plan)
    problems, notes = validate(sweep, args.results_dir, here=not args.dry_run)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if problems:
        print(f"error: {args.spec} has {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"dry run: {args.spec} is valid; nothing was run")
        return 0
    if not todo:
        print(f"nothing to do: all {len(sweep.runs)} runs of {sweep.name} have records under {args.results_dir} "
              "(--overwrite reruns them)")
        return 0
    from eval.run.executors import run_all, summarize

    outcomes = run_all(sweep, todo, args.results_dir, executor=args.executor, max_parallel=args.max_parallel)
    if not args.no_leaderboard:
        from eval.decide.leaderboard import build

        out, _ = build(args.results_dir)
        print(f"leaderboard: {out}")
    return summarize(outcomes)


if __name__ == "__main__":
    raise SystemExit(main())
