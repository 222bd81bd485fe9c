"""A classification head that reads the representation the checkpoint was trained to produce.

`AutoModelForSequenceClassification` reads the first token ([CLS] through BERT's pooler, or MPNet's first-token
head). Sentence-transformers checkpoints (all-MiniLM-L6-v2, all-mpnet-base-v2) were trained to produce a *mean* of
the token states (their `modules.json` lists a `Pooling` module whose `1_Pooling/config.json` says
`pooling_mode_mean_tokens`), so their first-token output starts nearly uninformative and a fresh head on it has to
learn the pooling from a handful of labels. docs/encoders.md has the details and the measured effect.

    pooling = checkpoint_pooling(path)        # "mean" / "cls" / "max" for a sentence-transformers folder, else None
    model = PooledClassifier.from_base(path, labels, pooling)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}
HEAD_FILE = "classifier.safetensors"
META_FILE = "pooled_classifier.json"


def checkpoint_pooling(path: str | Path) -> str | None:
    """The pooling a sentence-transformers checkpoint folder was trained with, or None when `path` is not one
    (a plain BERT/RoBERTa/DeBERTa keeps its own head). Read from modules.json and the Pooling module's config."""
    root = Path(path)
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return None
    modules = json.loads(modules_file.read_text())
    pooling = [m for m in modules if str(m.get("type", "")).endswith("models.Pooling")]
    if not pooling:
        return None
    cfg_file = root / pooling[0].get("path", "") / "config.json"
    if not cfg_file.is_file():
        return "mean"  # sentence-transformers' Pooling default
    cfg = json.loads(cfg_file.read_text())
    modes = [mode for key, mode in POOLING_MODES.items() if cfg.get(key)]
    if len(modes) != 1:  # mean_sqrt_len or a concatenation of several: not a single vector we reproduce
        raise ValueError(f"{cfg_file} combines pooling modes {sorted(k for k, v in cfg.items() if v is True)}; "
                         "pass --pooling mean, cls or head explicitly")
    return modes[0]


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per text from the last layer's token states, ignoring padding (as sentence-transformers does)."""
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class PooledClassifier(torch.nn.Module):
    """Encoder body (AutoModel) + the checkpoint's pooling + dropout + a linear `classifier`.

    Returns transformers' SequenceClassifierOutput, so the training loop, the losses, peft LoRA (as a custom model,
    with `classifier` in modules_to_save) and prediction treat it like any *ForSequenceClassification.
    """

    def __init__(self, body, num_labels: int, pooling: str = "mean", dropout: float | None = None):
        super().__init__()
        self.body = body
        self.pooling = pooling
        self.config = body.config  # num_labels / id2label live here, as on a HF classifier
        hidden = body.config.hidden_size
        p = dropout if dropout is not None else getattr(body.config, "hidden_dropout_prob", 0.1)
        self.dropout = torch.nn.Dropout(p)
        self.classifier = torch.nn.Linear(hidden, num_labels)
        std = getattr(body.config, "initializer_range", 0.02)  # the init HF gives a fresh classifier
        torch.nn.init.normal_(self.classifier.weight, std=std)
        torch.nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=False, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        out = self.body(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states,
                        **{k: v for k, v in kwargs.items() if k in ("token_type_ids", "inputs_embeds")})
        if attention_mask is None:
            attention_mask = torch.ones(out.last_hidden_state.shape[:2], device=out.last_hidden_state.device)
        logits = self.classifier(self.dropout(pool(out.last_hidden_state, attention_mask, self.pooling)))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)

    def get_input_embeddings(self):
        return self.body.get_input_embeddings()

    @classmethod
    def from_base(cls, path: str | Path, labels: list[str], pooling: str, trust_remote_code: bool = False):
        from transformers import AutoModel

        kw = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
        try:  # the architecture's pooler is unused here: do not build (or train) it
            body = AutoModel.from_pretrained(path, add_pooling_layer=False, **kw)
        except TypeError:
            body = AutoModel.from_pretrained(path, **kw)
        body.config.num_labels = len(labels)
        body.config.id2label = dict(enumerate(labels))
        body.config.label2id = {lab: i for i, lab in enumerate(labels)}
        return cls(body, len(labels), pooling)

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True, **_) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.body.save_pretrained(folder, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()}, str(folder / HEAD_FILE))
        (folder / META_FILE).write_text(json.dumps({"pooling": self.pooling}) + "\n")

    @classmethod
    def load(cls, folder: str | Path, labels: list[str], trust_remote_code: bool = False) -> PooledClassifier:
        """A model saved with save_pretrained (full fine-tuning / freeze-k runs)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        model = cls.from_base(folder, labels, meta["pooling"], trust_remote_code)
        model.classifier.load_state_dict(load_file(str(folder / HEAD_FILE)))
        return model
