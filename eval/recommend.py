"""Which approach to use with N labelled examples, answered from the run records alone.

    python eval/recommend.py --task rotten --labels 64
    python eval/recommend.py --task drugs --labels 256 --metric macro_f1 --max-eval-ms 50 --max-train-s 600 --json

Prints the best approach that needs at most N labels (training examples, or prompt shots) on the test set most
approaches share, the runners-up with their paired difference to it (95% CI, Holm-corrected p) and whether the lead is
significant, every training-based approach's break-even point, and each option's cost. A collapsed or near-constant
run is never the answer. When the records cannot answer (nothing measured at <= N labels, a lead inside the noise with
one seed, approaches on different test sets, no run near N), it says which runs to add and prints the commands.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from eval import stats
from eval.analysis import Row, TestSet, analyse
from eval.records import load_records
from eval.tracks import TRACKS, Track, is_trained

SEEDS = "0 1 2"


def _n_eval_flag(ts: TestSet, row: Row | None = None) -> str:
    recs = row.records if row is not None else [r for x in ts.rows for r in x.records]
    asked = {r.get("n_eval_requested") for r in recs}
    n = next(iter(asked)) if len(asked) == 1 else None
    return f" --n-eval {n}" if n else ""


def run_options(record: dict) -> dict | None:
    """The result-changing settings of a record's run that differ from what its track's command gives by default for
    the same model and method, so that a suggested command adds seeds to *this* configuration (the same run id
    apart from the seed) rather than to the default one. None when the config cannot be rebuilt here."""
    from eval.records import RunSpec
    from eval.tracks import track

    try:
        spec = RunSpec.from_record(record)
        return track(spec.track).changed_options(spec)
    except Exception:  # noqa: BLE001 -- a record from another checkout or machine: fall back to the shown options
        return None


def _starters() -> list[tuple[Track, tuple[str, str, str]]]:
    """The runs suggested when the records cannot answer: each track's `starter` (eval/tracks.py)."""
    return [(t, t.starter) for t in TRACKS.values() if t.starter]


def command(track: str, model: str, method: str, task: str, n: int | str, seeds: str = SEEDS, n_eval: str = "",
            options: dict | None = None) -> str:
    """The track command that adds a run (its CLI, eval.tracks.Track.command; options that tell configurations
    apart as flags)."""
    from eval.tracks import known

    t = known(track)
    if t is None:
        return f"# add a {track} run of {model} {method} at n={n} on {task}"
    return t.command(model, method, task, n, seeds, n_eval, options)


def _row_command(ts: TestSet, row: Row, n: int | str | None = None, seeds: str = SEEDS) -> str:
    n = row.n_train if n is None else n
    options = run_options(row.records[0]) if row.records else None
    return command(row.track, row.approach[1], row.approach[2], ts.task, n, seeds, _n_eval_flag(ts, row),
                   row.shown_options if options is None else options)


def _fits(row: Row, max_eval_ms: float | None, max_train_s: float | None) -> bool:
    ms, train = row.cost.get("eval_ms_per_example"), row.cost.get("train_s")
    return (max_eval_ms is None or ms is None or ms <= max_eval_ms) and \
        (max_train_s is None or train is None or train <= max_train_s)


def option(ts: TestSet, row: Row) -> dict:
    c = row.cost
    return {"approach": row.name, "n_train": row.n_train, "labels_used": row.n_labels, "seeds": row.seeds,
            "options": row.shown_options, ts.metric: row.value(ts.metric),
            "ci": list(row.ci) if row.ci else None, "valid_rate": row.values.get("valid_rate"),
            "collapse": row.collapse, "train_s": c.get("train_s"), "eval_ms_per_example": c.get("eval_ms_per_example"),
            "peak_rss_mb": c.get("peak_rss_mb"), "device": c.get("device"), "dtype": c.get("dtype")}


