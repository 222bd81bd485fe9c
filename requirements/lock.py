"""The locked, tested dependency set: requirements/lock.txt, compiled by pip-tools from pyproject.toml.

    python requirements/lock.py              # `make lock`: re-resolve after a pyproject change, keeping pins
    python requirements/lock.py --upgrade    # `make lock-upgrade`: newest versions, installed into a fresh venv,
                                             # the test suite run there, and a pass/fail report of what changed

`make install` installs with `-c requirements/lock.txt`, so a fresh clone gets exactly the set CI passed with.
torch is pinned on its own (requirements/torch.txt; requirements/install_torch.py picks the CPU or CUDA build), so
the lock names no CUDA libraries and serves CPU and GPU machines alike. The offline model and data packages are
pinned in requirements/offline.txt (installed with --no-deps; docs/offline.md). The lock is resolved for CPython
3.11 on Linux x86_64 (its header says the command); elsewhere `make LOCK= install` installs from pyproject's
ranges instead.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCK = HERE / "lock.txt"
EXTRAS = ("demo", "sweep", "dev")  # what `make install` installs
REPORT = HERE / "upgrade-report.md"


def compile_lock(out: Path, upgrade: bool) -> None:
    """pip-compile pyproject.toml's extras into `out` (pins kept from `out` unless `upgrade`)."""
    cmd = [sys.executable, "-m", "piptools", "compile", "--quiet", "--strip-extras",
           "--no-emit-index-url", "--no-emit-find-links", "--unsafe-package", "torch",
           "--unsafe-package", "tune-or-prompt", "--constraint", "requirements/torch.txt",
           *[f"--extra={e}" for e in EXTRAS], "--output-file", str(out.relative_to(ROOT)), "pyproject.toml"]
    if upgrade:
        cmd.insert(4, "--upgrade")
    subprocess.run(cmd, cwd=ROOT, check=True)


def pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of a compiled lock."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    rows = [f"- {n}: {old[n]} -> {new[n]}" for n in sorted(old.keys() & new.keys()) if old[n] != new[n]]
    rows += [f"- {n}: new, {new[n]}" for n in sorted(new.keys() - old.keys())]
    rows += [f"- {n}: dropped (was {old[n]})" for n in sorted(old.keys() - new.keys())]
    return rows


def test_in_fresh_venv(venv: Path) -> tuple[bool, str]:
    """Install the new lock into a fresh venv the way `make install` does, run the default test suite there;
    (passed, pytest's summary lines)."""
    shutil.rmtree(venv, ignore_errors=True)
    make = ["make", f"VENV={venv}", "install"]
    subprocess.run(make, cwd=ROOT, check=True)
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-rfE"],
                         cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    lines += run.stdout.strip().splitlines()[-1:]
    return run.returncode == 0, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upgrade", action="store_true", help="re-resolve to the newest versions, then test them")
    ap.add_argument("--no-test", action="store_true", help="with --upgrade: write the new lock without testing it")
    ap.add_argument("--venv", default=str(ROOT / ".venv-upgrade"), help="where the new set is tested")
    args = ap.parse_args(argv)
    old = pins(LOCK) if LOCK.exists() else {}
    compile_lock(LOCK, upgrade=args.upgrade)
    diff = changes(old, pins(LOCK))
    print(f"{LOCK.relative_to(ROOT)}: {len(diff)} change(s)")
    print("\n".join(diff))
    if not args.upgrade or args.no_test:
        return 0
    t0 = time.time()
    passed, summary = test_in_fresh_venv(Path(args.venv))
    verdict = "PASS" if passed else "FAIL"
    REPORT.write_text(f"# lock upgrade: {verdict}\n\n{time.strftime('%Y-%m-%d')}, tested in {args.venv} "
                      f"({time.time() - t0:.0f} s)\n\n## What changed\n" + ("\n".join(diff) or "nothing") +
                      f"\n\n## Tests\n```\n{summary}\n```\n")
    print(f"\n{verdict}: {summary.splitlines()[-1] if summary else ''}\nreport: {REPORT.relative_to(ROOT)}")
    if not passed:
        print("the new lock is written but broke the tests above: fix them, or restore the old lock with "
              "`git checkout requirements/lock.txt`", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
