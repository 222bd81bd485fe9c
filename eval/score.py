"""Re-score a per-example file without rerunning any model (e.g. after changing an extraction rule).

    python eval/score.py results/runs/drugs/prompting/RUN.jsonl --labels negative,neutral,positive [--json]
    python eval/score.py preds.jsonl --task drugs            # labels and verbalizers from the task

Each line has `gold` and either `raw` (model text, extracted here) or `pred` (a label). Invalid answers stay in the
denominator.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.labels import INVALID, LabelScheme, extract
from eval.metrics import compute_metrics


def rescore(rows: list[dict], scheme: LabelScheme, think_open: bool = False) -> tuple[list[str], list[str]]:
    gold, pred = [], []
    for i, row in enumerate(rows, 1):
        if "gold" not in row:
            raise ValueError(f"line {i} has no 'gold' field (fields: {', '.join(row)})")
        if "raw" in row:
            p = extract(row["raw"], scheme, think_open=think_open)
        elif "pred" in row:
            p = row["pred"] if row["pred"] in scheme.labels else INVALID
        else:
            raise ValueError(f"line {i} has neither 'raw' nor 'pred' (fields: {', '.join(row)})")
        gold.append(str(row["gold"]))
        pred.append(p)
    return gold, pred


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("predictions", help="JSONL file, one example per line")
    ap.add_argument("--labels", help="comma-separated labels (verbalizers = the label names)")
    ap.add_argument("--task", help="take labels and verbalizers from a task")
    ap.add_argument("--think-open", action="store_true", help="the prompt opened a <think> block")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.task:
            from eval.data import load_config

            scheme = load_config(args.task).scheme
        elif args.labels:
            scheme = LabelScheme.from_labels([x.strip() for x in args.labels.split(",") if x.strip()])
        else:
            raise ValueError("give --labels a,b,… or --task NAME")
        path = Path(args.predictions)
        if not path.exists():
            raise ValueError(f"no such file: {path}")
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{i} is not valid JSON ({exc.msg})") from exc
        if not rows:
            raise ValueError(f"{path} is empty: no examples to score")
        gold, pred = rescore(rows, scheme, args.think_open)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = compute_metrics(gold, pred, list(scheme.labels))
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        lo, hi = m["accuracy_ci"]
        print(f"n={m['n']} accuracy {m['accuracy']:.4f} [95% CI {lo:.4f}, {hi:.4f}] valid {m['valid_rate']:.4f} "
              f"macro-F1 {m['macro_f1']:.4f} weighted-F1 {m['weighted_f1']:.4f}"
              f"{' COLLAPSED' if m['collapsed'] else ''}")
        for lab, v in m["per_class"].items():
            print(f"  {lab:<12} P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} support {v['support']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
