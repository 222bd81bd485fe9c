"""Which approach to use with N labelled examples, answered from the run records alone.

    python eval/recommend.py --task rotten --labels 64
    python eval/recommend.py --task drugs --labels 256 --metric macro_f1 --max-eval-ms 50 --max-train-s 600 --json

On the test set most approaches share: each approach at the largest label count it was measured at that needs at
most N labels (chosen without looking at test scores), compared with the most accurate of them by one paired test
per pair (the leaderboard's replicates, so the same pair has the same CI and p everywhere; Holm over the comparisons
made here, which the output names). It recommends only what is shown to beat always answering the majority class,
never a (near-)collapsed run; when the top options are tied within noise it recommends the cheapest of them. It
prints every training-based approach's break-even intervals and each option's cost, and, when the records cannot
answer, the commands that add the missing runs (each passes its track's --dry-run; tests/test_decide.py) and the
`eval/decide/settle.py` command that gathers just enough evidence to decide. docs/decide.md states every rule.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from eval.decide import stats
from eval.decide.analysis import Row, TestSet, analyse
from eval.run.records import load_records
from eval.tracks import TRACKS, Track, data_flags, is_trained, known

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
    from eval.run.records import RunSpec
    from eval.tracks import track

    try:
        spec = RunSpec.from_record(record)
        return track(spec.track).changed_options(spec)
    except Exception:  # noqa: BLE001 -- a record from another checkout or machine: fall back to the shown options
        return None


def _starters() -> list[tuple[Track, tuple[str, str, str]]]:
    """The runs suggested when the records cannot answer: each track's `starter` (eval/tracks.py)."""
    return [(t, t.starter) for t in TRACKS.values() if t.starter]


class Context:
    """What a suggested command needs to know about the task: its data flags and its training pool's size."""

    def __init__(self, task: str, records: list[dict]):
        self.task = task
        refs = [r.get("data") for r in records if r.get("task") == task and r.get("data")]
        self.ref = refs[0] if refs else None
        fulls = [r.get("n_train_examples") for r in records if r.get("task") == task and r.get("n_train") == "full"]
        self.pool = next((int(n) for n in fulls if isinstance(n, int)), None)
        if self.pool is None:
            try:
                from eval.inputs.dataref import load_ref

                self.pool = len(load_ref(task, self.ref).pool)
            except Exception:  # noqa: BLE001 -- data not installed here: sizes are not capped
                self.pool = None

    def size(self, n: int | str) -> int | str:
        """`n` capped at the pool: 'full' when it asks for all of it or more."""
        if n == "full" or (self.pool is not None and isinstance(n, int) and n >= self.pool):
            return "full"
        return n


def command(track: str, model: str, method: str, task: str, n: int | str, seeds: str = SEEDS, n_eval: str = "",
            options: dict | None = None, ctx: Context | None = None) -> str:
    """The track command that adds a run (its CLI, eval.tracks.Track.command; options that tell configurations
    apart as flags; a `--data` task's data flags beside the --task that names it; n capped at the pool; seeds only
    where another seed can change the result)."""
    t = known(track)
    if t is None:
        return f"# add a {track} run of {model} {method} at n={n} on {task}"
    if ctx is not None:
        n = ctx.size(n)
    if not t.seed_matters(n, ctx.pool if ctx else None):
        seeds = "0"
    # ad-hoc data: --task names it (as its records are filed) and the data flags name its files
    return t.command(model, method, task, n, seeds, n_eval, options, data=ctx.ref if ctx is not None else None)


def _row_command(ts: TestSet, row: Row, ctx: Context, n: int | str | None = None, seeds: str = SEEDS) -> str:
    n = row.n_train if n is None else n
    options = run_options(row.records[0]) if row.records else None
    return command(row.track, row.approach[1], row.approach[2], ts.task, n, seeds, _n_eval_flag(ts, row),
                   row.shown_options if options is None else options, ctx)


