"""Prompt templates: versioned text files in prompts/ rendered with the task's label verbalizers. Shared by the
prompting track (zeroshot, cot, fewshot) and the SFT track (prompts/sft.txt, read through `read_template` and
rendered with `fill`), so there is one reader and one template filler.

File format (see prompts/*.txt): leading lines starting with "# " are comments, among them `# version: N` and
`# stop: S` (where a base model's answer ends; backslash escapes allowed); the rest is the template.
`{instruction}` is replaced by prompts/sft_instruction.txt (the prompting templates' shared instruction; the SFT
track's own complete template is prompts/sft.txt), `{labels}` / `{labels_or}`
by the task's canonical verbalizers, `{text}` by the input. A few-shot file has an `=== example ===` section
(rendered once per shot, `{text}` and `{answer}`) and a `=== prompt ===` section that receives them as `{examples}`.
Placeholders are substituted in one pass, so braces inside a text are left alone.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.scoring.labels import LabelScheme

_CHECKOUT_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
# a checkout's prompts/, else the copy a wheel installs as eval/prompt_files/ (pyproject.toml); read at call time
# (tests point it elsewhere)
PROMPTS_DIR = _CHECKOUT_PROMPTS if _CHECKOUT_PROMPTS.is_dir() else Path(__file__).resolve().parents[1] / "prompt_files"
TEMPLATES = {"zeroshot": "zeroshot.txt", "cot": "cot_zeroshot.txt", "fewshot": "fewshot.txt"}
_PLACEHOLDER = re.compile(r"\{(instruction|labels|labels_or|subject|text|answer|examples)\}")
_SECTION = re.compile(r"^=== (\w+) ===$", re.MULTILINE)
_META = re.compile(r"^# (version|stop):\s*(\S+)\s*$")


@dataclass(frozen=True)
class TemplateFile:
    name: str
    version: str
    body: str
    sections: Mapping[str, str]
    stop: tuple[str, ...] = ()


def read_template(path: Path) -> TemplateFile:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    meta: dict[str, list[str]] = {}
    start = 0
    for start, line in enumerate(lines):  # noqa: B007 - start is the first body line afterwards
        if not (line.startswith("# ") or line.rstrip("\n") == "#"):
            break
        if m := _META.match(line.rstrip("\n")):
            meta.setdefault(m.group(1), []).append(codecs.decode(m.group(2), "unicode_escape"))
    else:
        start = len(lines)
    if "version" not in meta:
        raise ValueError(f"{path}: missing a '# version: N' header line")
    body = "".join(lines[start:])
    parts = _SECTION.split(body)
    sections = {parts[i]: parts[i + 1].lstrip("\n") for i in range(1, len(parts) - 1, 2)}
    return TemplateFile(name=path.stem, version=meta["version"][0], body=body, sections=sections,
                        stop=tuple(meta.get("stop", ())))


def fill(template: str, values: Mapping[str, str]) -> str:
    """Substitute {instruction}, {labels}, {labels_or}, {subject}, {text}, {answer}, {examples} in one pass: braces
    inside a substituted text are left alone, and placeholders without a value stay as they are."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), template)



@dataclass(frozen=True)
class Prompt:
    """A template bound to a label scheme (and, for few-shot, to its k examples)."""

    kind: str  # zeroshot | cot | fewshot
    version: str  # e.g. "cot_zeroshot@1+sft_instruction@1"; goes into the RunSpec and the cache key
    template: str
    instruction: str
    examples: str = ""
    think_open: bool = False  # the template leaves a <think> block open for the model to close
    stop: tuple[str, ...] = ()  # the answer ends here (a base model goes on to invent the next "### Input")

    def render(self, text: str) -> str:
        return fill(self.template, {"instruction": self.instruction, "examples": self.examples, "text": text})

    def cut(self, output: str) -> str:
        """The answer part of an output: everything before the first stop string."""
        for s in self.stop:
            if (i := output.find(s)) >= 0:
                output = output[:i]
        return output


PLAIN_SUBJECT = "the following text"  # {subject} of a task that names no topic


