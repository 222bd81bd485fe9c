"""Executors for eval/run/sweep.py: run a list of RunSpecs locally (one process per run) or as Ray tasks.

Both executors isolate failures the same way: a run that raises, crashes or is killed becomes a failed `Outcome`
(its error line and a log file with the full output and traceback) and the others go on. Both admit runs through
one `Gate`, so `--max-parallel` and the spec's `max_concurrency` (prompting runs sharing one model server) mean the
same thing everywhere.

Ray on a cluster: `RAY_ADDRESS=ray://head:10001 python eval/sweep.py sweeps/X.yaml --executor ray`. The repository
is shipped as the job's `runtime_env` working_dir (without .venv, results, .git); the nodes need the track's extras
installed (or add `pip` to the runtime_env). Records are written by the task into --results-dir (use a shared
filesystem path) and also returned to the driver, which writes them locally when they are missing, so a cluster
without a shared filesystem still ends with every record on the driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eval.run.records import REPO_ROOT, RunSpec, atomic_write, is_done, record_path
from eval.tracks import TRACKS

# what each track needs is declared once, on its Track (eval/tracks.py)
SERVER_TRACKS = tuple(t.name for t in TRACKS.values() if t.server)  # share one model server: max_concurrency
RUNTIME_ENV_EXCLUDES = [".venv", "results", ".git", "**/artifacts", "*.gguf", "*.safetensors", "*.bin"]


@dataclass
class Outcome:
    spec: RunSpec
    ok: bool
    seconds: float
    error: str | None = None  # the last line of the traceback, or how the process died
    log: Path | None = None


class Gate:
    """Admission control: at most `max_parallel` runs in flight, at most `max_concurrency` of them on a server."""

    def __init__(self, max_parallel: int | None, max_concurrency: int | None) -> None:
        self.max_parallel, self.max_concurrency = max_parallel, max_concurrency
        self.running = 0
        self.on_server = 0

    def admits(self, spec: RunSpec) -> bool:
        if self.max_parallel is not None and self.running >= self.max_parallel:
            return False
        return not (spec.track in SERVER_TRACKS and self.max_concurrency is not None
                    and self.on_server >= self.max_concurrency)

    def enter(self, spec: RunSpec) -> None:
        self.running += 1
        self.on_server += spec.track in SERVER_TRACKS

    def leave(self, spec: RunSpec) -> None:
        self.running -= 1
        self.on_server -= spec.track in SERVER_TRACKS


def log_path(results_dir: str | Path, sweep_name: str, spec: RunSpec) -> Path:
    return Path(results_dir) / "logs" / sweep_name / f"{spec.run_id}.log"


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _headline(spec: RunSpec, results_dir: str | Path) -> str:
    try:
        m = json.loads(record_path(spec, results_dir).read_text())["metrics"]
        return f"accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} valid {m['valid_rate']:.3f}"
    except (OSError, ValueError, KeyError, TypeError):
        return "record written"


def _dispatch(todo: list[RunSpec], gate: Gate, start: Callable[[RunSpec], Any], poll: Callable[[], list],
              desc: str, results_dir: str | Path) -> list[Outcome]:
    """Start runs as the gate admits them (in plan order, skipping ahead past a blocked prompting run), collect
    outcomes as they finish, and keep a progress bar with ok/failed counts."""
    queue, outcomes = list(todo), []
    bar = tqdm(total=len(todo), desc=desc, unit="run", dynamic_ncols=True)
    try:
        while queue or gate.running:
            for spec in list(queue):
                if gate.admits(spec):
                    queue.remove(spec)
                    gate.enter(spec)
                    start(spec)
            for out in poll():
                gate.leave(out.spec)
                outcomes.append(out)
                status = (f"ok   {out.spec.run_id} ({out.seconds:.1f}s) {_headline(out.spec, results_dir)}" if out.ok
                          else f"FAIL {out.spec.run_id} ({out.seconds:.1f}s): {out.error} (log: {out.log})")
                bar.write(status)
                bar.update(1)
                bar.set_postfix(ok=sum(o.ok for o in outcomes), failed=sum(not o.ok for o in outcomes))
    finally:
        bar.close()
    return outcomes


# --- local: one subprocess per run ----------------------------------------------------------------------------------

def run_local(todo: list[RunSpec], results_dir: str | Path, sweep_name: str, max_parallel: int = 1,
              max_concurrency: int | None = None) -> list[Outcome]:
    """Each run is `python -m eval.run.sweep --run-one SPEC` in its own process, output to its log file, so a crash or
    an out-of-memory kill costs that run only."""
    results_dir = Path(results_dir).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    running: dict[subprocess.Popen, tuple[RunSpec, float, Path, Any]] = {}

    def start(spec: RunSpec) -> None:
        log = log_path(results_dir, sweep_name, spec)
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = log.open("w", encoding="utf-8")
        cmd = [sys.executable, "-m", "eval.run.sweep", "--run-one", json.dumps(spec.to_dict()),
               "--results-dir", str(results_dir)]
        fh.write(f"$ {' '.join(cmd[:3])} --run-one '{cmd[4]}' --results-dir {results_dir}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        running[proc] = (spec, time.perf_counter(), log, fh)

    def poll() -> list[Outcome]:
        finished = []
        while not finished and running:
            for proc in list(running):
                if proc.poll() is None:
                    continue
                spec, t0, log, fh = running.pop(proc)
                fh.close()
                finished.append(_local_outcome(spec, proc.returncode, time.perf_counter() - t0, log, results_dir))
            if not finished:
                time.sleep(0.1)
        return finished

    try:
        return _dispatch(todo, Gate(max_parallel, max_concurrency), start, poll, f"sweep {sweep_name}", results_dir)
    finally:  # Ctrl-C or a driver error: do not leave runs training in the background
        for proc, (_, _, _, fh) in running.items():
            proc.terminate()
            fh.close()


def _local_outcome(spec: RunSpec, code: int, seconds: float, log: Path, results_dir: Path) -> Outcome:
    if code == 0 and is_done(spec, results_dir):
        return Outcome(spec, True, seconds, log=log)
    if code < 0:
        error = f"killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")
    elif code == 0:
        error = "exited cleanly but wrote no record"
    else:
        error = _last_error_line(log.read_text(encoding="utf-8", errors="replace"))
    return Outcome(spec, False, seconds, error=error, log=log)


# --- ray: one task per run ------------------------------------------------------------------------------------------

def ray_options(track: str, cluster: dict, overrides: dict | None = None) -> dict:
    """Resources one run asks for: a GPU for GPU tracks when the cluster has one, else the track's CPUs (capped by
    the cluster's); the spec's `resources:` entry for the track wins."""
    t = TRACKS[track]
    if t.gpu and cluster.get("GPU", 0) >= 1:
        opts: dict = {"num_gpus": 1}
    else:
        opts = {"num_cpus": min(t.cpus, cluster.get("CPU", 1))}
    return {**opts, **(overrides or {})}


def _ray_run(spec_dict: dict, results_dir: str) -> dict:
    """Body of the Ray task: run one spec, capture its output, return the record texts for the driver."""
    import contextlib
    import io
    import traceback

    from eval.run.runner import run_spec

    spec = RunSpec(**spec_dict)
    try:  # a node that cannot write the driver's path (no shared filesystem) writes to scratch instead
        Path(results_dir).mkdir(parents=True, exist_ok=True)
    except OSError:
        results_dir = tempfile.mkdtemp(prefix="sweep-")
    buf = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            path = run_spec(spec, results_dir)
        return {"ok": True, "seconds": time.perf_counter() - t0, "log": buf.getvalue(),
                "record": path.read_text(encoding="utf-8"),
                "examples": path.with_suffix(".jsonl").read_text(encoding="utf-8")
                if path.with_suffix(".jsonl").exists() else None}
    except Exception:  # noqa: BLE001 -- reported to the driver as this run's failure
        tb = traceback.format_exc()
        return {"ok": False, "seconds": time.perf_counter() - t0, "log": buf.getvalue() + tb,
                "error": _last_error_line(tb)}


def write_returned_record(spec: RunSpec, results_dir: str | Path, res: dict) -> bool:
    """Write a record the task returned when the driver's results dir does not have it (no shared filesystem).
    Examples first, record last, as finish_run does, so an existing record always has its examples."""
    if is_done(spec, results_dir):
        return False
    path = record_path(spec, results_dir)
    if res.get("examples") is not None:
        atomic_write(path.with_suffix(".jsonl"), res["examples"])
    atomic_write(path, res["record"])
    return True


def _init_ray() -> Any:
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:  # a cluster: ship this checkout so every node runs the same code
            ray.init(address=address, runtime_env={"working_dir": str(REPO_ROOT), "excludes": RUNTIME_ENV_EXCLUDES})
        else:
            ray.init(include_dashboard=False)
    return ray


def run_ray(todo: list[RunSpec], results_dir: str | Path, sweep_name: str, max_parallel: int | None = None,
            max_concurrency: int | None = None, resources: dict | None = None) -> list[Outcome]:
    """Each run is a Ray task with its resource request; outcomes stream in as tasks finish (ray.wait)."""
    try:
        ray = _init_ray()
    except ImportError as exc:
        raise ImportError("the ray executor needs ray: pip install -e '.[sweep]'") from exc
    results_dir = Path(results_dir).resolve()
    cluster = ray.cluster_resources()
    remote = ray.remote(max_retries=0)(_ray_run)  # an OOM-killed run is reported once, not retried three times
    pending: dict[Any, tuple[RunSpec, float]] = {}

    def start(spec: RunSpec) -> None:
        opts = ray_options(spec.track, cluster, (resources or {}).get(spec.track))
        ref = remote.options(**opts).remote(spec.to_dict(), str(results_dir))
        pending[ref] = (spec, time.perf_counter())

    def poll() -> list[Outcome]:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        out = []
        for ref in ready:
            spec, t0 = pending.pop(ref)
            log = log_path(results_dir, sweep_name, spec)
            try:
                res = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 -- the worker died (OOM, node lost): this run failed
                res = {"ok": False, "seconds": time.perf_counter() - t0, "log": repr(exc),
                       "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            atomic_write(log, res.get("log") or "")
            if res["ok"]:
                write_returned_record(spec, results_dir, res)
            out.append(Outcome(spec, res["ok"], res["seconds"], error=res.get("error"), log=log))
        return out

    return _dispatch(todo, Gate(max_parallel, max_concurrency), start, poll, f"sweep {sweep_name} (ray)",
                     results_dir)


# --- entry points for eval/run/sweep.py ------------------------------------------------------------------------------

def run_all(sweep: Any, todo: list[RunSpec], results_dir: str | Path, executor: str = "local",
            max_parallel: int | None = None) -> list[Outcome]:
    print(f"logs: {Path(results_dir) / 'logs' / sweep.name}/<run_id>.log", file=sys.stderr)
    if executor == "ray":
        return run_ray(todo, results_dir, sweep.name, max_parallel, sweep.max_concurrency, sweep.resources)
    return run_local(todo, results_dir, sweep.name, max_parallel or 1, sweep.max_concurrency)


def summarize(outcomes: list[Outcome]) -> int:
    """Print the end-of-sweep summary; non-zero exit when any run failed."""
    failed = [o for o in outcomes if not o.ok]
    print(f"sweep finished: {len(outcomes) - len(failed)} ok, {len(failed)} failed "
          f"({sum(o.seconds for o in outcomes):.1f}s of run time)")
    for o in failed:
        print(f"  FAILED {o.spec.track} {o.spec.model} {o.spec.method} n_train={o.spec.n_train} seed={o.spec.seed}: "
              f"{o.error}\n         log: {o.log}")
    if failed:
        print("rerun the same command to retry only the failed runs (finished ones are skipped)")
    return 1 if failed else 0