def _fits(row: Row, max_eval_ms: float | None, max_train_s: float | None) -> bool:
    ms, train = row.cost.get("eval_ms_per_example"), row.cost.get("train_s")
    return (max_eval_ms is None or ms is None or ms <= max_eval_ms) and \
        (max_train_s is None or train is None or train <= max_train_s)


def cost_key(row: Row | dict) -> tuple[float, float]:
    """Cheapest first: evaluation ms per example, then training seconds (unknown costs last)."""
    c = row.cost if isinstance(row, Row) else row
    ms, train = c.get("eval_ms_per_example"), c.get("train_s")
    return (float("inf") if ms is None else ms, float("inf") if train is None else train)


def option(ts: TestSet, row: Row) -> dict:
    c = row.cost
    vm = row.vs_majority
    return {"approach": row.name, "n_train": row.n_train, "labels_used": row.n_labels, "seeds": row.seeds,
            "options": row.shown_options, ts.metric: row.value(ts.metric),
            "ci": list(row.ci) if row.ci else None, "valid_rate": row.values.get("valid_rate"),
            "collapse": row.collapse, "vs_majority": vm.to_dict() if vm else None,
            "beats_majority": row.beats_majority, "train_s": c.get("train_s"),
            "eval_ms_per_example": c.get("eval_ms_per_example"), "peak_rss_mb": c.get("peak_rss_mb"),
            "device": c.get("device"), "dtype": c.get("dtype")}


def choose(ts: TestSet, labels: int, max_eval_ms: float | None = None, max_train_s: float | None = None
           ) -> dict[tuple, Row]:
    """Each approach's row at the largest label count it was measured at within the budget (never chosen by its
    test score; among configurations at that count the most accurate, as the leaderboard ranks them), within the
    cost limits."""
    per: dict[tuple, Row] = {}
    for a in ts.curves:
        rows = [r for r in ts.rows if r.approach == a and r.n_labels <= labels and _fits(r, max_eval_ms, max_train_s)]
        if not rows:
            continue
        top_n = max(r.n_labels for r in rows)
        at = [r for r in rows if r.n_labels == top_n]  # ts.rows is ranked, so the first is the most accurate
        per[a] = next((r for r in at if r.collapse is None), at[0])
    return per


def shared_item_comparisons(ts: TestSet, others: list[TestSet], leader: Row, labels: int) -> list[dict]:
    """Approaches measured only on another test set whose items are all in this one (the fixed test order makes a
    64-item set a prefix of the 379-item one): each against the leader on the shared items, one paired bootstrap."""
    out: list[dict] = []
    where = {i: j for j, i in enumerate(ts.ids)}
    seen: set[tuple] = set()  # an approach on several such sets: the largest (others come largest first)
    for other in sorted(others, key=lambda o: -o.n_items):
        if not other.ids or not all(i in where for i in other.ids):
            continue
        idx = np.array([where[i] for i in other.ids])
        g = stats.encode(other.gold, [], ts.labels)[0]
        mine = leader.preds[:, idx]
        for a, pts in other.curves.items():
            if a in ts.curves or a in seen:
                continue
            fit = [r for r in pts if r.n_labels <= labels and r.preds is not None]
            if not fit:
                continue
            top_n = max(r.n_labels for r in fit)
            at = [r for r in other.rows if r.approach == a and r.n_labels == top_n and r.preds is not None]
            row = next((r for r in at if r.collapse is None), at[0])
            if row.collapse is not None:
                continue
            seen.add(a)
            d = stats.paired_difference(g, row.preds, mine, len(ts.labels), ts.metric, keys=[row.key, leader.key])
            out.append({"approach": row.name, "n_train": row.n_train, "n_items": len(idx), "test_hash":
                        other.test_hash, "value": stats.point_estimate(g, row.preds, len(ts.labels), ts.metric),
                        "leader_value": stats.point_estimate(g, mine, len(ts.labels), ts.metric), **d.to_dict()})
    return out


