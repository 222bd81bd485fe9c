"""Which run to serve, and its predictor: a record path or run id (or the run `recommend` picks), then the
record's track builds the predictor from the run's artifacts or config (`Track.predictor`, eval/tracks.py)."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.run.records import RunSpec
from eval.run.runner import spec_mismatch
from eval.serve.predictor import NoArtifacts, Predictor, ServeError
from eval.tracks import known


@dataclass
class Served:
    """A loaded run: its record (what it was shown to do) and its predictor."""

    record: dict
    predictor: Predictor
    path: Path
    notes: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def describe(self) -> str:
        r = self.record
        acc, (lo, hi) = r["metrics"]["accuracy"], r["metrics"]["accuracy_ci"]
        return (f"{r['track']} {r['model']} {r['method']} n_train={r['n_train']} seed={r['seed']} on {r['task']} "
                f"(run {r['run_id']}; evaluated accuracy {acc:.3f} [{lo:.3f}, {hi:.3f}], n={r['n_eval']})")


def find_record(run: str, results_dir: str | Path = "results") -> Path:
    """A record path, or the run id of a record under results_dir/runs/<task>/<track>/."""
    p = Path(run)
    if p.suffix == ".jsonl":
        p = p.with_suffix(".json")
    if p.is_file():
        return p
    stem = p.name.removesuffix(".json")
    hits = sorted(q for q in (Path(results_dir) / "runs").glob(f"*/*/{stem}.json"))
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ServeError(f"run id {stem} is recorded for several tasks: pass one record path "
                         f"({', '.join(map(str, hits))})")
    raise ServeError(f"no record {run!r}: pass a record path (results/runs/<task>/<track>/<run_id>.json) or a run "
                     f"id recorded under {results_dir}/runs (python -m eval.decide.leaderboard lists them), or "
                     "--task T --labels N for the run recommend picks")


def recommended_record(task: str, labels: int, results_dir: str | Path = "results", metric: str = "accuracy"
                       ) -> tuple[Path, str]:
    """The record of the option `python -m eval.decide.recommend --task T --labels N` picks (its first seed with
    artifacts, else its first seed), and a line saying which."""
    from eval.decide.analysis import analyse
    from eval.decide.recommend import recommend
    from eval.run.records import load_records

    records, _ = load_records(results_dir)
    analysed = analyse(records, metric=metric, task=task)
    res = recommend(records, task, labels, metric=metric, analysed=analysed)
    best = res.get("best")
    if not best:
        raise ServeError(f"recommend has no pick for --task {task} --labels {labels} ({'; '.join(res['notes'])}): "
                         f"add the runs it suggests (python -m eval.decide.recommend --task {task} --labels {labels})")
    ts = analysed[0][task][0]
    row = next(r for r in ts.rows if r.name == best["approach"] and r.n_train == best["n_train"]
               and r.shown_options == best["options"])
    recs = sorted(row.records, key=lambda r: r.get("seed", 0))
    with_artifacts = [r for r in recs if artifacts_dir(Path(r["_path"]), r).exists()]
    chosen = (with_artifacts or recs)[0]
    return Path(chosen["_path"]), (f"recommend picks {best['approach']} at n_train={best['n_train']} for {task} "
                                   f"with {labels} labels: serving seed {chosen.get('seed', 0)}")


def artifacts_dir(record_path: Path, record: dict) -> Path:
    """results/runs/<task>/<track>/artifacts/<run_id> (eval.run.records.output_dir) next to the record."""
    return record_path.parent / "artifacts" / str(record["run_id"])


def read(record_path: Path) -> dict:
    try:
        rec = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ServeError(f"cannot read the record {record_path}: {exc}") from None
    rec["_path"] = str(record_path)
    return rec


def build_predictor(record: dict, record_path: Path) -> Any:
    """The predictor the record's track builds (`Track.predictor`, "module:function")."""
    track = known(str(record.get("track")))
    if track is None:
        raise ServeError(f"{record_path}: track {record.get('track')!r} is not registered in this checkout")
    if not track.predictor:
        raise ServeError(f"{record_path}: the {track.name} track has no predictor to serve its runs")
    module, _, name = track.predictor.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        hint = f"pip install -e '.[{track.extra}]'" if track.extra else "pip install -e ."
        raise ServeError(f"serving {track.name} runs needs packages that are not installed ({exc.name}): "
                         f"{hint}") from None
    try:
        return fn(record, artifacts_dir(record_path, record))
    except NoArtifacts as exc:
        spec = RunSpec.from_record(record)
        cmd = f"{track.reproduce(spec)} {exc.flag} --overwrite".replace("  ", " ")
        raise ServeError(f"run {record['run_id']} kept no artifacts ({exc.what} is not in "
                         f"{artifacts_dir(record_path, record)}); re-run it with them kept: {cmd}"
                         f"{_new_id(track, spec)}") from None


def _new_id(track: Any, spec: RunSpec) -> str:
    """Nothing ("") when this checkout gives the record's spec its run id; else what the re-run will be recorded
    as, and why (a result-changing option added since, e.g. the encoder and SFT `search` of #24, is in the new spec
    at its default): the record that run writes is then the one to serve."""
    try:
        rebuilt = track.respec(spec)
    except (ValueError, KeyError, OSError, ImportError):  # the command's own run says what is wrong
        return ""
    if rebuilt.run_id == spec.run_id:
        return ""
    return (f" (this checkout records that run as {rebuilt.run_id}, not {spec.run_id}, since "
            f"{spec_mismatch(spec, rebuilt)}: serve that record)")


def load(run: str | None = None, results_dir: str | Path = "results", task: str | None = None,
         labels: int | None = None) -> Served:
    notes = []
    if run is None:
        if task is None or labels is None:
            raise ServeError("name a run (a record path or run id), or give --task T --labels N")
        path, note = recommended_record(task, labels, results_dir)
        notes.append(note)
    else:
        path = find_record(run, results_dir)
    record = read(path)
    return Served(record, build_predictor(record, path), path, notes)
