"""The reference line on every leaderboard: TF-IDF + logistic regression on the same subsets as every track.

    python eval/baseline.py --task drugs --n-train 16 64 256 full --seeds 0 1
    python eval/baseline.py --data reviews.csv --text-column text --label-column label --class-weight none

Writes records like any track (track `baseline`), so a fancy model has something real to beat.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from eval.cli import add_data_args, add_run_args, data_kwargs
from eval.data import TaskData, load_task
from eval.records import RunSpec, finish_run, iter_specs, run_all
from eval.sources import DataError

DEFAULTS = {"class_weight": "balanced", "C": 10.0}


def canonical_options(model: str, method: str, options: dict) -> dict:
    """The options the CLI writes for this method: its defaults, with the class weight the method name implies."""
    implied = {"class_weight": "balanced" if method.endswith("-balanced") else "none"}
    return {**DEFAULTS, **implied, **options}


def run_one(spec: RunSpec, results_dir: str, task: TaskData | None = None) -> Path:
    """One baseline run. spec.options: class_weight ("balanced" | "none"), C."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    task = task or load_task(spec.task)
    train = task.train(spec.n_train, spec.seed)
    test = task.test(spec.n_eval)
    class_weight = spec.options["class_weight"]
    labels_seen = sorted({e.label for e in train})
    # words need spaces: Chinese/Japanese text is one "word" per clause, so those tasks use character 1-3-grams
    cjk = task.config.language in ("zh", "ja")
    features = {"analyzer": "char", "ngram_range": (1, 3)} if cjk else {"ngram_range": (1, 2)}
    t0 = time.perf_counter()
    if len(labels_seen) == 1:  # logistic regression needs two classes; a constant predictor is the honest answer
        preds = [labels_seen[0]] * len(test)
        train_s, eval_s = 0.0, 0.0
    else:
        clf = make_pipeline(
            TfidfVectorizer(**features, sublinear_tf=True, min_df=1, max_features=200_000),
            LogisticRegression(C=spec.options["C"], max_iter=2000, random_state=spec.seed,
                               class_weight=None if class_weight == "none" else class_weight),
        )
        clf.fit([e.text for e in train], [e.label for e in train])
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        preds = list(clf.predict([e.text for e in test]))
        eval_s = time.perf_counter() - t1
    return finish_run(spec, task, test, preds, results_dir=results_dir,
               model_id="tfidf(char 1-3gram)+logreg" if cjk else "tfidf(1-2gram)+logreg",
               backend="sklearn", timing={"train_s": round(train_s, 4), "eval_s": round(eval_s, 4)},
               config={**({"analyzer": "char", "ngram_range": [1, 3]} if cjk else {"ngram_range": [1, 2]}),
                       "sublinear_tf": True, **spec.options},
               n_train_examples=len(train))


BASELINE_OPTIONS = ("class_weight", "C")


def validate_options(options: dict) -> None:
    """Called by `eval/sweep.py --dry-run`, so a typo fails before a sweep starts rather than mid-way."""
    unknown = sorted(set(options) - set(BASELINE_OPTIONS))
    missing = [k for k in BASELINE_OPTIONS if k not in options]
    if unknown or missing:
        raise ValueError(f"baseline options are {list(BASELINE_OPTIONS)}; unknown {unknown}, missing {missing}")
    if options["class_weight"] not in ("balanced", "none"):
        raise ValueError(f"class_weight is 'balanced' or 'none', got {options['class_weight']!r}")
    if not isinstance(options["C"], (int, float)) or isinstance(options["C"], bool) or options["C"] <= 0:
        raise ValueError(f"C is a positive number (inverse regularisation strength), got {options['C']!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    add_run_args(ap)
    ap.add_argument("--class-weight", choices=["balanced", "none"], nargs="+", default=["balanced", "none"],
                    help="balanced class weights, unweighted, or both (default: both)")
    ap.add_argument("--C", type=float, default=10.0, help="inverse regularisation strength")
    args = ap.parse_args(argv)
    try:
        task = load_task(**data_kwargs(args))
        specs = []
        for cw in args.class_weight:
            method = "tfidf-lr" + ("-balanced" if cw == "balanced" else "")
            specs += iter_specs("baseline", task.name, "tfidf-lr", method, args.n_train, args.seeds, args.n_eval,
                                {"class_weight": cw, "C": args.C})
        run_all(specs, args.results_dir, args.overwrite, lambda spec: run_one(spec, args.results_dir, task),
                desc="baseline runs")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