def recommend(records: list[dict], task: str, labels: int, metric: str = "accuracy",
              max_eval_ms: float | None = None, max_train_s: float | None = None, n_boot: int = stats.N_BOOT,
              analysed: tuple[dict, list[str]] | None = None) -> dict:
    """The answer as a dict (render() prints it). `analysed`: analyse(records, metric)'s result, to reuse it."""
    sets, problems = analysed or analyse(records, metric=metric, n_boot=n_boot, task=task)
    ctx = Context(task, records)
    out: dict = {"task": task, "labels": labels, "metric": metric, "best": None, "leader": None, "runners_up": [],
                 "lead": None, "lead_significant": None, "family": None, "break_even": {},
                 "break_even_vs_prompting": {}, "add_runs": [], "notes": list(problems), "pool": ctx.pool}

    def add(why: str, cmd: str) -> None:
        if not any(a["command"] == cmd for a in out["add_runs"]):
            out["add_runs"].append({"why": why, "command": cmd})

    if task not in sets:
        out["notes"].append(f"no records for task {task!r}")
        for t, (model, method, why) in _starters():
            if t.trained and labels < 1:
                continue  # a trained track needs labels: with none, only prompting applies
            add(why, command(t.name, model, method, task, labels if t.trained else 0, ctx=ctx))
        if labels < 1:
            out["notes"].append("with 0 labels only zero-shot prompting applies")
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
                fit = [r for r in other.curves[a] if r.n_labels <= labels]
                if not fit:
                    continue
                row = fit[-1]  # the largest label count within the budget
                n = row.n_train if not is_trained(a[0]) else labels  # the user's budget; prompting: its shots
                add(f"{a[0]}: {a[1]} {a[2]} on the shared test set ({ts.n_items} items)",
                    command(a[0], a[1], a[2], task, n, SEEDS, _n_eval_flag(ts), row.shown_options, ctx))
    per_approach = choose(ts, labels, max_eval_ms, max_train_s)
    # trained approaches without a run at the budget (capped at the pool): the run that would measure it
    target = ctx.size(labels)
    for a, pts in ts.curves.items():
        if not is_trained(a[0]) or not pts or labels < 1:
            continue
        if any(str(p.n_train) == str(target) or p.n_labels == labels for p in pts):
            continue
        below = [p for p in pts if p.n_labels <= labels]
        ref = below[-1] if below else pts[0]
        measured = ", ".join(f"{p.n_labels:g}" for p in pts)
        if a in per_approach and max(p.n_labels for p in pts) < labels:
            out["notes"].append(f"{a[0]}: {a[1]} {a[2]} was measured only up to n={max(p.n_labels for p in pts):g}; "
                                f"at {labels} labels it is shown at its n={per_approach[a].n_labels:g} run")
        add(f"{a[0]}: {a[1]} {a[2]} has no run at n={target} (measured at {measured})",
            _row_command(ts, ref, ctx, n=target))
    candidates = sorted(per_approach.values(), key=lambda r: (r.collapse is not None, -r.value(metric)))
    live = [r for r in candidates if r.collapse is None]
    if not live:
        out["notes"].append(f"no usable run needs at most {labels} labels on {task}"
                            + (" within the cost limits" if max_eval_ms or max_train_s else ""))
        if not any(not is_trained(a[0]) and min(p.n_labels for p in pts) == 0 for a, pts in ts.curves.items()):
            for t, (model, method, why) in _starters():
                if not t.trained:
                    add(why, command(t.name, model, method, task, 0, n_eval=_n_eval_flag(ts), ctx=ctx))
        return out
    leader = live[0]
    out["leader"] = option(ts, leader)
    others = [r for r in candidates if r is not leader]
    paired = leader.preds is not None and bool(ts.gold)
    tied: list[Row] = []
    if paired:
        family = [r for r in others if r.preds is not None and r.collapse is None]
        diffs = {id(r): ts.difference(r, leader) for r in others if r.preds is not None}
        holm = dict(zip([id(r) for r in family], stats.holm([diffs[id(r)].p for r in family])))
        out["family"] = (f"Holm over the {len(family)} comparison(s) of the other non-collapsed options at <= "
                         f"{labels} labels with the most accurate one, {leader.name} (the leaderboard's family is "
                         "its whole table, so its Holm p can differ; the unadjusted CI and p are the same)")
        for r in others:
            o = option(ts, r)
            d = diffs.get(id(r))
            if d is not None:
                o.update(diff=d.diff, diff_ci=list(d.ci), p=d.p, test=d.test, n_boot=d.n_boot)
                o["p_holm"] = holm.get(id(r))
                o["tied"] = o["p_holm"] is not None and o["p_holm"] >= stats.ALPHA  # collapsed: never tied
                if o["tied"]:
                    tied.append(r)
            out["runners_up"].append(o)
        if not family:
            out["lead"] = "only option measured"
        elif tied:
            out["lead"] = "tied"
        else:
            out["lead"] = "significant"
        out["lead_significant"] = out["lead"] == "significant"
    else:
        out["runners_up"] = [option(ts, r) for r in others]
        out["notes"].append("the per-example files are missing, so no paired test was possible")
    out["shared_items"] = shared_item_comparisons(ts, sets[task][1:], leader, labels) if paired else []
    for c in out["shared_items"]:
        out["notes"].append(f"on the {c['n_items']} items its test set shares with this one: {c['approach']} "
                            f"(n_train={c['n_train']}) {c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] "
                            f"p={c['p']:.4f} against {leader.name} (one paired comparison, unadjusted; "
                            f"{c['value']:.3f} vs {c['leader_value']:.3f} there)")
    majority = ts.majority["label"] if ts.majority else "the majority class"
    contenders = [leader] + tied
    usable = [r for r in contenders if r.usable]
    if not usable:
        vm = leader.vs_majority
        shown = f" ({vm.diff:+.3f} [{vm.ci[0]:+.3f}, {vm.ci[1]:+.3f}], paired)" if vm else ""
        out["notes"].append(f"not shown to beat always answering {majority!r}: the most accurate option, "
                            f"{leader.name} ({metric} {leader.value(metric):.3f}){shown}"
                            + (", and the options tied with it" if tied else "")
                            + ", is not above the constant at this budget; use none of them yet, or gather more "
                              "evidence")
    else:
        best = min(usable, key=cost_key) if len(contenders) > 1 else usable[0]
        out["best"] = option(ts, best)
        if len(contenders) > 1:
            costly = max((r for r in contenders if r is not best), key=cost_key)
            ms = best.cost.get("eval_ms_per_example")
            ms_other = costly.cost.get("eval_ms_per_example")
            cost = (f"{best.name} costs {_num(ms, '.2f')} ms/example against {_num(ms_other, '.2f')} for "
                    f"{costly.name}" if ms is not None else f"{best.name} is the cheapest of them")
            out["notes"].append(f"tied within noise ({len(contenders)} options): {cost} — take it unless more "
                                "evidence separates them")
            skipped = [r.name for r in contenders if not r.usable]
            if skipped:
                out["notes"].append(f"not chosen although tied: {', '.join(skipped)} (not shown to beat always "
                                    f"answering {majority!r}, or collapsed)")
    if out["lead"] == "tied" or not usable:
        for row in contenders[:3]:
            t = known(row.track)
            if t is not None and t.seed_matters(row.n_train, ctx.pool) and len(row.seeds) < 3:
                add(f"more seeds for {row.name} at n={row.n_train} (has {len(row.seeds)})", _row_command(ts, row, ctx))
        where = f"--task {task}" + data_flags(ctx.ref, "--label-names")
        add("gather just enough evidence to decide (more test items, then seeds, until decided or the budget is "
            "spent)", f"python eval/settle.py {where} --labels {labels} --budget-min 20")
    return out


