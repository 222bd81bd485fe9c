"""The two plots per test set, drawn from an analysed `TestSet` (eval/decide/analysis.py), byte-identical for the same
records (PNG without a Software/date stamp, fixed sizes and colours).

- learning curve: one line per approach (its best configuration at each label count) with a 95% CI band; zero-shot
  prompting as horizontal reference lines; the majority class; break-even intervals drawn; at most MAX_LINES lines,
  chosen by each approach's best score (the rest stays in the table);
- cost: metric vs evaluation milliseconds per example (log x), marker area ~ training seconds, the Pareto front
  (nothing else is both cheaper to evaluate and better) drawn and labelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.decide.analysis import Row, TestSet, approach_label
from eval.tracks import is_trained, known

MAX_LINES = 8
METRIC_NAMES = {"accuracy": "accuracy (invalid = wrong)", "macro_f1": "macro-F1"}


def _line_style(track: str) -> str:
    t = known(track)
    return t.line_style if t else "-"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "tune-or-prompt"  # deterministic ids, should anyone save SVG
    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same records, same bytes


def chosen_approaches(ts: TestSet, max_lines: int = MAX_LINES) -> list[tuple]:
    """The approaches drawn: the best `max_lines` by their best score (ties broken by name)."""
    best = {a: max(p.value(ts.metric) for p in pts) for a, pts in ts.curves.items()}
    return sorted(best, key=lambda a: (-best[a], a))[:max_lines]


def learning_curve(ts: TestSet, path: Path, max_lines: int = MAX_LINES) -> list[tuple]:
    """Draw the learning curve; returns the approaches drawn."""
    plt = _plt()
    chosen = chosen_approaches(ts, max_lines)
    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=100)
    colors = plt.cm.tab10.colors
    xs_all = [p.n_labels for a in chosen for p in ts.curves[a]]
    xmax = max(xs_all + [1])
    xmin = min([x for x in xs_all if x > 0] + [xmax]) if all(x > 0 for x in xs_all) else 0.5
    for i, a in enumerate(chosen):
        pts: list[Row] = ts.curves[a]
        color = colors[i % len(colors)]
        y = np.array([p.value(ts.metric) for p in pts])
        lo = np.array([p.ci[0] if p.ci else np.nan for p in pts])
        hi = np.array([p.ci[1] if p.ci else np.nan for p in pts])
        seeds = max(len(p.seeds) for p in pts)
        label = approach_label(a) + (f" ({seeds} seeds)" if seeds > 1 else "")
        if all(p.n_labels == 0 for p in pts):  # zero-shot: a reference line across the plot
            ax.axhline(y[0], color=color, ls="-.", lw=1.4, label=label + " [zero-shot]")
            if not np.isnan(lo[0]):
                ax.axhspan(lo[0], hi[0], color=color, alpha=0.08, lw=0)
            continue
        x = np.array([max(p.n_labels, 0.5) for p in pts])  # log axis: a 0-shot point sits at 0.5
        ax.plot(x, y, _line_style(a[0]), color=color, marker="o", ms=4, label=label)
        if len(x) > 1:
            ax.fill_between(x, lo, hi, color=color, alpha=0.12, lw=0)
        else:
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor=color, capsize=3, alpha=0.6)
        for p in pts:
            if p.collapse:
                ax.plot([max(p.n_labels, 0.5)], [p.value(ts.metric)], "x", color=color, ms=8, mew=2)
        be = ts.break_even_prompting.get(a) or ts.break_even.get(a)  # where it overtakes prompting (else everyone)
        if be is not None and be.first is not None:
            # the interval it overtakes in (between measured sizes, never a point) as a bar in a strip at the bottom
            # of the axes, one row per approach, with its bootstrap 95% interval as a thin line (to the edge when it
            # runs past the last measurement; "undetermined" when it spans everything)
            strip = ax.get_xaxis_transform()  # x in data, y in axes fractions
            y_bar = 0.04 + 0.035 * i
            ci_lo = max(be.ci[0], xmin / 1.6)
            ci_hi = be.ci[1] if np.isfinite(be.ci[1]) else xmax * 1.6
            ax.plot([ci_lo, ci_hi], [y_bar, y_bar], color=color, lw=1, alpha=0.7, transform=strip)
            ax.plot([max(be.first[0], xmin / 1.6), be.first[1]], [y_bar, y_bar], color=color, lw=5,
                    solid_capstyle="butt", transform=strip)
            ax.annotate(f"overtakes in ({be.first[0]:g}, {be.first[1]:g}]"
                        + ("; 95% CI undetermined" if be.undetermined else ""), (be.first[1], y_bar),
                        xycoords=strip, textcoords="offset points", xytext=(4, -3), fontsize=7, color=color)
    if ts.majority and ts.metric == "accuracy":
        ax.axhline(ts.majority["accuracy"], color="grey", lw=1, ls="--",
                   label=f"majority class ({ts.majority['label']})")
    ax.set_xscale("log")
    ax.set_xlim(xmin / 1.6, xmax * 1.6)
    ax.set_xlabel("labelled examples (training set size; prompting: shots)")
    ax.set_ylabel(f"{METRIC_NAMES.get(ts.metric, ts.metric)}, 95% CI")
    hidden = len(ts.curves) - len(chosen)
    ax.set_title(f"{ts.task}: learning curves on {ts.n_items} test items"
                 + (f" ({hidden} more approaches in the table)" if hidden > 0 else ""), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7, frameon=False)
    ax.text(0.01, 0.005, "x = collapsed run; bottom bars: where it overtakes prompting (else everything), between "
            "measured sizes; thin line: 95% CI",
            transform=ax.transAxes, fontsize=7, color="grey")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return chosen


def best_per_approach(ts: TestSet) -> list[Row]:
    """Each approach's best row (its best configuration at any label count)."""
    return [max(pts, key=lambda p: (p.collapse is None, p.value(ts.metric))) for pts in ts.curves.values()]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x = cheaper, higher y = better), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -np.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def cost_plot(ts: TestSet, path: Path) -> bool:
    """Metric vs eval ms per example; False (nothing drawn) when no row has an evaluation time."""
    rows = [r for r in best_per_approach(ts) if r.cost.get("eval_ms_per_example")]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=100)
    xs = [max(r.cost["eval_ms_per_example"], 1e-3) for r in rows]
    ys = [r.value(ts.metric) for r in rows]
    train = [r.cost.get("train_s") or 0.0 for r in rows]
    sizes = [30 + 300 * np.sqrt(t / max(max(train), 1e-9)) if max(train) > 0 else 40 for t in train]
    colors = plt.cm.tab10.colors
    front = pareto_front(list(zip(xs, ys)))
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="black", lw=1, alpha=0.5, ms=16, mfc="none",
            label="Pareto front (nothing is cheaper and better)")
    for i, r in enumerate(rows):
        ax.scatter([xs[i]], [ys[i]], s=sizes[i], color=colors[i % 10], alpha=0.75, edgecolor="black", lw=0.5,
                   marker="o" if is_trained(r.track) else "s")
        if r.collapse:
            ax.scatter([xs[i]], [ys[i]], s=60, marker="x", color="black")
        n = "full" if r.n_train == "full" else f"n={r.n_labels:g}"
        ax.annotate(f"{r.name} ({n}){' collapsed' if r.collapse else ''}", (xs[i], ys[i]),
                    textcoords="offset points", xytext=(7, 4), fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.35, y=0.08)
    ax.set_xlabel("evaluation cost: milliseconds per test example (log; as measured on each run's machine)")
    ax.set_ylabel(METRIC_NAMES.get(ts.metric, ts.metric))
    ax.set_title(f"{ts.task}: {ts.metric} vs cost, best configuration per approach ({ts.n_items} test items)\n"
                 "marker area ~ training seconds; squares = prompting; x = collapsed", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True
