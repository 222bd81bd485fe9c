"""Running runs: the one loop every track's command line ends with, and the one way a spec is run.

    track_cli(build, run, results_dir=..., overwrite=..., dry_run=..., debug=...)   # a track's CLI body
    run_spec(spec, results_dir)                                                     # what every executor calls

`track_cli` is the same for every track: build the specs and load the data (a bad flag or file fails here, one
line), preflight every run at once (eval/run/preflight.py: exit 2 with every problem, before any model is loaded; the
same checks with `--dry-run`), then print the plan (`--dry-run`) or run what has no record yet. A failed run does not
lose the others (`run_all`). This module sits above eval.run.records, eval.run.preflight and eval.tracks; none of them
imports it, so there is no cycle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eval.run.records import RunSpec, _slug, is_done, record_path


class RunsFailed(RuntimeError):
    """Some runs of a command failed; the message says how many and the last error."""


def should_run(spec: RunSpec, results_dir: str | Path, overwrite: bool = False, quiet: bool = False) -> bool:
    if overwrite or not is_done(spec, results_dir):
        return True
    if not quiet:
        print(f"skip {spec.run_id}: record exists at {record_path(spec, results_dir)} (--overwrite reruns it)",
              file=sys.stderr)
    return False


def print_plan(specs: Sequence[RunSpec], results_dir: str | Path) -> None:
    """One line per run: its id and whether its record exists (a track command's --dry-run)."""
    for spec in specs:
        print(f"{spec.track}  {spec.run_id}  {'done' if is_done(spec, results_dir) else 'todo'}")


def run_all(specs: Sequence[RunSpec], results_dir: str | Path, overwrite: bool, run: Callable[[RunSpec], object],
            desc: str, note: str = "", debug: bool = False) -> int:
    """Skip runs whose record exists (unless `overwrite`), run the rest one by one with a progress bar, then say what
    was done. A run that fails does not lose the others: its error is printed, the remaining runs go on (unless the
    same error repeats, which no other run will escape), and a RunsFailed error at the end lists the failures.
    Returns how many runs were written. (Preflight is the caller's: `track_cli` does it for every run at once.)"""
    from tqdm.auto import tqdm

    todo = [s for s in specs if should_run(s, results_dir, overwrite)]
    failed: list[tuple[RunSpec, str]] = []
    written = 0
    for spec in tqdm(todo, desc=desc, disable=not todo):
        try:
            run(spec)
            written += 1
        except Exception as exc:  # noqa: BLE001 -- reported below; the finished runs keep their records
            if debug:
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"run {spec.run_id} failed: {msg}", file=sys.stderr)
            failed.append((spec, msg))
            if len(failed) >= 2 and failed[-1][1] == failed[-2][1]:
                break
    where = f"{results_dir}/runs/{_slug(specs[0].task)}/{specs[0].track}/" if specs else str(results_dir)
    print(f"{written} run(s) written, {len(specs) - len(todo)} already done, under {where}{note}", file=sys.stderr)
    if failed:
        skipped = len(todo) - written - len(failed)
        rest = f", {skipped} not started after the same error twice" if skipped > 0 else ""
        raise RunsFailed(f"{len(failed)} run(s) failed{rest}: {failed[-1][1]} (the finished runs' records are "
                         "kept; fix the cause, then the same command runs only what is missing)")
    return written


def one_by_one(run_one: Callable[[RunSpec, Any], object], results_dir: str | Path, overwrite: bool, desc: str,
               note: str = "", debug: bool = False) -> Callable[[Sequence[RunSpec], Any], object]:
    """`track_cli`'s `run` for a track whose runs are independent: `run_all` over them, each given the loaded task."""
    return lambda specs, task: run_all(specs, results_dir, overwrite, lambda spec: run_one(spec, task), desc=desc,
                                       note=note, debug=debug)


def track_cli(build: Callable[[], tuple[Sequence[RunSpec], Any]], run: Callable[[Sequence[RunSpec], Any], object], *,
              results_dir: str | Path, dry_run: bool, debug: bool = False,
              done: Callable[[], object] | None = None) -> int:
    """The body of every track's command line, after its flags are parsed. `build()` returns the command's specs and
    the loaded task; every run is preflighted at once (the same checks with and without `--dry-run`: exit 2 with
    the list); then `--dry-run` prints the plan, else `run(specs, task)` runs them (skipping those with a record).
    Errors become one line and exit 2 (eval.run.cli.report_errors); `done` runs after the runs (e.g. closing a process
    group: every process of a data-parallel launch meets there, so a failed process skips it and exits)."""
    from eval.run.cli import report_errors
    from eval.run.preflight import check, fail_if

    def body() -> int:
        specs, task = build()
        if hasattr(task, "summary"):  # the data line: task name, sizes, how each file was decoded; then what is
            print(task.summary(), file=sys.stderr)  # legal but probably not meant (a declared label with no example)
            for warning in task.warnings():
                print(f"warning: {warning}", file=sys.stderr)
        fail_if(check(specs, results_dir, task))
        if dry_run:
            print_plan(specs, results_dir)
            return 0
        run(specs, task)
        if done is not None:
            done()
        return 0

    return report_errors(body, debug)


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
    from eval.run.preflight import check, fail_if
    from eval.tracks import DataRef, track

    t = track(spec.track)
    diff = spec_mismatch(spec, t.respec(spec))
    if diff:
        raise ValueError(f"run {spec.run_id} was planned with other settings than this checkout gives it: {diff}; "
                         "plan it again (rerun the sweep or the track command) to get its current run id")
    task = DataRef.of(spec).load()
    fail_if(check([spec], results_dir, task))
    return t.run(spec, results_dir, task)
