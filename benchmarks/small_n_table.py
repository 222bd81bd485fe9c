"""Markdown tables for BENCHMARKS.md "Small-n encoders": per task, one row per (track, model, method, loss, n) with
mean ± sd over seeds of accuracy and macro-F1, training seconds (search included), the chosen LR / epochs, and how
many seeds collapsed to (nearly) one class.

    python benchmarks/small_n_table.py /tmp/fair/res_after [--task drugs]
    python benchmarks/small_n_table.py results --n-train 64      # the committed sweeps/small_n.yaml records
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def _ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _chosen(rec: dict) -> str:
    details = rec.get("details") or rec  # record schema 2 keeps a track's own fields under `details`
    search = (details.get("training") or {}).get("search") or details.get("search")
    if not search:
        return f"lr {rec.get('config', {}).get('learning_rate', '')}" if rec["track"] == "finetune" else ""
    chosen = search["chosen"]
    lr = chosen.get("lr", chosen.get("learning_rate"))
    extra = f", {chosen['steps']} steps" if "steps" in chosen else ""
    extra += f", {chosen['num_train_epochs']:g} ep" if "num_train_epochs" in chosen else ""
    return f"lr {lr:g}{extra}"


def rows(results: Path, task: str | None, n_train: str | None = None) -> dict[str, list[str]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(results.glob("runs/*/*/*.json")):
        rec = json.loads(path.read_text())
        if task and rec["task"] != task:
            continue
        loss = rec.get("options", {}).get("loss") or rec.get("options", {}).get("class_weight") or ""
        if n_train is not None and str(rec["n_train"]) != str(n_train):
            continue
        # rows on different test sets are never pooled: n_eval is part of the key
        key = (rec["task"], rec["track"], rec["model"], rec["method"], loss, rec["n_train"], rec.get("n_eval"))
        groups[key].append(rec)
    tables: dict[str, list[str]] = defaultdict(list)
    for (tk, track, model, method, loss, n, n_eval), recs in sorted(groups.items(),
                                                                   key=lambda kv: tuple(map(str, kv[0]))):
        m = [r["metrics"] for r in recs]
        collapsed = sum(bool(x.get("collapsed")) for x in m)
        before = [r["before_training"]["accuracy"] for r in recs if r.get("before_training")]
        chosen = "; ".join(c for c in (_chosen(r) for r in recs) if c)
        tables[tk].append(
            f"| {track} | {model} | {method} {loss} | {n} | {n_eval} | {len(recs)} | "
            f"{_ms([x['accuracy'] for x in m])} | "
            f"{_ms([x['macro_f1'] for x in m])} | {collapsed} | "
            f"{_ms([t for r in recs if (t := r['timing'].get('train_s')) is not None], 0)} | {chosen} |"
            + (f" before training: accuracy {_ms(before)} |" if before else " |"))
    return tables


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_dir")
    ap.add_argument("--task")
    ap.add_argument("--n-train", help="only runs with this n_train")
    args = ap.parse_args(argv)
    for tk, lines in rows(Path(args.results_dir), args.task, args.n_train).items():
        print(f"\n### {tk}\n")
        print("| track | model | method | n | n_eval | seeds | accuracy | macro-F1 | collapsed | train s | chosen "
              "| note |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
