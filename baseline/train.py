"""The reference line on every leaderboard: TF-IDF + logistic regression on the same subsets as every track.

    python baseline/train.py --task drugs --n-train 16 64 256 full --seeds 0 1
    python baseline/train.py --data reviews.csv --text-column text --label-column label --class-weight none

Writes records like any track (track `baseline`), so a fancy model has something real to beat.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python baseline/train.py` puts baseline/ on sys.path, not the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.inputs.data import TaskData, load_task  # noqa: E402
from eval.inputs.dataref import data_ref, load_ref  # noqa: E402
from eval.run.cli import add_data_args, add_run_args, data_kwargs, option, parse_track_args, values_with_role  # noqa: E402
from eval.run.records import RunSpec, finish_run  # noqa: E402
from eval.run.runner import one_by_one, track_cli  # noqa: E402
from eval.tracks import DataRef  # noqa: E402

METHODS = {"balanced": "tfidf-lr-balanced", "none": "tfidf-lr"}


@dataclass
class Config:
    """The baseline's config. `method` names the run (by default from the class weight); it is not a setting."""

    model: str = option("tfidf-lr", "the baseline's name on the leaderboard", role="spec")
    method: str | None = option(None, "run name (default: tfidf-lr-balanced or tfidf-lr)", role="spec")
    class_weight: str = option("balanced", "balanced class weights or none", choices=["balanced", "none"])
    C: float = option(10.0, "inverse regularisation strength")
    save_model: bool = option(False, "keep the fitted model (JSON + safetensors, no pickle) in the run's artifacts "
                              "folder, for python -m eval.serve", role="runtime")

    def __post_init__(self) -> None:
        if self.class_weight not in METHODS:
            raise ValueError(f"class_weight is 'balanced' or 'none', got {self.class_weight!r}")
        if not isinstance(self.C, (int, float)) or isinstance(self.C, bool) or self.C <= 0:
            raise ValueError(f"C is a positive number (inverse regularisation strength), got {self.C!r}")
        self.C = float(self.C)
        self.method = self.method or METHODS[self.class_weight]


def config_from_options(model: str, method: str, options: dict) -> Config:
    """A sweep block: the class weight the method name implies unless the options set it."""
    known = {f.name for f in dataclasses.fields(Config)} - {"model", "method"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown baseline options {unknown}; the options are {sorted(known)}")
    implied = "balanced" if method.endswith("-balanced") else "none"
    return Config(model=model, method=method, **{"class_weight": implied, **options})


def make_spec(cfg: Config, data: DataRef, n_train: int | str, seed: int, n_eval: int | None) -> RunSpec:
    return RunSpec(track="baseline", task=data.task, model=cfg.model, method=str(cfg.method), n_train=n_train,
                   seed=seed, n_eval=n_eval, options=values_with_role(cfg, "result"), data=data.ref,
                   runtime=values_with_role(cfg, "runtime"))


def config_from_spec(spec: RunSpec) -> Config:
    return Config(model=spec.model, method=spec.method, **{**spec.options, **spec.runtime})


def preflight(spec: RunSpec) -> list[str]:
    """Nothing beyond the harness's checks (eval/run/preflight.py): scikit-learn is in the base install and the
    baseline loads no model."""
    return []


def doctor_checks(facts: dict) -> list:
    """Nothing of its own for `python -m eval.doctor`: scikit-learn is in the base install."""
    return []


def command(model: str, method: str, task: str, n: int | str, seeds: str, n_eval: str, options: dict | None) -> str:
    """The arguments of this CLI that add the run (the method names the class weight)."""
    cw = "balanced" if method.endswith("-balanced") else "none"
    return f"--task {task} --n-train {n} --seeds {seeds} --class-weight {cw}{n_eval}"


def run_one(spec: RunSpec, results_dir: str, task: TaskData | None = None) -> Path:
    """One baseline run. spec.options: class_weight ("balanced" | "none"), C."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    task = task or load_ref(spec.task, spec.data)
    train = task.train(spec.n_train, spec.seed)
    test = task.test(spec.n_eval)
    class_weight = spec.options["class_weight"]
    labels_seen = sorted({e.label for e in train})
    # words need spaces: Chinese/Japanese text is one "word" per clause, so those tasks use character 1-3-grams
    cjk = task.config.language in ("zh", "ja")
    features = {"analyzer": "char", "ngram_range": (1, 3)} if cjk else {"ngram_range": (1, 2)}
    t0 = time.perf_counter()
    clf = None
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
    if spec.runtime.get("save_model"):  # no pickle: vocabulary, idf and coefficients as data (baseline/model.py)
        from baseline.model import save
        from eval.run.records import output_dir

        save(clf, output_dir(spec, results_dir), labels_seen, constant=None if clf else labels_seen[0])
    return finish_run(spec, task, test, preds, results_dir=results_dir,
                      model_id="tfidf(char 1-3gram)+logreg" if cjk else "tfidf(1-2gram)+logreg",
                      backend="sklearn", timing={"train_s": round(train_s, 4), "eval_s": round(eval_s, 4)},
                      config={**({"analyzer": "char", "ngram_range": [1, 3]} if cjk else {"ngram_range": [1, 2]}),
                              "sublinear_tf": True, **spec.options},
                      n_train_examples=len(train), cost={"device": "cpu", "dtype": "float64"})


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    add_run_args(ap)
    ap.add_argument("--class-weight", choices=["balanced", "none"], nargs="+", default=["balanced", "none"],
                    help="balanced class weights, unweighted, or both: one run each (default: both)")
    cfg, args = parse_track_args(Config, ap, argv, "baseline options", lambda known: None,
                                 skip=("model", "method", "class_weight"))

    def build() -> tuple[list[RunSpec], TaskData]:
        task = load_task(**data_kwargs(args))
        data = DataRef(task.name, data_ref(**data_kwargs(args)))
        return [make_spec(dataclasses.replace(cfg, class_weight=cw, method=None), data, n, seed, args.n_eval)
                for cw in args.class_weight for n in args.n_train for seed in args.seeds], task

    run = one_by_one(lambda spec, task: run_one(spec, args.results_dir, task), args.results_dir, args.overwrite,
                     desc="baseline runs", debug=args.debug)
    return track_cli(build, run, results_dir=args.results_dir, dry_run=args.dry_run, debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(cli())
