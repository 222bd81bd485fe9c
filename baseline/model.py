"""The TF-IDF baseline's fitted model on disk without pickle, and its predictor for `python -m eval.serve`.

A fitted `TfidfVectorizer` + `LogisticRegression` is data: the vectorizer's settings and vocabulary (JSON), its idf
vector and the classifier's coefficients (safetensors, float64 as fitted). Loading builds fresh scikit-learn objects
from those values, so no code from the file runs (a pickle or joblib file runs whatever it names; docs/serve.md).
The loaded pipeline computes the same arithmetic as the fitted one, so its labels equal the evaluated ones exactly
(tests/test_serve.py checks it against the run's per-example file).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL_FILE = "tfidf.json"  # settings, vocabulary, classes
ARRAYS_FILE = "tfidf.safetensors"  # idf, coef, intercept
# the vectorizer settings that change its output (everything else is fitting-only: min_df, max_features, ...)
VECTORIZER_KEYS = ("analyzer", "ngram_range", "lowercase", "token_pattern", "strip_accents", "sublinear_tf", "norm",
                   "use_idf", "smooth_idf", "binary")


def save(pipeline: Any | None, out: Path, labels_seen: Sequence[str], constant: str | None = None) -> Path:
    """Write the fitted pipeline (or, for a one-class training set, the constant answer) to `out`."""
    import numpy as np
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"format": "tfidf-logreg/1", "labels_seen": list(labels_seen), "constant": constant}
    if pipeline is not None:
        vec, clf = pipeline.steps[0][1], pipeline.steps[-1][1]
        params = vec.get_params()
        meta["vectorizer"] = {k: list(params[k]) if k == "ngram_range" else params[k] for k in VECTORIZER_KEYS}
        meta["vocabulary"] = {term: int(i) for term, i in vec.vocabulary_.items()}
        meta["classes"] = [str(c) for c in clf.classes_]
        save_file({"idf": np.ascontiguousarray(vec.idf_, dtype=np.float64),
                   "coef": np.ascontiguousarray(clf.coef_, dtype=np.float64),
                   "intercept": np.ascontiguousarray(clf.intercept_, dtype=np.float64)}, str(out / ARRAYS_FILE))
    (out / MODEL_FILE).write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def load(folder: Path) -> tuple[Any | None, dict]:
    """(pipeline or None for a constant model, meta) from `save`'s files; nothing in them is executed."""
    from safetensors.numpy import load_file
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    meta = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
    if meta.get("format") != "tfidf-logreg/1":
        raise ValueError(f"{folder / MODEL_FILE}: not a saved TF-IDF baseline (format {meta.get('format')!r})")
    if meta.get("constant") is not None:
        return None, meta
    import numpy as np

    arrays = load_file(str(folder / ARRAYS_FILE))
    settings = dict(meta["vectorizer"])
    settings["ngram_range"] = tuple(settings["ngram_range"])
    vec = TfidfVectorizer(**settings, vocabulary=meta["vocabulary"])
    vec.idf_ = arrays["idf"]  # the documented setter: builds the transformer around the fitted idf
    clf = LogisticRegression()
    clf.classes_ = np.array(meta["classes"], dtype=object)
    clf.coef_, clf.intercept_ = arrays["coef"], arrays["intercept"]
    clf.n_features_in_ = arrays["coef"].shape[1]
    return make_pipeline(vec, clf), meta


class BaselinePredictor:
    """Labels and class probabilities of a saved baseline run (eval.serve.predictor.Predictor)."""

    score_kind = "probability"

    def __init__(self, folder: Path, labels: Sequence[str], max_chars: int = 100_000) -> None:
        self.pipeline, self.meta = load(folder)
        self.labels = list(labels)
        self.batch_size = 256  # sparse matrix products: batching only saves Python overhead
        self.max_chars = max_chars
        self.facts = {"loaded_from": str(folder), "format": self.meta["format"], "dtype": "float64"}

    def too_long(self, text: str) -> str | None:
        if len(text) > self.max_chars:
            return f"a text has {len(text)} characters; this server takes at most {self.max_chars}"
        return None

    def predict(self, texts: Sequence[str]) -> list[dict]:
        if self.pipeline is None:
            constant = self.meta["constant"]
            return [{"label": constant, "scores": {lab: float(lab == constant) for lab in self.labels},
                     "status": "valid"} for _ in texts]
        classes = [str(c) for c in self.pipeline.classes_]
        probs = self.pipeline.predict_proba(list(texts))
        labels = self.pipeline.predict(list(texts))  # what the evaluation called (argmax of the decision function)
        return [{"label": str(lab), "scores": {c: round(float(p), 6) for c, p in zip(classes, row)},
                 "status": "valid"} for lab, row in zip(labels, probs)]


def predictor(record: dict, artifacts: Path) -> BaselinePredictor:
    """The Track's `predictor` (eval/tracks.py): a saved baseline run's model."""
    from eval.serve.predictor import NoArtifacts

    if not (artifacts / MODEL_FILE).exists():
        raise NoArtifacts("the fitted TF-IDF model", "--save-model")
    return BaselinePredictor(artifacts, record["labels"])
