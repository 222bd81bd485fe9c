"""The data a run uses, as a RunSpec refers to it: a named task (eval/tasks/NAME.yaml, versioned) or ad-hoc local
files with their content hashes and columns, so every run, `--data` ones included, is reproducible from its record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from eval.inputs.data import TaskData, load_task
from eval.inputs.sources import DataError


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _label_list(labels: Sequence[str] | str | None) -> list[str] | None:
    if isinstance(labels, str):
        labels = [x.strip() for x in labels.split(",") if x.strip()]
    return list(labels) if labels else None


def data_ref(task: str | None = None, *, data: str | None = None, test_data: str | None = None,
             text_column: str | None = None, label_column: str | None = None,
             labels: Sequence[str] | str | None = None, encoding: str | None = None) -> dict | None:
    """What a RunSpec records about ad-hoc data so the run can be reproduced from its record alone: the file(s),
    their content hashes, the columns and the encoding each file was read with (detected or --encoding; a run whose
    file reads differently is another run). None for a named task (its YAML's version is in the record)."""
    if not data:
        return None
    for p in filter(None, (data, test_data)):
        if not Path(p).is_file():
            raise DataError(f"--data file {p} does not exist")
    ref: dict = {"file": str(data), "sha256": file_sha256(data), "text_column": text_column,
                 "label_column": label_column, "labels": _label_list(labels)}
    if test_data:
        ref.update(test_file=str(test_data), test_sha256=file_sha256(test_data))
    read = load_task(task, data=data, test_data=test_data, text_column=text_column, label_column=label_column,
                     labels=labels, encoding=encoding).encodings  # cached: the CLI has just loaded it
    ref["encoding"] = read.get("train")
    if test_data:
        ref["test_encoding"] = read.get("test")
    return ref


def load_ref(task: str, ref: dict | None) -> TaskData:
    """The task a RunSpec names: `load_task(task)`, or the ad-hoc files of its data reference after checking that
    their content is still what the spec was made from."""
    if ref is None:
        return load_task(task)
    for key, hkey in (("file", "sha256"), ("test_file", "test_sha256")):
        if not ref.get(key):
            continue
        if not Path(ref[key]).is_file():
            raise DataError(f"this run's data file {ref[key]} is missing: put it back (sha256 {ref[hkey][:12]}…) "
                            "or rerun the command with --data pointing at it")
        now = file_sha256(ref[key])
        if now != ref[hkey]:
            raise DataError(f"{ref[key]} changed since this run was specified (sha256 {now[:12]}… now, "
                            f"{ref[hkey][:12]}… in the spec): rerun the track command to plan runs for the new data")
    return load_task(task, data=ref["file"], test_data=ref.get("test_file"), text_column=ref.get("text_column"),
                     label_column=ref.get("label_column"), labels=ref.get("labels"), encoding=ref.get("encoding"),
                     test_encoding=ref.get("test_encoding"))
