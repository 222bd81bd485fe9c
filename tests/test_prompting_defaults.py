"""Prompting defaults that are not a trap (prompting/defaults.py): each model's prompting/configs/<model>.yaml is read
automatically (built-in < model config < --config < command line), chain of thought gets a CPU-sized budget, and
--help says what the defaults cost."""

from __future__ import annotations

import pytest

from eval.lm.models import aliases
from prompting import defaults
from prompting.run import PromptConfig, config_from_spec


@pytest.fixture
def configs(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "CONFIGS_DIR", tmp_path)
    (tmp_path / "tiny-lm.yaml").write_text("batch_size: 3\nmax_new_tokens: 40\nthink: 'false'\n")
    return tmp_path


def test_model_config_is_read_automatically_and_the_command_line_wins(configs):
    cfg = defaults.parse_prompt_config(PromptConfig, ["--model", "hf/tiny-lm", "--task", "rotten"])
    assert (cfg.batch_size, cfg.max_new_tokens, cfg.think, cfg.task) == (3, 40, "false", "rotten")
    cfg = defaults.parse_prompt_config(PromptConfig, ["--model", "hf/tiny-lm", "--batch-size", "5"])
    assert (cfg.batch_size, cfg.max_new_tokens) == (5, 40)
    (configs / "exp.yaml").write_text("model: ollama/tiny-lm\nmax_new_tokens: 99\nn_eval: [8]\n")
    cfg = defaults.parse_prompt_config(PromptConfig, ["--config", str(configs / "exp.yaml")])
    assert (cfg.model, cfg.batch_size, cfg.max_new_tokens, cfg.n_eval) == ("ollama/tiny-lm", 3, 99, [8])
    cfg = defaults.parse_prompt_config(PromptConfig, ["--model", "hf/other"])
    assert cfg.batch_size == PromptConfig().batch_size  # no config file: built-in defaults


def test_a_model_config_may_not_set_the_experiment(configs, capsys):
    (configs / "bad.yaml").write_text("task: drugs\nn_eval: [10]\n")
    with pytest.raises(SystemExit) as exc:
        defaults.parse_prompt_config(PromptConfig, ["--model", "hf/bad"])
    assert exc.value.code == 2 and "describe an experiment" in capsys.readouterr().err
    (configs / "typo.yaml").write_text("batch_sise: 4\n")
    with pytest.raises(SystemExit):
        defaults.parse_prompt_config(PromptConfig, ["--model", "hf/typo"])
    assert "unknown options" in capsys.readouterr().err


def test_sweep_specs_get_the_model_config_too(configs):
    from eval.run.records import RunSpec

    spec = RunSpec(track="prompting", task="rotten", model="hf/tiny-lm", method="zeroshot", n_train=0, seed=0,
                   n_eval=8, options={"max_new_tokens": 12})
    cfg = config_from_spec(spec, results_dir="results")
    assert (cfg.batch_size, cfg.max_new_tokens) == (3, 12)  # the spec's own options win


def test_cot_budget_fits_the_hardware():
    import torch

    assert defaults.default_max_new_tokens(False, "hf") == defaults.ANSWER_TOKENS
    assert defaults.default_max_new_tokens(True, "ollama") == defaults.SERVER_COT_TOKENS
    expected = defaults.SERVER_COT_TOKENS if torch.cuda.is_available() else defaults.CPU_COT_TOKENS
    assert defaults.default_max_new_tokens(True, "hf") == expected
    assert defaults.CPU_COT_TOKENS < defaults.SERVER_COT_TOKENS


def test_help_says_what_the_defaults_cost(capsys):
    with pytest.raises(SystemExit):
        defaults.parse_prompt_config(PromptConfig, ["--help"], description="prompting track")
    out = capsys.readouterr().out
    assert "what the defaults cost" in out and f"{defaults.CPU_COT_TOKENS} in-process on a CPU" in out
    assert "--n-eval 64" in out


def test_every_shipped_model_config_is_valid():
    files = sorted(defaults.CONFIGS_DIR.glob("*.yaml"))
    model_files = [p for p in files if p.stem in aliases()]
    assert {"qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m"} <= {p.stem for p in model_files}
    for p in model_files:
        assert defaults.model_config_values(p.stem, PromptConfig) is not None
    assert defaults.model_config_values("hf/gemma3-270m", PromptConfig)["mode"] == "score"  # a base model scores


def test_backend_options_are_derived_from_the_config_and_share_its_defaults():
    """BackendOptions.of copies every field PromptConfig has by name; a default written twice must agree (the
    answer budget is decided per prompt kind, prompting/defaults.py)."""
    import dataclasses

    from prompting.backends import BackendOptions

    cfg = PromptConfig(host="http://box:11434", batch_size=3, dtype="float32", think="false")
    opts = BackendOptions.of(cfg, max_new_tokens=7)
    shared = [f.name for f in dataclasses.fields(BackendOptions) if f.name in PromptConfig.__dataclass_fields__]
    assert len(shared) >= 19 and opts.max_new_tokens == 7
    assert all(getattr(opts, k) == getattr(cfg, k) for k in shared if k != "max_new_tokens")
    ours, theirs = PromptConfig.__dataclass_fields__, BackendOptions.__dataclass_fields__
    assert not [k for k in shared if k != "max_new_tokens" and ours[k].default != theirs[k].default]
