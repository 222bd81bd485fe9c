"""Library warnings that are not the user's problem, filtered so the ones that are stay visible.

    quiet_libraries(verbose=False)   # every command calls it first (eval.run.cli.report_errors)

- bitsandbytes >= 0.48 logs "Failed to load CPU gemm_4bit_forward from kernels-community ... `pip install kernels`"
  when it is imported on a CPU with AVX512-BF16 (bitsandbytes/backends/cpu/ops.py): an optional kernel for 4-bit
  inference on CPU, which the suite never runs (4-bit is CUDA-only here, docs/gpu-paths.md);
- transformers' FutureWarnings announce API changes to library authors (deprecated arguments the suite does not
  pass itself, or that peft/trl pass); they do not change a result.
With `verbose` (--debug or EVAL_DEBUG=1) each filtered message is one note line instead (docs/pitfalls.md).
"""

from __future__ import annotations

import logging
import sys
import warnings

# (logger, a phrase of the message, why it is not the user's problem)
LOG_NOISE = (
    ("bitsandbytes.backends.cpu.ops", "pip install kernels",
     "bitsandbytes' optional CPU 4-bit kernel (`kernels`) is missing; the suite runs no 4-bit model on CPU"),
)
FUTURE_MODULES = r"(transformers|peft|trl)(\..*)?$"


class _Drop(logging.Filter):
    def __init__(self, phrase: str, note: str, verbose: bool) -> None:
        super().__init__()
        self.phrase, self.note, self.verbose = phrase, note, verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.phrase not in record.getMessage():
            return True
        if self.verbose:
            print(f"note: filtered a {record.name} warning: {self.note}", file=sys.stderr)
        return False


def quiet_libraries(verbose: bool = False) -> None:
    """Install the filters (idempotent: a second call replaces the first's)."""
    for name, phrase, note in LOG_NOISE:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _Drop)]:
            logger.removeFilter(f)
        logger.addFilter(_Drop(phrase, note, verbose))
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning, module=FUTURE_MODULES)
