"""Training throughput of the encoder track: dynamic padding + length-grouped batches vs padding every batch to 512
tokens (how our users did it). Same model, same data, same truncation (512), same batch size, one process.

    python benchmarks/bench_encoder_padding.py                       # minilm-l6 on drugs, 8 timed batches per mode
    python benchmarks/bench_encoder_padding.py --batches 4 --batch-size 16 --threads 2

The two modes alternate batch by batch, so load from other jobs on a shared machine hits both alike; the ratio is
the result, absolute numbers are only indicative. Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--task", default="drugs")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=8, help="timed batches per mode (after one warm-up each)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from encoders.config import EncoderConfig
    from encoders.loop import batch_order, collate, encode, make_optimizer
    from encoders.modeling import build_classifier, locate_model
    from eval.inputs.data import load_task

    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_task(args.task)
    cfg = EncoderConfig(model=args.model, method="full", max_length=args.max_length,
                        batch_size=args.batch_size).resolved()
    path, _ = locate_model(cfg.model)
    model, tok = build_classifier(cfg, path, task.labels)
    opt = make_optimizer(model, cfg)
    pool = task.train("full", 0)
    index = {lab: i for i, lab in enumerate(task.labels)}
    data = encode(tok, [e.text for e in pool], [index[e.label] for e in pool], cfg.max_length)
    lengths = [len(x) for x in data.input_ids]
    rng = np.random.default_rng(0)
    # same examples in both modes: the batches of one length-grouped epoch, and the same batches padded to 512
    batches = batch_order(lengths, cfg.batch_size, rng, group_by_length=True)[: args.batches + 1]
    modes = {"dynamic + length-grouped": None, f"padded to {cfg.max_length}": cfg.max_length}
    stats = {m: {"s": 0.0, "examples": 0, "tokens": 0, "real": 0} for m in modes}
    device = torch.device("cpu")
    model.train()
    for i, idx in enumerate(batches):
        for mode, pad_to in modes.items():
            batch = collate(tok, data, idx, pad_to, device)
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(input_ids=batch["input_ids"],
                                                           attention_mask=batch["attention_mask"]).logits,
                                                     batch["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            if i == 0:
                continue  # warm-up batch
            s = stats[mode]
            s["s"] += dt
            s["examples"] += len(idx)
            s["tokens"] += batch["input_ids"].numel()
            s["real"] += int(batch["attention_mask"].sum())
            print(f"batch {i} {mode}: {dt:.2f}s ({batch['input_ids'].shape[1]} tokens)", file=sys.stderr)
    rate = {m: s["examples"] / s["s"] for m, s in stats.items()}
    fast, slow = list(modes)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"model {args.model}, task {args.task}, batch {cfg.batch_size}, {args.batches} timed batches per mode\n")
    print("| mode | examples/s | padded tokens / example | real-token share |")
    print("|---|---|---|---|")
    for m, s in stats.items():
        print(f"| {m} | {rate[m]:.2f} | {s['tokens'] / s['examples']:.0f} | {s['real'] / s['tokens']:.2f} |")
    print(f"\nspeed-up: **{rate[fast] / rate[slow]:.2f}x** examples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
