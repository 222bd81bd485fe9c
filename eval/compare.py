"""`python eval/compare.py ...` (the command users know) runs eval/decide/compare.py, as
`python -m eval.decide.compare` does."""

import runpy
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script, Python puts eval/ first on sys.path; the repo root belongs there
    sys.path[0] = str(Path(__file__).resolve().parents[1])

if __name__ == "__main__":
    runpy.run_module("eval.decide.compare", run_name="__main__", alter_sys=True)
