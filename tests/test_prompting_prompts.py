"""Prompt files: versioned, rendered from the task's verbalizers, few-shot examples from the seed's train subset."""

from __future__ import annotations

from pathlib import Path

import pytest
from prompting_fixtures import SCHEME

from eval.lm.prompts import PROMPTS_DIR, TEMPLATES, load_prompt, read_template, sft_instruction
from eval.scoring.labels import LabelScheme
from prompting.backends import split_model

THREE = LabelScheme.from_labels(["bad", "meh", "good"], {"bad": ["negative"], "meh": ["neutral"],
                                                         "good": ["positive"]})


@pytest.mark.parametrize("path", sorted(PROMPTS_DIR.glob("*.txt")), ids=lambda p: p.name)
def test_every_prompt_file_has_a_version(path: Path) -> None:
    assert read_template(path).version


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_templates_use_the_task_verbalizers(kind: str) -> None:
    shots = [("a {text} with braces", "good"), ("dull", "bad")] if kind == "fewshot" else []
    p = load_prompt(kind, THREE, shots=shots)
    text = p.render("it was {labels} ok")
    assert "negative, neutral, positive" in text and "it was {labels} ok" in text
    assert "sentiment" not in text.lower() and "{" + "instruction}" not in text
    assert p.version.startswith(TEMPLATES[kind].removesuffix(".txt") + "@")
    assert p.think_open == (kind == "cot")
    if kind == "fewshot":
        assert text.count("### Input:") == 3 and "a {text} with braces" in text
        assert text.index("positive\n") < text.index("negative\n", text.index("dull"))


def test_sft_instruction_is_the_zero_shot_instruction() -> None:
    inst, version = sft_instruction(SCHEME)
    assert inst in load_prompt("zeroshot", SCHEME).render("x") and version == "sft_instruction@1"


def test_stop_cuts_a_base_model_continuation() -> None:
    p = load_prompt("zeroshot", SCHEME)
    assert SCHEME.extract(p.cut("positive\n\n### Input:\nnext review\n\n### Response:\nnegative")) == "positive"


def test_shots_need_the_fewshot_template() -> None:
    with pytest.raises(ValueError, match="few-shot"):
        load_prompt("cot", SCHEME, shots=[("x", "positive")])


@pytest.mark.parametrize("model,backend,expected", [
    ("llama3.1", None, ("ollama", "llama3.1")),
    ("ollama/llama3.1", None, ("ollama", "llama3.1")),
    ("hf/google/gemma-3-270m", None, ("hf", "google/gemma-3-270m")),
    ("google/gemma-3-270m", "hf", ("hf", "google/gemma-3-270m")),
    ("openai/qwen3:8b", None, ("openai", "qwen3:8b")),
])
def test_model_strings_split_on_the_first_slash_of_a_known_provider(model, backend, expected) -> None:
    assert split_model(model, backend) == expected


@pytest.mark.parametrize("path", sorted((PROMPTS_DIR.parent / "prompting" / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_config_loads_and_its_first_line_is_its_command(path: Path) -> None:
    from eval.run.cli import load_yaml_config
    from prompting.run import PromptConfig

    PromptConfig(**load_yaml_config(path, PromptConfig))
    assert path.read_text().startswith(f"# python prompting/run.py --config prompting/configs/{path.name}")


def test_unknown_config_keys_fail(tmp_path: Path) -> None:
    from eval.run.cli import ConfigError, load_yaml_config
    from prompting.run import PromptConfig

    (tmp_path / "bad.yaml").write_text("model: llama3.1\nconcurency: 8\n")
    with pytest.raises(ConfigError, match="concurency.*did you mean concurrency"):  # one line in every CLI
        load_yaml_config(tmp_path / "bad.yaml", PromptConfig)


def test_a_task_topic_is_named_and_tasks_without_one_render_as_before() -> None:
    from eval.scoring.labels import LabelScheme

    topical = LabelScheme.from_labels(["negative", "positive"], topic="sentiment")
    assert "Classify the sentiment of the following text." in load_prompt("zeroshot", topical).render("x")
    plain = load_prompt("zeroshot", LabelScheme.from_labels(["negative", "positive"])).render("x")
    assert "Classify the following text. Answer with exactly one of: negative, positive." in plain
    assert topical.to_dict()["topic"] == "sentiment" and "topic" not in LabelScheme.from_labels(["a", "b"]).to_dict()
