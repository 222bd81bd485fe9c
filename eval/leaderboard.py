"""Build results/LEADERBOARD.md and learning-curve plots from run records, and nothing else.

    python eval/leaderboard.py [--results-dir results]

Per task: rows ranked by mean accuracy over seeds (invalid answers count wrong), each with n_train, n_eval, seeds,
accuracy and its 95% bootstrap CI, the spread over seeds, valid rate, macro-F1, before-training accuracy/valid rate
where a run evaluated before training, train/eval time, and a mark for collapsed runs; the test set's majority-class
baseline; a learning curve (accuracy vs training examples, one line per track+model+method, CI band). Deterministic:
the same records give the same files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from eval.metrics import bootstrap_ci
from eval.records import atomic_write, load_examples, load_records, varying_options
from eval.tracks import TRACKS

TRACK_ORDER = {name: i for i, name in enumerate(TRACKS)}  # the registry's order (eval/tracks.py)


def _options_label(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) if opts else ""


def _series_key(rec: dict) -> tuple:
    return (rec["track"], rec["model"], rec["method"], json.dumps(rec.get("options") or {}, sort_keys=True),
            rec.get("n_eval"), (rec.get("split_hash") or {}).get("test"))


def _n_examples(rec: dict) -> float:
    n = rec.get("n_train_examples")
    if n is None:
        n = rec["n_train"] if isinstance(rec["n_train"], int) else np.nan
    return float(n)


def aggregate(records: list[dict]) -> list[dict]:
    """One row per (series, n_train): mean over seeds, CI from the per-item mean correctness over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        groups[_series_key(rec) + (str(rec["n_train"]),)].append(rec)
    rows = []
    for key, recs in groups.items():
        recs = sorted(recs, key=lambda r: r.get("seed", 0))
        accs = np.array([r["metrics"]["accuracy"] for r in recs])
        per_item = _per_item_correct(recs)
        if per_item is not None:
            ci = list(bootstrap_ci(per_item, seed=0))
        else:  # examples file missing: fall back to the mean of the per-run CIs
            ci = list(np.mean([r["metrics"]["accuracy_ci"] for r in recs], axis=0))
        before = [r["before_training"] for r in recs if r.get("before_training")]
        mean = lambda xs: float(np.mean(xs)) if len(xs) else None
        rows.append({
            "task": recs[0]["task"], "track": recs[0]["track"], "model": recs[0]["model"],
            "method": recs[0]["method"], "options": recs[0].get("options") or {}, "n_train": recs[0]["n_train"],
            "n_train_examples": _n_examples(recs[0]), "n_eval": recs[0].get("n_eval"),
            "seeds": [r.get("seed", 0) for r in recs], "accuracy": float(accs.mean()),
            "accuracy_sd": float(accs.std(ddof=1)) if len(accs) > 1 else None, "accuracy_ci": ci,
            "valid_rate": mean([r["metrics"]["valid_rate"] for r in recs]),
            "macro_f1": mean([r["metrics"]["macro_f1"] for r in recs]),
            "before_accuracy": mean([b["accuracy"] for b in before]),
            "before_valid_rate": mean([b["valid_rate"] for b in before]),
            "train_s": mean([r["timing"]["train_s"] for r in recs if (r.get("timing") or {}).get("train_s")]),
            "eval_s": mean([r["timing"]["eval_s"] for r in recs if (r.get("timing") or {}).get("eval_s")]),
            "collapsed": sum(bool(r["metrics"].get("collapsed")) for r in recs),
            "majority": recs[0]["metrics"].get("majority_baseline"),
            "backend": recs[0].get("backend"), "test_hash": (recs[0].get("split_hash") or {}).get("test"),
            "series": key[:-1],
        })
    shown = _shown_options(rows)
    for r in rows:
        r["shown_options"] = {k: r["options"][k] for k in shown[(r["track"], r["model"], r["method"])]
                              if k in r["options"]}
    rows.sort(key=lambda r: (-r["accuracy"], TRACK_ORDER.get(r["track"], 9), r["model"], r["method"],
                             r["n_train_examples"], json.dumps(r["options"], sort_keys=True)))
    return rows


