"""Install the tested torch into this interpreter's environment, the right build for the machine.

    python requirements/install_torch.py            # what `make install` runs (the pin is requirements/torch.txt)

- a CUDA torch already installed is left alone (GPU users install their build first, as PyTorch documents);
- a GPU machine without torch (`nvidia-smi` answers) gets the pin from PyPI, whose Linux wheels are CUDA builds;
- a CPU-only machine gets the CPU wheel from PyTorch's CPU index (https://pytorch.org/get-started/locally/), which
  is ~200 MB instead of several GB of CUDA libraries; where that index cannot be reached, pip's configured sources
  are used and the result is checked (a CUDA build on a CPU-only machine is said, with the fix).
Only the standard library is used: this runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PIN_FILE = Path(__file__).with_name("torch.txt")


def installed() -> dict | None:
    """{version, cuda} of the torch this interpreter imports, or None."""
    code = "import json, torch; print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def has_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def reachable(url: str, timeout: float = 10.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/torch/", timeout=timeout):
            return True
    except OSError:
        return False


def pip_install(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pin", default=PIN_FILE.read_text().strip(), help="the torch requirement (default: %(default)s)")
    ap.add_argument("--cpu-index", default=CPU_INDEX, help="PyTorch's CPU wheel index (default: %(default)s)")
    args = ap.parse_args(argv)
    want = args.pin.split("==", 1)[-1]
    have = installed()
    if have and have["cuda"]:
        print(f"torch {have['version']} (CUDA {have['cuda']}) is installed: left as it is (the tested pin is "
              f"{args.pin})")
        return 0
    if have and have["version"].split("+")[0] == want:
        return 0
    if has_gpu():
        print(f"GPU found (nvidia-smi): installing {args.pin} from PyPI (a CUDA build)")
        pip_install(args.pin)
    elif reachable(args.cpu_index):
        print(f"no GPU: installing the CPU build of {args.pin} from {args.cpu_index}")
        pip_install("--index-url", args.cpu_index, args.pin)
    else:
        print(f"no GPU, and PyTorch's CPU index ({args.cpu_index}) is not reachable from here: installing {args.pin} "
              "from pip's configured sources")
        pip_install(args.pin)
    have = installed()
    if have is None:
        print(f"error: torch does not import after installing {args.pin}", file=sys.stderr)
        return 1
    if have["cuda"] and not has_gpu():
        print(f"warning: torch {have['version']} is a CUDA build (several GB) on a machine without a GPU; for the CPU "
              f"build: {sys.executable} -m pip install --force-reinstall --index-url {args.cpu_index} {args.pin}",
              file=sys.stderr)
    print(f"torch {have['version']}" + (f" (CUDA {have['cuda']})" if have["cuda"] else " (CPU)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
