"""Re-score a per-example file without rerunning any model (e.g. after changing an extraction rule).

    python eval/score.py results/runs/drugs/prompting/RUN.jsonl --labels negative,neutral,positive [--json]
    python eval/score.py preds.jsonl --task drugs            # labels and verbalizers from the task

Each line has `gold` and either `raw` (model text, parsed here by eval.scoring.labels.parse_answer with the row's own
flags `truncated`, `reasoning`, `think_open`, `error`, exactly as the live run did) or `pred` (a label). Invalid
answers stay in the denominator; their reasons (no_label / empty / truncated / error) are counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.scoring.labels import INVALID, STATUSES, LabelScheme, parse_answer
from eval.scoring.metrics import compute_metrics

PARSE_FLAGS = ("truncated", "reasoning", "think_open", "error")  # row fields the live run wrote for parse_answer


def parse_row(row: dict, scheme: LabelScheme, think_open: bool = False) -> tuple[str, str]:
    """(label, status) of one per-example row, by the rules the live run applied (eval.scoring.labels.parse_answer with
    the row's own flags). Rows without raw text (encoders, the baseline, label scoring marked `scored`) keep their
    label; an INVALID there keeps its recorded status."""
    if "raw" in row and not row.get("scored"):
        flags = {k: row[k] for k in PARSE_FLAGS if row.get(k)}
        if think_open:
            flags["think_open"] = True
        return parse_answer(row["raw"], scheme, **flags)
    pred = row["pred"]
    if pred in scheme.labels:
        return pred, "valid"
    status = row.get("status")
    return INVALID, status if status in STATUSES and status != "valid" else "no_label"


def rescore(rows: list[dict], scheme: LabelScheme, think_open: bool = False
            ) -> tuple[list[str], list[str], list[str]]:
    """Gold labels, predictions and parse statuses of every row."""
    gold, pred, status = [], [], []
    for i, row in enumerate(rows, 1):
        if "gold" not in row:
            raise ValueError(f"line {i} has no 'gold' field (fields: {', '.join(row)})")
        if "raw" not in row and "pred" not in row:
            raise ValueError(f"line {i} has neither 'raw' nor 'pred' (fields: {', '.join(row)})")
        p, s = parse_row(row, scheme, think_open)
        gold.append(str(row["gold"]))
        pred.append(p)
        status.append(s)
    return gold, pred, status


def _record_seed(path: Path) -> int:
    try:
        return int(json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("seed") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


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
            from eval.inputs.data import load_config

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
        gold, pred, status = rescore(rows, scheme, args.think_open)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the bootstrap CI is seeded by the run's seed: read it from the record next to the file, so the CI matches too
    seed = _record_seed(path)
    m = compute_metrics(gold, pred, list(scheme.labels), seed=seed, statuses=status)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        lo, hi = m["accuracy_ci"]
        print(f"n={m['n']} accuracy {m['accuracy']:.4f} [95% CI {lo:.4f}, {hi:.4f}] valid {m['valid_rate']:.4f} "
              f"macro-F1 {m['macro_f1']:.4f} weighted-F1 {m['weighted_f1']:.4f}"
              f"{' COLLAPSED' if m['collapsed'] else ''}")
        if m["n_invalid"]:
            print("  invalid: " + ", ".join(f"{k} {v}" for k, v in m["invalid"].items() if v)
                  + f"; accuracy on valid answers {m['accuracy_on_valid'] or 0:.4f}")
        for lab, v in m["per_class"].items():
            print(f"  {lab:<12} P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} support {v['support']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
