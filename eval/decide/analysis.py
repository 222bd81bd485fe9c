"""From run records to the numbers that answer "which approach at my label budget": every reader (leaderboard,
report, compare, recommend) goes through `analyse`, so they all agree.

    sets, problems = analyse(records, metric="accuracy")   # one TestSet per (task, test items)

A `TestSet` holds the runs evaluated on the same test items (same test split hash): one `Row` per configuration and
label count (seeds aggregated), each with its paired difference to the top row (the most accurate row that is not
(near-)collapsed; Holm-corrected over the table, the family `TestSet.family` names: a row not significantly worse
is *tied*; a collapsed row is never tied), its paired difference to the majority-class predictor (the top row is
"best" only when that difference's lower bound is above 0), a near-collapse flag and its cost; per approach (track +
model + method) its best configuration at each label count; and for every training-based approach its break-even
intervals. Every interval and p-value is `stats.paired_difference` on one set of bootstrap replicates, so the CI
excludes 0 exactly when p < 0.05. docs/decide.md explains the choices.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.decide import stats
from eval.run.cost import COST_FIELDS, cost_of
from eval.run.records import load_examples
from eval.scoring.labels import INVALID
from eval.tracks import is_trained, sort_key

ALPHA = stats.ALPHA


def n_labels(rec: dict) -> float:
    """Labels an approach consumed: training examples, or the shots of a prompt (0 for zero-shot)."""
    n = rec.get("n_train_examples")
    if n is None:
        n = rec.get("n_train") if isinstance(rec.get("n_train"), int) else np.nan
    return float(n)


def approach_of(rec: dict) -> tuple[str, str, str]:
    return (rec["track"], rec["model"], rec["method"])


def approach_label(key: tuple[str, str, str]) -> str:
    return f"{key[0]}: {key[1]} {key[2]}"


@dataclass
class Row:
    """One configuration at one label count on one test set, seeds aggregated."""

    approach: tuple[str, str, str]
    options: dict
    n_train: Any
    n_labels: float
    records: list[dict]
    preds: np.ndarray | None = None  # (seeds, items) integer-coded; None when an examples file is missing
    values: dict[str, float] = field(default_factory=dict)  # accuracy, macro_f1, ... mean over seeds
    sd: float | None = None
    ci: tuple[float, float] | None = None
    vs_best: stats.Difference | None = None
    p_holm: float | None = None
    tied: bool | None = None  # None: no paired data to decide; never True for a collapsed row
    is_best: bool = False  # the top row, and it is shown to beat the majority class
    is_top: bool = False  # the row the others are compared with (best accuracy, not collapsed)
    vs_majority: stats.Difference | None = None
    collapse: str | None = None
    collapsed_seeds: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    shown_options: dict = field(default_factory=dict)

    @property
    def key(self) -> int:
        """Its identity for the bootstrap's seed resampling (stats.run_key): the same in every table."""
        return stats.run_key([str(r.get("run_id") or r.get("_path", "")) for r in self.records])

    @property
    def beats_majority(self) -> bool | None:
        """Shown to beat always answering the majority class (the paired CI's lower bound is above 0)."""
        return None if self.vs_majority is None else self.vs_majority.ci[0] > 0

    @property
    def usable(self) -> bool:
        """Could be recommended: not (near-)collapsed and shown to beat the constant."""
        return self.collapse is None and bool(self.beats_majority)

    @property
    def seeds(self) -> list[int]:
        return [r.get("seed", 0) for r in self.records]

    @property
    def track(self) -> str:
        return self.approach[0]

    @property
    def name(self) -> str:
        return approach_label(self.approach)

    def value(self, metric: str) -> float:
        return self.values.get(metric, float("nan"))


@dataclass
class TestSet:
    task: str
    test_hash: str
    n_items: int
    labels: list[str]
    metric: str
    rows: list[Row]  # ranked by the metric, best first
    majority: dict | None
    ids: list[str] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    curves: dict[tuple, list[Row]] = field(default_factory=dict)  # approach -> best row per label count
    break_even: dict[tuple, stats.BreakEven] = field(default_factory=dict)  # vs every other approach
    break_even_prompting: dict[tuple, stats.BreakEven] = field(default_factory=dict)  # vs prompting only
    boot: dict[int, np.ndarray] = field(default_factory=dict)  # id(row) -> replicates of its metric
    majority_boot: np.ndarray | None = None  # replicates of the majority-class predictor's metric
    majority_preds: np.ndarray | None = None  # (1, items): always the majority label
    family: str = ""  # what Holm's correction on this table ran over
    n_boot: int = stats.N_BOOT

    @property
    def top(self) -> Row | None:
        return next((r for r in self.rows if r.is_top), None)

    def difference(self, a: Row, b: Row) -> stats.Difference:
        """a - b on this table's replicates: the same numbers for the same pair wherever it is shown."""
        g = stats.encode(self.gold, [], self.labels)[0]
        return stats.paired_difference(g, a.preds, b.preds, len(self.labels), self.metric,
                                       boot=np.column_stack([self.boot[id(a)], self.boot[id(b)]]))

    @property
    def approaches(self) -> list[tuple]:
        return list(self.curves)


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def check_record(rec: dict) -> str | None:
    """The first field a reader needs that this record lacks, or None."""
    if "n_train" not in rec:
        return "n_train"
    m = rec.get("metrics")
    if not isinstance(m, dict):
        return "metrics"
    for key in ("accuracy", "macro_f1"):
        if not isinstance(m.get(key), (int, float)):
            return f"metrics.{key}"
    return None


