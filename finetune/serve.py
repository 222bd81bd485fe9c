"""The SFT track's predictor for `python -m eval.serve` (eval/tracks.py `predictor`): the saved LoRA adapter over
its base model, asked and parsed as finetune/predict.py evaluated the run.

The model is built as finetune/sft.py built it for training (finetune.backends.load: the same base weights, dtype,
pad-token rule and LoRA shape) and the adapter's saved weights are loaded into it; the prompt is the run's versioned
template through the same `Formatter` (chat template or plain, inputs cut to max_seq_length), the mode is the one the
record reports (generate: greedy, eval.scoring.labels.parse_answer, INVALID kept; score: the verbalizers'
log-likelihood), under the bf16 autocast or fp32 the run's canary settled on, in batches of the batch size it used,
with the KV cache of the prompts' shared prefix computed once from the run's test prompts (finetune/predict.py computes
it per evaluation over those same prompts), so an answer does not depend on what it is batched with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.run.records import RunSpec


class SFTPredictor:
    def __init__(self, record: dict, artifacts: Path) -> None:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from eval.inputs.dataref import load_ref
        from eval.lm.causal import shared_prefix
        from eval.lm.models import resolve
        from eval.run.hardware import configure_threads
        from eval.serve.predictor import ServeError
        from finetune.backends import for_inference, load
        from finetune.formatting import Formatter, load_template
        from finetune.sft import config_from_spec

        spec = RunSpec.from_record(record)
        cfg = config_from_spec(spec)
        conf = record.get("config") or {}
        if conf.get("backend") not in (None, "hf"):
            raise ServeError(f"run {record['run_id']} trained with the {conf.get('backend')} backend (CUDA); this "
                             "server loads adapters through transformers + peft: serve it on its GPU machine")
        template = load_template(cfg.prompt)
        used = (record.get("versions") or {}).get("prompt")
        if used and used != f"{template.name}@{template.version}":
            raise ServeError(f"the run used prompt {used}, this checkout has {template.name}@{template.version}")
        self.task = task = load_ref(spec.task, spec.data)
        info = resolve(spec.model)
        precision = conf.get("precision") or {}
        weights = getattr(torch, str(precision.get("weights") or "float32"))
        threads = configure_threads()
        loaded = load(info, "hf", load_in_4bit=False, max_seq_length=cfg.max_seq_length, lora=cfg.lora(),
                      seed=spec.seed, dtype=weights)
        state = load_file(str(artifacts / "adapter" / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(loaded.model, state)
        if getattr(result, "unexpected_keys", None):
            raise ServeError(f"{artifacts / 'adapter'} does not fit {spec.model}'s LoRA: {result.unexpected_keys[:3]}")
        for_inference(loaded)
        self.model, self.tok = loaded.model, loaded.tokenizer
        # The Trainer's accelerate prepare_model (accelerate 1.16.0 accelerator.py, `if self.native_amp:`) wraps the
        # peft model's forward in bf16 autocast with fp32 outputs when it trains with bf16, and nothing unwraps it:
        # the after-training evaluation ran its direct forward calls (the shared prefix's KV cache, label scoring)
        # through that wrapper. The same wrapper here, so the served computation is the evaluated one (docs/serve.md)
        # Records since finetune/sft.py unwraps the model after training (config "eval_forward": "unwrapped") were
        # evaluated without it, and so are served without it
        self.forward_autocast = str(conf.get("bf16")) == "True" and conf.get("eval_forward") != "unwrapped"
        if self.forward_autocast:
            from types import MethodType

            from accelerate.utils import convert_outputs_to_fp32

            device_type = str(self.model.device).split(":")[0]
            autocast = torch.autocast(device_type=device_type, dtype=torch.bfloat16)
            self.model.forward = MethodType(convert_outputs_to_fp32(autocast(self.model.forward.__func__)),
                                            self.model)
        self.fmt = Formatter.for_run(self.tok, task.scheme, template, cfg, info.base)
        details = record.get("details") or {}
        self.mode = details.get("main_eval_mode") or ("generate" if cfg.eval_mode != "score" else "score")
        ran = (conf.get("eval_runtime") or {}).get("after") or {}
        self.batch_size = int(ran.get("batch_size") or cfg.eval_batch_size)
        self.autocast = ran.get("precision") == "bfloat16-autocast"  # eval.lm.canary.AutocastSwitch.low_name
        self.max_new_tokens = cfg.max_new_tokens
        self.labels = list(task.labels)
        self.score_kind = "log-likelihood" if self.mode == "score" else None
        test_prompts = [self.fmt.prompt(e.text) for e in task.test(spec.n_eval)]
        from eval.lm.causal import encode

        with self._precision():
            self.prefix = shared_prefix(self.model, [encode(self.tok, p) for p in test_prompts],
                                        extra_tokens=self.max_new_tokens)
        self.context = getattr(self.model.config, "max_position_embeddings", None)
        self.facts: dict[str, Any] = {
            "adapter": str(artifacts / "adapter"), "base_model": loaded.model_id, "mode": self.mode,
            "prompt": used, "chat_template": self.fmt.chat, "max_seq_length": cfg.max_seq_length,
            "precision": "bfloat16-autocast" if self.autocast else str(weights).removeprefix("torch."),
            "batch_size": self.batch_size, "threads": threads,
            "forward_autocast": "bfloat16 (the Trainer's accelerate wrapper)" if self.forward_autocast else None,
            "prefix_tokens": len(self.prefix.ids) if self.prefix else 0,
            "recorded_prefix_tokens": ran.get("prefix_tokens")}

    def _precision(self) -> Any:
        import torch

        if self.autocast:
            return torch.autocast(device_type=str(self.model.device).split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def too_long(self, text: str) -> str | None:
        # inputs are cut to max_seq_length by the Formatter as in the evaluation; only what no model could read is
        # refused (a text many times the model's whole context)
        limit = 8 * int(self.context or self.fmt.max_seq_length)
        n = len(self.tok(text, add_special_tokens=False)["input_ids"])
        if n > limit:
            return (f"the text has {n} tokens; prompts are cut to the run's max_seq_length "
                    f"({self.fmt.max_seq_length}) and this server refuses texts over {limit} tokens")
        return None

    def predict(self, texts: Sequence[str]) -> list[dict]:
        from eval.lm.causal import generate, score_labels
        from eval.scoring.labels import parse_answer

        prompts = [self.fmt.prompt(t) for t in texts]
        reuse = self.prefix if self.prefix else False
        with self._precision():
            if self.mode == "score":  # finetune/predict.py predict_score
                rows = score_labels(self.model, self.tok, prompts, self.fmt.verbalizers, batch_size=self.batch_size,
                                    prefix=self.fmt.answer_prefix, reuse_prefix=reuse)
                out = []
                for text, row in zip(texts, rows):
                    best = max(range(len(row)), key=row.__getitem__)
                    out.append({"label": self.labels[best], "status": "valid", "raw": None,
                                "scores": {lab: round(s, 6) for lab, s in zip(self.labels, row)},
                                "truncated": text not in prompts[len(out)]})
                return out
            raws = generate(self.model, self.tok, prompts, max_new_tokens=self.max_new_tokens,
                            batch_size=self.batch_size, reuse_prefix=reuse)  # finetune/predict.py predict_generate
        out = []
        for text, prompt, raw in zip(texts, prompts, raws):
            label, status = parse_answer(raw, self.fmt.scheme)
            out.append({"label": label, "status": status, "raw": raw, "scores": None, "truncated": text not in prompt})
        return out


def predictor(record: dict, artifacts: Path) -> SFTPredictor:
    from eval.serve.predictor import NoArtifacts

    if not (artifacts / "adapter" / "adapter_model.safetensors").exists():
        saved = ((record.get("details") or {}).get("artifacts") or {})
        what = f"the LoRA adapter ({saved['adapter_error']})" if saved.get("adapter_error") else "the LoRA adapter"
        raise NoArtifacts(what, "")
    return SFTPredictor(record, artifacts)
