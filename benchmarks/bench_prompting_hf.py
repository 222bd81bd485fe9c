"""The in-process hf backend: batched vs one-at-a-time on gemma3-270m (issue 5, benchmark 3).

    HF_HUB_OFFLINE=1 python benchmarks/bench_prompting_hf.py [--n 32] [--batch-size 16] [--threads 1]

The first --n drug-review test prompts (zero-shot template), through prompting's HFBackend exactly as run.py uses
it: generation (greedy, left-padded) and label scoring (last position only), each at batch 1 and at --batch-size.
Outputs must agree (batch invariance, docs/pitfalls.md#batch-padding); the model is loaded once, outside the timings.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from eval.inputs.data import load_task
from eval.lm.prompts import load_prompt
from prompting.backends import BackendOptions
from prompting.backends.hf import HFBackend


def run(backend: HFBackend, prompts: list[str], mode: str, batch_size: int) -> tuple[float, list[str]]:
    backend.options.mode, backend.options.batch_size = mode, batch_size
    out: dict = {}
    t0 = time.perf_counter()
    backend.answer_all(prompts, out.__setitem__)
    return time.perf_counter() - t0, [out[i].text for i in range(len(prompts))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    task = load_task("drugs")
    prompt = load_prompt("zeroshot", task.scheme)
    prompts = [prompt.render(e.text) for e in task.test(args.n)]
    backend = HFBackend("gemma3-270m", BackendOptions(max_new_tokens=args.max_new_tokens), task.scheme)
    backend.ready()
    import torch

    print(f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.1f}")
    info = backend.lm[2]
    print(f"{args.n} drug reviews, zero-shot prompt, gemma3-270m ({info['source']}, {info['dtype']})")
    ok = True
    for mode in ("generate", "score"):
        t1, one = run(backend, prompts, mode, 1)
        tn, many = run(backend, prompts, mode, args.batch_size)
        same = one == many
        ok &= same
        print(f"{mode:8s}: batch 1 {t1:.1f} s ({args.n / t1:.2f} ex/s), batch {args.batch_size} {tn:.1f} s "
              f"({args.n / tn:.2f} ex/s): {t1 / tn:.1f}x; identical outputs: {same}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
