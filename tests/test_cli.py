"""The shared config parser: YAML gives defaults, the command line wins, unknown keys fail."""
from dataclasses import dataclass, field

import pytest

from eval.run.cli import parse_config


@dataclass
class Cfg:
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    epochs: int = 3
    bf16: bool = True
    targets: list[str] = field(default_factory=lambda: ["query", "value"])
    name: str | None = None


def test_defaults_yaml_then_cli(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("# python x.py --config c.yaml\nlr: 0.5\nepochs: 7\ntargets: [a]\n")
    cfg, _ = parse_config(Cfg, ["--config", str(y), "--epochs", "9", "--no-bf16"])
    assert cfg == Cfg(lr=0.5, epochs=9, bf16=False, targets=["a"], name=None)
    cfg, _ = parse_config(Cfg, ["--targets", "q", "k", "--name", "x"])
    assert cfg.targets == ["q", "k"] and cfg.name == "x" and cfg.lr == 1e-3


def test_ints_for_float_fields_become_floats(tmp_path):
    """`lr: 1` in YAML and `--lr 1` on the command line are one setting: same value, same type, same run id."""
    y = tmp_path / "c.yaml"
    y.write_text("lr: 1\nepochs: 2\n")
    from_yaml, _ = parse_config(Cfg, ["--config", str(y)])
    from_cli, _ = parse_config(Cfg, ["--lr", "1", "--epochs", "2"])
    assert from_yaml == from_cli and isinstance(from_yaml.lr, float) and isinstance(from_yaml.epochs, int)


def test_unknown_yaml_key_fails_with_known_keys(tmp_path, capsys):
    y = tmp_path / "c.yaml"
    y.write_text("learning_rate: 0.1\n")
    with pytest.raises(SystemExit) as exc:
        parse_config(Cfg, ["--config", str(y)])
    assert exc.value.code == 2 and "unknown options ['learning_rate']" in capsys.readouterr().err


@pytest.mark.parametrize("argv, shown", [
    (["--model", "minilm-l6", "--method", "full"], ["(default: 6.0, from minilm-l6_full.yaml)",
                                                    "(default: 128, from minilm-l6_full.yaml)"]),
    (["--model", "minilm-l6", "--method", "lora"], ["from minilm-l6_lora.yaml"]),
])
def test_encoder_help_shows_the_defaults_that_apply(argv, shown, capsys):
    """The automatic encoders/configs/<model>_<method>.yaml is read before --help is printed."""
    from encoders.train import cli

    with pytest.raises(SystemExit):
        cli([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in shown:
        assert text in out


def test_sft_help_shows_the_model_config_defaults(capsys):
    from finetune.sft import cli

    with pytest.raises(SystemExit):
        cli(["--model", "gemma3-270m", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "from gemma3-270m.yaml" in out and "--dry-run" in out and "--debug" in out
