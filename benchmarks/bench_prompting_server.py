"""Prompting against a server: concurrency and the answer cache (issue 5, benchmarks 1 and 2).

    python benchmarks/bench_prompting_server.py [--n 96] [--n-cache 512] [--delay 0.2]

A scripted Ollama server on 127.0.0.1 answers every request after `--delay` seconds (it serves requests in
parallel, as Ollama does with OLLAMA_NUM_PARALLEL >= 8). Each measurement is one in-process `main()` of
prompting/run.py, zero-shot CoT on a local CSV, fresh results directory unless stated:
1. `--concurrency 8` vs one request at a time (how users ran it by hand): examples/s, target >= 6x;
2. experiment C's largest size (512 examples, default --concurrency 4) run twice, the second time with --overwrite so
   every answer comes from the cache: target >= 50x.
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import tempfile
import time
from pathlib import Path

from prompting.fake_server import FakeServer, Reply
from prompting.run import PromptConfig, main


def reviews(path: Path, n: int) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([f"review {i}: a {'great' if i % 2 else 'awful'} film", "positive" if i % 2 else "negative"])
    return path


def timed(cfg: PromptConfig) -> float:
    t0 = time.perf_counter()
    if main(cfg) != 0:
        raise SystemExit("run failed")
    return time.perf_counter() - t0


def bench(n: int, n_cache: int, delay: float) -> dict:
    script = lambda p, k: Reply("Looks clear.</think>\n" + ("positive" if "great" in p.rsplit("Input:", 1)[-1]
                                                               else "negative"))
    with tempfile.TemporaryDirectory() as tmp, FakeServer(["llama3.1:8b"], script, delay=delay) as srv:
        data = reviews(Path(tmp) / "reviews.csv", max(n, n_cache) * 5)  # the test set is a fixed 20% of it
        base = dict(model="llama3.1", task=None, data=str(data), text_column="text", label_column="label",
                    host=srv.url, n_eval=[n])
        big = {**base, "n_eval": [n_cache]}
        main(PromptConfig(**base, results_dir=f"{tmp}/warm", concurrency=8))  # imports, task load, first connect
        one = timed(PromptConfig(**base, results_dir=f"{tmp}/c1", concurrency=1))
        eight = timed(PromptConfig(**base, results_dir=f"{tmp}/c8", concurrency=8))
        first = timed(PromptConfig(**big, results_dir=f"{tmp}/cache", concurrency=4))
        again = timed(PromptConfig(**big, results_dir=f"{tmp}/cache", concurrency=4, overwrite=True))
        asked = len(srv.prompts())
    return {"n": n, "n_cache": n_cache, "delay": delay, "c1_s": one, "c8_s": eight, "speedup_c8": one / eight,
            "first_s": first, "cached_s": again, "speedup_cache": first / again, "requests": asked}


def main_cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=96, help="test examples per run")
    ap.add_argument("--n-cache", type=int, default=512, help="test examples for the cache benchmark")
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the server takes per answer")
    args = ap.parse_args()
    r = bench(args.n, args.n_cache, args.delay)
    print(f"\nmachine: {platform.machine()} {platform.system()}, Python {platform.python_version()}, "
          f"{__import__('os').cpu_count()} cores", file=sys.stderr)
    print(f"{r['n']} examples, server answers in {r['delay'] * 1000:.0f} ms")
    print(f"1. one at a time {r['c1_s']:.2f} s ({r['n'] / r['c1_s']:.1f} ex/s); --concurrency 8 {r['c8_s']:.2f} s "
          f"({r['n'] / r['c8_s']:.1f} ex/s): {r['speedup_c8']:.1f}x (target >= 6x)")
    print(f"2. {r['n_cache']} examples, first run (--concurrency 4) {r['first_s']:.2f} s; "
          f"repeated run from the cache {r['cached_s']:.3f} s: "
          f"{r['speedup_cache']:.0f}x (target >= 50x)")
    ok = r["speedup_c8"] >= 6 and r["speedup_cache"] >= 50
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main_cli())
