"""Small-n fairness pieces of the encoder track, on tiny models built here (CPU, seconds): the pooling a
sentence-transformers checkpoint was trained with, the validation split carved from the training subset, the
learning-rate search with its refit, SetFit through the setfit library, a decoder LLM with a classification head."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from encoders import train as enc_train  # noqa: E402
from encoders.config import EncoderConfig  # noqa: E402
from encoders.modeling import build_classifier, choose_pooling  # noqa: E402
from encoders.pooling import PooledClassifier, checkpoint_pooling, pool  # noqa: E402
from encoders.search import refit_steps  # noqa: E402
from eval.inputs.data import Example  # noqa: E402
from eval.inputs.sources import DataError  # noqa: E402
from eval.run.validation import carve_validation  # noqa: E402


@pytest.fixture(scope="module")
def st_model(tiny, tmp_path_factory) -> str:
    """The tiny BERT as a sentence-transformers folder: modules.json + 1_Pooling/config.json (mean), as
    all-MiniLM-L6-v2 ships them."""
    folder = tmp_path_factory.mktemp("st") / "bert-st"
    shutil.copytree(tiny["paths"]["bert"], folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    return str(folder)


def argv(tiny, model: str, method: str, results: Path, *extra: str) -> list[str]:
    return ["--data", tiny["csv"], "--text-column", "text", "--label-column", "label", "--model", model,
            "--method", method, "--n-train", "12", "--seeds", "0", "--results-dir", str(results), "--min-steps", "2",
            "--max-steps", "3", "--evals", "1", "--batch-size", "6", "--max-length", "24", *extra]


def record(results: Path) -> dict:
    return json.loads(next(results.glob("runs/*/encoders/*.json")).read_text())


def test_pooling_is_read_from_the_checkpoint(tiny, st_model):
    assert checkpoint_pooling(st_model) == "mean"
    assert checkpoint_pooling(tiny["paths"]["bert"]) is None
    assert choose_pooling(EncoderConfig(model=st_model, method="lora"), st_model)[0] == "mean"
    assert choose_pooling(EncoderConfig(model=tiny["paths"]["bert"], method="full"),
                          tiny["paths"]["bert"])[0] == "head"
    # soft prompts go through peft's wrapper of the architecture's head: that head is kept, and the reason says so
    pooling, why = choose_pooling(EncoderConfig(model=st_model, method="ptuning"), st_model)
    assert pooling == "head" and "peft" in why


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert pool(hidden, torch.tensor([[1, 1, 0]]), "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, torch.tensor([[1, 1, 0]]), "max").tolist() == [[3.0, 4.0]]
    assert pool(hidden, torch.tensor([[1, 1, 0]]), "cls").tolist() == [[1.0, 2.0]]


def test_pooled_lora_trains_adapters_and_the_whole_head(st_model):
    cfg = EncoderConfig(model=st_model, method="lora", lr=1e-3)
    model, tok = build_classifier(cfg, st_model, ["a", "b", "c"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in trainable), sorted(trainable)[:4]
    assert isinstance(model.get_base_model(), PooledClassifier)
    batch = tok(["the drug was good", "bad"], padding=True, return_tensors="pt")
    alone = tok(["bad"], return_tensors="pt")
    model.eval()
    with torch.no_grad():  # padding does not change a text's logits (the mean skips pad positions)
        assert torch.allclose(model(**batch).logits[1], model(**alone).logits[0], atol=1e-5)


def test_carved_validation_is_stratified_and_keeps_singletons():
    exs = [Example(str(i), f"t{i}", lab) for i, lab in enumerate(["p"] * 10 + ["n"] * 5 + ["u"])]
    fit, val = carve_validation(exs, 0.25, seed=0)
    assert sorted(e.label for e in val) == ["n", "p", "p"]  # round(2.5)=2 p, round(1.25)=1 n; u seen once stays
    assert {e.id for e in fit} | {e.id for e in val} == {e.id for e in exs} and not {e.id for e in fit} & {
        e.id for e in val}
    assert carve_validation(exs, 0.25, seed=0) == (fit, val)  # deterministic for a seed
    with pytest.raises(DataError, match="larger --n-train"):
        carve_validation(exs[-1:] + exs[:1], 0.25, seed=0)


def test_refit_keeps_the_epochs_of_the_best_checkpoint():
    cfg = EncoderConfig(min_steps=5)
    assert refit_steps(30, 48, 64, cfg) == 40
    assert refit_steps(2, 48, 64, cfg) == 5  # the floor at small n


def test_search_records_grid_choice_and_counts_its_cost(tiny, st_model, tmp_path):
    assert enc_train.cli(argv(tiny, st_model, "lora", tmp_path, "--lr-grid", "1e-4", "3e-3", "--search", "grid")) == 0
    rec = record(tmp_path)
    search, training = rec["details"]["training"]["search"], rec["details"]["training"]
    assert search["grid"] == [1e-4, 3e-3] and search["searched"] and search["refit"]
    assert [t["lr"] for t in search["trials"]] == [1e-4, 3e-3]
    best = max(t["val_macro_f1"] for t in search["trials"])
    assert search["chosen"]["val_macro_f1"] == best and search["chosen"]["lr"] in (1e-4, 3e-3)
    assert search["n_fit"] + search["n_val"] == 12 and search["n_val"] >= 3  # carved from the 12, not the task
    assert rec["timing"]["train_s"] >= sum(t["train_s"] for t in search["trials"]) - 0.02
    assert training["pooling"] == "mean" and "sentence-transformers" in training["pooling_reason"]
    assert rec["options"]["lr"] is None and rec["options"]["lr_grid"] == [1e-4, 3e-3]


def test_auto_search_uses_the_grids_middle_when_the_split_cannot_separate_lrs(tiny, st_model, tmp_path):
    """3 validation items detect only differences of ~1: no LR search (docs/speed.md), the steps still chosen."""
    assert enc_train.cli(argv(tiny, st_model, "lora", tmp_path, "--lr-grid", "1e-4", "3e-4", "3e-3")) == 0
    search = record(tmp_path)["details"]["training"]["search"]
    assert not search["searched"] and [t["lr"] for t in search["trials"]] == [3e-4]
    assert "no LR search" in search["lr_gate"] and search["min_detectable_difference"] > 0.5
    assert search["chosen"]["lr"] == 3e-4 and search["refit"]


def test_setfit_runs_end_to_end_and_predicts_from_its_saved_run(tiny, st_model, tmp_path, capsys):
    pytest.importorskip("setfit")
    from encoders import predict

    assert enc_train.cli(argv(tiny, st_model, "setfit", tmp_path, "--lr", "1e-4", "--setfit-iterations", "2",
                               "--loss", "weighted-ce")) == 0
    rec = record(tmp_path)
    assert rec["method"] == "setfit" and rec["details"]["training"]["pooling"] == "setfit"
    assert rec["details"]["training"]["search"]["steps_chosen_by"] == "the method's recipe"
    assert rec["details"]["training"]["steps"] == 3  # --max-steps caps setfit's pair steps
    (run_dir,) = list(tmp_path.glob("runs/*/encoders/artifacts/*"))
    assert not list(run_dir.rglob("*.pkl")) and not list(run_dir.rglob("*.bin"))  # no pickle in a saved run
    recorded = [json.loads(x)["pred"] for x in next(tmp_path.glob("runs/*/encoders/*.jsonl")).read_text().splitlines()]
    from eval.inputs.data import load_task

    test = load_task(data=tiny["csv"], text_column="text", label_column="label").test()
    assert [label for label, _ in predict.classify(run_dir, [e.text for e in test])] == recorded


def test_decoder_llm_gets_a_last_token_head_with_lora_on_attention_and_mlp(tiny, tiny_causal_lm, tmp_path):
    path = str(tiny_causal_lm)
    cfg = EncoderConfig(model=path, method="lora", lr=1e-3)
    assert choose_pooling(cfg, path)[0] == "last"
    model, tok = build_classifier(cfg, path, ["a", "b", "c"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for proj in ("q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"):
        assert any(f"{proj}.lora_A" in n for n in trainable), proj
    assert any("score" in n and "modules_to_save" in n for n in trainable)  # the head, trained in full
    assert tok.pad_token is not None and model.config.pad_token_id == tok.pad_token_id
    # end to end through the CLI: a record with valid rate 1 by construction (no answer parsing)
    assert enc_train.cli(argv(tiny, path, "lora", tmp_path, "--lr", "1e-3", "--no-refit")) == 0
    rec = record(tmp_path)
    assert rec["details"]["training"]["pooling"] == "last" and rec["metrics"]["valid_rate"] == 1.0


def test_a_decoder_converted_from_gguf_is_recognised_without_architectures(tiny, tiny_causal_lm, tmp_path):
    """Configs written from a GGUF (eval/lm/cache.py) have no `architectures`; the model type decides."""
    from encoders.modeling import is_decoder

    folder = tmp_path / "from-gguf"
    shutil.copytree(tiny_causal_lm, folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(config))
    assert is_decoder(str(folder)) and not is_decoder(tiny["paths"]["bert"])
