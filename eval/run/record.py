"""The run record: one typed schema for every track (docs/records.md describes each field).

    rec = Record.from_dict(json_dict, origin=path)   # checks the schema version and the fields; RecordError if not
    records, problems = load_records("results")      # every reader's one loader: valid records as dicts + one
                                                     # line per skipped file (named, with the problem)

Schema 2 (this one) adds `details` (track-specific fields, one key), `data` (the `--data` reference) and `cost`.
Schema 1 records (the committed results/ before it) are read by moving their track-specific top-level fields under
`details`; a record from a newer schema, a foreign JSON file or a hand-broken record is skipped with one line.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 2
READABLE = (1, 2)  # schema versions this code reads (1 is upgraded on read)


class RecordError(ValueError):
    """A file that is not a record this code can read; the message names the problem."""


@dataclass
class Record:
    """One run's record. Field order is the order on disk."""

    run_id: str
    track: str
    task: str
    model: str
    method: str
    n_train: int | str  # an int, or "full"
    seed: int
    n_eval: int  # items scored
    options: dict[str, Any]  # the RunSpec options: everything else that changes the result
    metrics: dict[str, Any]  # eval.scoring.metrics.compute_metrics: accuracy (+ CI), macro-F1, valid rate, ...
    labels: list[str]
    split_hash: dict[str, str]  # test / validation / train hashes of the items used
    timing: dict[str, Any]  # train_s, eval_s, eval_examples_per_s, ...
    versions: dict[str, Any]  # task, label scheme, prompt versions
    model_id: str  # what was loaded or asked for (hub id, offline package, server tag)
    backend: str
    schema: int = SCHEMA
    n_eval_requested: int | None = None  # the spec's n_eval (None: the whole test set)
    n_train_examples: int | None = None
    before_training: dict[str, Any] | None = None  # SFT: metrics of the same model before training
    config: dict[str, Any] = field(default_factory=dict)  # every effective setting of the run
    env: dict[str, Any] = field(default_factory=dict)  # python, platform, device, threads, packages, git
    examples_file: str | None = None  # the per-example JSONL next to the record
    data: dict[str, Any] | None = None  # ad-hoc --data: file, sha256, columns (eval.inputs.dataref); None: named task
    cost: dict[str, Any] | None = None  # train_s, eval_s, examples_per_s, peak_rss_mb, cuda_peak_mb, device, dtype
    details: dict[str, Any] = field(default_factory=dict)  # track-specific: training history, prompting stats, ...
    # top-level fields this schema does not define (written by newer code of the same schema version): kept as
    # they are, so a reader that knows them still finds them
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = {"schema": self.schema}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("schema",
                                                                                                  "extra")})
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_dict(cls, data: Any, origin: str = "record") -> Record:
        if not isinstance(data, dict):
            raise RecordError(f"not a run record (a JSON {type(data).__name__}, not an object)")
        schema = data.get("schema")
        if schema not in READABLE:
            newer = isinstance(schema, int) and schema > SCHEMA
            raise RecordError(f"schema {schema!r} " + ("is newer than this code reads (update the code)" if newer
                              else f"is not a run record schema ({', '.join(map(str, READABLE))})"))
        if schema == 1:
            data = upgrade_v1(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise RecordError(f"missing field(s) {', '.join(missing)}")
        rec = cls(**{k: v for k, v in data.items() if k in names},
                  extra={k: v for k, v in data.items() if k not in names})
        rec.schema = SCHEMA
        rec.check()
        return rec

    def check(self) -> None:
        """Types a reader relies on; a hand-edited record that breaks them is refused with the field named."""
        expect = {"run_id": str, "track": str, "task": str, "model": str, "method": str, "seed": int, "n_eval": int,
                  "options": dict, "metrics": dict, "labels": list, "split_hash": dict, "timing": dict,
                  "versions": dict, "config": dict, "env": dict, "details": dict}
        for name, tp in expect.items():
            value = getattr(self, name)
            if not isinstance(value, tp) or isinstance(value, bool) and tp is int:
                raise RecordError(f"field {name} should be a {tp.__name__}, got {type(value).__name__}")
        if not (self.n_train == "full" or isinstance(self.n_train, int) and not isinstance(self.n_train, bool)):
            raise RecordError(f"field n_train should be a whole number or 'full', got {self.n_train!r}")
        for key in ("accuracy", "macro_f1", "valid_rate"):
            v = self.metrics.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise RecordError(f"metrics.{key} should be a number, got {v!r}")
        for name in ("before_training", "data", "cost"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, dict):
                raise RecordError(f"field {name} should be an object or null, got {type(v).__name__}")


V1_TOP_LEVEL = {f.name for f in dataclasses.fields(Record)} - {"details", "cost", "data"}


def upgrade_v1(data: dict) -> dict:
    """Schema 1 put each track's extra fields at the top level; they move under `details`."""
    out = {k: v for k, v in data.items() if k in V1_TOP_LEVEL}
    out["details"] = {k: v for k, v in data.items() if k not in V1_TOP_LEVEL and k not in ("cost", "data")}
    for k in ("cost", "data"):
        if k in data:
            out[k] = data[k]
    out["schema"] = SCHEMA
    return out


def read_record(path: str | Path) -> Record:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"unreadable ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return Record.from_dict(data, origin=str(path))


def load_records(results_dir: str | Path) -> tuple[list[dict], list[str]]:
    """Every readable record under results_dir/runs as a dict (schema 2 layout, plus `_path`), and one line per
    skipped file naming it and the problem. Never raises for a bad file."""
    records, problems = [], []
    for p in sorted((Path(results_dir) / "runs").rglob("*.json")):
        if "artifacts" in p.parts:
            continue
        try:
            rec = read_record(p).to_dict()
        except RecordError as exc:
            problems.append(f"skipped {p}: {exc}")
            continue
        rec["_path"] = str(p)
        records.append(rec)
    return records, problems


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _has_records(runs: Path) -> bool:
    return runs.is_dir() and any(p for p in runs.rglob("*.json") if "artifacts" not in p.parts)


def reader_problem(results_dir: str | Path, task: str | None = None, need_records: bool = True) -> str | None:
    """What the readers (report, leaderboard, recommend, settle) check before reading: None when `results_dir` holds
    run records (and, given `task`, records of that task or a task of eval/tasks/); else one line naming the fix
    ("did you mean ...?": nearby folders that hold records, or the tasks that have some). A typo never shows as an
    empty page. `need_records=False` (settle, which can start from no records): only the task is checked."""
    import difflib

    root = Path(results_dir)
    runs = root / "runs"
    if need_records and not _has_records(runs):
        here = {root.parent, Path.cwd()}
        found = sorted({_shown(p.parent) for base in here if base.is_dir() for p in base.glob("*/runs")
                        if _has_records(p) and p.parent.resolve() != root.resolve()})
        close = difflib.get_close_matches(str(results_dir), found, n=2, cutoff=0.5) or found[:2]
        hint = f": did you mean {' or '.join(f'--results-dir {c}' for c in close)}?" if close else (
            ": run a track command or a sweep first, or point --results-dir at the folder that has runs/")
        return f"no run records under {root}{hint}"
    if task is None:
        return None
    from eval.inputs.data import slug, task_names

    tasks = sorted(p.name for p in runs.iterdir() if p.is_dir() and _has_records(p)) if runs.is_dir() else []
    if slug(task) in tasks or task in task_names():  # a named task without records: the reader suggests runs
        return None
    close = difflib.get_close_matches(slug(task), sorted(set(tasks) | set(task_names())), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    have = f"tasks with records there: {', '.join(tasks)}" if tasks else "no task has records there yet"
    return f"unknown task {task!r}: no records under {root} and not a task of eval/tasks/; {hint}{have}"