def _aligned_preds(recs: list[dict], ids: list[str], labels: list[str]) -> np.ndarray | None:
    rows = []
    for r in recs:
        ex = load_examples(r)
        by_id = {e.get("id"): e.get("pred", INVALID) for e in ex}
        if not ex or set(by_id) != set(ids):
            return None
        rows.append([by_id[i] for i in ids])
    return stats.encode(["x"] * len(ids), rows, labels)[1]


def _reference_examples(recs: list[dict]) -> tuple[list[str], list[str]]:
    for r in sorted(recs, key=lambda r: r.get("_path", "")):
        ex = load_examples(r)
        if ex and all("id" in e and "gold" in e for e in ex):
            return [e["id"] for e in ex], [e["gold"] for e in ex]
    return [], []


def build_rows(recs: list[dict], ids: list[str], labels: list[str]) -> list[Row]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in recs:
        options = json.dumps(rec.get("options") or {}, sort_keys=True)
        groups[(approach_of(rec), options, str(rec["n_train"]))].append(rec)
    rows = []
    for (approach, _, _), group in groups.items():
        group = sorted(group, key=lambda r: r.get("seed", 0))
        row = Row(approach=approach, options=group[0].get("options") or {}, n_train=group[0]["n_train"],
                  n_labels=n_labels(group[0]), records=group)
        row.preds = _aligned_preds(group, ids, labels) if ids else None
        ms = [r["metrics"] for r in group]
        for key in ("accuracy", "macro_f1", "valid_rate", "accuracy_on_valid"):
            row.values[key] = _mean([m.get(key) for m in ms])
        accs = [m["accuracy"] for m in ms]
        row.sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else None
        before = [r["before_training"] for r in group if isinstance(r.get("before_training"), dict)]
        row.values["before_accuracy"] = _mean([b.get("accuracy") for b in before])
        row.values["before_valid_rate"] = _mean([b.get("valid_rate") for b in before])
        invalid: Counter = Counter()
        for m in ms:
            invalid.update(m.get("invalid") or {"no_label": m.get("n_invalid") or 0})
        row.invalid = dict(invalid)
        reasons = []
        for m in ms:
            support = {k: v.get("support", 0) for k, v in (m.get("per_class") or {}).items()}
            counts = m.get("prediction_counts")
            reason = "every answer is one class" if m.get("collapsed") else None
            if reason is None and counts and support:
                reason = stats.near_collapse(counts, support, m["macro_f1"])
            reasons.append(reason)
        row.collapsed_seeds = sum(r is not None for r in reasons)
        row.collapse = next((r for r in reasons if r), None)
        costs = [cost_of(r) for r in group]
        row.cost = {k: _mean([c[k] for c in costs]) if k not in ("device", "dtype") else
                    (", ".join(sorted({str(c[k]) for c in costs if c[k]})) or None) for k in COST_FIELDS}
        rows.append(row)
    _set_shown_options(rows)
    return rows


def _set_shown_options(rows: list[Row]) -> None:
    """Per approach: only the options whose values differ between its rows (the full config is in each record)."""
    from eval.run.records import varying_options

    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        groups[r.approach].append(r)
    for group, keys in zip(groups.values(), varying_options([[r.options for r in g] for g in groups.values()])):
        for r in group:
            r.shown_options = {k: r.options[k] for k in keys if k in r.options}


def _rank_key(metric: str):
    return lambda r: (-(r.value(metric) if not np.isnan(r.value(metric)) else -1), sort_key(r.track),
                      r.approach, r.n_labels, json.dumps(r.options, sort_keys=True))


