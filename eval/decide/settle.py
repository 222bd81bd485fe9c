"""Gather just enough evidence to decide: `recommend`'s answer, settled by pre-declared looks at growing evidence.

    python eval/settle.py --task rotten --labels 64 --budget-min 20
    python eval/settle.py --task drugs --labels 64 --budget-min 30 --margin 0.02 --dry-run
    python eval/settle.py --data reviews.csv --text-column text --label-column label --labels 64 --budget-min 10

The contenders are the options `recommend` cannot separate at this budget: the most accurate one, the options tied
with it, and always answering the majority class (the floor every option must clear). The looks are declared before
any data is seen: more test items along the fixed test order (the current size, then doubling: 100 -> 200 -> 400 ...
up to the whole test set, so finished items are reused and every track stays paired), then more seeds for the
contenders whose seed can change the result (Track.seed_matters). At each look every contender is compared with the
most accurate one by the paired bootstrap (eval/decide/stats.py); alpha is spent across the K looks by Bonferroni
(alpha / K per look; Holm within a look). It stops when

  (a) the leader is better than every other contender (decided),
  (b) every remaining contender is equivalent to the leader within +-margin (two one-sided tests at alpha / K each:
      an intersection-union test) -- then the cheapest of them is recommended, or
  (c) the time budget would be exceeded by the next look, or no look is left -- saying what is still open.

Contenders shown worse at a look are dropped from later looks (a decision at that look's level). Every step is an
ordinary run of the contender's own track CLI with its own record, and the plan (contenders, looks, settings) is
written to RESULTS_DIR/settle/ before the first look, so settle can be killed and rerun: it reads the plan, replays
the looks from the records and runs only what is missing (the time budget counts this invocation's runs).
docs/decide.md states the rules and their sources;
tests/test_settle.py simulates the null (identical accuracies) and a real 0.08 gap.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.decide import stats

ALPHA = stats.ALPHA


@dataclass
class Contender:
    """An option in the running: a configuration of a track at a label count, or the majority-class constant."""

    name: str
    track: str | None  # None: always answering the majority class (no run needed)
    model: str = ""
    method: str = ""
    n_train: int | str = 0
    options: dict = field(default_factory=dict)
    record_options: dict = field(default_factory=dict)  # as stored in its records (to find them)
    cost: dict = field(default_factory=dict)  # train_s, eval_ms_per_example from its records
    seeded: bool = False  # more seeds can change its result

    def matches(self, rec: dict) -> bool:
        return (
            rec.get("track") == self.track
            and rec.get("model") == self.model
            and rec.get("method") == self.method
            and str(rec.get("n_train")) == str(self.n_train)
            and json.dumps(rec.get("options") or {}, sort_keys=True) == json.dumps(self.record_options, sort_keys=True)
        )


@dataclass(frozen=True)
class Look:
    items: int
    seeds: int

    def text(self) -> str:
        return f"{self.items} test items, {self.seeds} seed(s)"


def schedule(start: int, total: int, max_seeds: int, seeded: bool) -> list[Look]:
    """The pre-declared looks: test items doubling from `start` to `total`, then seeds 2..max_seeds at `total`
    (only when a contender's seed matters)."""
    sizes, n = [], max(1, min(start, total))
    while n < total:
        sizes.append(n)
        n *= 2
    sizes.append(total)
    looks = [Look(s, 1) for s in sizes]
    if seeded:
        looks += [Look(total, s) for s in range(2, max_seeds + 1)]
    return looks


@dataclass
class Verdict:
    kind: str  # "better" | "equivalent" | "open"
    leader: int
    worse: list[int]
    equivalent: list[int]
    rows: list[dict]  # per contender: value, diff to the leader, ci, p, p_holm, p_tost


def judge(
    gold: np.ndarray,
    preds: Sequence[np.ndarray],
    k: int,
    alpha_look: float,
    margin: float,
    metric: str = "accuracy",
    n_boot: int = stats.N_BOOT,
    keys: Sequence[int] | None = None,
) -> Verdict:
    """One look: every contender against the most accurate one, on the same replicates. Worse: Holm-adjusted p <
    alpha_look; equivalent: the TOST p < alpha_look."""
    values = [stats.point_estimate(gold, p, k, metric) for p in preds]
    leader = int(np.argmax(values))
    boot = stats.bootstrap_metric(gold, list(preds), k, metric, n_boot, keys=keys)
    others = [j for j in range(len(preds)) if j != leader]
    diffs = {j: boot[:, j] - boot[:, leader] for j in others}
    ps = {j: stats.ci_and_p(diffs[j]) for j in others}
    holm = dict(zip(others, stats.holm([ps[j][1] for j in others])))
    tost = {j: stats.tost(diffs[j], margin, alpha_look)[0] for j in others}
    worse = [j for j in others if holm[j] < alpha_look]
    equivalent = [j for j in others if j not in worse and tost[j] < alpha_look]
    rows = []
    for j in range(len(preds)):
        row = {"value": values[j], "leader": j == leader}
        if j != leader:
            row.update(
                diff=values[j] - values[leader],
                ci=list(ps[j][0]),
                p=ps[j][1],
                p_holm=holm[j],
                p_tost=tost[j],
                worse=j in worse,
                equivalent=j in equivalent,
            )
        rows.append(row)
    if len(worse) == len(others):
        kind = "better"
    elif len(worse) + len(equivalent) == len(others):
        kind = "equivalent"
    else:
        kind = "open"
    return Verdict(kind, leader, worse, equivalent, rows)


# fetch(look, contenders) -> (gold (n,), [preds (seeds, n) per contender], seconds it took)
Fetch = Callable[[Look, list[Contender]], tuple[np.ndarray, list[np.ndarray], float]]


def cheapest(contenders: Sequence[Contender]) -> Contender:
    def key(c: Contender) -> tuple[float, float]:
        ms, tr = c.cost.get("eval_ms_per_example"), c.cost.get("train_s")
        return (
            0.0 if c.track is None else (np.inf if ms is None else ms),
            np.inf if tr is None and c.track else (tr or 0.0),
        )

    return min(contenders, key=key)


def settle_loop(
    contenders: list[Contender],
    looks: list[Look],
    fetch: Fetch,
    k: int,
    budget_s: float,
    estimate: Callable[[Look, list[Contender]], float],
    alpha: float = ALPHA,
    margin: float = 0.02,
    metric: str = "accuracy",
    n_boot: int = stats.N_BOOT,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Run the looks in order until a decision, the budget or the last look. Returns the answer as a dict."""
    alpha_look = alpha / len(looks)
    alive = list(contenders)
    spent = 0.0
    history: list[dict] = []
    log(
        f"{len(looks)} pre-declared looks ({'; '.join(x.text() for x in looks)}); alpha {alpha} spent as "
        f"{alpha_look:.4g} per look (Bonferroni over looks), margin ±{margin}"
    )

    def done(stop: str, text: str, chosen: Contender | None = None) -> dict:
        log(text)
        return {
            "stop": stop,
            "text": text,
            "recommend": chosen.name if chosen else None,
            "looks": history,
            "spent_s": spent,
            "alpha_per_look": alpha_look,
            "margin": margin,
            "contenders": [c.name for c in alive],
        }

    for i, look in enumerate(looks):
        need = estimate(look, alive)
        if spent + need > budget_s:
            return done(
                "budget",
                f"budget spent ({spent / 60:.1f} of {budget_s / 60:.1f} min; the next look, "
                f"{look.text()}, needs about {need / 60:.1f} min): still open between "
                + ", ".join(c.name for c in alive),
            )
        gold, preds, secs = fetch(look, alive)
        spent += secs
        v = judge(gold, preds, k, alpha_look, margin, metric, n_boot, keys=[stats.run_key([c.name]) for c in alive])
        history.append(
            {
                "look": i + 1,
                "items": look.items,
                "seeds": look.seeds,
                "verdict": v.kind,
                "rows": [{"name": c.name, **r} for c, r in zip(alive, v.rows)],
            }
        )
        leader = alive[v.leader]
        log(
            f"look {i + 1}/{len(looks)} ({look.text()}): leader {leader.name} {v.rows[v.leader]['value']:.3f}; "
            + "; ".join(
                f"{c.name} {r['diff']:+.3f} [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] Holm p={r['p_holm']:.4f}"
                f" TOST p={r['p_tost']:.4f}"
                for c, r in zip(alive, v.rows)
                if not r["leader"]
            )
        )
        if v.kind == "better":
            return done(
                "decided",
                f"decided at look {i + 1} ({look.text()}): {leader.name} is better than "
                + ", ".join(alive[j].name for j in v.worse),
                leader,
            )
        if v.kind == "equivalent":
            tied = [leader] + [alive[j] for j in v.equivalent]
            pick = cheapest(tied)
            return done(
                "equivalent",
                f"equivalent within ±{margin} at look {i + 1} ({look.text()}): "
                + ", ".join(c.name for c in tied)
                + f"; take the cheapest, {pick.name}"
                + (f" (shown worse and dropped: {', '.join(alive[j].name for j in v.worse)})" if v.worse else ""),
                pick,
            )
        alive = [c for j, c in enumerate(alive) if j not in v.worse]
    return done(
        "exhausted",
        "no look left (the whole test set and the seeds declared): still open between "
        + ", ".join(c.name for c in alive),
    )


# --- the command line: contenders from recommend, looks run as ordinary track runs --------------------------------


def contenders_from(records: list[dict], task: str, labels: int, metric: str) -> tuple[list[Contender], dict]:
    from eval.decide.analysis import analyse
    from eval.decide.recommend import recommend, run_options
    from eval.tracks import known

    res = recommend(records, task, labels, metric)
    if not res.get("leader"):
        raise ValueError(
            f"nothing measured at <= {labels} labels on {task} to settle: run the commands "
            f"`python eval/recommend.py --task {task} --labels {labels}` lists first"
        )
    sets, _ = analyse(records, metric=metric, task=task)
    ts = sets[task][0]
    chosen = [res["leader"]] + [o for o in res["runners_up"] if o.get("tied")]
    out = []
    pool = res.get("pool")
    for o in chosen:
        row = next(
            r
            for r in ts.rows
            if r.name == o["approach"] and str(r.n_train) == str(o["n_train"]) and r.shown_options == o["options"]
        )
        t = known(row.track)
        opts = run_options(row.records[0])
        out.append(
            Contender(
                name=f"{row.name} n={row.n_train}",
                track=row.track,
                model=row.approach[1],
                method=row.approach[2],
                n_train=row.n_train,
                options=row.shown_options if opts is None else opts,
                record_options=row.options,
                cost=dict(row.cost),
                seeded=bool(t and t.seed_matters(row.n_train, pool)),
            )
        )
    majority = ts.majority["label"] if ts.majority else None
    if majority is not None:
        out.append(Contender(name=f"always answering {majority!r}", track=None))
    return out, {"test_items": ts.n_items, "res": res}


class RunFetch:
    """Runs the missing records of a look through each contender's own track CLI, then reads them back."""

    def __init__(self, task: str, results_dir: str, ctx, total: int, dry_run: bool = False):
        self.task, self.results_dir, self.ctx, self.total, self.dry_run = task, results_dir, ctx, total, dry_run

    def commands(self, look: Look, cs: list[Contender]) -> list[tuple[Contender, str]]:
        from eval.decide.recommend import command

        n_eval = "" if look.items >= self.total else f" --n-eval {look.items}"
        out = []
        for c in cs:
            if c.track is None:
                continue
            seeds = " ".join(str(s) for s in range(look.seeds if c.seeded else 1))
            out.append(
                (c, command(c.track, c.model, c.method, self.task, c.n_train, seeds, n_eval, c.options, self.ctx))
            )
        return out

    def run(self, look: Look, cs: list[Contender]) -> None:
        from eval.tracks import TRACKS

        for _c, cmd in self.commands(look, cs):
            argv = shlex.split(cmd)
            track = next(t for t in TRACKS.values() if t.script == argv[1])
            args = argv[2:] + ["--results-dir", self.results_dir] + (["--dry-run"] if self.dry_run else [])
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries settle's own answer (--json)
                rc = track.cli(args)
            if rc != 0:
                raise ValueError(f"this step failed (its own message is above): {cmd}")

    def __call__(self, look: Look, cs: list[Contender]) -> tuple[np.ndarray, list[np.ndarray], float]:
        from eval.run.records import load_examples, load_records

        t0 = time.monotonic()
        self.run(look, cs)
        records, _ = load_records(self.results_dir)
        ids = gold = labels = None
        preds: list[np.ndarray | None] = []
        for c in cs:
            if c.track is None:
                preds.append(None)
                continue
            recs = sorted(
                (
                    r
                    for r in records
                    if r.get("task") == self.task
                    and c.matches(r)
                    and (r.get("metrics") or {}).get("n") == look.items
                    and r.get("seed", 0) < (look.seeds if c.seeded else 1)
                ),
                key=lambda r: r.get("seed", 0),
            )
            rows = []
            for r in recs:
                ex = load_examples(r)
                if ids is None:
                    ids, gold, labels = [e["id"] for e in ex], [e["gold"] for e in ex], r["labels"]
                by_id = {e["id"]: e.get("pred") for e in ex}
                rows.append([by_id.get(i) for i in ids])
            if not rows:
                raise ValueError(f"no record of {c.name} on {look.items} test items after running it")
            preds.append(stats.encode(gold, rows, labels)[1])
        g = stats.encode(gold, [], labels)[0]
        maj = max(set(gold), key=lambda x: (gold.count(x), x))
        const = np.full((1, len(gold)), labels.index(maj) if maj in labels else len(labels))
        return g, [const if p is None else p for p in preds], time.monotonic() - t0


def estimate_from_costs(fetch: RunFetch) -> Callable[[Look, list[Contender]], float]:
    """Seconds a look would take: for each run it still lacks, its training time plus evaluation time per item
    (from the contender's records; unknown costs count as 0)."""
    from eval.run.records import load_records

    def estimate(look: Look, cs: list[Contender]) -> float:
        records = load_records(fetch.results_dir)[0]
        secs = 0.0
        for c in cs:
            if c.track is None:
                continue
            have = {
                r.get("seed", 0)
                for r in records
                if c.matches(r) and r.get("task") == fetch.task and (r.get("metrics") or {}).get("n") == look.items
            }
            missing = [s for s in range(look.seeds if c.seeded else 1) if s not in have]
            per = (c.cost.get("train_s") or 0.0) + (c.cost.get("eval_ms_per_example") or 0.0) * look.items / 1000
            secs += per * len(missing)
        return secs

    return estimate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("data")
    g.add_argument("--task", help="a task in eval/tasks/, as recommend takes it; with --data: the ad-hoc task's name")
    g.add_argument("--data", help="ad-hoc local data (as the records' --data runs)")
    g.add_argument("--test-data")
    g.add_argument("--text-column")
    g.add_argument("--label-column")
    g.add_argument("--label-names", help="the --labels list of the --data runs (comma-separated)")
    g.add_argument("--encoding", help="the encoding of the --data files, as the --data runs read them")
    ap.add_argument("--labels", type=int, required=True, help="labelled examples you have (N)")
    ap.add_argument("--budget-min", type=float, required=True, help="minutes of runs settle may spend")
    ap.add_argument("--margin", type=float, default=0.02, help="equivalence margin on the metric (default 0.02)")
    ap.add_argument("--alpha", type=float, default=ALPHA, help="overall error rate, spent across the looks")
    ap.add_argument("--max-seeds", type=int, default=3, help="seeds per seed-sensitive contender at the last looks")
    ap.add_argument("--metric", default="accuracy", choices=list(stats.METRICS))
    ap.add_argument("--results-dir", default="results")
    ap.add_argument(
        "--dry-run", action="store_true", help="check the first look's runs (--dry-run) and print the plan"
    )
    ap.add_argument("--fresh", action="store_true", help="declare a new plan even if RESULTS_DIR/settle/ has one")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    problem = None
    if args.labels < 0:
        problem = "--labels must be >= 0"
    elif args.budget_min <= 0:
        problem = "--budget-min must be > 0"
    elif not 0 < args.margin < 1:
        problem = "--margin must be between 0 and 1 (a difference in the metric, e.g. 0.02)"
    elif not 0 < args.alpha < 1:
        problem = "--alpha must be between 0 and 1"
    elif not (args.task or args.data):
        problem = "name a task (--task drugs) or give the data of the --data runs (--task NAME --data FILE ...)"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from eval.decide.recommend import Context
    from eval.run.record import reader_problem
    from eval.run.records import load_records

    records, _ = load_records(args.results_dir)
    if args.data:
        from eval.inputs.data import load_task

        task = load_task(
            args.task,
            data=args.data,
            test_data=args.test_data,
            text_column=args.text_column,
            label_column=args.label_column,
            labels=args.label_names,
            encoding=args.encoding,
        ).name  # the files exist and read
    else:
        task = args.task
        if problem := reader_problem(args.results_dir, task, need_records=False):
            raise ValueError(problem)
    ctx = Context(task, records)
    from eval.inputs.dataref import load_ref

    total = len(load_ref(task, ctx.ref).test_all)
    plan_path = Path(args.results_dir) / "settle" / f"{task}__n{args.labels}__{args.metric}.json"
    settings = {"alpha": args.alpha, "margin": args.margin, "max_seeds": args.max_seeds, "metric": args.metric}
    if plan_path.exists() and not args.fresh:
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        if plan["settings"] != settings:
            raise ValueError(
                f"{plan_path} declared other settings ({plan['settings']}); rerun with those, or with "
                "--fresh to declare a new plan (its looks then start over)"
            )
        contenders = [Contender(**c) for c in plan["contenders"]]
        looks = [Look(**x) for x in plan["looks"]]
    else:
        contenders, info = contenders_from(records, task, args.labels, args.metric)
        looks = schedule(info["test_items"], total, args.max_seeds, any(c.seeded for c in contenders))
        plan = {
            "task": task,
            "labels": args.labels,
            "settings": settings,
            "contenders": [dataclasses.asdict(c) for c in contenders],
            "looks": [dataclasses.asdict(x) for x in looks],
        }
        if not args.dry_run:  # declared before any look is run; a rerun replays it from the records
            from eval.run.records import atomic_write

            atomic_write(plan_path, json.dumps(plan, indent=2, sort_keys=True))
    fetch = RunFetch(task, args.results_dir, ctx, total, dry_run=args.dry_run)
    say = (lambda s: None) if args.json else print
    say(f"settle {task} at <= {args.labels} labels: contenders " + ", ".join(c.name for c in contenders))
    if args.dry_run:
        say(
            f"{len(looks)} pre-declared looks: "
            + "; ".join(x.text() for x in looks)
            + f"; alpha {args.alpha} / {len(looks)} = {args.alpha / len(looks):.4g} per look"
        )
        fetch.run(looks[0], contenders)  # every run of the first look through its track's --dry-run
        for c, cmd in fetch.commands(looks[-1], contenders):
            say(f"  last look, {c.name}: {cmd}")
        return 0
    labels = next((r.get("labels") for r in records if r.get("task") == task and r.get("labels")), None) or []
    k = len(labels)
    res = settle_loop(
        contenders,
        looks,
        fetch,
        k,
        args.budget_min * 60,
        estimate_from_costs(fetch),
        args.alpha,
        args.margin,
        args.metric,
        log=say,
    )
    res["task"], res["labels"] = task, args.labels
    if args.json:
        print(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
