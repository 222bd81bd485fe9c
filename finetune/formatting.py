"""SFT data formatting: one instruction prompt per text, one completion per label, the same prompt for training and
for evaluation.

- The prompt is a versioned file, prompts/sft.txt (`# version: N` in its header, `{labels}` and `{text}`).
- Models with a chat template get it (thinking disabled for Qwen3-style models, so the answer slot is the assistant
  turn right after an empty think block); base models get the plain instruction, which ends in the answer slot.
- The completion is the label's canonical verbalizer, joined by `eval.lm.causal.answer_prefix` (a space after
  "Answer:"). TRL appends EOS and masks the prompt (prompt/completion format), so the loss covers exactly the
  answer + EOS.
- The system turn (SFTArgs.system_prompt): by default the template's own. SmolLM2's and Qwen2.5's templates write a
  default system text (~16 tokens) into every prompt that has no system turn; `system=""` replaces it with an empty
  turn where that is shorter, and leaves templates without a default (Gemma 3) as they are (docs/speed.md).
- Long inputs are cut by tokens (`eval.lm.causal.fit_text`) so prompt + completion fit `max_seq_length`: the
  instruction and the answer slot always survive; only the input text is shortened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.inputs.data import Example
from eval.lm.causal import answer_prefix, build_prompt, fit_text
from eval.lm.prompts import PLAIN_SUBJECT, label_words
from eval.scoring.labels import LabelScheme

_TEXT_SLOT = "\x00TEXT\x00"  # stands in for the input when a template is rendered without one


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    template: str  # the body after the header; holds {labels} and {text}

    def fill(self, labels: Sequence[str], text: str, subject: str = PLAIN_SUBJECT) -> str:
        """{labels}, {text} and, when a template asks for it, {subject}: what to classify, as the prompting track
        words it (eval.lm.prompts.label_words: "the sentiment of the following text" for a task with a topic)."""
        from eval.lm.prompts import fill  # the one template filler (one pass: braces inside a review stay)

        return fill(self.template, {"labels": ", ".join(labels), "text": text, "subject": subject})


def load_template(name: str = "sft") -> PromptTemplate:
    """prompts/<name>.txt (or a path): `#` header lines, one of them `# version: N`, then the template.

    prompts/sft.txt is the SFT prompt; prompts/sft_instruction.txt is the prompting track's shared instruction
    (no input slot), so it is not a complete SFT template."""
    from eval.lm import prompts  # the one reader of versioned prompt files

    path = Path(name) if name.endswith(".txt") else prompts.PROMPTS_DIR / f"{name}.txt"
    if not path.exists():
        raise FileNotFoundError(f"prompt template {path} not found (the SFT prompt is prompts/sft.txt)")
    tf = prompts.read_template(path)
    template = tf.body.strip("\n")
    missing = [slot for slot in ("{labels}", "{text}") if slot not in template]
    if missing:
        raise ValueError(f"{path}: the template must contain {missing}")
    return PromptTemplate(name=tf.name, version=tf.version, template=template)


class Formatter:
    """Renders prompts and completions for one (tokenizer, task, template, max_seq_length)."""

    def __init__(self, tokenizer: Any, scheme: LabelScheme, template: PromptTemplate, max_seq_length: int,
                 chat: bool | None = None, system: str | None = None) -> None:
        from finetune.backends import text_tokenizer

        tokenizer = text_tokenizer(tokenizer)  # unsloth hands over a processor for gemma-3 4B: use its tokenizer
        self.tok = tokenizer
        self.scheme = scheme
        self.template = template
        self.max_seq_length = max_seq_length
        self.chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
        self.verbalizers = [scheme.verbalizer(lab) for lab in scheme.labels]
        self.subject = label_words(scheme)["subject"]
        self.system = self._system_turn(system)
        # the suite's one rule (eval.lm.causal.answer_prefix): a space after "Answer:", nothing after a template's
        # newline; every prompt ends in the same template text, so one prefix serves all
        self.answer_prefix = answer_prefix(self.render("x"))
        bos_id = getattr(tokenizer, "bos_token_id", None)
        adds_bos = bos_id is not None and tokenizer("x")["input_ids"][:1] == [bos_id]
        self._bos = tokenizer.bos_token if adds_bos else None
        completion_tokens = max(len(self.tok(self.completion(lab), add_special_tokens=False)["input_ids"])
                                for lab in scheme.labels)
        self.prompt_budget = max_seq_length - completion_tokens - 1  # - 1 for EOS
        empty = len(self.tok(self.render(""), add_special_tokens=False)["input_ids"])
        if self.prompt_budget < empty + 8:
            raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the input: the instruction alone "
                             f"is {empty} tokens; raise --max-seq-length")

    @classmethod
    def for_run(cls, tokenizer: Any, scheme: LabelScheme, template: PromptTemplate, cfg: Any, base: bool) -> Formatter:
        """The formatter a run's config (SFTArgs) asks for: its max_seq_length and system turn, and the chat
        template unless `cfg.chat` says otherwise or the model is a base model (plain prompts). Training, the
        searches and serving build it here, so they render the same prompts."""
        chat = cfg.chat if cfg.chat is not None else (False if base else None)
        return cls(tokenizer, scheme, template, cfg.max_seq_length, chat=chat, system=cfg.system_turn)

    def _system_turn(self, system: str | None) -> str | None:
        """What build_prompt gets as `system`. "" (no system text) becomes an empty system turn only where the
        template would otherwise write a default of its own, i.e. where the empty turn is the shorter prompt."""
        if system != "" or not self.chat:
            return system
        user = self.template.fill(self.verbalizers, "x", self.subject)
        n = lambda s: len(self.tok(build_prompt(self.tok, user, chat=True, system=s), add_special_tokens=False)
                          ["input_ids"])
        return "" if n("") < n(None) else None

    def render(self, text: str) -> str:
        """The full prompt for one input, untruncated (chat template applied when the model has one)."""
        return build_prompt(self.tok, self.template.fill(self.verbalizers, text, self.subject), chat=self.chat,
                            enable_thinking=False, system=self.system)

    def prompt(self, text: str) -> str:
        """The prompt with the input shortened by tokens so prompt + completion + EOS fit max_seq_length."""
        return self.render(fit_text(self.tok, self.render, text, self.prompt_budget))

    def completion(self, label: str) -> str:
        return self.answer_prefix + self.scheme.verbalizer(label)

    @property
    def candidates(self) -> list[str]:
        """What label scoring compares, in label order: exactly the trained completions (without EOS)."""
        return [self.completion(lab) for lab in self.scheme.labels]

    def dataset_rows(self, examples: Sequence[Example]) -> list[dict[str, str]]:
        """TRL's prompt/completion format: the loss falls on the completion only."""
        return [{"prompt": self._for_trl(self.prompt(ex.text)), "completion": self.completion(ex.label)}
                for ex in examples]

    def _for_trl(self, prompt: str) -> str:
        """TRL tokenizes a plain-string prompt with the tokenizer's special tokens, so it adds BOS itself; a chat
        template already wrote one. eval.lm.causal.encode adds BOS only when the text lacks it. Dropping the written
        BOS here makes training see exactly the ids evaluation sees (one BOS, never two); tested."""
        if self._bos and prompt.startswith(self._bos):
            return prompt[len(self._bos):]
        return prompt

    def prompt_with_slot(self, slot: str) -> str:
        """The rendered prompt with the input replaced by `slot` (e.g. an Ollama `{{ .Prompt }}`)."""
        return self.render(_TEXT_SLOT).replace(_TEXT_SLOT, slot)

    def describe(self) -> dict:
        if self.chat:
            system = {None: "the template's default", "": "empty (the template's default dropped)"}.get(self.system,
                                                                                                       self.system)
        else:
            system = self.system or None  # a plain prompt has no turns; a text is its leading paragraph
        return {"prompt": self.template.name, "prompt_version": self.template.version, "chat_template": self.chat,
                "system_turn": system,
                "answer_prefix": self.answer_prefix, "prompt_budget_tokens": self.prompt_budget,
                "candidates": self.candidates}
