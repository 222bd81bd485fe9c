"""Per-text model time of a served run's predictor, in-process, by how many texts one call gets (issue 21).

    python benchmarks/bench_serve_inprocess.py [RECORD] [--n 64] [--batches 1 4 16 64] [--threads 1] [--repeats 3]

What the dynamic batcher can save at most: it hands the predictor the texts that queued together, and the predictor
runs them as the evaluation did (encoders: sorted by length, in sub-batches of the run's eval batch size, each padded
to its longest text). No HTTP, no clients: the run's first N test texts, split into calls of B texts, the best of
`--repeats` passes per B; every pass must give the same labels. Default RECORD: the committed encoder fixture.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = next(iter(sorted((REPO / "tests" / "fixtures" / "served" / "runs").glob("*/encoders/*.json"))), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record", nargs="?", default=str(FIXTURE) if FIXTURE else None)
    ap.add_argument("--n", type=int, default=64, help="test texts (default 64)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64], help="texts per predictor call")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.record:
        ap.error("name a record (no committed encoder fixture in this checkout)")
    import torch

    from eval.run.records import load_examples
    from eval.serve.check import _texts
    from eval.serve.load import load

    served = load(args.record)
    torch.set_num_threads(args.threads)
    rows = load_examples(served.record)[:args.n]
    texts = _texts(served.record, rows)
    p = served.predictor
    tok = getattr(p, "tok", None)
    facts = f"threads {torch.get_num_threads()}, predictor batch {p.batch_size}"
    if tok is not None and hasattr(p, "max_length"):
        lens = [min(len(tok(t)["input_ids"]), p.max_length) for t in texts]
        facts += f", mean {sum(lens) / len(lens):.1f} tokens (cut to {p.max_length})"
    print(f"{served.run_id}: n={len(texts)} texts, {facts}; load average {os.getloadavg()[0]:.1f} at start")
    print("| texts per call | ms per text (best) | every pass, ms per text |\n|---|---|---|")
    first = None
    for b in args.batches:
        passes = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = [o for i in range(0, len(texts), b) for o in p.predict(texts[i:i + b])]
            passes.append(1000 * (time.perf_counter() - t0) / len(texts))
            labels = [o["label"] for o in out]
            first = first or labels
            if labels != first:
                print(f"error: {b} texts per call gave other labels than {args.batches[0]}", file=sys.stderr)
                return 1
        print(f"| {b} | {min(passes):.1f} | {', '.join(f'{x:.1f}' for x in passes)} |")
    agree = sum(a == r["pred"] for a, r in zip(first or [], rows))
    print(f"labels equal in every setting; {agree}/{len(rows)} equal to the per-example file; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if agree == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
