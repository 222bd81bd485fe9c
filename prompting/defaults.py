"""A model's prompting defaults, and what they cost, so the defaults are never a trap.

Layers, lowest first: the built-in defaults (PromptConfig) < `prompting/configs/<model>.yaml` (the alias without
its provider: `hf/qwen2.5-coder-0.5b` reads prompting/configs/qwen2.5-coder-0.5b.yaml), read automatically as
encoders/configs/<model>_<method>.yaml and finetune/configs/<model>.yaml are < `--config FILE` < the command line.

Chain of thought needs room to reason (1,024 new tokens by default on a server or GPU), but an in-process model on a
CPU generates a few to a few dozen tokens per second, so there the default budget is CPU_COT_TOKENS; an answer cut
off by the limit stays INVALID, so a budget that is too small shows up in the valid rate, never as a silent guess.
Measured costs are in BENCHMARKS.md ("Prompting defaults on a CPU").
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

CONFIGS_DIR = Path(__file__).with_name("configs")
SERVER_COT_TOKENS = 1024  # reasoning models need this much (a <think> block cut off counts invalid)
CPU_COT_TOKENS = 256  # in-process on a CPU: enough for a short review's reasoning, ~4x cheaper than 1024
ANSWER_TOKENS = 16  # zero-/few-shot: one label word plus some slack
# what a model config may not set: it describes the model, not the experiment or where results go
NOT_MODEL_KEYS = {"model", "task", "data", "test_data", "text_column", "label_column", "labels", "encoding",
                  "results_dir", "overwrite", "retry_errors", "seeds", "n_eval"}

COST_HELP = f"""\
what the defaults cost:
  Unset --prompt means chain of thought (--mode generate), up to {SERVER_COT_TOKENS} new tokens per example on a
  server or GPU and {CPU_COT_TOKENS} in-process on a CPU (--backend hf without CUDA); zero- and few-shot answers get
  {ANSWER_TOKENS}. Unset --n-eval means the whole test set (rotten: 1,998 items; drugs: 379). On a 2-core CPU a
  0.5B model answers zero-shot at roughly 1-3 examples/s and reasons (CoT) at roughly 0.1-0.3 examples/s, so the
  whole rotten test set with CoT takes hours: start with --n-eval 64. --mode score (hf only) reads the labels'
  log-probabilities in one forward pass and is the cheapest. Each model's own defaults are in
  prompting/configs/<model>.yaml; the progress bar shows examples/s and the time left after its first batch."""


def model_config_file(model: str) -> Path | None:
    """prompting/configs/<alias>.yaml for `provider/alias` or a bare alias, when it exists."""
    bare = model.split("/", 1)[1] if model.split("/", 1)[0] in ("hf", "ollama", "openai") else model
    path = CONFIGS_DIR / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', bare)}.yaml"
    return path if path.exists() else None


def model_config_values(model: str, cls: type) -> dict[str, Any]:
    """The model config's values (checked against `cls`'s fields; experiment keys are refused), or {}."""
    path = model_config_file(model)
    return {} if path is None else model_config_values_at(path, cls)


def model_config_values_at(path: Path, cls: type) -> dict[str, Any]:
    from eval.run.cli import ConfigError, load_yaml_config

    values = load_yaml_config(path, cls)
    bad = sorted(set(values) & NOT_MODEL_KEYS)
    if bad:
        raise ConfigError(f"{path}: {bad} describe an experiment, not the model; put them in a --config file "
                          "or on the command line")
    return values


def thinks(think: str | None) -> bool:
    """--think asks for reasoning (true or a level), as opposed to unset or false."""
    return think is not None and str(think).lower() not in ("false", "off", "no", "0", "none")


def default_max_new_tokens(cot: bool, backend: str, thinking: bool = False) -> int:
    """The answer budget when --max-new-tokens is unset: room to reason for CoT, sized to the hardware. With
    --think on, the reasoning counts against the budget (Ollama's num_predict covers thinking and answer), so a
    zero-/few-shot prompt gets the reasoning budget too."""
    if not cot and not thinking:
        return ANSWER_TOKENS
    if backend == "hf":
        try:
            import torch

            if not torch.cuda.is_available():
                return CPU_COT_TOKENS
        except ImportError:
            return CPU_COT_TOKENS
    return SERVER_COT_TOKENS


def parse_prompt_config(cls: type, argv: list[str] | None = None, description: str | None = None) -> Any:
    """The prompting CLI, layered as every track's (eval.run.cli.parse_track_args): built-in defaults <
    prompting/configs/<model>.yaml < --config FILE < command line."""
    from eval.run.cli import parse_track_args

    ap = argparse.ArgumentParser(description=description, epilog=COST_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = cls.__dataclass_fields__["model"].default
    cfg, _ = parse_track_args(cls, ap, argv, "options", lambda known: model_config_file(known.model or default_model),
                              load=lambda path: model_config_values_at(path, cls))
    return cfg


def cost_note(n_prompts: int, max_new_tokens: int, batch_size: int, backend: str, mode: str) -> str:
    """One line said before asking: how many prompts, how long each answer may get, how progress is shown."""
    if mode == "score":
        return f"{n_prompts} prompts to score (one forward pass each, batches of {batch_size})"
    what = f"{n_prompts} prompts (cached answers are reused), up to {max_new_tokens} new tokens each"
    if backend == "hf":
        return (f"{what}, in batches of {batch_size}: the bar moves (and shows the time left) after each batch; "
                "answers are cached as they come, so Ctrl-C loses at most one batch")
    return what
