"""Cost of the decision layer's bootstrap: eval.decide.analysis.analyse over the committed records with B = 1,000
replicates (the old default, whose p-values floor at 1/1,001) against B = stats.N_BOOT (20,000), in one process,
alternating, so both see the same load.

    python benchmarks/bench_decide.py [--results-dir results] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from eval.decide import stats
from eval.decide.analysis import analyse
from eval.run.records import load_records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    records, _ = load_records(args.results_dir)
    analyse(records, n_boot=1000)  # warm: per-example files read once into the OS cache
    times: dict[int, list[float]] = {1000: [], stats.N_BOOT: []}
    for _ in range(args.repeats):
        for b in times:
            t = time.perf_counter()
            analyse(records, n_boot=b)
            times[b].append(time.perf_counter() - t)
    load = os.getloadavg()[0]
    for b, ts in times.items():
        print(f"B={b:>6}: median {statistics.median(ts):.2f} s over {len(ts)} runs ({len(records)} records)")
    ratio = statistics.median(times[stats.N_BOOT]) / statistics.median(times[1000])
    print(f"ratio {ratio:.1f}x; load average {load:.1f}; {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