def label_words(scheme: LabelScheme) -> dict[str, str]:
    words = [scheme.verbalizer(lab) for lab in scheme.labels]
    labels_or = ", ".join(words[:-1]) + " or " + words[-1]
    # {subject}: what to classify; a task that names its topic ("sentiment") gets it said (docs/offline.md)
    subject = f"the {scheme.topic} of {PLAIN_SUBJECT}" if scheme.topic else PLAIN_SUBJECT
    return {"labels": ", ".join(words), "labels_or": labels_or, "subject": subject}


def template_file(kind: str, template: str | None = None, prompts_dir: Path | None = None) -> Path:
    """prompts/<kind's file>, or prompts/<template>.txt for a named variant (e.g. fewshot_plain)."""
    if kind not in TEMPLATES:
        raise ValueError(f"unknown prompt {kind!r}; choose one of {sorted(TEMPLATES)}")
    prompts_dir = prompts_dir or PROMPTS_DIR
    if template is None:
        return prompts_dir / TEMPLATES[kind]
    name = template.split("@")[0]  # a recorded version ("fewshot_plain@1+sft_instruction@1") names its file too
    path = prompts_dir / f"{name}.txt"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not path.is_file():
        known = sorted(p.stem for p in prompts_dir.glob(f"{kind}*.txt"))
        raise ValueError(f"no prompt template {name!r} in {prompts_dir}; {kind} templates there: {known}")
    return path


def _fewshot_problem(tf: TemplateFile) -> str | None:
    if "example" not in tf.sections or "prompt" not in tf.sections:
        return f"{tf.name}: a few-shot template needs '=== example ===' and '=== prompt ===' sections"
    return None


def _version(tf: TemplateFile, inst: TemplateFile) -> str:
    return f"{tf.name}@{tf.version}+{inst.name}@{inst.version}"


def variant_problem(name: str, prompts_dir: Path | None = None) -> str | None:
    """Why `name` cannot be a few-shot variant (missing file, no example/prompt sections), or None."""
    try:
        return _fewshot_problem(read_template(template_file("fewshot", name, prompts_dir)))
    except ValueError as exc:
        return str(exc)


def load_prompt(kind: str, scheme: LabelScheme, shots: Sequence[tuple[str, str]] = (),
                prompts_dir: Path | None = None, template: str | None = None) -> Prompt:
    """Bind prompts/<kind> (or the variant file prompts/<template>.txt) to a task's labels. `shots` are
    (text, label) pairs, used by the few-shot template."""
    prompts_dir = prompts_dir or PROMPTS_DIR
    tf = read_template(template_file(kind, template, prompts_dir))
    inst = read_template(prompts_dir / "sft_instruction.txt")
    words = label_words(scheme)
    instruction = fill(inst.body.strip(), words)
    examples = ""
    if kind == "fewshot":
        if problem := _fewshot_problem(tf):
            raise ValueError(problem)
        body = fill(tf.sections["prompt"], words)
        examples = "".join(fill(tf.sections["example"], {"text": t, "answer": scheme.verbalizer(lab)})
                           for t, lab in shots)
    else:
        if shots:
            raise ValueError(f"--shots needs the few-shot prompt, not {kind!r}")
        body = fill(tf.body, words)
    think_open = body.rstrip().endswith("<think>")
    return Prompt(kind=kind, version=_version(tf, inst), template=body,
                  instruction=instruction, examples=examples, think_open=think_open, stop=tf.stop)


def prompt_version(kind: str, prompts_dir: Path | None = None, template: str | None = None) -> str:
    """e.g. "cot_zeroshot@1+sft_instruction@1": goes into the RunSpec and the cache key."""
    prompts_dir = prompts_dir or PROMPTS_DIR
    tf = read_template(template_file(kind, template, prompts_dir))
    return _version(tf, read_template(prompts_dir / "sft_instruction.txt"))


def sft_instruction(scheme: LabelScheme, prompts_dir: Path | None = None) -> tuple[str, str]:
    """(instruction text, version) of prompts/sft_instruction.txt: the same words the zero-shot prompt uses."""
    inst = read_template((prompts_dir or PROMPTS_DIR) / "sft_instruction.txt")
    return fill(inst.body.strip(), label_words(scheme)), f"{inst.name}@{inst.version}"
