"""The prompting track's predictor for `python -m eval.serve` (eval/tracks.py `predictor`): a run rebuilt from its
record, asked and parsed as prompting/run.py asked and parsed its test items.

Everything comes from the record (no artifacts to keep): the config (`config_from_spec`: model, backend, mode,
think, decoding), the prompt file at the recorded version (refused if it changed since), the run's own k shots (the
seed's training subset, as `run_group` picks them), the few-shot variant the run chose. Answers are parsed by
`prompting.run.parse`, the evaluation's own rules (eval.scoring.labels.parse_answer; a generated answer with no label
is INVALID with its status, never a guess).

- in-process `hf`: the weights the record names, in the dtype it ran in (the canary's outcome), batches of the batch
  size it settled on, and the KV cache of the same shared prefix (the instruction and shots: computed once, here,
  from the run's test prompts exactly as `HFBackend.answer_all` computed it), so a request's answer does not depend
  on what it is batched with. The loop below is `HFBackend.answer_all`'s with that prefix and batch size fixed.
- `ollama` / `openai`: the request is forwarded to the server the run used (or --host / --base-url given to the
  run's config), through the same backend class with the same options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.run.records import RunSpec
from prompting.cache import Answer


class PromptingPredictor:
    def __init__(self, record: dict) -> None:
        from eval.inputs.dataref import load_ref
        from eval.lm.prompts import load_prompt
        from eval.serve.predictor import ServeError
        from prompting.run import config_from_spec, make_backend, max_new_tokens, prompt_kind

        spec = RunSpec.from_record(record)
        details = (record.get("details") or {}).get("prompting") or {}
        runtime = details.get("runtime") or {}
        overrides: dict[str, Any] = {}
        if str(spec.model).startswith("hf/") and runtime.get("dtype"):
            overrides["dtype"] = runtime["dtype"]  # what ran (the canary may have kept fp32 over bf16)
        ran = record.get("config") or {}
        for key in ("host", "base_url", "endpoint", "raw", "num_ctx", "timeout", "retries", "concurrency"):
            if ran.get(key) is not None:  # the server the run asked, as it asked it (runtime, not in the spec)
                overrides[key] = ran[key]
        self.cfg = cfg = config_from_spec(spec, **overrides)
        self.task = task = load_ref(spec.task, spec.data)
        shots = int(spec.n_train)
        self.kind = kind = prompt_kind(cfg, shots)
        examples = [(e.text, e.label) for e in task.train(shots, spec.seed)] if shots else []
        used = details.get("prompt_used") or record.get("versions", {}).get("prompt")
        variant = str(used).split("@")[0] if kind == "fewshot" and cfg.variants else None
        self.prompt = load_prompt(kind, task.scheme, shots=examples, template=variant)
        if used and self.prompt.version != used:
            raise ServeError(f"the run used prompt {used}, this checkout has {self.prompt.version}: serve it from "
                             "the commit that recorded it, or re-run it (the run id changes with the prompt)")
        self.backend = make_backend(cfg, task.scheme, kind)
        self.backend.options.max_new_tokens = max_new_tokens(cfg, kind)
        self.labels = list(task.labels)
        self.words = [task.scheme.verbalizer(lab) for lab in task.scheme.labels]
        self.local = self.backend.name == "hf"
        self.score_kind = "log-likelihood" if cfg.mode == "score" else None
        self.batch_size = int(runtime.get("batch_size") or cfg.batch_size) if self.local else max(1, cfg.concurrency)
        self.facts: dict[str, Any] = {"backend": self.backend.name, "mode": cfg.mode, "prompt": self.prompt.version,
                                      "shots": shots, "max_new_tokens": self.backend.options.max_new_tokens,
                                      "think": cfg.think, "batch_size": self.batch_size}
        self.prefix = None
        self.context: int | None = None
        if self.local:
            self._load(record, [e.text for e in task.test(spec.n_eval)])

    def _load(self, record: dict, test_texts: list[str]) -> None:
        from eval.lm.causal import build_prompt, encode, shared_prefix
        from eval.run.cli import parse_think
        from eval.serve.predictor import ServeError
        from prompting.backends import BackendError

        try:
            self.backend.ready()  # loads the weights (HFBackend.check)
        except BackendError as exc:
            raise ServeError(str(exc)) from None
        model, tok, info = self.backend.lm
        if self.backend.weights != record["options"].get("weights", self.backend.weights):
            raise ServeError(f"the run's weights were {record['options']['weights']}, this machine loaded "
                             f"{self.backend.weights}: install the model the run used (python -m eval.lm.models)")
        self.model, self.tok = model, tok
        self.think = parse_think(self.cfg.think) is True
        self._text = lambda p: build_prompt(tok, p, chat=self.backend.chat, enable_thinking=self.think)
        self._encode = lambda t: encode(tok, t)
        ids = [self._encode(self._text(self.prompt.render(t))) for t in test_texts]
        o = self.backend.options
        self.prefix = shared_prefix(model, ids, reuse=o.reuse_prefix, extra_tokens=o.max_new_tokens)
        limit = getattr(model.config, "max_position_embeddings", None)
        self.context = int(limit) if limit else None
        recorded = (record.get("details", {}).get("prompting", {}).get("runtime") or {}).get("prefix_tokens")
        self.facts.update(model_id=info["model_id"], weights=self.backend.weights,
                          dtype=str(model.dtype).removeprefix("torch."), chat_template=bool(self.backend.chat),
                          prefix_tokens=len(self.prefix.ids) if self.prefix else 0, recorded_prefix_tokens=recorded,
                          context_tokens=self.context)

    def too_long(self, text: str) -> str | None:
        if not self.local or not self.context:
            return None
        n = len(self._encode(self._text(self.prompt.render(text))))
        room = self.context - self.backend.options.max_new_tokens
        if n > room:
            return (f"its prompt has {n} tokens; {self.facts['model_id']} has a context of {self.context} tokens, "
                    f"{self.backend.options.max_new_tokens} kept for the answer: at most {room} prompt tokens")
        return None

    def _answers(self, texts: Sequence[str]) -> list[Answer]:
        """One Answer per text, as the run's backend gave them (HFBackend.answer_all's loop, prefix fixed)."""
        prompts = [self.prompt.render(t) for t in texts]
        answers: list[Answer | None] = [None] * len(prompts)
        if not self.local:
            def keep(i: int, a: Answer) -> None:
                answers[i] = a

            self.backend.answer_all(prompts, keep, stop=self.prompt.stop)
            return [a or Answer(text=None, error="no answer") for a in answers]
        from eval.lm.causal import generate, score_labels

        o, model, tok = self.backend.options, self.model, self.tok
        full = [self._text(p) for p in prompts]
        ids = [self._encode(t) for t in full]
        join = "" if full and full[0][-1:].isspace() else " "  # as answer_all: the label follows the answer slot
        reuse = self.prefix if self.prefix else False
        order = sorted(range(len(full)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            part = order[start:start + self.batch_size]
            if o.mode == "score":
                rows = score_labels(model, tok, [full[i] for i in part], self.words, batch_size=self.batch_size,
                                    prefix=join, ids=[ids[i] for i in part], reuse_prefix=reuse)
                for i, row in zip(part, rows, strict=True):
                    best = max(range(len(self.words)), key=lambda j: row[j])
                    answers[i] = Answer(text=self.words[best], meta={"scores": dict(zip(self.words, row))})
            else:
                outs = generate(model, tok, [full[i] for i in part], max_new_tokens=o.max_new_tokens,
                                batch_size=self.batch_size, ids=[ids[i] for i in part], reuse_prefix=reuse)
                for i, out in zip(part, outs, strict=True):
                    n_out = len(tok(out, add_special_tokens=False)["input_ids"])
                    answers[i] = Answer(text=out, truncated=n_out >= o.max_new_tokens,
                                        meta={"raw_prompt": self.backend.raw_prompt})
        return [a for a in answers if a is not None]

    def predict(self, texts: Sequence[str]) -> list[dict]:
        from prompting.run import parse

        out = []
        for answer in self._answers(texts):
            label, fields = parse(answer, self.prompt, self.backend, self.task.scheme)
            scores = answer.meta.get("scores")
            raw = self.prompt.cut(answer.text) if answer.ok and answer.text is not None else None
            out.append({"label": label, "status": fields["status"], "raw": None if scores else raw,
                        "scores": {lab: round(float(scores[w]), 6) for lab, w in zip(self.labels, self.words)}
                        if scores else None, "truncated": bool(fields.get("truncated"))})
        return out


def predictor(record: dict, artifacts: Path) -> PromptingPredictor:
    """Nothing to load from `artifacts`: a prompting run is its config, prompt and shots (all in the record)."""
    return PromptingPredictor(record)
