"""Tasks and splits: the same fixed test set and the same nested training subsets for every track.

    python eval/data.py --task drugs                    # describe a task: sizes, labels, duplicates, text lengths
    python eval/data.py --data reviews.csv --text-column review --label-column stars --json

A task is a small YAML file in eval/tasks/ (or any path). Loading one gives a `TaskData`:
- `test(n_eval)`: the fixed test set in a fixed shuffled order; `n_eval` takes the same first N every time;
- `validation`: carved once from train (stratified, task-level seed), used for model selection;
- `train(n_train, seed)`: nested stratified subsets of the remaining pool: for one seed the 16 are inside the 64 …
Duplicates inside a split and between train and test are removed and counted. Every split has a content hash.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from eval.inputs.sources import DataError, Decoded, read_file, read_hf, read_package_lines, read_package_member
from eval.scoring.labels import LabelScheme

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"
_TAG = re.compile(r"<[^>]{1,200}>")
_WS = re.compile(r"\s+")
CHAR_LANGUAGES = ("zh", "ja")  # written without spaces between words: lengths are counted in characters


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: str


@dataclass
class TaskConfig:
    name: str
    labels: list[str]
    text_field: str
    label_field: str
    source: dict
    version: str = "1"
    description: str = ""
    verbalizers: dict[str, list[str]] = field(default_factory=dict)
    value_map: dict[str, str] = field(default_factory=dict)
    drop_values: list[str] = field(default_factory=list)  # raw label values whose rows are not examples (counted)
    id_field: str | None = None
    clean: dict = field(default_factory=dict)  # html (default true), strip_quotes, lowercase
    split: dict = field(default_factory=dict)  # test: {from: train, size: 0.2} | validation: {size, max} | seed
    notes: str = ""
    topic: str = ""  # what the labels classify, e.g. "sentiment": prompts name it (prompts/sft_instruction.txt)
    language: str = "en"  # ISO 639-1; zh/ja have no spaces between words (the TF-IDF baseline uses characters)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "task") -> TaskConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"{origin}: unknown keys {unknown}; allowed keys are {sorted(known)}")
        missing = [k for k in ("name", "labels", "text_field", "label_field", "source") if k not in data]
        if missing:
            raise DataError(f"{origin}: missing required keys {missing}")
        data = dict(data)
        data["value_map"] = {_key(k): str(v) for k, v in (data.get("value_map") or {}).items()}
        data["version"] = str(data.get("version", "1"))
        data["drop_values"] = [_key(v) for v in data.get("drop_values") or []]
        return cls(**data)

    @property
    def scheme(self) -> LabelScheme:
        return LabelScheme.from_labels(self.labels, self.verbalizers, version=self.version, topic=self.topic)


def _key(value: object) -> str:
    """Normalise a raw label value: 1, 1.0 and '1' are the same key."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def clean_text(text: object, html_unescape: bool = True, strip_quotes: bool = False, lowercase: bool = False) -> str:
    """Keep meaning, drop markup: unescape entities (twice, for double-escaped text), strip tags, fold whitespace.
    Case and punctuation are kept unless the task asks otherwise."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    s = str(text)
    if html_unescape:
        s = html.unescape(html.unescape(s))
        s = _TAG.sub(" ", s)
    s = _WS.sub(" ", s).strip()
    if strip_quotes:
        s = s.strip('"').strip()
    if lowercase:
        s = s.lower()
    return s


def split_hash(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.id, ex.label, ex.text], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def nested_order(labels: Sequence[str], seed: int) -> list[int]:
    """A permutation whose every prefix is as close to the label distribution as possible.

    Each class is shuffled with `seed`, then positions are filled by the class furthest below its share. So the first
    16 are inside the first 64 (nested) and each prefix is stratified; every class appears as early as its share
    allows (largest-deficit rounding).
    """
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    classes = sorted(by_class)
    queues = {c: list(rng.permutation(by_class[c])) for c in classes}
    share = {c: len(by_class[c]) / len(labels) for c in classes}
    taken = dict.fromkeys(classes, 0)
    order: list[int] = []
    for k in range(len(labels)):
        live = [c for c in classes if taken[c] < len(queues[c])]
        best = max(live, key=lambda c: (share[c] * (k + 1) - taken[c], -classes.index(c)))
        order.append(int(queues[best][taken[best]]))
        taken[best] += 1
    return order


@dataclass
class TaskData:
    config: TaskConfig
    pool: list[Example]  # train minus validation, in source order
    validation: list[Example]
    test_all: list[Example]  # fixed shuffled order
    unlabelled: list[str]
    report: dict
    encodings: dict[str, str] = field(default_factory=dict)  # split -> the codec its file was read with
    readings: dict[str, str] = field(default_factory=dict)  # split -> codec and why, e.g. "cp1252 (Western rule)"
    _orders: dict[int, list[int]] = field(default_factory=dict, repr=False)  # seed -> nested order of the pool
    derived_name: bool = False  # ad-hoc data not named with --task (eval.inputs.data.adhoc_name)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def scheme(self) -> LabelScheme:
        return self.config.scheme

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def test(self, n_eval: int | None = None) -> list[Example]:
        if n_eval is None:
            return list(self.test_all)
        if n_eval < 1 or n_eval > len(self.test_all):
            raise DataError(f"--n-eval {n_eval} is outside 1..{len(self.test_all)} (the test set of {self.name}); "
                            "leave it out to use the whole test set")
        return self.test_all[:n_eval]

    def train(self, n_train: int | str | None, seed: int) -> list[Example]:
        """The first n of this seed's nested stratified order of the pool; None or 'full' -> all of it, 0 -> none
        (zero-shot)."""
        n = parse_n_train(n_train)
        if seed not in self._orders:  # a run asks several times (subset, split hash, few-shot ids); O(n) in Python
            self._orders[seed] = nested_order([ex.label for ex in self.pool], seed)
        order = self._orders[seed]
        if n is None:
            return [self.pool[i] for i in order]
        if n > len(self.pool):
            raise DataError(f"--n-train {n} exceeds the {len(self.pool)} training examples of {self.name}; "
                            "use 'full' for all of them")
        return [self.pool[i] for i in order[:n]]

    def hashes(self, n_train: int | str | None, seed: int, n_eval: int | None) -> dict:
        train = self.train(n_train, seed) if parse_n_train(n_train) != 0 else []
        return {"test": split_hash(self.test(n_eval)), "validation": split_hash(self.validation),
                "train": split_hash(train)}

    def summary(self) -> str:
        """The data line every run command prints: the task (and how to name ad-hoc data), sizes, and how each file
        was decoded."""
        src = self.config.source
        enc = "".join(f"; {src.get(k, k)} read as {v}" for k, v in self.readings.items())
        how = " (from the folder, file name and content hash; name it with --task NAME)" if self.derived_name else ""
        return (f"data: task {self.name}{how}: train pool {len(self.pool)}, validation {len(self.validation)}, "
                f"test {len(self.test_all)}{enc}")

    def describe(self) -> dict:
        chars = self.config.language in CHAR_LANGUAGES  # no spaces between words: count characters

        def stats(exs: Sequence[Example]) -> dict:
            lens = np.array([len(e.text) if chars else len(e.text.split()) for e in exs]) if exs else np.zeros(1)
            return {"n": len(exs), "labels": dict(sorted(Counter(e.label for e in exs).items())),
                    "unit": "chars" if chars else "words", "len_mean": round(float(lens.mean()), 1),
                    "len_median": round(float(np.median(lens)), 1),
                    "len_p95": round(float(np.percentile(lens, 95)), 1), "len_max": int(lens.max()),
                    "hash": split_hash(exs)}

        return {"task": self.name, "version": self.config.version, "description": self.config.description,
                "labels": self.labels, "verbalizers": self.scheme.to_dict()["verbalizers"],
                "splits": {"train_pool": stats(self.pool), "validation": stats(self.validation),
                           "test": stats(self.test_all)},
                "unlabelled": len(self.unlabelled), "report": self.report, "notes": self.config.notes,
                "encoding": dict(self.readings), "warnings": self.warnings()}

    def warnings(self) -> list[str]:
        """What is legal but probably not meant: a declared label no example has, a class too rare to be in both
        the training pool and the test set."""
        out = []
        seen = Counter(e.label for e in self.pool + self.validation + self.test_all)
        missing = [lab for lab in self.labels if not seen[lab]]
        if missing:
            out.append(f"labels {missing} have no example in the data: check --labels (or the task's labels)")
        for split, exs in (("training pool", self.pool), ("test set", self.test_all)):
            absent = [lab for lab in self.labels if seen[lab] and not any(e.label == lab for e in exs)]
            if absent:
                counts = ", ".join(f"{a}: {seen[a]} in all" for a in absent)
                out.append(f"the {split} has no example of {absent} ({counts}): add examples of it or leave it "
                           "out with --labels")
        return out


def parse_n_train(n: int | str | None) -> int | None:
    """'full' / None -> None (all); '16' -> 16; 0 is a valid value (zero-shot)."""
    if n is None or (isinstance(n, str) and n.lower() == "full"):
        return None
    try:
        value = int(n)
    except (TypeError, ValueError) as exc:
        raise DataError(f"--n-train takes whole numbers or 'full', got {n!r}") from exc
    if value < 0:
        raise DataError(f"--n-train must be >= 0, got {value}")
    return value


def task_names() -> list[str]:
    """The named tasks (eval/tasks/*.yaml)."""
    return sorted(q.stem for q in TASKS_DIR.glob("*.yaml"))


def unknown_task(name: str) -> str:
    """The one line for a task name that is not a task, with the closest names."""
    import difflib

    close = difflib.get_close_matches(name, task_names(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (f"unknown task {name!r}; {hint}tasks are: {', '.join(task_names())} (or a path to a task YAML, or "
            "--data FILE)")


def task_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    p = TASKS_DIR / f"{name}.yaml"
    if not p.exists():
        raise DataError(unknown_task(name))
    return p


def load_config(name: str) -> TaskConfig:
    p = task_path(name)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise DataError(f"{p} is not valid YAML{at} ({getattr(exc, 'problem', None) or exc}): fix the file") from exc
    if data is not None and not isinstance(data, dict):
        raise DataError(f"{p} must be a mapping of key: value (name, labels, text_field, label_field, source)")
    return TaskConfig.from_dict(data or {}, origin=str(p))


def slug(name: str) -> str:
    """A task's name as its results folder spells it (results/runs/<slug>/); one spelling everywhere."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-").lower()


def adhoc_name(data: str | Path, test_data: str | Path | None = None) -> str:
    """The name of ad-hoc data that is not named with --task: its folder, its file name and a hash of its content
    (and of the test file's), so two projects' train.csv never share a task, a folder or a leaderboard table."""
    h = hashlib.sha256()
    for p in filter(None, (data, test_data)):
        h.update(Path(p).read_bytes() if Path(p).is_file() else b"")
    p = Path(data).resolve()
    parts = [p.parent.name, p.name.split(".")[0]] if p.parent.name else [p.name.split(".")[0]]
    return slug("-".join(parts) + "-" + h.hexdigest()[:6])


def check_task_name(name: str) -> str:
    """`--task NAME` with --data: a results folder name that is not a named task's."""
    if name in task_names() or Path(name).suffix in (".yaml", ".yml"):
        raise DataError(f"--task {name} with --data names your data, but {name} is a task of eval/tasks/: "
                        f"pick another name (e.g. --task my-{slug(Path(name).stem)}) or leave --data out")
    if slug(name) != name:
        raise DataError(f"--task {name!r} names the results folder: use lower-case letters, digits, '.' and '-', "
                        f"e.g. --task {slug(name) or 'my-data'}")
    return name


def local_config(data: str, text_column: str, label_column: str, labels: Sequence[str] | None = None,
                 test_data: str | None = None, encoding: str | None = None, name: str | None = None,
                 test_encoding: str | None = None) -> TaskConfig:
    """A task for ad-hoc local data: --data FILE [--test-data FILE] --text-column C --label-column C [--labels …]
    [--encoding E] [--task NAME]. Without a name it is `adhoc_name` (folder, file, content hash)."""
    digest = hashlib.sha256(Path(data).read_bytes() if Path(data).exists() else b"").hexdigest()[:8]
    source: dict = {"type": "file", "train": str(data)}
    if test_data:
        source["test"] = str(test_data)
    if encoding:
        source["encoding"] = encoding
    if test_encoding and test_data:
        source["test_encoding"] = test_encoding
    return TaskConfig(name=check_task_name(name) if name else adhoc_name(data, test_data), labels=list(labels or []),
                      text_field=text_column, label_field=label_column, source=source, version=f"local-{digest}",
                      description=f"local data {data}", split={"test": {"from": "train", "size": 0.2}}
                      if not test_data else {})


def _read_split(cfg: TaskConfig, split: str) -> tuple[object, str, Decoded | None] | None:
    """(table, where it came from, how it was decoded) of one split, or None when the source has no such split."""
    src = cfg.source
    kind = src.get("type")
    # the YAML's or --encoding; unset: eval/inputs/encoding.py decides
    enc = src.get(f"{split}_encoding") or src.get("encoding")
    if kind == "hf":
        name = (src.get("splits") or {}).get(split)
        return (read_hf(src["path"], src.get("name"), name), f"hf:{src['path']}:{name}", None) if name else None
    if kind == "package":
        member = src.get(split)
        if not member:
            return None
        df, dec = read_package_member(src["package"], src.get("archive"), member, src.get("format"), enc)
        return df, f"{src['package']}:{member}", dec
    if kind == "package_lines":  # one file per class, one text per line; no test file (split.test carves it)
        if split != "train":
            return None
        df, dec = read_package_lines(src["package"], src["files"], cfg.text_field, cfg.label_field, enc)
        return df, f"{src['package']}:{'+'.join(src['files'].values())}", dec
    if kind == "file":
        path = src.get(split)
        if not path:
            return None
        df, dec = read_file(path, src.get("format"), enc)
        return df, str(path), dec
    raise DataError(f"task {cfg.name}: source type must be hf, package, package_lines or file, got {kind!r}")


def _reading(split: str, origin: str, dec: Decoded | None, encodings: dict[str, str], readings: dict[str, str]
             ) -> None:
    """Keep how a split was decoded (the summary and the record show it) and say it when it is uncertain."""
    if dec is None:
        return
    encodings[split] = dec.encoding
    readings[split] = dec.describe()
    if dec.note:
        print(f"warning: {origin}: {dec.note}", file=sys.stderr)


def _to_examples(cfg: TaskConfig, df, split: str, origin: str, report: dict) -> list[Example]:
    cols = [str(c) for c in df.columns]
    for flag, col in (("--text-column", cfg.text_field), ("--label-column", cfg.label_field)):
        if col not in cols:
            raise DataError(f"column {col!r} not found in {origin}; its columns are: {', '.join(cols)}. "
                            f"Pass {flag} (or text_field/label_field in the task YAML) with one of them.")
    opts = {"html_unescape": cfg.clean.get("html", True), "strip_quotes": cfg.clean.get("strip_quotes", False),
            "lowercase": cfg.clean.get("lowercase", False)}
    out, empty, no_label, unknown, dropped = [], 0, 0, Counter(), Counter()
    ids = df[cfg.id_field].tolist() if cfg.id_field and cfg.id_field in cols else range(len(df))
    for rid, text, raw_label in zip(ids, df[cfg.text_field].tolist(), df[cfg.label_field].tolist()):
        t = clean_text(text, **opts)
        if raw_label is None or (isinstance(raw_label, float) and np.isnan(raw_label)) or _key(raw_label) == "":
            no_label += 1
            continue
        if _key(raw_label) in cfg.drop_values:
            dropped[_key(raw_label)] += 1
            continue
        label = cfg.value_map.get(_key(raw_label), _key(raw_label)) if cfg.value_map else _key(raw_label)
        if cfg.labels and label not in cfg.labels:
            unknown[label] += 1
            continue
        if not t:
            empty += 1
            continue
        out.append(Example(id=f"{split}-{rid}", text=t, label=label))
    if unknown:
        shown = ", ".join(f"{k!r} ({v} rows)" for k, v in unknown.most_common(10))
        raise DataError(f"{origin}: labels not in {cfg.labels}: {shown}. Fix --labels (or the task's labels / "
                        "value_map), or clean the file.")
    for key, value in getattr(df, "attrs", {}).items():  # what the reader removed (e.g. conflicting labels)
        report[f"{split}_{key}"] = value
    for value, count in sorted(dropped.items()):
        report[f"{split}_label_{value}_dropped"] = count
    report[f"{split}_empty_text_removed"] = empty
    report[f"{split}_missing_label_removed"] = no_label
    if empty or no_label:
        print(f"note: {origin}: dropped {empty} rows with empty text and {no_label} without a label",
              file=sys.stderr)
    return out


def _dedup(exs: list[Example], banned: set[str] | None = None) -> tuple[list[Example], int, int]:
    key = lambda e: _WS.sub(" ", e.text.casefold())
    seen: set[str] = set()
    out, dup, overlap = [], 0, 0
    for e in exs:
        k = key(e)
        if banned is not None and k in banned:
            overlap += 1
        elif k in seen:
            dup += 1
        else:
            seen.add(k)
            out.append(e)
    return out, dup, overlap


def _stratified_carve(exs: list[Example], size: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off `size` examples, stratified (nested order), deterministic. Returns (rest, carved)."""
    if size <= 0:
        return exs, []
    order = nested_order([e.label for e in exs], seed)
    carved = set(order[:size])
    return [e for i, e in enumerate(exs) if i not in carved], [exs[i] for i in order[:size]]


def build(cfg: TaskConfig) -> TaskData:
    report: dict = {}
    encodings: dict[str, str] = {}
    readings: dict[str, str] = {}
    seed = int(cfg.split.get("seed", 0))
    train_raw = _read_split(cfg, "train")
    if train_raw is None:
        raise DataError(f"task {cfg.name}: the source defines no train split")
    if not cfg.labels:  # ad-hoc data without --labels: the labels found in the file, sorted
        df = train_raw[0]
        if cfg.label_field in df.columns:
            cfg.labels = sorted({cfg.value_map.get(_key(v), _key(v)) for v in df[cfg.label_field].dropna()
                                 if _key(v)})
    _reading("train", train_raw[1], train_raw[2], encodings, readings)
    train = _to_examples(cfg, train_raw[0], "train", train_raw[1], report)
    test_raw = _read_split(cfg, "test")
    if test_raw is not None:
        _reading("test", test_raw[1], test_raw[2], encodings, readings)
        test = _to_examples(cfg, test_raw[0], "test", test_raw[1], report)
    else:
        rule = cfg.split.get("test") or {}
        if rule.get("from") != "train":
            raise DataError(f"task {cfg.name}: no test split in the source and no split.test rule "
                            "(e.g. split: {test: {from: train, size: 0.2}})")
        size = float(rule.get("size", 0.2))  # a fraction of train, or (>= 1) a number of examples
        n_test = int(size) if size >= 1 else int(round(size * len(train)))
        if n_test >= len(train):
            raise DataError(f"task {cfg.name}: split.test.size {rule.get('size')} leaves no training examples "
                            f"(train has {len(train)})")
        train, test = _stratified_carve(train, n_test, int(rule.get("seed", 42)))
    if not train or not test:
        raise DataError(f"task {cfg.name}: after cleaning, train has {len(train)} and test {len(test)} examples")

    test, report["test_duplicates_removed"], _ = _dedup(test)
    test_keys = {_WS.sub(" ", e.text.casefold()) for e in test}
    train, report["train_duplicates_removed"], report["train_test_overlap_removed"] = _dedup(train, test_keys)
    rule = cfg.split.get("validation") or {}
    n_val = min(int(round(float(rule.get("size", 0.1)) * len(train))), int(rule.get("max", 1000)))
    pool, validation = _stratified_carve(train, n_val, seed)
    rng = np.random.default_rng(seed)
    test_all = [test[i] for i in rng.permutation(len(test))]
    unlabelled: list[str] = []
    un = _read_split(cfg, "unlabelled") if cfg.source.get("type") != "file" else None
    if un is not None:
        unlabelled = [t for t in (clean_text(x) for x in un[0][cfg.text_field].tolist()) if t]
    return TaskData(config=cfg, pool=pool, validation=validation, test_all=test_all, unlabelled=unlabelled,
                    report=report, encodings=encodings, readings=readings)


_CACHE: dict[str, TaskData] = {}


def load_task(task: str | None = None, *, data: str | None = None, test_data: str | None = None,
              text_column: str | None = None, label_column: str | None = None,
              labels: Sequence[str] | str | None = None, encoding: str | None = None,
              test_encoding: str | None = None) -> TaskData:
    """A named task (eval/tasks/NAME.yaml or a YAML path) or ad-hoc local data (`task` then names it; unset, the
    name is derived from the folder, the file and its content hash). Cached per process; the first load of ad-hoc
    data prints its summary (name, encoding) on stderr."""
    if isinstance(labels, str):
        labels = [x.strip() for x in labels.split(",") if x.strip()]
    if data:
        if not text_column or not label_column:
            raise DataError("--data needs --text-column and --label-column")
        if not Path(data).is_file():
            raise DataError(f"data file not found: {data}")
        cfg = local_config(data, text_column, label_column, labels, test_data, encoding, name=task,
                           test_encoding=test_encoding)
    elif task:
        if test_data or encoding:
            raise DataError(f"--test-data and --encoding go with --data; task {task} defines its own files "
                            "(source.encoding in its YAML)")
        cfg = load_config(task)
        if labels and list(labels) != cfg.labels:
            raise DataError(f"--labels {list(labels)} differs from task {cfg.name}'s labels {cfg.labels}")
    else:
        raise DataError("name a task (--task drugs) or give data (--data FILE --text-column C --label-column C)")
    key = json.dumps(cfg.__dict__, sort_keys=True, default=str)
    if key not in _CACHE:
        _CACHE[key] = build(cfg)
        _CACHE[key].derived_name = bool(data) and not task
    return _CACHE[key]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from eval.run.cli import add_data_args, data_kwargs, report_errors

    ap = argparse.ArgumentParser(description="Describe a task: split sizes, labels, duplicates, text lengths.")
    add_data_args(ap)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = ap.parse_args(argv)
    return report_errors(lambda: _describe(load_task(**data_kwargs(args)), args.json), args.debug)


def _describe(td: TaskData, as_json: bool) -> int:
    classes = sorted({e.label for e in td.pool + td.validation + td.test_all})
    if len(classes) < 2:  # (the run commands' preflight says the same, with their other problems)
        raise DataError(f"{td.config.source.get('train', td.name)}: every example has the label {classes[0]!r}; a "
                        f"classifier needs at least two classes: check --label-column ({td.config.label_field}) or "
                        "add examples of the other class")
    info = td.describe()
    if td.derived_name:  # how the name came about, and how to set one
        print(td.summary(), file=sys.stderr)
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    unit = "chars" if td.config.language in CHAR_LANGUAGES else "words"
    print(f"task {info['task']} (version {info['version']}): {info['description']}")
    print(f"labels: {', '.join(info['labels'])}")
    for name, s in info["splits"].items():
        dist = ", ".join(f"{k} {v} ({v / max(s['n'], 1):.0%})" for k, v in s["labels"].items())
        print(f"  {name:<11} n={s['n']:<6} {dist}   {unit} mean {s['len_mean']:g} median {s['len_median']:g} "
              f"p95 {s['len_p95']:g} max {s['len_max']}   hash {s['hash']}")
    if info["unlabelled"]:
        print(f"  unlabelled  n={info['unlabelled']}")
    if info["encoding"]:
        print("encoding: " + ", ".join(f"{k} {v}" for k, v in info["encoding"].items()))
    print("removed: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in info["report"].items()))
    for warning in info["warnings"]:
        print(f"warning: {warning}")
    if info["notes"]:
        print(f"notes: {info['notes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