def recommend(records: list[dict], task: str, labels: int, metric: str = "accuracy",
              max_eval_ms: float | None = None, max_train_s: float | None = None, n_boot: int = 1000,
              analysed: tuple[dict, list[str]] | None = None) -> dict:
    """The answer as a dict (render() prints it). `analysed`: analyse(records, metric)'s result, to reuse it."""
    sets, problems = analysed or analyse(records, metric=metric, n_boot=n_boot, task=task)
    out: dict = {"task": task, "labels": labels, "metric": metric, "best": None, "runners_up": [],
                 "lead_significant": None, "break_even": {}, "break_even_vs_prompting": {}, "add_runs": [],
                 "notes": list(problems)}
    if task not in sets:
        out["notes"].append(f"no records for task {task!r}")
        out["add_runs"] += [{"why": why, "command": command(t.name, model, method, task, labels if t.trained else 0)}
                            for t, (model, method, why) in _starters()]
        return out
    ts = sets[task][0]
    out["test_set"] = {"hash": ts.test_hash, "items": ts.n_items, "approaches": len(ts.curves)}
    out["break_even"] = {f"{a[0]}: {a[1]} {a[2]}": be.to_dict() for a, be in ts.break_even.items()}
    out["break_even_vs_prompting"] = {f"{a[0]}: {a[1]} {a[2]}": be.to_dict()
                                      for a, be in ts.break_even_prompting.items()}
    for other in sets[task][1:]:
        missing = [a for a in other.curves if a not in ts.curves]
        if missing:
            out["notes"].append(f"{len(missing)} approach(es) were evaluated only on other test items "
                                f"({other.n_items} items, hash {other.test_hash}) and are not compared here: "
                                + ", ".join(f"{a[0]}: {a[1]} {a[2]}" for a in missing))
            for a in missing:
                fit = [r for r in other.curves[a] if r.n_labels <= labels] or other.curves[a][:1]
                row = max(fit, key=lambda r: r.value(metric))
                n = row.n_train if not is_trained(a[0]) else labels  # the user's budget; prompting: its shots
                out["add_runs"].append({"why": f"{a[0]}: {a[1]} {a[2]} on the shared test set ({ts.n_items} items)",
                                        "command": command(a[0], a[1], a[2], task, n, SEEDS, _n_eval_flag(ts),
                                                           row.shown_options)})
    # each approach's best configuration at <= N labels that fits the cost limits
    per_approach: dict[tuple, Row] = {}
    for r in ts.rows:  # ranked, best first
        if r.n_labels <= labels and _fits(r, max_eval_ms, max_train_s) and r.approach not in per_approach:
            if r.collapse is None or all(x.collapse for x in ts.rows if x.approach == r.approach
                                         and x.n_labels <= labels):
                per_approach[r.approach] = r
    for a, pts in ts.curves.items():
        if is_trained(a[0]) and pts and not any(p.n_labels == labels for p in pts) and labels < max(
                p.n_labels for p in pts) * 4:
            below = [p for p in pts if p.n_labels < labels]
            ref = below[-1] if below else pts[0]
            out["add_runs"].append({"why": f"{a[0]}: {a[1]} {a[2]} has no run at n={labels} (measured at "
                                           f"{', '.join(f'{p.n_labels:g}' for p in pts)})",
                                    "command": _row_command(ts, ref, n=labels)})
    candidates = sorted(per_approach.values(), key=lambda r: (r.collapse is not None, -r.value(metric)))
    if not candidates or candidates[0].collapse is not None:
        out["notes"].append(f"no usable run needs at most {labels} labels on {task}"
                            + (" within the cost limits" if max_eval_ms or max_train_s else ""))
        if not any(not is_trained(a[0]) and min(p.n_labels for p in pts) == 0 for a, pts in ts.curves.items()):
            out["add_runs"] += [{"why": why, "command": command(t.name, model, method, task, 0,
                                                                n_eval=_n_eval_flag(ts))}
                                for t, (model, method, why) in _starters() if not t.trained]
        return out
    best = candidates[0]
    out["best"] = option(ts, best)
    if best.vs_majority is not None and ts.majority and best.vs_majority.ci[1] <= 0:
        out["notes"].append(f"even the best option is not above always answering {ts.majority['label']!r} "
                            f"({best.vs_majority.diff:+.3f} [{best.vs_majority.ci[0]:+.3f}, "
                            f"{best.vs_majority.ci[1]:+.3f}], paired): no approach measured here is worth using "
                            "at this budget yet")
    others = candidates[1:]
    if best.preds is not None and ts.gold:
        g = stats.encode(ts.gold, [], ts.labels)[0]
        k = len(ts.labels)
        diffs = [stats.paired_difference(g, r.preds, best.preds, k, metric,
                                         boot=np.column_stack([ts.boot[id(r)], ts.boot[id(best)]]))
                 if r.preds is not None else None for r in others]
        ps = stats.holm([d.p for d in diffs if d is not None])
        it = iter(ps)
        for r, d in zip(others, diffs):
            o = option(ts, r)
            if d is not None:
                o.update(diff=d.diff, diff_ci=list(d.ci), p_holm=next(it), test=d.test)
                o["tied"] = o["p_holm"] >= 0.05 and r.collapse is None  # a collapsed run is never a contender
            out["runners_up"].append(o)
        tied = [o for o in out["runners_up"] if o.get("tied")]
        out["lead_significant"] = bool(out["runners_up"]) and not tied and all("p_holm" in o for o in
                                                                               out["runners_up"])
        if tied:
            out["notes"].append(f"the lead over {', '.join(o['approach'] for o in tied)} is inside the noise "
                                "(paired test, Holm-corrected p >= 0.05)")
            for row in [best] + [r for r in others if any(o["approach"] == r.name and o.get("tied")
                                                          for o in out["runners_up"])][:2]:
                if len(row.seeds) < 3:
                    out["add_runs"].append({"why": f"more seeds for {row.name} at n={row.n_train} "
                                                   f"(has {len(row.seeds)})", "command": _row_command(ts, row)})
    else:
        out["runners_up"] = [option(ts, r) for r in others]
        out["notes"].append("the per-example files are missing, so no paired test was possible")
    return out


