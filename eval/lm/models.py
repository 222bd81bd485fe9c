"""Model aliases: short names -> ids per backend (hf / unsloth / ollama), kind, and offline sources.

`resolve("qwen3-4b")` gives a ModelInfo; an unknown name is taken as a literal id for every backend (so any HF id or
Ollama tag works). Offline sources are registry packages located through importlib.metadata without importing them
(eval/lm/packaged.py); `python -m eval.lm.models ALIAS …` prepares them before a sweep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

MODELS_FILE = Path(__file__).resolve().parents[1] / "models.yaml"


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what the user typed (alias or literal id)
    kind: str | None = None  # encoder | causal | None when unknown
    hf: str | None = None
    unsloth: str | None = None
    ollama: str | None = None
    offline: dict = field(default_factory=dict)
    thinks: bool = False
    base: bool = False
    alias: bool = False  # True when `name` was found in models.yaml

    def id_for(self, backend: str) -> str:
        """The model id a backend should load (hf, unsloth, ollama, openai)."""
        if backend == "unsloth":
            return self.unsloth or self.hf or self.name
        if backend == "ollama":
            return self.ollama or self.name
        if backend == "openai":
            return self.name
        return self.hf or self.name

    def offline_path(self) -> Path | None:
        """Local path of the packaged weights (a folder, or a GGUF), or None when the alias has none or, online,
        when its packages are not installed. Byte-split packagings are joined (and zips unpacked) once into the
        cache (eval/lm/packaged.py). Offline (HF_HUB_OFFLINE=1) a missing package raises MissingPackages naming the
        install command; so does a partial install, which is never what the user meant."""
        if not self.offline:
            return None
        from eval.lm import packaged

        if "parts" not in self.offline:
            return packaged.package_file(self.offline["package"], self.offline.get("path"))
        missing = packaged.missing_packages(self.offline)
        none_installed = len(missing) == len(packaged.packages(self.offline))
        if none_installed and os.environ.get("HF_HUB_OFFLINE") != "1":
            return None
        if "unzip" in self.offline:
            return packaged.unpacked_dir(self.name, self.offline)
        return packaged.assembled_file(self.name, self.offline)

    def offline_packages(self) -> list[str]:
        """The registry packages that hold this alias's offline weights ([] when it has none)."""
        from eval.lm import packaged

        return packaged.packages(self.offline) if self.offline else []


@lru_cache(maxsize=1)
def _table() -> tuple[int, dict]:
    data = yaml.safe_load(MODELS_FILE.read_text())
    return int(data.get("version", 1)), data["models"]


def aliases(kind: str | None = None) -> list[str]:
    return sorted(k for k, v in _table()[1].items() if kind is None or v.get("kind") == kind)


def resolve(name: str) -> ModelInfo:
    entry = _table()[1].get(name)
    if entry is None:
        return ModelInfo(name=name)
    fields = {k: entry[k] for k in ("kind", "hf", "unsloth", "ollama", "offline", "thinks", "base") if k in entry}
    return ModelInfo(name=name, alias=True, **fields)


def prepare(alias: str) -> Path:
    """Make an alias's offline weights ready to load: join/unzip its parts, and convert a GGUF to safetensors.
    Each one-off step announces itself on stderr; a ready alias costs a metadata read."""
    from eval.lm import packaged

    info = resolve(alias)
    if not info.offline:
        raise ValueError(f"{alias!r} has no offline source in eval/models.yaml")
    if "gguf" in info.offline:
        return packaged.cached_gguf_checkpoint(alias, info.offline)
    missing = packaged.missing_packages(info.offline)
    if missing:
        raise packaged.MissingPackages(f"the offline copy of {alias} needs: {packaged.install_hint(missing)}")
    path = info.offline_path()
    assert path is not None
    return path


def main(argv: list[str] | None = None) -> int:
    """python -m eval.lm.models ALIAS … : prepare offline models before a sweep (whose runs log to files), so the
    one-off joins and conversions are seen on screen."""
    import argparse

    from eval.lm.packaged import CorruptSource, _say

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("aliases", nargs="+", help="aliases in eval/models.yaml with an offline source")
    args = ap.parse_args(argv)
    for alias in args.aliases:
        try:
            _say(f"{alias}: ready ({prepare(alias)})")
        except (ModuleNotFoundError, CorruptSource, ValueError) as exc:
            _say(f"error: {exc}")
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
