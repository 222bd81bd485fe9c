"""The encoder track's one config: a typed dataclass. `--config encoders/configs/<model>_<method>.yaml` gives defaults,
the command line wins, unknown keys fail (eval.run.cli.parse_config).

Settings left at None are resolved from the method (`resolved()`), so the record's options hold the effective value,
not "whatever the default was that day".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from eval.run.cli import option as _f  # one field helper for every track's config

METHODS = ("full", "lora", "ptuning", "prompt-tuning", "prefix", "freeze-k", "setfit")
LOSSES = ("ce", "weighted-ce", "rdrop", "supcon")
SELECT_METRICS = ("macro_f1", "accuracy", "loss")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
POOLINGS = ("auto", "mean", "cls", "max", "head")

# The learning-rate search every training-based run does by default (docs/encoders.md, "same tuning effort"): three
# values around each method's usual rate, about half an order of magnitude apart. LoRA and soft prompts train few
# parameters from scratch and need a far higher LR than full fine-tuning (AdaLoRA's DeBERTa-v3 SST-2 script: 8e-4).
# SetFit's value is the body's rate of its contrastive phase (setfit's default 2e-5).
DEFAULT_LR_GRID = {"full": (2e-5, 5e-5, 1.5e-4), "freeze-k": (5e-5, 2e-4, 5e-4), "lora": (3e-4, 1e-3, 3e-3),
                   "ptuning": (1e-4, 5e-4, 2e-3), "prompt-tuning": (3e-4, 1e-3, 3e-3),
                   "prefix": (3e-4, 1e-3, 3e-3), "setfit": (1e-5, 3e-5, 1e-4)}

@dataclass
class EncoderConfig:
    model: str = _f("minilm-l6", "alias in eval/models.yaml (bert-base-uncased, deberta-v3-base, minilm-l6, …), "
                    "any HF id, or a local model folder", role="spec")
    method: str = _f("full", "what is trained", choices=METHODS, role="spec")
    loss: str = _f("ce", "training loss", choices=LOSSES)
    # --- optimisation: scaled to the sample size, so n=16 still gets enough steps --------------------------------
    lr: float | None = _f(None, "peak learning rate (of the head when --llrd < 1). Given: no search. None: pick it "
                          "from --lr-grid on a validation split carved from the training subset")
    lr_grid: list[float] | None = _f(None, f"learning rates tried when --lr is not given; None: per method "
                                     f"{ {k: list(v) for k, v in DEFAULT_LR_GRID.items()} }")
    val_fraction: float = _f(0.25, "share of the training subset held out (stratified) to pick the LR and the step "
                             "count; the test set is never used")
    search: str = _f("auto", "auto: search --lr-grid only when the validation split can detect a --search-delta "
                     "difference (else the grid's middle value, the method's usual rate; the step count is still "
                     "chosen on the split); grid: always search", choices=["auto", "grid"])
    search_delta: float = _f(0.10, "--search auto: the accuracy difference the validation split must be able to "
                             "detect (two-sided 0.05, power 0.8) before an LR search is worth its cost")
    refit: bool = _f(True, "after the search, retrain on the whole training subset with the chosen LR and step count "
                     "(off: keep the search's best checkpoint, trained on the rest of the subset)")
    llrd: float = _f(1.0, "layer-wise LR decay: each layer down gets lr x llrd (1.0: off; 0.8 in "
                     "docs/reference-experiments.md D)")
    epochs: float = _f(10.0, "epochs over the training subset (an upper bound with early stopping)")
    min_steps: int = _f(100, "at least this many optimiser steps, whatever n is (small n needs steps, not epochs)")
    max_steps: int | None = _f(None, "hard cap on optimiser steps (None: no cap)")
    batch_size: int = _f(16, "training batch size")
    grad_accum: int = _f(1, "gradient accumulation steps")
    eval_batch_size: int = _f(64, "batch size for validation and test predictions", role="runtime")
    weight_decay: float = _f(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    warmup_ratio: float = _f(0.1, "linear warmup over this share of the steps, then linear decay")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0: off)")
    max_length: int = _f(256, "tokens per text; longer texts are truncated")
    group_by_length: bool = _f(True, "batch texts of similar length together (less padding)")
    precision: str = _f("auto", "auto: bf16 autocast on a GPU that supports it, else fp32. fp16 is refused for "
                        "DeBERTa-v3 (it overflows)", choices=PRECISIONS)
    # --- model selection -----------------------------------------------------------------------------------------
    select_metric: str = _f("macro_f1", "validation metric for model selection / early stopping",
                            choices=SELECT_METRICS)
    evals: int = _f(10, "validation evaluations spread evenly over the run")
    patience: int = _f(4, "stop after this many evaluations without improvement (0: never stop early)")
    kfold: int = _f(0, "also run K-fold stratified cross-validation on the training subset (0: off)")
    # --- losses --------------------------------------------------------------------------------------------------
    rdrop_alpha: float = _f(1.0, "R-Drop: weight of the symmetric KL between two dropout passes")
    supcon_weight: float = _f(0.1, "SupCon: loss = (1-w)·CE + w·SupCon (experiment A: 0.1)")
    supcon_temperature: float = _f(0.07, "SupCon temperature")
    # --- methods -------------------------------------------------------------------------------------------------
    pooling: str = _f("auto", "what the head reads. auto: the pooling a sentence-transformers checkpoint was trained "
                      "with (modules.json), else the architecture's own head; mean / cls / max; head: the "
                      "architecture's", choices=POOLINGS)
    setfit_iterations: int = _f(20, "SetFit: contrastive pairs generated per training example (setfit's "
                                "num_iterations)")
    setfit_epochs: int = _f(1, "SetFit: epochs over the pairs")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha")
    lora_dropout: float = _f(0.05, "LoRA dropout")
    lora_targets: list[str] | None = _f(None, "LoRA target modules (None: per architecture, e.g. query/value, "
                                        "DeBERTa query_proj/value_proj, DistilBERT q_lin/v_lin)")
    num_virtual_tokens: int = _f(20, "virtual tokens for ptuning / prompt-tuning / prefix")
    prompt_encoder_hidden: int = _f(128, "P-tuning prompt encoder hidden size")
    freeze_k: int = _f(2, "freeze-k: train only the top k layers and the head")
    # --- two-stage domain adaptation -----------------------------------------------------------------------------
    mlm_pretrain: bool = _f(False, "first continue masked-LM pre-training on unlabelled in-domain text")
    mlm_steps: int = _f(200, "MLM optimiser steps")
    mlm_lr: float = _f(5e-5, "MLM learning rate")
    mlm_probability: float = _f(0.15, "share of tokens masked")
    mlm_max_texts: int = _f(20000, "use at most this many unlabelled texts")
    # --- housekeeping --------------------------------------------------------------------------------------------
    save_model: bool = _f(True, "save the model / adapter and label mapping in the run's artifacts folder",
                          role="runtime")
    trust_remote_code: bool = _f(False, "run code shipped with a hub model (off unless you trust it)", role="runtime")

    def __post_init__(self) -> None:
        for name, allowed in (("method", METHODS), ("loss", LOSSES), ("select_metric", SELECT_METRICS),
                              ("precision", PRECISIONS), ("pooling", POOLINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        checks = [(self.batch_size >= 1, "--batch-size must be >= 1"), (self.grad_accum >= 1, "--grad-accum >= 1"),
                  (self.min_steps >= 1, "--min-steps must be >= 1"), (self.evals >= 1, "--evals must be >= 1"),
                  (0 < self.llrd <= 1, "--llrd must be in (0, 1]"), (self.max_length >= 8, "--max-length >= 8"),
                  (self.kfold == 0 or self.kfold >= 2, "--kfold must be 0 (off) or >= 2"),
                  (0 <= self.supcon_weight <= 1, "--supcon-weight must be in [0, 1]"),
                  (self.freeze_k >= 0, "--freeze-k must be >= 0"),
                  (self.method != "setfit" or self.loss in ("ce", "weighted-ce"),
                   f"--method setfit trains its body with setfit's contrastive loss, not --loss {self.loss}: use "
                   "--loss ce, or weighted-ce for a class-balanced head"),
                  (0 < self.val_fraction < 1, "--val-fraction must be in (0, 1)"),
                  (0 < self.search_delta < 1, "--search-delta is an accuracy difference in (0, 1)"),
                  (self.lr is None or self.lr > 0, "--lr must be > 0"),
                  (not self.lr_grid or all(x > 0 for x in self.lr_grid), "--lr-grid values must be > 0"),
                  (self.setfit_iterations >= 1 and self.setfit_epochs >= 1, "--setfit-iterations/epochs >= 1")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def resolved(self) -> EncoderConfig:
        """A copy with method-dependent defaults filled in (what the run really uses): the LR grid of the search,
        or, with --lr given, that one value (lr stays set only when there is no search)."""
        grid = [self.lr] if self.lr is not None else list(self.lr_grid or DEFAULT_LR_GRID[self.method])
        return dataclasses.replace(self, lr_grid=grid)

    @property
    def searches(self) -> bool:
        return self.lr is None and len(self.resolved().lr_grid) > 1

    def options(self) -> dict:
        """What goes into RunSpec.options: every setting that changes the result."""
        return {**{k: v for k, v in dataclasses.asdict(self.resolved()).items() if k not in NOT_RESULT}, **RETIRED}

    @classmethod
    def from_spec(cls, model: str, method: str, options: dict) -> EncoderConfig:
        """Built-in defaults < encoders/configs/<model>_<method>.yaml (when it exists) < `options`."""
        known = {f.name for f in dataclasses.fields(cls)}
        changed = sorted(k for k, v in RETIRED.items() if k in options and options[k] != v)
        if changed:
            raise ValueError(f"encoder options {changed} are retired: they can only be "
                             f"{[RETIRED[k] for k in changed]}")
        options = {k: v for k, v in options.items() if k not in RETIRED}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown encoder options {unknown}; known: {sorted(known - set(NOT_RESULT))} "
                             "(python encoders/train.py --help explains each)")
        merged = {**config_file_values(model, method), **options}
        from eval.run.cli import coerce

        values = {k: v for k, v in merged.items() if k in known - {"model", "method"}}
        return cls(model=model, method=method, **coerce(cls, values))


# options that no longer exist, kept in every spec at the one value they always had so that the run ids of the records
# made while they existed stay the same (a spec giving another value is refused)
# (pad_to_max: padding every batch to max_length; benchmarks/bench_encoder_padding.py measures that on its own)
RETIRED: dict[str, object] = {"pad_to_max": False}
# fields that do not change a run's result (role "spec" or "runtime"): kept out of RunSpec.options and the run id
NOT_RESULT = tuple(f.name for f in dataclasses.fields(EncoderConfig) if f.metadata.get("role") != "result")
CONFIGS_DIR = Path(__file__).with_name("configs")


def default_config_file(model: str, method: str) -> Path | None:
    """encoders/configs/<model>_<method>.yaml: the tuned defaults for that pair, used unless --config names another."""
    path = CONFIGS_DIR / f"{model.replace('/', '_')}_{method}.yaml"
    return path if path.exists() else None


def config_file_values(model: str, method: str) -> dict:
    from eval.run.cli import load_yaml_config

    path = default_config_file(model, method)
    if path is None:
        return {}
    return {k: v for k, v in load_yaml_config(path, EncoderConfig).items() if k not in ("model", "method")}
