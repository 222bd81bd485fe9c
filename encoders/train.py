"""Encoder track: fine-tune BERT / RoBERTa / DeBERTa / MiniLM classifiers across sample sizes.

    python encoders/train.py --config encoders/configs/minilm-l6_full.yaml --task drugs --loss weighted-ce \\
        --n-train 16 64 256 full --seeds 0 1
    python encoders/train.py --config encoders/configs/deberta-v3-base_lora.yaml --task sst2 \\
        --n-train 16 64 256 1024 full --seeds 0 1 2
    python encoders/train.py --config encoders/configs/bert-base-uncased_full.yaml --task sst2 --mlm-pretrain \\
        --llrd 0.8 --lr 5e-5
    python encoders/train.py --data reviews.csv --text-column text --label-column label --method lora --kfold 5

One record per (n_train, seed) through the harness (results/runs/<task>/encoders/), skipped if it exists unless
--overwrite; the model (or adapter) and its label mapping go to the run's artifacts folder for encoders/predict.py.
Stages: data -> (MLM pre-training) -> model for the method -> train with validation-based selection -> test -> record.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python encoders/train.py`: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders.config import EncoderConfig, default_config_file
from eval.inputs.data import Example, TaskData, load_task
from eval.inputs.dataref import data_ref, load_ref
from eval.inputs.sources import DataError
from eval.run.cli import add_data_args, add_run_args, data_kwargs, parse_track_args, values_with_role
from eval.run.distributed import accelerator, barrier, close
from eval.run.records import RunSpec, finish_run, output_dir, record_path
from eval.run.runner import one_by_one, track_cli
from eval.tracks import DataRef


def load_spec_task(spec: RunSpec) -> TaskData:
    """The task of a spec: a named task, or the ad-hoc files of its data reference (content hash checked)."""
    return load_ref(spec.task, spec.data)


# --- the track contract (eval/tracks.py) ----------------------------------------------------------------------------

Config = EncoderConfig


def config_from_options(model: str, method: str, options: dict) -> EncoderConfig:
    """A sweep block: built-in defaults < encoders/configs/<model>_<method>.yaml < the options."""
    return EncoderConfig.from_spec(model, method, options)


def make_spec(cfg: EncoderConfig, data: DataRef, n_train: int | str, seed: int, n_eval: int | None) -> RunSpec:
    return RunSpec(track="encoders", task=data.task, model=cfg.model, method=cfg.method, n_train=n_train, seed=seed,
                   n_eval=n_eval, options=cfg.options(), data=data.ref, runtime=values_with_role(cfg, "runtime"))


def config_from_spec(spec: RunSpec) -> EncoderConfig:
    return EncoderConfig.from_spec(spec.model, spec.method, {**spec.options, **spec.runtime})


def preflight(spec: RunSpec) -> list[str]:
    """Cheap checks before any work (configs and class signatures, no weights): methods this architecture cannot
    take under the installed libraries."""
    from encoders.modeling import prefix_problem

    cfg = config_from_spec(spec)
    problem = prefix_problem(cfg.model, cfg.trust_remote_code) if cfg.method == "prefix" else None
    return [problem] if problem else []


def doctor_checks(facts: dict) -> list:
    """Nothing of its own for `python -m eval.doctor`: torch and the device are the doctor's own checks."""
    return []


def command(model: str, method: str, task: str, n: int | str, seeds: str, n_eval: str, options: dict | None) -> str:
    """The arguments of this CLI that add the run; `options` (those that differ from the pair's defaults) as flags."""
    from eval.run.cli import flags

    return f"--task {task} --model {model} --method {method} --n-train {n} --seeds {seeds}{n_eval}{flags(options)}"


