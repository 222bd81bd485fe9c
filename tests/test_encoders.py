"""Encoder track, end to end on tiny BERT / RoBERTa / DeBERTa-v2 models built here (no download, CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from encoders import train as enc_train  # noqa: E402
from encoders.config import LOSSES, METHODS, EncoderConfig  # noqa: E402
from encoders.losses import balanced_class_weights, make_loss, supcon_loss, symmetric_kl  # noqa: E402
from encoders.modeling import MethodError, build_classifier, prefix_problem  # noqa: E402
from eval.run.cli import load_yaml_config  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "encoders" / "configs").glob("*.yaml"))


def run_cli(tiny: dict, model: str, method: str, loss: str, results: Path, *extra: str) -> list[dict]:
    argv = ["--data", tiny["csv"], "--text-column", "text", "--label-column", "label", "--model",
            tiny["paths"][model], "--method", method, "--loss", loss, "--n-train", "12", "--seeds", "0",
            "--results-dir", str(results), "--min-steps", "2", "--max-steps", "2", "--evals", "1",
            "--batch-size", "6", "--max-length", "24", "--num-virtual-tokens", "4", "--no-save-model",
            "--lr", "1e-3", "--no-refit", *extra]  # one fit per run here; the search has its own tests
    assert enc_train.cli(argv) == 0
    records = [json.loads(p.read_text()) for p in results.glob("runs/*/encoders/*.json")]
    assert records, "no record written"
    return records


def check_record(rec: dict) -> None:
    assert rec["track"] == "encoders" and rec["n_eval"] == 12
    assert 0.0 <= rec["metrics"]["macro_f1"] <= 1.0 and "collapsed" in rec["metrics"]
    assert rec["details"]["training"]["steps"] == 2 and rec["details"]["training"]["history"]
    examples = Path(rec["_path"] if "_path" in rec else "").name  # noqa: F841 - path checked via examples_file
    assert rec["examples_file"].endswith(".jsonl")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("loss", LOSSES)
def test_every_method_and_loss_writes_a_record(tiny, tmp_path, method, loss, capsys):
    if method == "setfit" and loss in ("rdrop", "supcon"):  # setfit has its own contrastive loss: refused up front
        with pytest.raises(SystemExit) as exit_:  # refused while parsing the command line, before any work
            run_cli(tiny, "bert", method, loss, tmp_path)
        assert exit_.value.code == 2
        assert "--method setfit trains its body with setfit's contrastive loss" in capsys.readouterr().err
        return
    if method == "prefix" and prefix_problem(tiny["paths"]["bert"]):  # refused before any work (see below)
        with pytest.raises(AssertionError):
            run_cli(tiny, "bert", method, loss, tmp_path)
        assert "prefix tuning does not apply to bert" in capsys.readouterr().err
        assert not list(tmp_path.glob("runs/**/*.json"))
        return
    (rec,) = run_cli(tiny, "bert", method, loss, tmp_path, "--freeze-k", "1")
    check_record(rec)
    assert rec["method"] == method and rec["options"]["loss"] == loss
    jsonl = next(tmp_path.glob("runs/*/encoders/*.jsonl")).read_text().splitlines()
    assert len(jsonl) == 12


@pytest.mark.parametrize("model", ["roberta", "deberta"])
@pytest.mark.parametrize("method", ["full", "lora", "ptuning", "prompt-tuning"])
def test_other_architectures_train(tiny, tmp_path, model, method):
    (rec,) = run_cli(tiny, model, method, "ce", tmp_path)
    check_record(rec)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("model", ["bert", "roberta", "deberta", "distilbert"])
def test_lora_freezes_the_base_and_trains_the_head(tiny, model):
    cfg = EncoderConfig(model=tiny["paths"][model], method="lora").resolved()
    peft_model, _ = build_classifier(cfg, cfg.model, ["a", "b", "c"])
    names = _trainable(peft_model)
    assert names and all("lora_" in n or "modules_to_save" in n for n in names), sorted(names)[:5]
    assert any("classifier" in n for n in names)
    assert any("lora_A" in n for n in names)
    if model == "deberta":
        assert any("pooler" in n for n in names), "DeBERTa's pooler is fresh and must be trained (peft #2171)"


def test_freeze_k_trains_only_top_layers_and_head(tiny):
    cfg = EncoderConfig(model=tiny["paths"]["bert"], method="freeze-k", freeze_k=1)
    model, _ = build_classifier(cfg, cfg.model, ["a", "b", "c"])
    names = _trainable(model)
    assert any(".layer.1." in n for n in names) and not any(".layer.0." in n for n in names)
    assert not any("embeddings" in n for n in names) and any("classifier" in n for n in names)


def prefix_architectures() -> set[str]:
    """Which of the tiny architectures peft's prefix tuning can drive with the installed transformers: it passes
    `past_key_values`, which BERT and RoBERTa took up to 5.23 and no architecture takes from 5.24 on (renamed
    `cache`); DeBERTa and DistilBERT never did."""
    from packaging.version import Version

    return {"bert", "roberta"} if Version(transformers.__version__) < Version("5.24") else set()


@pytest.mark.parametrize("model", ["bert", "roberta", "deberta", "distilbert"])
def test_prefix_support_is_known_per_architecture(tiny, model):
    problem = prefix_problem(tiny["paths"][model])
    assert (problem is None) == (model in prefix_architectures()), problem
    cfg = EncoderConfig(model=tiny["paths"][model], method="prefix")
    if problem:  # the loaded-model check says the same (the backstop for checkpoints preflight cannot read)
        assert "past_key_values" in problem
        with pytest.raises(MethodError, match="past_key_values"):
            build_classifier(cfg, cfg.model, ["a", "b", "c"])
    else:
        build_classifier(cfg, cfg.model, ["a", "b", "c"])


@pytest.mark.parametrize("model", ["bert", "deberta"])
def test_unsupported_prefix_is_refused_by_preflight_in_one_line(tiny, tmp_path, model, capsys):
    if model in prefix_architectures():
        pytest.skip(f"{model} takes prefix tuning with transformers {transformers.__version__}")
    argv = ["--data", tiny["csv"], "--text-column", "text", "--label-column", "label", "--model",
            tiny["paths"][model], "--method", "prefix", "--n-train", "12", "--results-dir", str(tmp_path)]
    assert enc_train.cli(argv) == 2
    err = capsys.readouterr().err
    assert "prefix tuning does not apply" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))  # refused before any model load or record


def test_balanced_class_weights():
    # n / (k · n_c): 6 examples, 3 classes with 3 / 2 / 1 -> 6/9, 6/6, 6/3; an absent class gets 0
    assert balanced_class_weights([0, 0, 0, 1, 1, 2], 3) == pytest.approx([2 / 3, 1.0, 2.0])
    assert balanced_class_weights([0, 0, 1, 1], 3) == pytest.approx([4 / 6, 4 / 6, 0.0])


def test_weighted_ce_uses_the_weights():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1])

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
            return transformers.modeling_outputs.SequenceClassifierOutput(logits=logits)

    batch = {"input_ids": torch.zeros(3, 2, dtype=torch.long), "labels": labels}
    w = [3 / 2, 3 / 4]
    got = make_loss("weighted-ce", class_weights=w)(Fixed(), batch)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(w))
    assert float(got) == pytest.approx(float(expected))
    assert float(got) != pytest.approx(float(make_loss("ce")(Fixed(), batch)))


def test_rdrop_and_supcon_pieces():
    a = torch.tensor([[1.0, 0.0]])
    assert float(symmetric_kl(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(symmetric_kl(a, torch.tensor([[0.0, 1.0]]))) > 0
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    good = supcon_loss(feats, torch.tensor([0, 0, 1, 1]))
    bad = supcon_loss(feats, torch.tensor([0, 1, 0, 1]))
    assert float(good) < float(bad)
    assert float(supcon_loss(feats, torch.tensor([0, 1, 2, 3]))) == 0.0  # no positive pairs


def test_mlm_stage_runs_then_fine_tunes_with_llrd(tiny, tmp_path):
    (rec,) = run_cli(tiny, "bert", "full", "ce", tmp_path, "--mlm-pretrain", "--mlm-steps", "2", "--llrd", "0.8")
    assert rec["details"]["mlm"]["steps"] == 2 and rec["details"]["mlm"]["texts"] > 0
    assert rec["options"]["llrd"] == 0.8


def test_early_stopping_waits_for_min_steps(tiny, tmp_path):
    argv = ["--data", tiny["csv"], "--text-column", "text", "--label-column", "label", "--model",
            tiny["paths"]["bert"], "--n-train", "12", "--results-dir", str(tmp_path), "--batch-size", "6",
            "--epochs", "10", "--min-steps", "5", "--max-steps", "10", "--evals", "10", "--patience", "1",
            "--max-length", "24", "--no-save-model", "--lr", "1e-3", "--no-refit"]
    assert enc_train.cli(argv) == 0
    search = json.loads(next(tmp_path.glob("runs/*/encoders/*.json")).read_text())["details"]["training"]["search"]
    (trial,) = search["trials"]
    assert trial["steps"] >= 5
    history = trial["history"]
    assert len(history) == trial["steps"]  # one evaluation per step here
    best = max(h["val_macro_f1"] for h in history)
    assert trial["val_macro_f1"] == best == search["chosen"]["val_macro_f1"]
    # ties go to the later checkpoint
    assert search["chosen"]["best_step"] == max(h["step"] for h in history if h["val_macro_f1"] == best)


def test_plan_steps_scales_to_the_sample_size():
    from encoders.loop import plan_steps

    cfg = EncoderConfig(batch_size=8, epochs=2, min_steps=30, max_steps=70)
    assert plan_steps(16, cfg) == (30, 2)  # n=16: the minimum, not 2 epochs' 4 steps
    assert plan_steps(256, cfg) == (64, 32)
    assert plan_steps(539, cfg) == (70, 68)  # capped


def test_kfold_records_mean_and_std(tiny, tmp_path):
    (rec,) = run_cli(tiny, "bert", "full", "ce", tmp_path, "--kfold", "2", "--n-train", "30")
    assert rec["details"]["kfold"]["k"] == 2 and len(rec["details"]["kfold"]["folds"]) == 2
    assert "macro_f1_mean" in rec["details"]["kfold"] and "macro_f1_std" in rec["details"]["kfold"]


def test_run_one_reproduces_from_the_spec_alone(tiny, tmp_path):
    from eval.run.records import RunSpec
    from eval.run.runner import run_spec

    (rec,) = run_cli(tiny, "bert", "lora", "ce", tmp_path / "a")
    spec = RunSpec.from_record(rec)
    assert spec.run_id == rec["run_id"] and spec.data["sha256"]  # --data: the file's hash is part of the spec
    again = json.loads(run_spec(spec, str(tmp_path / "b")).read_text())
    assert again["metrics"]["macro_f1"] == pytest.approx(rec["metrics"]["macro_f1"])


@pytest.mark.parametrize("model,method",
                         [("bert", "full"), ("bert", "lora"), ("deberta", "lora"), ("roberta", "ptuning")])
def test_predict_classifies_with_a_saved_run(tiny, tmp_path, model, method, capsys):
    from encoders import predict

    argv = ["--data", tiny["csv"], "--text-column", "text", "--label-column", "label", "--model",
            tiny["paths"][model], "--method", method, "--n-train", "12", "--results-dir", str(tmp_path),
            "--min-steps", "2", "--max-steps", "2", "--evals", "1", "--max-length", "24", "--num-virtual-tokens", "4"]
    assert enc_train.cli(argv) == 0
    (run_dir,) = list(tmp_path.glob("runs/*/encoders/artifacts/*"))
    assert list((run_dir / "model").glob("*.safetensors")) and not list(run_dir.rglob("*.bin"))
    texts = tmp_path / "in.txt"
    texts.write_text("the drug was great\nthe drug was awful\n")
    capsys.readouterr()
    assert predict.main([str(run_dir), str(texts), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == ["the drug was great", "the drug was awful"]
    assert all(x["label"] in ("a", "b", "c") for x in lines)
    # the saved model (the restored best checkpoint) gives exactly the predictions the run recorded; bert-lora: a
    # base saved without its pooler (an MLM checkpoint), whose random pooler only the run's seed rebuilds
    from eval.inputs.data import load_task

    rec = json.loads(next(tmp_path.glob("runs/*/encoders/*.json")).read_text())
    recorded = [json.loads(x)["pred"] for x in next(tmp_path.glob("runs/*/encoders/*.jsonl")).read_text().splitlines()]
    test = load_task(data=tiny["csv"], text_column="text", label_column="label").test()
    assert [label for label, _ in predict.classify(run_dir, [e.text for e in test])] == recorded
    assert rec["labels"] == ["a", "b", "c"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_file_loads(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python encoders/train.py") and f"--config encoders/configs/{path.name}" in first
    values = load_yaml_config(path, EncoderConfig)
    cfg = EncoderConfig(**values)
    assert path.stem == f"{cfg.model}_{cfg.method}"
    grid = cfg.resolved().lr_grid
    assert grid and all(x > 0 for x in grid) and (cfg.lr is not None or len(grid) == 3)  # LR given, or searched


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="method must be one of"):
        EncoderConfig(method="adapter")
    with pytest.raises(ValueError, match="unknown encoder options"):
        EncoderConfig.from_spec("minilm-l6", "full", {"learning_rate": 1e-3})


@pytest.mark.slow
def test_minilm_on_drugs_learns(tmp_path):
    """Real model, real data: a short weighted-ce run must beat a constant predictor."""
    argv = ["--task", "drugs", "--config", "encoders/configs/minilm-l6_full.yaml", "--loss", "weighted-ce",
            "--n-train", "64", "--results-dir", str(tmp_path), "--n-eval", "100"]
    assert enc_train.cli(argv) == 0
    rec = json.loads(next(tmp_path.glob("runs/drugs/encoders/*.json")).read_text())
    assert not rec["metrics"]["collapsed"]