def analyse_test_set(task: str, test_hash: str, recs: list[dict], metric: str = "accuracy",
                     n_boot: int = stats.N_BOOT) -> TestSet:
    labels = list(recs[0].get("labels") or sorted({*(recs[0]["metrics"].get("per_class") or {})}))
    ids, gold = _reference_examples(recs)
    rows = build_rows(recs, ids, labels)
    rows.sort(key=_rank_key(metric))
    majorities = [r["metrics"].get("majority_baseline") for r in recs if r["metrics"].get("majority_baseline")]
    ts = TestSet(task=task, test_hash=test_hash, n_items=int(recs[0]["metrics"].get("n") or len(ids)),
                 labels=labels, metric=metric, rows=rows, majority=majorities[0] if majorities else None,
                 ids=ids, gold=gold)
    ts.n_boot = n_boot
    paired = [r for r in rows if r.preds is not None]
    if gold and paired:
        g = stats.encode(gold, [], labels)[0]
        k = len(labels)
        maj_label = Counter(gold).most_common(1)[0][0]
        majority = np.full((1, len(gold)), labels.index(maj_label) if maj_label in labels else k)
        boot = stats.bootstrap_metric(g, [r.preds for r in paired] + [majority], k, metric, n_boot, seed=0,
                                      keys=[r.key for r in paired] + [0])
        ts.majority_boot, ts.majority_preds = boot[:, -1], majority
        for j, r in enumerate(paired):
            ts.boot[id(r)] = boot[:, j]
            r.ci = stats.percentile_ci(boot[:, j])
            r.vs_majority = stats.paired_difference(g, r.preds, majority, k, metric, boot=boot[:, [j, -1]])
        # a (near-)constant predictor is flagged, never the row others are tested against
        top = next((r for r in rows if r.collapse is None), None)
        if top is not None and top.preds is not None:
            top.is_top, top.tied = True, True
            top.is_best = bool(top.beats_majority)
            others = [r for r in paired if r is not top]
            diffs = [ts.difference(r, top) for r in others]
            for r, d, p in zip(others, diffs, stats.holm([d.p for d in diffs])):
                r.vs_best, r.p_holm = d, p
                r.tied = p >= ALPHA and r.collapse is None
            ts.family = (f"Holm over the {len(others)} comparisons of every other row with the top row on these "
                         f"{ts.n_items} items")
    for r in rows:  # rows without examples: the records' own CIs (accuracy only)
        if r.ci is None and metric == "accuracy":
            cis = [rec["metrics"].get("accuracy_ci") for rec in r.records if rec["metrics"].get("accuracy_ci")]
            r.ci = tuple(np.mean(cis, axis=0)) if cis else None
    _curves_and_break_even(ts, metric)
    return ts


def _curves_and_break_even(ts: TestSet, metric: str) -> None:
    by_approach: dict[tuple, dict[float, Row]] = defaultdict(dict)
    # ranked, so the first row of an approach at a label count is its best configuration there (a collapsed one only
    # when no other configuration exists at that count)
    for r in sorted(ts.rows, key=lambda r: r.collapse is not None):
        if not np.isnan(r.n_labels):
            by_approach[r.approach].setdefault(r.n_labels, r)
    ts.curves = {a: [pts[n] for n in sorted(pts)] for a, pts in
                 sorted(by_approach.items(), key=lambda kv: (sort_key(kv[0][0]), kv[0]))}
    for a, pts in ts.curves.items():
        if not is_trained(a[0]) or not all(id(p) in ts.boot for p in pts):
            continue
        pts = [p for p in pts if p.n_labels > 0]
        if not pts:
            continue
        others = [(b, p.n_labels, p.value(metric), ts.boot[id(p)]) for b, ps in ts.curves.items() if b != a
                  for p in ps if id(p) in ts.boot]
        # a collapsed point never counts as beating anyone
        mask = np.array([-np.inf if p.collapse else 0.0 for p in pts])
        args = ([p.n_labels for p in pts], np.array([p.value(metric) for p in pts]) + mask,
                np.column_stack([ts.boot[id(p)] for p in pts]) + mask)
        ts.break_even[a] = stats.break_even(*args, [o[1:] for o in others])
        prompting = [o[1:] for o in others if not is_trained(o[0][0])]
        if prompting:  # the number arXiv 2402.12819 measures: against prompting alone
            ts.break_even_prompting[a] = stats.break_even(*args, prompting)


def analyse(records: list[dict], metric: str = "accuracy", n_boot: int = stats.N_BOOT, task: str | None = None
            ) -> tuple[dict[str, list[TestSet]], list[str]]:
    """task -> its test sets (the one most approaches share first), plus one line per record that was skipped."""
    if metric not in stats.METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(stats.METRICS)}")
    problems, groups = [], defaultdict(list)
    for rec in records:
        missing = check_record(rec)
        if missing:
            problems.append(f"skipped {rec.get('_path', '?')}: no {missing} (an older or hand-edited record; "
                            "rerun that run with --overwrite)")
            continue
        if task is not None and rec["task"] != task:
            continue
        test = (rec.get("split_hash") or {}).get("test") or f"n_eval={rec.get('n_eval')}"
        groups[(rec["task"], test)].append(rec)
    out: dict[str, list[TestSet]] = defaultdict(list)
    for (t, test), recs in sorted(groups.items()):
        out[t].append(analyse_test_set(t, test, recs, metric, n_boot))
    for t in out:
        out[t].sort(key=lambda ts: (-len(ts.curves), -ts.n_items, ts.test_hash))
    return dict(sorted(out.items())), problems
