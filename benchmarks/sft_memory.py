"""Benchmark (3): peak resident memory of one LoRA training step, gemma3-270m on CPU, max_seq_length 256.

    python benchmarks/sft_memory.py [--model gemma3-270m] [--batch-size 8] [--max-seq-length 256] [--loss full sparse]

Runs in a fresh subprocess so the peak (ru_maxrss) belongs to this measurement only: peak RSS after loading the
model + LoRA + trainer, then after one optimizer step on full-length (truncated to max_seq_length) drug reviews.
The difference is what training adds (activations, gradients of the adapters, AdamW state), with TRL's default loss
(logits at every position) and with the hf backend's target-positions-only loss (finetune/trainer.py). One run; jobs
share this machine, so treat the step time as indicative and the memory as the number.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])


def _rss_mb() -> float:
    """Current resident set size (Linux /proc; no psutil needed)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(model_name: str, batch_size: int, max_seq_length: int, loss: str) -> dict:
    import time

    from eval.inputs.data import load_task
    from eval.lm.models import resolve
    from finetune.backends import for_training, load
    from finetune.config import SFTArgs, trainer_args
    from finetune.formatting import Formatter, load_template
    from finetune.trainer import make_trainer

    start = _peak_mb()
    cfg = SFTArgs(max_seq_length=max_seq_length, batch_size=batch_size, max_steps=1)
    loaded = load(resolve(model_name), "hf", load_in_4bit=False, max_seq_length=max_seq_length, lora=cfg.lora(),
                  seed=0)
    task = load_task("drugs")
    fmt = Formatter(loaded.tokenizer, task.scheme, load_template(), max_seq_length,
                    chat=False if resolve(model_name).base else None)
    longest = sorted(task.train("full", 0), key=lambda e: -len(e.text))[:batch_size]  # worst case: full length
    for_training(loaded)
    loaded.tokenizer.padding_side = "right"
    args = trainer_args(cfg, output_dir="/tmp/sft-memory-bench", n_examples=batch_size, seed=0, cuda=False,
                        bf16=False)
    trainer = make_trainer(loaded.model, loaded.tokenizer, args, fmt.dataset_rows(longest),
                           sparse_logits=loss == "sparse")
    tokens = sum(len(r["input_ids"]) for r in trainer.train_dataset)
    before_peak, before_rss = _peak_mb(), _rss_mb()
    t0 = time.perf_counter()
    trainer.train()
    step_s = time.perf_counter() - t0
    after_peak = _peak_mb()
    trainable, total = loaded.model.get_nb_trainable_parameters()
    return {"loss": loss, "model": model_name, "batch_size": batch_size, "max_seq_length": max_seq_length,
            "tokens_in_step": tokens, "trainable_params": trainable, "total_params": total,
            "peak_rss_mb_at_start": round(start), "rss_mb_before_step": round(before_rss),
            "peak_rss_mb_before_step": round(before_peak), "peak_rss_mb_after_step": round(after_peak),
            "step_adds_mb": round(after_peak - before_peak), "step_s": round(step_s, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--loss", nargs="+", choices=["full", "sparse"], default=["full", "sparse"],
                    help="full: TRL default loss (logits at every position); sparse: target positions only (hf)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        print(json.dumps(measure(args.model, args.batch_size, args.max_seq_length, args.loss[0])))
        return 0
    results = []
    for loss in args.loss:  # one fresh process each: ru_maxrss is a per-process peak
        cmd = [sys.executable, __file__, "--inner", "--model", args.model, "--batch-size", str(args.batch_size),
               "--max-seq-length", str(args.max_seq_length), "--loss", loss]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"the {loss} measurement failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        keys = list(results[0])
        print("| " + " | ".join(["metric", *[r["loss"] for r in results]]) + " |")
        print("|---" * (len(results) + 1) + "|")
        for k in keys[1:]:
            print("| " + " | ".join([k, *[str(r[k]) for r in results]]) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
