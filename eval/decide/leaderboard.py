"""Build results/LEADERBOARD.md and its plots from run records, and nothing else.

    python eval/leaderboard.py [--results-dir results] [--metric accuracy|macro_f1] [--no-plots]

Per task and test set (rows on different test items are never ranked together): rows ranked by the metric (mean over
seeds; invalid answers count wrong) with a 95% paired-bootstrap CI, the paired difference to the best row (rows not
significantly worse after Holm's correction are marked tied), the paired difference to the majority-class
predictor, near-collapse flags, the invalid-answer breakdown and accuracy on valid answers, and cost (train
seconds, eval ms per example, peak memory, device and dtype); the break-even point of every training-based
approach; a learning curve and an accuracy-vs-cost plot (eval/decide/plots.py). The numbers come from
eval/decide/analysis.py, shared with eval/decide/report.py, compare.py and recommend.py. Deterministic: the same
records give the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from eval.decide.analysis import Row, TestSet, analyse
from eval.run.records import atomic_write, load_records
from eval.run.versions import spread_text

INVALID_KINDS = ("no_label", "empty", "truncated", "error")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _secs(x: float | None) -> str:
    return "–" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _ms(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}" if x < 10 else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def n_train_text(r: Row) -> str:
    if r.n_train != "full":
        return str(r.n_train)
    return f"full ({int(r.n_labels)})" if not np.isnan(r.n_labels) else "full"


def vs_best_text(r: Row, ts: TestSet | None = None) -> str:
    """The row against the top row: the difference with its unadjusted 95% CI and p (the same paired bootstrap, so
    the CI excludes 0 exactly when p < 0.05) and the Holm-adjusted p the verdict uses."""
    if r.is_top:
        if r.is_best:
            return "**best**"
        label = f" {ts.majority['label']!r}" if ts is not None and ts.majority else " the majority class"
        return f"**top, not shown to beat always answering{label}**"
    if r.vs_best is None:
        return "–"
    d = r.vs_best
    mark = "collapsed" if r.collapse else ("tied" if r.tied else "worse")
    return f"{mark} {d.diff:+.3f} [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}] p={_p(d.p)}, Holm p={_p(r.p_holm)}"


def vs_majority_text(r: Row) -> str:
    d = r.vs_majority
    if d is None:
        return "–"
    verdict = "" if d.ci[0] > 0 else (" below" if d.ci[1] < 0 else " not shown above")
    return f"{d.diff:+.3f} [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]{verdict}"


def invalid_text(r: Row) -> str:
    total = sum(r.invalid.get(k, 0) for k in INVALID_KINDS)
    if not total:
        return "0"
    return " / ".join(str(r.invalid.get(k, 0)) for k in INVALID_KINDS)


def flag_text(r: Row) -> str:
    if not r.collapse:
        return ""
    kind = "collapsed" if r.collapse == "every answer is one class" else f"near-collapse: {r.collapse}"
    return kind + (f" ({r.collapsed_seeds}/{len(r.seeds)} seeds)" if len(r.seeds) > 1 else "")


def device_text(r: Row) -> str:
    parts = [x for x in (r.cost.get("device"), r.cost.get("dtype")) if x]
    return ", ".join(parts) if parts else "n/a"


def other_metric(ts: TestSet) -> tuple[str, str]:
    """The metric shown beside the ranking one (never the same one twice)."""
    return ("macro_f1", "macro-F1") if ts.metric == "accuracy" else ("accuracy", "accuracy")


def cost_text(r: Row) -> str:
    return (f"{_secs(r.cost.get('train_s'))} / {_ms(r.cost.get('eval_ms_per_example'))} / "
            f"{_ms(r.cost.get('peak_rss_mb'))}")


def render_table(ts: TestSet) -> list[str]:
    metric_name = "accuracy" if ts.metric == "accuracy" else "macro-F1"
    key, other = other_metric(ts)
    out = [f"| # | model · track · method | options | n_train | seeds | {metric_name} [95% CI] ± sd "
           "| vs top: diff [95% CI] p, Holm p | vs majority [95% CI] "
           f"| {other} | valid (invalid: no label / empty / truncated / error) | acc. on valid | before acc / valid "
           "| train s / eval ms/ex / peak RSS MB | device, dtype | |"]
    out.append("|" + "---|" * 15)
    for i, r in enumerate(ts.rows, 1):
        lo, hi = r.ci if r.ci else (np.nan, np.nan)
        before = (f"{_fmt(r.value('before_accuracy'))} / {_fmt(r.value('before_valid_rate'))}"
                  if r.values.get("before_accuracy") is not None else "–")
        opts = ", ".join(f"{k}={v}" for k, v in sorted(r.shown_options.items()))
        sd = f" ± {_fmt(r.sd)}" if r.sd is not None else ""
        inv = invalid_text(r)
        out.append(
            f"| {i} | {r.approach[1]} · {r.track} · {r.approach[2]} | {opts} | {n_train_text(r)} "
            f"| {','.join(map(str, r.seeds))} | {r.value(ts.metric):.3f} [{_fmt(lo)}, {_fmt(hi)}]{sd} "
            f"| {vs_best_text(r, ts)} | {vs_majority_text(r)} | {_fmt(r.value(key))} "
            f"| {_fmt(r.value('valid_rate'))}{f' ({inv})' if inv != '0' else ''} "
            f"| {_fmt(r.values.get('accuracy_on_valid'))} | {before} | {cost_text(r)} | {device_text(r)} "
            f"| {flag_text(r)} |")
    out.append("")
    return out


def break_even_lines(ts: TestSet) -> list[str]:
    if not ts.break_even:
        return []
    out = ["Break-even (where the approach overtakes every other approach that needs no more labels — and, where "
           "prompting runs exist, prompting alone; each approach credited at n with its best run at ≤ n labels, "
           "compared at every n any of them was measured; intervals between measured sizes, never interpolated; "
           "95% CI over test items and seeds):", ""]
    for a, be in ts.break_even.items():
        vs_p = ts.break_even_prompting.get(a)
        out.append(f"- **{a[0]}: {a[1]} {a[2]}**: {be.describe()}"
                   + (f"; vs prompting: {vs_p.describe()}" if vs_p else ""))
    return out + [""]


def plot_names(ts: TestSet, main: bool) -> tuple[str, str]:
    stem = ts.task if main else f"{ts.task}_{ts.test_hash[:8]}"
    return f"plots/{stem}_learning_curve.png", f"plots/{stem}_cost.png"


def render_task(task: str, sets: list[TestSet], results_dir: Path, plots: bool) -> str:
    out = [f"## {task}", "",
           "Rows on the same test items only are ranked together. Every CI and p-value is one paired bootstrap over "
           f"test items (and seeds, when a row has several; {sets[0].n_boot if sets else 0:,} replicates), so a "
           "CI excludes 0 exactly when its p < 0.05; CIs are unadjusted. *vs top*: the paired difference to the "
           "most accurate row that is not (near-)collapsed; the verdict uses Holm's correction over that table's "
           "comparisons (named below each table heading): *tied* = not significantly worse (Holm p ≥ 0.05); a "
           "collapsed row is never tied. The top row is *best* only when it is shown to beat always answering the "
           "majority class (vs majority: lower bound > 0). Accuracy counts invalid answers as wrong. Options: only "
           "those that tell rows of one approach apart; each record has its full config. Cost columns say n/a for "
           "records written before costs were recorded.", ""]
    for j, ts in enumerate(sets):
        title = f"### Test set: {ts.n_items} items (hash `{ts.test_hash}`)"
        out += [title + (f" — shared by {len(ts.curves)} approaches" if j == 0 and len(sets) > 1 else ""), ""]
        if ts.majority:
            out += [f"Majority-class baseline (always `{ts.majority['label']}`): **{ts.majority['accuracy']:.3f}**.",
                    ""]
        if plots and len(ts.curves) >= 2 or plots and j == 0:
            from eval.decide.plots import cost_plot, learning_curve

            curve, cost = plot_names(ts, main=j == 0)
            learning_curve(ts, results_dir / curve)
            out += [f"![learning curve for {task}]({curve})", ""]
            if cost_plot(ts, results_dir / cost):
                out += [f"![accuracy vs cost for {task}]({cost})", ""]
        if ts.family:
            out += [f"Family: {ts.family}.", ""]
        out += break_even_lines(ts)
        if note := spread_text([r.records for r in ts.rows]):
            out += [f"**{note}**", ""]
        out += render_table(ts)
    return "\n".join(out)


def build(results_dir: str | Path, plots: bool = True, metric: str = "accuracy") -> tuple[Path, list[str]]:
    results_dir = Path(results_dir)
    records, problems = load_records(results_dir)
    by_task, skipped = analyse(records, metric=metric)
    problems = problems + skipped
    parts = ["# Leaderboard", "",
             "Generated by `python eval/leaderboard.py` from the run records under `runs/`; do not edit by hand "
             "(`python eval/report.py` writes the same numbers as a browsable page).",
             f"{len(records)} run records, {len(by_task)} task(s).", ""]
    if not records:
        parts.append("No run records yet: run a track (e.g. `python baseline/train.py --task drugs`).")
    for task, sets in by_task.items():
        parts.append(render_task(task, sets, results_dir, plots))
    if problems:
        parts += ["## Skipped files", ""] + [f"- {p}" for p in problems] + [""]
    out = results_dir / "LEADERBOARD.md"
    atomic_write(out, "\n".join(parts))
    return out, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--metric", default="accuracy", choices=["accuracy", "macro_f1"], help="ranking metric")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    from eval.run.preflight import writable_problem
    from eval.run.record import reader_problem

    # one line naming the fix, before reading every record: no records there (a typo), or not writable
    if problem := reader_problem(args.results_dir) or writable_problem(args.results_dir):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        out, problems = build(args.results_dir, plots=not args.no_plots, metric=args.metric)
    except OSError as exc:
        print(f"error: cannot write under {args.results_dir}: {exc}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
