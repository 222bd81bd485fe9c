"""Compare two runs on the same test items: the paired difference, its 95% CI and its p-value, all from one paired
bootstrap (so the CI excludes 0 exactly when p < 0.05), the same procedure and replicates the leaderboard, recommend
and the report use for the same pair.

    python eval/compare.py RECORD_A.json RECORD_B.json [--metric accuracy|macro_f1] [--json]
    python eval/compare.py A_seed0.json,A_seed1.json B_seed0.json,B_seed1.json     # several seeds per side

Each side is one record, or several comma-separated records of the same configuration (its seeds): the bootstrap
then resamples seeds as well as test items; records of different configurations on one side are refused. Both
sides must have been evaluated on the same test items (same test split hash); otherwise the comparison is refused
with the reason. One comparison is one test: its p is unadjusted (docs/decide.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eval.decide import stats
from eval.run.records import load_examples


class NotComparable(ValueError):
    pass


def load_side(arg: str) -> list[dict]:
    recs = []
    for part in [p for p in arg.split(",") if p.strip()]:
        path = Path(part.strip())
        if path.suffix == ".jsonl":
            path = path.with_suffix(".json")
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise NotComparable(f"cannot read {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise NotComparable(f"{path} is not a record (invalid JSON: {exc.msg})") from exc
        if not isinstance(rec, dict) or "metrics" not in rec:
            raise NotComparable(f"{path} is not a run record (no metrics)")
        rec["_path"] = str(path)
        recs.append(rec)
    if not recs:
        raise NotComparable(f"no record in {arg!r}")
    setups = {_setup(r) for r in recs}
    if len(setups) > 1:
        raise NotComparable(f"{arg!r} mixes {len(setups)} different configurations ("
                            + "; ".join(sorted(_setup_text(s) for s in setups))
                            + "): a comma list is the seeds of ONE configuration; compare them one by one")
    seeds = [r.get("seed", 0) for r in recs]
    if len(set(seeds)) < len(seeds):
        raise NotComparable(f"{arg!r} lists seed {max(seeds, key=seeds.count)} twice: give each seed once")
    return recs


def _setup(rec: dict) -> tuple:
    """What makes records the seeds of one configuration (eval/decide/analysis.py groups rows the same way)."""
    return (rec.get("track"), rec.get("model"), rec.get("method"), json.dumps(rec.get("options") or {},
                                                                            sort_keys=True), str(rec.get("n_train")))


def _setup_text(s: tuple) -> str:
    return f"{s[0]}: {s[1]} {s[2]} n_train={s[4]} options={s[3]}"


def _key(recs: list[dict]) -> int:
    return stats.run_key([str(r.get("run_id") or r.get("_path", "")) for r in recs])


def _test_hash(rec: dict) -> str | None:
    return (rec.get("split_hash") or {}).get("test")


def paired_arrays(a: list[dict], b: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Gold, A's and B's integer-coded predictions aligned by example id; NotComparable says why not."""
    hashes = {_test_hash(r) for r in a + b}
    if None in hashes:
        raise NotComparable("a record has no test split hash, so its test items cannot be matched; rerun it")
    if len(hashes) > 1:
        sizes = sorted({(r.get("metrics") or {}).get("n") for r in a + b}, key=str)
        raise NotComparable(f"not comparable: the runs were evaluated on different test items (test split hashes "
                            f"{sorted(hashes)}, sizes {sizes}). Rerun one of them on the other's test set "
                            "(same task, same --n-eval).")
    labels = a[0].get("labels") or sorted(a[0]["metrics"].get("per_class") or {})
    for r in a + b:
        if list(r.get("labels") or labels) != list(labels):
            raise NotComparable(f"{r['_path']} has labels {r.get('labels')}, the first record {labels}")
    ids, gold, sides = None, None, []
    for side in (a, b):
        preds = []
        for r in side:
            ex = load_examples(r)
            if not ex:
                raise NotComparable(f"{r['_path']}: its per-example file is missing, so nothing can be paired")
            if ids is None:
                ids, gold = [e["id"] for e in ex], [e["gold"] for e in ex]
            by_id = {e["id"]: e.get("pred") for e in ex}
            if set(by_id) != set(ids):
                raise NotComparable(f"{r['_path']}: its examples are not the same test items")
            preds.append([by_id[i] for i in ids])
        sides.append(preds)
    g, pa = stats.encode(gold, sides[0], labels)
    _, pb = stats.encode(gold, sides[1], labels)
    return g, pa, pb, list(labels)


def compare(a: list[dict], b: list[dict], metric: str = "accuracy", n_boot: int = stats.N_BOOT, seed: int = 0
            ) -> dict:
    g, pa, pb, labels = paired_arrays(a, b)
    d = stats.paired_difference(g, pa, pb, len(labels), metric, n_boot=n_boot, seed=seed, keys=[_key(a), _key(b)])
    k = len(labels)
    return {"metric": metric, "a": _describe(a, stats.point_estimate(g, pa, k, metric)),
            "b": _describe(b, stats.point_estimate(g, pb, k, metric)), **d.to_dict(),
            "significant": d.significant, "alpha": stats.ALPHA}


def _describe(recs: list[dict], value: float) -> dict:
    r = recs[0]
    return {"run": f"{r.get('track')}: {r.get('model')} {r.get('method')} n_train={r.get('n_train')}",
            "seeds": [x.get("seed") for x in recs], "value": value, "files": [x["_path"] for x in recs]}


def render(res: dict) -> str:
    lo, hi = res["ci"]
    lines = [f"A = {res['a']['run']} (seeds {res['a']['seeds']}): {res['metric']} {res['a']['value']:.4f}",
             f"B = {res['b']['run']} (seeds {res['b']['seeds']}): {res['metric']} {res['b']['value']:.4f}",
             f"A - B = {res['diff']:+.4f}  [95% CI {lo:+.4f}, {hi:+.4f}]  paired bootstrap p = {res['p']:.4g}  "
             f"on {res['n_items']} items",
             f"(one test: CI and p from the same {res['n_boot']:,} replicates of the items"
             + (", and of the seeds" if max(res["seeds"]) > 1 else "") + "; unadjusted for other comparisons)"]
    if res.get("discordant"):
        n10, n01 = res["discordant"]
        lines.append(f"{n10} items only A got right, {n01} only B")
    lines.append("the difference is significant at 0.05" if res["significant"] else
                 "no significant difference at 0.05: more test items or seeds would be needed to separate them")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="record JSON (or several, comma-separated: the seeds of one configuration)")
    ap.add_argument("b", help="record JSON (or several, comma-separated)")
    ap.add_argument("--metric", default="accuracy", choices=list(stats.METRICS))
    ap.add_argument("--n-boot", type=int, default=stats.N_BOOT,
                    help="bootstrap replicates (the default is the leaderboard's, so the numbers agree)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.n_boot < 1000:
        print(f"error: --n-boot {args.n_boot} is too few: p could not go below 1/{args.n_boot}; use >= 1000",
              file=sys.stderr)
        return 2
    try:
        res = compare(load_side(args.a), load_side(args.b), args.metric, args.n_boot)
    except NotComparable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2) if args.json else render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