def _num(x: float | None, fmt: str = ".3f", unit: str = "") -> str:
    return "n/a" if x is None else format(x, fmt) + unit


def render(res: dict) -> str:
    m = res["metric"]
    lines = [f"Task {res['task']}, at most {res['labels']} labelled examples, ranked by {m}"]
    if "test_set" in res:
        t = res["test_set"]
        lines[0] += f" (test set: {t['items']} items, hash {t['hash']}, {t['approaches']} approaches)"
    b = res["best"]
    if b:
        ci = f" [95% CI {b['ci'][0]:.3f}, {b['ci'][1]:.3f}]" if b["ci"] else ""
        lines += ["", f"Recommended: {b['approach']} (n_train={b['n_train']}, seeds {b['seeds']}): {m} "
                      f"{b[m]:.3f}{ci}; cost: train {_num(b['train_s'], '.1f', ' s')}, eval "
                      f"{_num(b['eval_ms_per_example'], '.2f', ' ms/example')}, peak RSS "
                      f"{_num(b['peak_rss_mb'], '.0f', ' MB')}, {b['device'] or 'device n/a'}",
                  "The lead is " + ("significant over every runner-up." if res["lead_significant"] else
                                    "NOT significant over every runner-up (see 'tied' below).")]
    if res["runners_up"]:
        lines += ["", "Runners-up (difference to the recommended run, paired, Holm-corrected):"]
        for o in res["runners_up"]:
            diff = (f"{o['diff']:+.3f} [{o['diff_ci'][0]:+.3f}, {o['diff_ci'][1]:+.3f}] p={o['p_holm']:.3f}"
                    f"{' tied' if o['tied'] else ''}") if "diff" in o else "no paired data"
            flag = f" [{o['collapse']}]" if o["collapse"] else ""
            cost = f"train {_num(o['train_s'], '.1f', ' s')}, eval {_num(o['eval_ms_per_example'], '.2f', ' ms/ex')}"
            lines.append(f"  {o['approach']} (n_train={o['n_train']}, seeds {o['seeds']}): {m} {o[m]:.3f}; {diff}; "
                         f"{cost}{flag}")
    if res["break_even"]:
        lines += ["", "Break-even (labels at which an approach beats everything needing no more labels):"]
        vs_p = res.get("break_even_vs_prompting") or {}
        lines += [f"  {a}: {be['text']}" + (f"; vs prompting alone: {vs_p[a]['text']}" if a in vs_p else "")
                  for a, be in res["break_even"].items()]
    if res["notes"]:
        lines += ["", "Notes:"] + [f"  - {n}" for n in res["notes"]]
    if res["add_runs"]:
        lines += ["", "To answer this better, add these runs:"]
        for a in res["add_runs"]:
            lines += [f"  # {a['why']}", f"  {a['command']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help="task name as in the records (e.g. drugs, rotten)")
    ap.add_argument("--labels", type=int, required=True, help="labelled examples you have (N)")
    ap.add_argument("--metric", default="accuracy", choices=list(stats.METRICS))
    ap.add_argument("--max-eval-ms", type=float, help="only options evaluating faster than this per example")
    ap.add_argument("--max-train-s", type=float, help="only options training faster than this")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.labels < 0:
        print("error: --labels must be >= 0", file=sys.stderr)
        return 2
    from eval.record import reader_problem

    if problem := reader_problem(args.results_dir, args.task):  # no records, or none of this task (eval/record.py)
        print(f"error: {problem}", file=sys.stderr)
        return 2
    records, problems = load_records(args.results_dir)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    res = recommend(records, args.task, args.labels, args.metric, args.max_eval_ms, args.max_train_s)
    print(json.dumps(res, indent=2, default=str) if args.json else render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
