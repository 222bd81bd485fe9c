"""GPU smoke check for users: run it on a CUDA machine (an RTX 4090, a Colab/Kaggle T4, ...) without editing, and
paste the one-page report it prints into an issue.

    make gpu-check                                  # = python -m finetune.gpu_check
    python -m finetune.gpu_check --model qwen3-1.7b --task drugs --budget-s 540

What it runs, each step as the real CLI (`finetune/sft.py`) in a subprocess with its own time limit, on the offline
drug-review task (no data download): with every SFT backend that can run here (unsloth when it imports, and hf):
a 4-bit load (method qlora), before/after evaluation on 64 items at eval batch size 16 (the batch canary, where the
SFT evaluation has one, runs inside it), 20 training steps, a 16-bit merge and, with unsloth, a GGUF export
(q4_k_m). The report has the machine (GPU, compute capability, native bf16, library versions) and, per backend,
the result or the last lines of the error. It needs the model weights from the hub (default qwen3-1.7b: not
gated, ~1.2 GB 4-bit), so it needs the network; everything else is local. On a machine without CUDA it refuses
at once: run `make doctor` there instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

REPO = Path(__file__).resolve().parents[1]
N_EVAL = 64
STEPS = 20
# fixed, so the check is one load and STEPS steps per backend: without --learning-rate the SFT CLI first runs the
# LR search (finetune/select.py: 3 learning rates x their own loads and epochs, ~4 loads and ~80 steps)
LEARNING_RATE = 2e-4


def refuse_without_cuda() -> str | None:
    """The reason this machine cannot run the check, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed: pip install -e '.[demo]' (with your CUDA build of torch first)"
    if not torch.cuda.is_available():
        return ("no CUDA GPU visible: `make gpu-check` runs only on a CUDA machine (e.g. an RTX 4090 or a T4). "
                "Here, `make doctor` tells what will run.")
    return None


def machine() -> list[str]:
    import importlib.metadata as md

    import torch

    from finetune.backends import cuda_bf16

    i = torch.cuda.current_device()
    cap = torch.cuda.get_device_capability(i)
    free, total = torch.cuda.mem_get_info(i)
    versions = []
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "unsloth", "unsloth_zoo"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            versions.append(f"{pkg} -")
    return [f"GPU: {torch.cuda.get_device_name(i)} x{torch.cuda.device_count()}, capability {cap[0]}.{cap[1]}, "
            f"{free / 2**30:.1f}/{total / 2**30:.1f} GiB free, native bf16: {cuda_bf16()}, CUDA {torch.version.cuda}",
            "versions: " + ", ".join(versions)]


def sft_command(model: str, task: str, backend: str, results_dir: Path) -> list[str]:
    cmd = [sys.executable, str(REPO / "finetune" / "sft.py"), "--model", model, "--task", task, "--n-train", "64",
           "--seeds", "0", "--n-eval", str(N_EVAL), "--max-steps", str(STEPS), "--learning-rate", str(LEARNING_RATE),
           "--backend", backend,
           "--quantization", "4bit", "--eval-batch-size", "16", "--eval-mode", "both", "--merge",
           "--results-dir", str(results_dir / backend), "--overwrite"]
    if backend == "unsloth":
        cmd += ["--export-gguf", "q4_k_m"]
    return cmd


def summarize(record: dict) -> list[str]:
    """The lines of the report for one finished run (its record)."""
    m, b = record.get("metrics") or {}, record.get("before_training") or {}
    cfg, timing = record.get("config") or {}, record.get("timing") or {}
    art = (record.get("details") or {}).get("artifacts") or {}
    dtype = (cfg.get("model") or {}).get("dtype")
    lines = [f"  model {record.get('model_id')}, dtype {dtype}, bf16 {cfg.get('bf16')}, optim {cfg.get('optim')}, "
             f"{cfg.get('max_steps')} steps in {timing.get('train_s')} s",
             f"  before: accuracy {b.get('accuracy')}, valid {b.get('valid_rate')}  ->  after: accuracy "
             f"{m.get('accuracy')}, valid {m.get('valid_rate')} (n={record.get('n_eval')}); "
             f"eval {timing.get('eval_s')} s"]
    canary = {k: v for k, v in record.items() if "canary" in k or "batch_check" in k}
    canary |= {k: v for k, v in cfg.items() if "canary" in k or "batch_check" in k}
    lines.append(f"  batch canary: {json.dumps(canary, default=str)[:300] if canary else 'not recorded'}")
    for key in ("merged", "gguf", "modelfile"):
        if key in art:
            lines.append(f"  {key}: ok ({art[key]})")
    lines += [f"  {k}: FAILED {v}" for k, v in art.items() if k.endswith("_error")]
    return lines


def run_backend(model: str, task: str, backend: str, results_dir: Path, timeout_s: float) -> tuple[bool, list[str]]:
    cmd = sft_command(model, task, backend, results_dir)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return False, [f"{backend}: TIMEOUT after {timeout_s:.0f} s", *("  | " + x for x in tail.splitlines()[-15:])]
    wall = time.perf_counter() - t0
    records = sorted((results_dir / backend).rglob("runs/**/*.json"))
    if proc.returncode != 0 or not records:
        return False, [f"{backend}: FAILED (exit {proc.returncode}, {wall:.0f} s): " + " ".join(cmd[1:]),
                       *("  | " + x for x in proc.stderr.splitlines()[-15:])]
    return True, [f"{backend}: ok in {wall:.0f} s", *summarize(json.loads(records[-1].read_text()))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen3-1.7b", help="an alias with an unsloth 4-bit id (default: qwen3-1.7b)")
    ap.add_argument("--task", default="drugs", help="default drugs (offline data)")
    ap.add_argument("--results-dir", default="results/gpu-check", help="kept apart from real results")
    ap.add_argument("--budget-s", type=float, default=540.0, help="total time for all backends (default 9 min)")
    ns = ap.parse_args(argv)
    reason = refuse_without_cuda()
    if reason:
        print(f"gpu-check: {reason}", file=sys.stderr)
        return 2
    from finetune.backends import unsloth_import_error

    reason = unsloth_import_error()
    backends = (["unsloth"] if reason is None else []) + ["hf"]
    report = ["## tune-or-prompt gpu-check", *machine(),
              f"unsloth: {'used' if reason is None else 'skipped: ' + reason}",
              f"steps: {ns.model} on {ns.task}, 4-bit, {STEPS} SFT steps, before/after on {N_EVAL} items at batch 16, "
              "merge" + (", GGUF q4_k_m" if reason is None else "")]
    start, all_ok = time.perf_counter(), True
    for i, backend in enumerate(backends):
        left = ns.budget_s - (time.perf_counter() - start)  # what is left, shared by the backends still to run
        share = max(60.0, left / (len(backends) - i))
        ok, lines = run_backend(ns.model, ns.task, backend, Path(ns.results_dir), share)
        all_ok &= ok
        report += lines
    text = "\n".join(report)
    out = Path(ns.results_dir) / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(text + f"\n\n(saved to {out}: paste it into an issue)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
