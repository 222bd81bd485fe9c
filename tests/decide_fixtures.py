"""Synthetic run records for the decision layer (leaderboard, compare, recommend, report): real records written by
eval.run.records.finish_run on a tiny local task, with predictions whose accuracy is set exactly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from eval.inputs.data import TaskData, load_task
from eval.inputs.dataref import data_ref
from eval.run.records import RunSpec, finish_run

# (track, model, method, n_train, seed) -> accuracy; "collapse" = always the majority label; "skew" = 96% one label
RUNS: dict[tuple, float | str] = {
    ("baseline", "tfidf-lr", "tfidf-lr", 16, 0): 0.55, ("baseline", "tfidf-lr", "tfidf-lr", 16, 1): 0.6,
    ("baseline", "tfidf-lr", "tfidf-lr", 64, 0): 0.7, ("baseline", "tfidf-lr", "tfidf-lr", 64, 1): 0.7,
    ("encoders", "minilm-l6", "full", 16, 0): 0.5, ("encoders", "minilm-l6", "full", 16, 1): 0.55,
    ("encoders", "minilm-l6", "full", 64, 0): 0.75, ("encoders", "minilm-l6", "full", 64, 1): 0.7,
    ("encoders", "minilm-l6", "full", 256, 0): 0.95, ("encoders", "minilm-l6", "full", 256, 1): 0.95,
    ("encoders", "minilm-l6", "setfit", 256, 0): 0.9375,
    ("encoders", "minilm-l6", "lora", 64, 0): "collapse",
    ("encoders", "minilm-l6", "lora", 256, 0): "skew",
    ("prompting", "hf/qwen", "zeroshot", 0, 0): 0.8,
}


def write_task(folder: Path, n: int = 400) -> TaskData:
    """A local CSV task (an ad-hoc --data task: its records carry the data reference with the file's hash)."""
    path = folder / "toy.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([f"review number {i} says {'good' if i % 5 < 3 else 'bad'}",
                        "pos" if i % 5 < 3 else "neg"])
    return load_task("toy", data=str(path), text_column="text", label_column="label")


def predictions(task: TaskData, how: float | str, key: tuple) -> tuple[list[str], list[dict] | None]:
    test = task.test()
    gold = [e.label for e in test]
    other = {"pos": "neg", "neg": "pos"}
    if how == "collapse":
        return ["pos"] * len(test), None
    if how == "skew":
        preds = ["pos"] * len(test)
        preds[gold.index("neg")] = "neg"
        return preds, None
    k = round(float(how) * len(test))
    # the same item order for every run, so better runs are right where worse ones are (as real runs mostly are)
    order = np.random.default_rng(7).permutation(len(test))
    right = set(order[:k].tolist())
    preds = [g if i in right else other[g] for i, g in enumerate(gold)]
    if key[0] == "prompting":  # an LLM: its wrong answers on two items are unparseable, with a reason
        fields = [{"status": "valid"} for _ in preds]
        wrong = [i for i in range(len(preds)) if i not in right][:2]
        for i, status in zip(wrong, ("no_label", "truncated")):
            preds[i] = "[invalid]"
            fields[i] = {"status": status}
        return preds, fields
    return preds, None


def write_results(folder: Path) -> tuple[Path, TaskData]:
    task = write_task(folder)
    results = folder / "results"
    for key, how in RUNS.items():
        track, model, method, n, seed = key
        spec = RunSpec(track=track, task=task.name, model=model, method=method, n_train=n, seed=seed,
                       data=data_ref(data=str(folder / "toy.csv"), text_column="text", label_column="label"))
        preds, fields = predictions(task, how, key)
        raws = [p if p != "[invalid]" else "the review is" for p in preds] if track == "prompting" else None
        finish_run(spec, task, task.test(), preds, results_dir=results, model_id=model, backend="test",
                   timing={"train_s": 0.0 if track == "prompting" else 10.0 * (n + 1), "eval_s": 0.5},
                   raws=raws, n_train_examples=n, row_fields=fields, cost={"device": "cpu", "dtype": "float32"})
    return results, task
