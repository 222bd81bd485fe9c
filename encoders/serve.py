"""The encoder track's predictor for `python -m eval.serve` (eval/tracks.py `predictor`): a run's saved model.

Full fine-tuning, LoRA / soft prompts (the peft adapter over its base), pooled heads, the LLM-with-head arm and SetFit
load from the run's artifacts folder (encoders/modeling.py `save_run_model`, encoders/setfit_method.py `save`) and
predict as the evaluation did (encoders/train.py `predict`): the same tokenizer, truncation to the run's
`max_length`, length-sorted batches of its `eval_batch_size` padded to the longest text, the same autocast dtype.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


class EncoderPredictor:
    score_kind = "probability"

    def __init__(self, record: dict, artifacts: Path) -> None:
        import torch

        from eval.run.hardware import configure_threads

        meta = json.loads((artifacts / "run.json").read_text())
        cfg = record.get("config") or {}
        self.labels, self.meta, self.setfit = list(meta["labels"]), meta, meta.get("method") == "setfit"
        self.max_length = int(meta["max_length"])
        self.batch_size = int(cfg.get("eval_batch_size") or 64)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        threads = configure_threads() if self.device.type == "cpu" else None
        if self.setfit:
            from safetensors.torch import load_file
            from sentence_transformers import SentenceTransformer

            from encoders.setfit_method import HEAD_FILE

            self.body = SentenceTransformer(str(artifacts / "model"), device=str(self.device))
            self.head = load_file(str(artifacts / HEAD_FILE))
            self.tok = self.body.tokenizer
            self.context = int(getattr(self.body, "max_seq_length", None) or self.max_length)
            self.dtype = None
        else:
            from encoders.config import EncoderConfig
            from encoders.loop import autocast_dtype
            from encoders.modeling import load_run_model

            # the record's seed also for artifacts saved before run.json kept it (encoders/modeling.load_run_model)
            self.model, self.tok, _ = load_run_model(artifacts, seed=int(record["seed"]))
            self.model.to(self.device)
            precision = cfg.get("precision") or "auto"
            self.dtype = autocast_dtype(EncoderConfig(precision=precision), self.device)
            config = getattr(self.model, "config", None)
            self.context = int(getattr(config, "max_position_embeddings", None) or self.max_length)
        self.facts = {"loaded_from": str(artifacts), "method": meta.get("method"),
                      "base_model": meta.get("base_model"),
                      "max_length": self.max_length, "context_tokens": self.context, "device": str(self.device),
                      "autocast": str(self.dtype).removeprefix("torch.") if self.dtype else "float32 (none)",
                      "eval_batch_size": self.batch_size, "threads": threads}

    def _length(self, text: str) -> int:
        return len(self.tok(text, truncation=False)["input_ids"])

    def too_long(self, text: str) -> str | None:
        n = self._length(text)
        if n > self.context:
            return (f"the text has {n} tokens; this model's context is {self.context} tokens (the run read at most "
                    f"{self.max_length}, cutting longer texts): shorten it")
        return None

    def predict(self, texts: Sequence[str]) -> list[dict]:
        import torch

        texts = list(texts)
        if self.setfit:  # encoders/setfit_method.py: the body's embeddings, the logistic-regression head on them
            emb = torch.as_tensor(self.body.encode(texts, batch_size=self.batch_size, convert_to_numpy=True))
            scores = emb.double() @ self.head["coef"].double().T + self.head["intercept"].double()
            if scores.shape[1] == 1:  # binary: one column for the second class (sklearn: positive -> class 1)
                p1 = scores[:, 0].sigmoid()
                probs = torch.stack([1 - p1, p1], 1)
                best = (scores[:, 0] > 0).long().tolist()
            else:
                probs = scores.softmax(-1)
                best = scores.argmax(-1).tolist()
            names = [self.labels[c] for c in self.head["classes"].tolist()]
        else:
            from encoders.loop import encode, predict_logits

            data = encode(self.tok, texts, [0] * len(texts), self.max_length)
            logits = predict_logits(self.model, self.tok, data, self.batch_size, self.device, self.dtype)
            probs, names, best = logits.softmax(-1), self.labels, logits.argmax(-1).tolist()  # train.py predict
        out = []
        for text, row, b in zip(texts, probs.tolist(), best):
            out.append({"label": names[b], "scores": {n: round(p, 6) for n, p in zip(names, row)},
                        "status": "valid", "truncated": self._length(text) > self.max_length})
        return out


def predictor(record: dict, artifacts: Path) -> EncoderPredictor:
    from eval.serve.predictor import NoArtifacts

    if not (artifacts / "run.json").exists():
        raise NoArtifacts("the trained model", "--save-model")
    return EncoderPredictor(record, artifacts)
