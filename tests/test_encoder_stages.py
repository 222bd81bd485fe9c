"""The encoder track's optional stages, called directly: MLM pre-training (encoders/mlm.py) and a saved SetFit
run's classifier (encoders/setfit_method.py). Their end-to-end CLI runs are in tests/test_encoders.py and
tests/test_encoders_fair.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_encoders_fair import st_model  # noqa: F401 - the tiny sentence-transformers folder fixture

from encoders.config import EncoderConfig


def test_mlm_pretraining_saves_a_loadable_model_and_summarises_its_loss(tiny, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForMaskedLM

    from encoders.mlm import mlm_pretrain

    cfg = EncoderConfig(model=tiny["paths"]["bert"], method="full", mlm_steps=3, batch_size=4, max_length=16,
                        mlm_probability=0.5)
    texts = [line.rsplit(",", 1)[0] for line in Path(tiny["csv"]).read_text().splitlines()[1:6]]
    summary = mlm_pretrain(tiny["paths"]["bert"], texts, cfg, tmp_path / "mlm", seed=0, device=torch.device("cpu"),
                           progress=False)
    assert summary["steps"] == 3 and summary["texts"] == 5
    assert math.isfinite(summary["loss_first"]) and math.isfinite(summary["loss_last"]) and summary["loss_first"] > 0
    assert (tmp_path / "mlm" / "model.safetensors").exists()
    AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm", use_safetensors=True)  # the classifier stage loads it
    with pytest.raises(ValueError, match="needs unlabelled text"):
        mlm_pretrain(tiny["paths"]["bert"], [], cfg, tmp_path / "none", seed=0, device=torch.device("cpu"))


@pytest.mark.parametrize("labels", [["neg", "pos"], ["neg", "neu", "pos"]])
def test_a_saved_setfit_run_classifies_like_its_logistic_head(st_model, tmp_path: Path, labels) -> None:  # noqa: F811
    pytest.importorskip("sentence_transformers")
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer

    from encoders.setfit_method import HEAD_FILE, classify

    body = SentenceTransformer(st_model, device="cpu")
    body.save(str(tmp_path / "model"))
    dim = body.get_sentence_embedding_dimension()
    rows = 1 if len(labels) == 2 else len(labels)  # scikit-learn's binary head has one row of coefficients
    gen = torch.Generator().manual_seed(0)
    coef, intercept = torch.randn(rows, dim, generator=gen), torch.randn(rows, generator=gen)
    save_file({"coef": coef, "intercept": intercept, "classes": torch.arange(len(labels))},
              str(tmp_path / HEAD_FILE))
    texts = ["the drug was very good", "it was bad"]
    got = classify(tmp_path, texts, {"labels": labels})
    emb = torch.as_tensor(body.encode(texts, convert_to_numpy=True)).float()
    scores = emb @ coef.T + intercept
    probs = torch.cat([1 - scores.sigmoid(), scores.sigmoid()], 1) if rows == 1 else scores.softmax(-1)
    want = [(labels[int(i)], float(p)) for p, i in zip(*probs.max(-1))]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert all(abs(g[1] - w[1]) < 1e-5 and 1 / len(labels) <= g[1] <= 1 for g, w in zip(got, want))
    json.dumps(got)  # plain values: encoders/predict.py prints them as JSON
