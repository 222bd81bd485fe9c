"""Run records: one self-describing JSON per run plus a per-example JSONL, written atomically.

    spec = RunSpec(track="encoders", task="drugs", model="minilm-l6", method="lora", n_train=64, seed=0,
                   options={"loss": "weighted-ce"})
    if not is_done(spec, results_dir) or overwrite: ...   # eval/run/runner.py runs the loop
    finish_run(spec, task, test, preds, results_dir=..., model_id=..., backend=..., timing=..., config=...)

The run id is derived from the spec's content, so the same spec always maps to the same file: a run whose record
exists is skipped unless --overwrite. The leaderboard is only ever derived from these files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from eval.inputs.data import Example, TaskData, parse_n_train, slug
from eval.run.record import SCHEMA as RECORD_SCHEMA  # noqa: F401 - the schema lives with the typed Record
from eval.run.record import Record, load_records  # noqa: F401 - one loader for every reader (eval/run/record.py)
from eval.scoring.labels import INVALID
from eval.scoring.metrics import compute_metrics

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "unsloth", "bitsandbytes",
            "scikit-learn", "numpy", "ollama", "openai", "ray")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _slug(s: str) -> str:
    return slug(s)  # one spelling of a task's folder everywhere (eval.inputs.data.slug)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result. Frozen; `run_id` is derived from its identity.

    `data` references ad-hoc local data (`--data FILE`): the file(s), their content hashes and columns
    (eval.inputs.data.data_ref); None for a named task, whose YAML carries its own version. `runtime` holds settings
    that change where or how fast a run happens, not its result (inference batch size, server URL, exports): carried
    along so a sweep's run honours them, but outside the run id and equality."""

    track: str
    task: str
    model: str
    method: str
    n_train: int | str = "full"  # int, or "full"; 0 for zero-shot prompting
    seed: int = 0
    n_eval: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # anything else that changes the result
    data: dict[str, Any] | None = None
    runtime: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = parse_n_train(self.n_train)
        object.__setattr__(self, "n_train", "full" if n is None else n)
        for name in ("options", "runtime"):
            object.__setattr__(self, name, json.loads(json.dumps(getattr(self, name), sort_keys=True, default=str)))
        if self.data is not None:
            object.__setattr__(self, "data", json.loads(json.dumps(self.data, sort_keys=True, default=str)))

    @classmethod
    def from_record(cls, rec: dict) -> RunSpec:
        """The spec a record was written for (its `n_eval` is what was scored; the spec asked `n_eval_requested`)."""
        return cls(track=rec["track"], task=rec["task"], model=rec["model"], method=rec["method"],
                   n_train=rec["n_train"], seed=rec["seed"], n_eval=rec.get("n_eval_requested"),
                   options=rec.get("options") or {}, data=rec.get("data"))

    def identity(self) -> dict:
        """What the run id is derived from (`data` only when set, so named-task ids stay as they were)."""
        out = {"track": self.track, "task": self.task, "model": self.model, "method": self.method,
               "n_train": self.n_train, "seed": self.seed, "n_eval": self.n_eval, "options": self.options}
        if self.data is not None:
            out["data"] = self.data
        return out

    def to_dict(self) -> dict:
        """The identity plus the runtime settings: what an executor sends to the process that runs it."""
        return {**self.identity(), **({"runtime": self.runtime} if self.runtime else {})}

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        n_eval = "all" if self.n_eval is None else self.n_eval
        return f"{_slug(self.model)}__{_slug(self.method)}__n{self.n_train}__e{n_eval}__s{self.seed}__{self.key}"


def record_path(spec: RunSpec, results_dir: str | Path) -> Path:
    return Path(results_dir) / "runs" / _slug(spec.task) / spec.track / f"{spec.run_id}.json"


def output_dir(spec: RunSpec, results_dir: str | Path) -> Path:
    """Where a run keeps artifacts (adapters, checkpoints); ignored by git."""
    return Path(results_dir) / "runs" / _slug(spec.task) / spec.track / "artifacts" / spec.run_id


def is_done(spec: RunSpec, results_dir: str | Path) -> bool:
    p = record_path(spec, results_dir)
    if not p.exists():
        return False
    try:
        json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return False  # a corrupt record does not count as done
    return True


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, with the mode an ordinary open() gives (mkstemp makes files 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@lru_cache(maxsize=1)
def git_commit() -> dict:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return {"commit": sha or None, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


@lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str], ...]:
    versions = []
    for p in PACKAGES:
        try:
            versions.append((p, md.version(p)))
        except md.PackageNotFoundError:
            pass
    return tuple(versions)