def _shown_options(rows: list[dict]) -> dict[tuple[str, str, str], list[str]]:
    """Per track+model+method: the options that tell its rows apart (a track's full config is in its records)."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["track"], r["model"], r["method"])].append(r["options"])
    return dict(zip(groups, varying_options(groups.values())))


def _per_item_correct(recs: list[dict]) -> np.ndarray | None:
    cols = []
    for r in recs:
        ex = load_examples(r)
        if not ex:
            return None
        cols.append([float(e["correct"]) for e in ex])
    if len({len(c) for c in cols}) != 1:
        return None
    return np.mean(np.array(cols), axis=0)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _secs(x: float | None) -> str:
    return "–" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def render_task(task: str, rows: list[dict], majority: dict | None, plot: str | None) -> str:
    """One section per task: the learning curve, then one ranked table per test set (rows evaluated on different
    test items are never ranked against each other), largest test set first."""
    out = [f"## {task}", ""]
    out.append("Accuracy counts invalid answers as wrong; CIs are 95% bootstrap over test items (per-item correctness "
               "averaged over seeds). Options: only those that tell rows of one model and method apart; each record "
               "has its full config.")
    out.append("")
    if plot:
        out += [f"![learning curve for {task}]({plot})", ""]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["n_eval"] or 0, r["test_hash"] or "")].append(r)
    for (n_eval, test_hash), group in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        maj = group[0].get("majority") or (majority if len(groups) == 1 else None)
        title = f"### Test set: {n_eval} items" + (f" (hash `{test_hash}`)" if test_hash else "")
        out += [title, ""]
        if maj:
            out += [f"Majority-class baseline (always `{maj['label']}`): **{maj['accuracy']:.3f}**.", ""]
        best: dict[str, dict] = {}
        for r in group:  # rows are ranked, so the first of a track is its best on these test items
            best.setdefault(r["track"], r)
        out += ["Best per track: " + "; ".join(
            f"**{t}** {b['model']} {b['method']} (n_train={b['n_train']}) {b['accuracy']:.3f}"
            for t, b in sorted(best.items(), key=lambda kv: -kv[1]["accuracy"])), ""]
        out += _render_table(group)
    return "\n".join(out)


def _render_table(rows: list[dict]) -> list[str]:
    out = []
    out.append("| # | model | track | method | options | n_train | n_eval | seeds | accuracy [95% CI] | ± sd "
               "| valid | macro-F1 | before acc / valid | train s | eval s | |")
    out.append("|" + "---|" * 16)
    for i, r in enumerate(rows, 1):
        lo, hi = r["accuracy_ci"]
        before = (f"{_fmt(r['before_accuracy'])} / {_fmt(r['before_valid_rate'])}"
                  if r["before_accuracy"] is not None else "–")
        flag = "collapsed" + (f" ({r['collapsed']}/{len(r['seeds'])} seeds)" if len(r["seeds"]) > 1 else "") \
            if r["collapsed"] else ""
        n_train = r["n_train"] if r["n_train"] != "full" else f"full ({int(r['n_train_examples'])})" \
            if not np.isnan(r["n_train_examples"]) else "full"
        out.append(f"| {i} | {r['model']} | {r['track']} | {r['method']} | {_options_label(r['shown_options'])} "
                   f"| {n_train} | {r['n_eval']} | {','.join(map(str, r['seeds']))} "
                   f"| {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {_fmt(r['accuracy_sd'])} | {_fmt(r['valid_rate'])} "
                   f"| {_fmt(r['macro_f1'])} | {before} | {_secs(r['train_s'])} | {_secs(r['eval_s'])} | {flag} |")
    out.append("")
    return out


def plot_task(task: str, rows: list[dict], majority: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        series[r["series"]].append(r)
    legend_rows = -(-len(series) // 2) + 1  # two columns below the axes, plus the majority line
    fig, ax = plt.subplots(figsize=(11, 5.5 + 0.16 * legend_rows), dpi=110)
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # 20 distinct colours before any repeats
    styles = {"baseline": ":", "encoders": "-", "finetune": "--", "prompting": "-."}
    for key in sorted(series, key=lambda k: (TRACK_ORDER.get(k[0], 9), k)):
        pts = sorted((r for r in series[key] if not np.isnan(r["n_train_examples"])),
                     key=lambda r: r["n_train_examples"])
        if not pts:
            continue
        x = np.array([p["n_train_examples"] for p in pts])
        y = np.array([p["accuracy"] for p in pts])
        lo = np.array([p["accuracy_ci"][0] for p in pts])
        hi = np.array([p["accuracy_ci"][1] for p in pts])
        opts = _options_label(pts[0]["shown_options"])
        name = TRACKS[key[0]].label(pts[0]) if key[0] in TRACKS else f"{pts[0]['model']} {pts[0]['method']}"
        label = f"{key[0]}: {name}" + (f" ({opts})" if opts else "")
        label = label if len(label) <= 80 else label[:77] + "..."  # the full options are in the table
        line = ax.plot(x, y, styles.get(key[0], "-"), marker="o", ms=4, label=label)[0]
        if len(x) > 1:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12, linewidth=0)
        else:  # one point (e.g. a zero-shot run): the CI as an error bar, since a band needs two
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor=line.get_color(), capsize=3, alpha=0.6)
    if majority:
        ax.axhline(majority["accuracy"], color="grey", lw=1, ls="--", label=f"majority class ({majority['label']})")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.3)  # zero-shot sits at 0; nothing lies left of it
    ax.set_xlabel("training examples (0 = zero-shot; prompting: k shots)")
    ax.set_ylabel("accuracy (invalid = wrong), 95% CI band")
    ax.set_title(f"{task}: learning curves")
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.16 * legend_rows / (5.5 + 0.16 * legend_rows), 1, 1))
    fig.legend(*ax.get_legend_handles_labels(), loc="lower left", ncol=2, fontsize=7, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def build(results_dir: str | Path, plots: bool = True) -> tuple[Path, list[str]]:
    results_dir = Path(results_dir)
    records, problems = load_records(results_dir)
    by_task: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_task[rec["task"]].append(rec)
    parts = ["# Leaderboard", "",
             "Generated by `python eval/leaderboard.py` from the run records under `runs/`; do not edit by hand.",
             f"{len(records)} run records, {len(by_task)} task(s).", ""]
    if not records:
        parts.append("No run records yet: run a track (e.g. `python eval/baseline.py --task drugs`).")
    for task in sorted(by_task):
        recs = by_task[task]
        rows = aggregate(recs)
        full = [r for r in recs if r.get("n_eval_requested") is None] or recs
        majority = max(full, key=lambda r: r["metrics"]["n"])["metrics"].get("majority_baseline")
        plot_rel = None
        if plots:
            plot_rel = f"plots/{task}_learning_curve.png"
            plot_task(task, rows, majority, results_dir / plot_rel)
        parts.append(render_task(task, rows, majority, plot_rel))
    if problems:
        parts += ["## Skipped files", ""] + [f"- {p}" for p in problems] + [""]
    out = results_dir / "LEADERBOARD.md"
    atomic_write(out, "\n".join(parts))
    return out, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    from eval.preflight import writable_problem

    if problem := writable_problem(args.results_dir):  # one line naming the fix, not a traceback after the work
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out, problems = build(args.results_dir, plots=not args.no_plots)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