def fit(cfg: EncoderConfig, path: str, labels: list[str], train_exs: list[Example], val_exs: list[Example] | None,
        *, seed: int, device, progress: bool, accelerator=None, pooling: str | None = None):
    """Build the model for cfg.method and train it on train_exs, selecting on val_exs (None: no selection, train for
    the configured steps). Returns (model, tok, result)."""
    import torch

    from encoders.loop import encode, train
    from encoders.losses import balanced_class_weights, make_loss
    from encoders.modeling import build_classifier

    if cfg.method == "setfit":
        from encoders import setfit_method

        return setfit_method.fit(cfg, path, labels, train_exs, val_exs, seed=seed, device=device, progress=progress)
    torch.manual_seed(seed)  # the head's initialisation is part of the seed
    index = {lab: i for i, lab in enumerate(labels)}
    model, tok = build_classifier(cfg, path, labels, pooling)
    model.to(device)
    train_data = encode(tok, [e.text for e in train_exs], [index[e.label] for e in train_exs], cfg.max_length)
    val_data = None if val_exs is None else encode(tok, [e.text for e in val_exs], [index[e.label] for e in val_exs],
                                                   cfg.max_length)
    weights = balanced_class_weights(train_data.labels, len(labels)) if cfg.loss == "weighted-ce" else None
    loss_fn = make_loss(cfg.loss, class_weights=weights, rdrop_alpha=cfg.rdrop_alpha,
                        supcon_weight=cfg.supcon_weight, supcon_temperature=cfg.supcon_temperature)
    result = train(model, tok, train_data, val_data, cfg, loss_fn, seed=seed, device=device, progress=progress,
                   accelerator=accelerator)
    result.class_weights = weights
    return model, tok, result


def predict(model, tok, texts: list[str], labels: list[str], cfg: EncoderConfig, device) -> list[str]:
    from encoders.loop import autocast_dtype, encode, predict_logits

    if cfg.method == "setfit":
        from encoders.setfit_method import predict as setfit_predict

        return setfit_predict(model, texts, cfg)

    data = encode(tok, texts, [0] * len(texts), cfg.max_length)
    logits = predict_logits(model, tok, data, cfg.eval_batch_size, device, autocast_dtype(cfg, device))
    return [labels[i] for i in logits.argmax(-1).tolist()]