def env_info() -> dict:
    """Package versions, device and git commit (the static parts are read once per process)."""
    versions = dict(_package_versions())
    device, kernels = "cpu", {}
    if "torch" in sys.modules:  # never import torch just to describe the machine
        torch = sys.modules["torch"]
        # the same run id on another thread count or CPU kernel set can round differently (and, near a tie, flip a
        # label): the record says which ran
        kernels = {"torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
        if torch.cuda.is_available():
            device = f"cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "device": device, **kernels, "packages": versions, "git": git_commit()}


def evaluate(test: Sequence[Example], preds: Sequence[str], labels: Sequence[str], seed: int = 0) -> dict:
    return compute_metrics([e.label for e in test], list(preds), labels, seed=seed)


def finish_run(spec: RunSpec, task: TaskData, test: Sequence[Example], preds: Sequence[str], *,
               results_dir: str | Path, model_id: str, backend: str, timing: dict, config: dict | None = None,
               raws: Sequence[str | None] | None = None, before_preds: Sequence[str] | None = None,
               before_raws: Sequence[str | None] | None = None, n_train_examples: int | None = None,
               versions: dict | None = None, extra: dict | None = None,
               row_fields: Sequence[dict] | None = None, cost: dict | None = None) -> Path:
    """Score predictions, then write the per-example JSONL and the record (in that order, each atomically, so an
    existing record always has its examples). Returns the record path. The record is an eval.run.record.Record
    (docs/records.md); `extra` holds the track's own fields and goes under `details`.

    `row_fields[i]` adds track-specific fields to example i's row (e.g. `truncated`, `error`), so that a re-scoring
    with eval/scoring/rescore.py can apply the same rules; a `status` there (eval.scoring.labels.parse_answer) is the
    parse status, else it is `valid` for a label and `no_label` for INVALID. `cost` names the run's `device` and
    `dtype`; the record's `cost` object (eval/run/cost.py) adds times, throughput and peak memory."""
    if len(preds) != len(test):
        raise ValueError(f"{len(preds)} predictions for {len(test)} test examples")
    from eval.run.cost import cost_record

    labels = task.labels
    statuses = [(row_fields[i].get("status") if row_fields is not None else None)
                or ("valid" if p != INVALID else "no_label") for i, p in enumerate(preds)]
    metrics = compute_metrics([e.label for e in test], list(preds), labels, seed=spec.seed, statuses=statuses)
    before = None
    if before_preds is not None:  # a row's `before_status` is the before-training answer's parse status
        before_statuses = [(row_fields[i].get("before_status") if row_fields is not None else None)
                           or ("valid" if p != INVALID else "no_label") for i, p in enumerate(before_preds)]
        before = compute_metrics([e.label for e in test], list(before_preds), labels, seed=spec.seed,
                                 statuses=before_statuses)
    rows = []
    for i, ex in enumerate(test):
        row: dict[str, Any] = {"id": ex.id, "gold": ex.label, "pred": preds[i], "correct": preds[i] == ex.label,
                               "status": statuses[i], "text": ex.text}  # the text keeps the log self-describing
        if raws is not None:
            row["raw"] = raws[i]
        if before_preds is not None:
            row["before_pred"] = before_preds[i]
            if before_raws is not None:
                row["before_raw"] = before_raws[i]
        if row_fields is not None:
            row.update({k: v for k, v in row_fields[i].items() if k not in row})
        rows.append(row)
    path = record_path(spec, results_dir)
    eval_s = float(timing.get("eval_s") or 0.0)
    timing = {"train_s": None, **timing}
    timing.setdefault("eval_examples_per_s", round(len(test) / eval_s, 3) if eval_s > 0 else None)
    ident = spec.identity()
    record = Record(
        run_id=spec.run_id, track=spec.track, task=spec.task, model=spec.model, method=spec.method,
        n_train=spec.n_train, seed=spec.seed, n_eval=len(test), options=ident["options"], metrics=metrics,
        labels=labels, split_hash=task.hashes(spec.n_train, spec.seed, spec.n_eval), timing=timing,
        versions={"task": task.config.version, "labels": task.scheme.version, **(versions or {})},
        model_id=model_id, backend=backend, n_eval_requested=spec.n_eval, n_train_examples=n_train_examples,
        before_training=before, config=config or {}, env=env_info(), examples_file=path.with_suffix(".jsonl").name,
        data=spec.data, cost=cost_record(timing, len(test), **(cost or {})), details=dict(extra or {}),
    ).to_dict()
    atomic_write(path.with_suffix(".jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write(path, json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
    acc, (lo, hi) = metrics["accuracy"], metrics["accuracy_ci"]
    print(f"{spec.track} {spec.model} {spec.method} n_train={spec.n_train} seed={spec.seed}: accuracy {acc:.3f} "
          f"[{lo:.3f}, {hi:.3f}] valid {metrics['valid_rate']:.3f} macro-F1 {metrics['macro_f1']:.3f} "
          f"(n={len(test)}){' COLLAPSED' if metrics['collapsed'] else ''} -> {path}", file=sys.stderr)
    return path


def load_examples(record: dict) -> list[dict]:
    p = Path(record["_path"]).with_name(record.get("examples_file") or Path(record["_path"]).stem + ".jsonl")
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def varying_options(groups: Iterable[Sequence[dict]]) -> list[list[str]]:
    """For each group of option dicts (e.g. the runs of one track+model+method): the keys whose values differ inside
    it, the only ones worth showing in a table or legend (the full effective config is in every record)."""
    out = []
    for opts in groups:
        keys = sorted({k for o in opts for k in o})
        out.append([k for k in keys if len({json.dumps(o.get(k), sort_keys=True) for o in opts}) > 1])
    return out


__all__ = ["INVALID", "RunSpec", "finish_run", "is_done", "record_path", "output_dir", "load_records",
           "load_examples", "env_info", "atomic_write", "evaluate", "varying_options"]
