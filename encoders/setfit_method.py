"""`--method setfit`: SetFit (Tunstall et al. 2022, arXiv 2209.11055) through the `setfit` library — contrastive
fine-tuning of a sentence-transformers body on pairs drawn from the labelled examples, then a logistic-regression
head on its embeddings. The strong encoder approach at 8–64 labels per class.

    python encoders/train.py --model minilm-l6 --method setfit --task drugs --n-train 64 --seeds 0 1

Same splits, search (encoders/search.py: the body's LR picked on a carved validation split) and record as every other
encoder method. The pair count is setfit's recipe (`--setfit-iterations` pairs per example, `--setfit-epochs`),
capped by `--max-steps`; it is not early-stopped. `--loss weighted-ce` gives the head balanced class weights.
Saved runs hold the body (safetensors) and the head's coefficients (safetensors), never a pickle.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from encoders.config import EncoderConfig
from eval.inputs.data import Example

HEAD_FILE = "head.safetensors"


def _require_setfit():
    try:
        import setfit
    except ImportError as exc:
        raise ImportError("--method setfit needs the setfit library: pip install 'tune-or-prompt[encoders]' "
                          "(or pip install setfit)") from exc
    return setfit


def fit(cfg: EncoderConfig, path: str, labels: list[str], train_exs: list[Example], val_exs: list[Example] | None,
        *, seed: int, device, progress: bool = False):
    """Train SetFit on train_exs; score val_exs when given. Returns (model, None, TrainResult)."""
    setfit = _require_setfit()
    from datasets import Dataset
    from transformers.utils import logging as hf_logging

    from encoders.loop import TrainResult
    from eval.scoring.metrics import accuracy, macro_f1

    hf_logging.set_verbosity_error()
    head = {"class_weight": "balanced"} if cfg.loss == "weighted-ce" else {}
    head["max_iter"] = 1000
    model = setfit.SetFitModel.from_pretrained(path, labels=list(labels), device=str(device), head_params=head,
                                               use_safetensors=True, trust_remote_code=cfg.trust_remote_code)
    data = Dataset.from_dict({"text": [e.text for e in train_exs], "label": [labels.index(e.label)
                                                                            for e in train_exs]})
    scratch = tempfile.TemporaryDirectory(prefix="setfit-")  # setfit wants an output_dir; nothing of it is kept
    args = setfit.TrainingArguments(
        output_dir=scratch.name, batch_size=cfg.batch_size, num_epochs=cfg.setfit_epochs,
        num_iterations=cfg.setfit_iterations,
        body_learning_rate=cfg.lr, max_steps=cfg.max_steps or -1, max_length=cfg.max_length, seed=seed,
        warmup_proportion=cfg.warmup_ratio, show_progress_bar=progress, report_to="none", save_strategy="no")
    trainer = setfit.Trainer(model=model, args=args, train_dataset=data)
    t0 = time.perf_counter()
    with scratch:
        trainer.train()
    train_s = time.perf_counter() - t0
    steps = int(trainer.st_trainer.state.global_step)  # setfit 1.x runs a sentence-transformers Trainer
    score = float("nan")
    history = []
    if val_exs is not None:
        preds = predict(model, [e.text for e in val_exs], cfg)
        gold = [e.label for e in val_exs]
        score = accuracy(gold, preds) if cfg.select_metric == "accuracy" else macro_f1(gold, preds, labels)
        history = [{"step": steps, f"val_{cfg.select_metric}": round(score, 5)}]
    result = TrainResult(steps=steps, best_step=steps, best_score=score, stopped_early=False, history=history,
                         train_s=train_s, examples_seen=len(train_exs))
    return model, None, result


def predict(model, texts: list[str], cfg: EncoderConfig) -> list[str]:
    return [str(x) for x in model.predict(list(texts), batch_size=cfg.eval_batch_size, use_labels=True)]


def save(model, out: Path, labels: list[str], cfg: EncoderConfig, base_path: str) -> Path:
    """Body as a sentence-transformers folder (safetensors) + the head's coefficients; no pickle."""
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    model.model_body.save(str(out / "model"), safe_serialization=True)
    head = model.model_head
    save_file({"coef": torch.tensor(head.coef_, dtype=torch.float32).contiguous(),
               "intercept": torch.tensor(head.intercept_, dtype=torch.float32).contiguous(),
               "classes": torch.tensor(head.classes_, dtype=torch.int64)}, str(out / HEAD_FILE))
    meta = {"labels": labels, "method": "setfit", "base_model": str(base_path), "model": cfg.model,
            "max_length": cfg.max_length, "peft": False, "pooling": "setfit"}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def classify(run_dir: Path, texts: list[str], meta: dict, batch_size: int = 32) -> list[tuple[str, float]]:
    """(label, probability) per text from a saved SetFit run (encoders/predict.py)."""
    import torch
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    body = SentenceTransformer(str(run_dir / "model"), device="cpu")
    head = load_file(str(run_dir / HEAD_FILE))
    emb = torch.as_tensor(body.encode(texts, batch_size=batch_size, convert_to_numpy=True))
    scores = emb.float() @ head["coef"].T + head["intercept"]
    if scores.shape[1] == 1:  # binary logistic regression: one column for the second class
        p1 = scores[:, 0].sigmoid()
        probs = torch.stack([1 - p1, p1], 1)
    else:
        probs = scores.softmax(-1)
    best = probs.max(-1)
    classes = head["classes"].tolist()
    return [(meta["labels"][classes[i]], float(p)) for p, i in zip(best.values.tolist(), best.indices.tolist())]