def cross_validate(cfg: EncoderConfig, path: str, task: TaskData, train_exs: list[Example], *, seed: int, device,
                   progress: bool) -> dict:
    """K-fold stratified CV on the training subset: train on K-1 folds (selecting on the fixed validation set),
    score the held-out fold. Reports mean ± std of macro-F1 and accuracy."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from eval.scoring.metrics import accuracy, macro_f1

    y = [e.label for e in train_exs]
    smallest = min(y.count(lab) for lab in set(y))
    if smallest < cfg.kfold:
        raise DataError(f"--kfold {cfg.kfold} needs at least {cfg.kfold} examples of every class in the training "
                        f"subset; the rarest has {smallest}. Use a larger --n-train or a smaller --kfold.")
    folds = []
    skf = StratifiedKFold(n_splits=cfg.kfold, shuffle=True, random_state=seed)
    for k, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y)):
        model, tok, _ = fit(cfg, path, task.labels, [train_exs[i] for i in tr], task.validation, seed=seed + k,
                            device=device, progress=progress)
        preds = predict(model, tok, [train_exs[i].text for i in te], task.labels, cfg, device)
        gold = [y[i] for i in te]
        folds.append({"fold": k, "n_test": len(te), "macro_f1": macro_f1(gold, preds, task.labels),
                      "accuracy": accuracy(gold, preds)})
    summary = {"k": cfg.kfold, "folds": folds}
    for m in ("macro_f1", "accuracy"):
        values = [f[m] for f in folds]
        summary[f"{m}_mean"], summary[f"{m}_std"] = float(np.mean(values)), float(np.std(values, ddof=1))
    print(f"{cfg.kfold}-fold CV: macro-F1 {summary['macro_f1_mean']:.3f} ± {summary['macro_f1_std']:.3f}",
          file=sys.stderr)
    return summary


def run_one(spec: RunSpec, results_dir: str, task: TaskData | None = None, progress: bool = True) -> Path:
    """One run from its spec alone (the sweep contract in eval/tracks.py). Returns the record path."""
    import torch

    from encoders.loop import autocast_dtype
    from encoders.mlm import mlm_pretrain
    from encoders.modeling import choose_pooling, count_parameters, locate_model, save_run_model
    from encoders.search import search_and_fit

    cfg = config_from_spec(spec).resolved()
    task = task or load_spec_task(spec)
    train_exs, test = task.train(spec.n_train, spec.seed), task.test(spec.n_eval)
    acc = accelerator()  # None unless launched as several processes (accelerate launch / torchrun)
    if acc is not None and (cfg.mlm_pretrain or cfg.kfold):
        raise ValueError("--mlm-pretrain and --kfold run in one process: launch without accelerate "
                         "(data parallelism covers the fine-tuning stage)")
    device = acc.device if acc is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from eval.run.hardware import configure_threads

    threads = configure_threads() if device.type == "cpu" else None  # the idle usable cores (docs/speed.md)
    out = output_dir(spec, results_dir)
    path, source = locate_model(cfg.model)

    mlm = None
    if cfg.mlm_pretrain:  # unlabelled in-domain text; without any, the task's train texts (labels unused)
        texts = task.unlabelled or [e.text for e in task.pool]
        mlm = mlm_pretrain(path, texts, cfg, out / "mlm", seed=spec.seed, device=device, progress=progress)
        mlm["source"] = "task.unlabelled" if task.unlabelled else "train pool texts"
        path = str(out / "mlm")

    pooling, pooling_why = ("setfit", "sentence-transformers body (setfit)") if cfg.method == "setfit" \
        else choose_pooling(cfg, path)
    fitted = search_and_fit(  # LR and steps chosen on a split of train_exs (encoders/search.py)
        cfg, train_exs, seed=spec.seed, steps_chosen=cfg.method != "setfit", log=lambda m: print(m, file=sys.stderr),
        fit=lambda c, tr, va: fit(c, path, task.labels, tr, va, seed=spec.seed, device=device, progress=progress,
                                  accelerator=acc, pooling=None if cfg.method == "setfit" else pooling))
    model, tok, result = fitted.model, fitted.tok, fitted.result
    cv = cross_validate(dataclasses.replace(cfg, lr=fitted.search["chosen"]["lr"]), path, task, train_exs,
                        seed=spec.seed, device=device, progress=progress) if cfg.kfold else None
    if acc is not None and not acc.is_main_process:  # one record per run: the main process evaluates and writes
        barrier()
        return record_path(spec, results_dir)
    t0 = time.perf_counter()
    preds = predict(model, tok, [e.text for e in test], task.labels, cfg, device)
    eval_s = time.perf_counter() - t0
    if cfg.save_model and cfg.method == "setfit":
        from encoders.setfit_method import save as save_setfit

        save_setfit(model, out, task.labels, cfg, path)
    elif cfg.save_model:
        save_run_model(model, tok, out, task.labels, cfg, path, pooling, seed=spec.seed)

    training = {"steps": result.steps, "search": fitted.search, "pooling": pooling, "pooling_reason": pooling_why,
                "examples_seen": result.examples_seen, "class_weights": result.class_weights,
                "train_s_includes": "the whole learning-rate search and the refit",
                "parameters": count_parameters(model.model_body if cfg.method == "setfit" else model),
                "history": result.history}
    extra = {"training": training, "model_source": source, "mlm": mlm, "processes": acc.num_processes if acc else 1,
             "threads": threads}
    if cv is not None:
        extra["kfold"] = cv
    record = finish_run(spec, task, test, preds, results_dir=results_dir, model_id=path, backend="transformers",
                        timing={"train_s": round(result.train_s, 2), "eval_s": round(eval_s, 3)},
                        config={**dataclasses.asdict(cfg), "device": str(device)},
                        n_train_examples=len(train_exs), extra=extra,
                        cost={"device": str(device), "dtype": str(autocast_dtype(cfg, device) or "float32")})
    barrier()  # the other processes of a data-parallel run wait for this record
    return record


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    add_run_args(ap)
    defaults = EncoderConfig.__dataclass_fields__

    def find_config(known: argparse.Namespace) -> Path | None:
        """encoders/configs/<model>_<method>.yaml holds the tuned defaults for that pair."""
        return default_config_file(known.model or defaults["model"].default,
                                   known.method or defaults["method"].default)

    cfg, args = parse_track_args(EncoderConfig, ap, argv, "encoder options", find_config)

    def build() -> tuple[list[RunSpec], TaskData]:
        task = load_task(**data_kwargs(args))
        data = DataRef(task.name, data_ref(**data_kwargs(args)))
        return [make_spec(cfg, data, n, seed, args.n_eval) for n in args.n_train for seed in args.seeds], task

    run = one_by_one(lambda spec, task: run_one(spec, args.results_dir, task), args.results_dir, args.overwrite,
                     desc=f"{cfg.model} {cfg.method} {cfg.loss} runs", debug=args.debug)
    return track_cli(build, run, results_dir=args.results_dir, dry_run=args.dry_run, debug=args.debug,
                     done=close)


if __name__ == "__main__":
    raise SystemExit(cli())