def _num(x: float | None, fmt: str = ".3f", unit: str = "") -> str:
    return "n/a" if x is None else format(x, fmt) + unit


def _option_line(o: dict, m: str) -> str:
    if "diff" in o:
        verdict = " collapsed" if o["collapse"] else (" tied" if o["tied"] else " worse")
        diff = (f"{o['diff']:+.3f} [{o['diff_ci'][0]:+.3f}, {o['diff_ci'][1]:+.3f}] p={o['p']:.4f}"
                + (f", Holm p={o['p_holm']:.4f}" if o.get("p_holm") is not None else "") + verdict)
    else:
        diff = "no paired data"
    flag = f" [{o['collapse']}]" if o["collapse"] else ""
    cost = f"train {_num(o['train_s'], '.1f', ' s')}, eval {_num(o['eval_ms_per_example'], '.2f', ' ms/ex')}"
    return f"  {o['approach']} (n_train={o['n_train']}, seeds {o['seeds']}): {m} {o[m]:.3f}; {diff}; {cost}{flag}"


def render(res: dict) -> str:
    m = res["metric"]
    lines = [f"Task {res['task']}, at most {res['labels']} labelled examples, ranked by {m}"]
    if "test_set" in res:
        t = res["test_set"]
        lines[0] += f" (test set: {t['items']} items, hash {t['hash']}, {t['approaches']} approaches)"
    b = res["best"]
    if b:
        ci = f" [95% CI {b['ci'][0]:.3f}, {b['ci'][1]:.3f}]" if b["ci"] else ""
        vm = b.get("vs_majority")
        maj = (f"; vs always answering the majority class {vm['diff']:+.3f} [{vm['ci'][0]:+.3f}, {vm['ci'][1]:+.3f}]"
               if vm else "")
        lead = {"significant": "The lead is significant over every runner-up (Holm).",
                "tied": "Tied within noise with the most accurate option(s): chosen as the cheapest of them.",
                "only option measured": "Only option measured at this budget: nothing to compare it with."}
        lines += ["", f"Recommended: {b['approach']} (n_train={b['n_train']}, seeds {b['seeds']}): {m} "
                      f"{b[m]:.3f}{ci}{maj}; cost: train {_num(b['train_s'], '.1f', ' s')}, eval "
                      f"{_num(b['eval_ms_per_example'], '.2f', ' ms/example')}, peak RSS "
                      f"{_num(b['peak_rss_mb'], '.0f', ' MB')}, {b['device'] or 'device n/a'}",
                  lead.get(res["lead"], "No paired test was possible.")]
    elif res.get("leader"):
        lines += ["", "No recommendation: nothing measured here is shown to beat the majority class (see Notes)."]
    if res["runners_up"]:
        lead = res["leader"]["approach"] if res.get("leader") else "the recommended run"
        lines += ["", f"Others (difference to the most accurate option, {lead}; 95% CI unadjusted, p from the same "
                      "paired bootstrap, Holm p for the verdict):"]
        if res.get("leader") and (not b or b["approach"] != res["leader"]["approach"]):
            o = res["leader"]
            lines.append(f"  {o['approach']} (n_train={o['n_train']}, seeds {o['seeds']}): {m} {o[m]:.3f}; the most "
                         "accurate")
        lines += [_option_line(o, m) for o in res["runners_up"]]
        if res.get("family"):
            lines.append(f"  ({res['family']})")
    if res["break_even"]:
        lines += ["", "Break-even (where an approach overtakes everything needing no more labels; intervals between "
                      "measured sizes):"]
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
    from eval.run.record import reader_problem

    if problem := reader_problem(args.results_dir, args.task):  # no records, or none of this task (eval/run/record.py)
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
