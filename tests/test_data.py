import json
from collections import Counter

import pandas as pd
import pytest

from eval import data as data_mod
from eval.data import DataError, clean_text, load_task, nested_order, split_hash


def write_reviews(path, n=60, sep=",", encoding="utf-8", extra_rows=()):
    rows = [(f"review number {i} is {'great' if i % 3 else 'bad'} caf\u00e9 &amp; more", "pos" if i % 3 else "neg")
            for i in range(n)]
    rows += list(extra_rows)
    df = pd.DataFrame(rows, columns=["review", "sentiment"])
    if path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, sep=sep, index=False, encoding=encoding)
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    data_mod._CACHE.clear()


@pytest.mark.parametrize("name,sep,encoding", [("r.csv", ",", "utf-8"), ("r.tsv", "\t", "utf-8"),
                                               ("r.jsonl", None, None), ("r.parquet", None, None),
                                               ("latin.csv", ",", "latin-1"), ("bom.csv", ",", "utf-8-sig")])
def test_local_formats_and_encodings_load(tmp_path, name, sep, encoding):
    path = write_reviews(tmp_path / name, sep=sep or ",", encoding=encoding or "utf-8")
    td = load_task(data=str(path), text_column="review", label_column="sentiment")
    assert td.labels == ["neg", "pos"]
    texts = [e.text for e in td.test_all + td.pool + td.validation]
    assert len(texts) == 60
    assert any("café & more" in t for t in texts)  # entities unescaped, latin-1 decoded right


def test_missing_column_lists_the_real_columns(tmp_path):
    path = write_reviews(tmp_path / "r.csv")
    with pytest.raises(DataError) as err:
        load_task(data=str(path), text_column="text", label_column="sentiment")
    msg = str(err.value)
    assert "'text' not found" in msg and "review, sentiment" in msg and "--text-column" in msg


def test_unknown_labels_are_listed(tmp_path):
    path = write_reviews(tmp_path / "r.csv", extra_rows=[("odd one", "meh"), ("odd two", "meh"), ("x", "???")])
    with pytest.raises(DataError) as err:
        load_task(data=str(path), text_column="review", label_column="sentiment", labels="neg,pos")
    assert "'meh' (2 rows)" in str(err.value) and "'???' (1 rows)" in str(err.value)


def test_empty_file_and_header_only(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_task(data=str(tmp_path / "e.csv"), text_column="a", label_column="b")
    (tmp_path / "h.csv").write_text("review,sentiment\n")
    with pytest.raises(DataError, match="no rows"):
        load_task(data=str(tmp_path / "h.csv"), text_column="review", label_column="sentiment")


def test_empty_text_is_reported_not_crashed_on(tmp_path, capsys):
    path = write_reviews(tmp_path / "r.csv", extra_rows=[("", "pos"), ("   ", "neg"), ("<br />", "pos")])
    td = load_task(data=str(path), text_column="review", label_column="sentiment")
    assert td.report["train_empty_text_removed"] == 3
    assert "empty text" in capsys.readouterr().err


def test_train_test_duplicates_removed_and_counted(tmp_path):
    train = write_reviews(tmp_path / "train.csv", n=40)
    test = tmp_path / "test.csv"
    pd.DataFrame([("review number 1 is great café &amp; more", "pos"), ("brand new text", "neg"),
                  ("brand new text", "neg")], columns=["review", "sentiment"]).to_csv(test, index=False)
    td = load_task(data=str(train), test_data=str(test), text_column="review", label_column="sentiment")
    assert td.report["train_test_overlap_removed"] == 1
    assert td.report["test_duplicates_removed"] == 1
    assert len(td.test_all) == 2


def test_nested_order_is_nested_stratified_and_seeded():
    labels = ["a"] * 70 + ["b"] * 20 + ["c"] * 10
    o0, o1 = nested_order(labels, 0), nested_order(labels, 1)
    assert sorted(o0) == list(range(100)) and o0 != o1 and o0 == nested_order(labels, 0)
    counts = Counter(labels[i] for i in o0[:10])
    assert counts == {"a": 7, "b": 2, "c": 1}  # each prefix follows the label distribution


def test_train_subsets_nested_test_fixed(tmp_path):
    path = write_reviews(tmp_path / "r.csv", n=200)
    td = load_task(data=str(path), text_column="review", label_column="sentiment")
    s16, s64, full = td.train(16, 0), td.train(64, 0), td.train("full", 0)
    assert {e.id for e in s16} <= {e.id for e in s64} <= {e.id for e in full}
    assert len(full) == len(td.pool)
    assert {e.id for e in td.train(None, 3)} == {e.id for e in full}  # full is every pool example, any seed
    assert {e.id for e in td.train(16, 1)} != {e.id for e in s16}
    assert td.test(10) == td.test_all[:10] and td.test(10) == td.test(10)
    assert not ({e.id for e in td.validation} & {e.id for e in full})
    assert not ({e.id for e in td.test_all} & {e.id for e in full})
    with pytest.raises(DataError, match="use 'full'"):
        td.train(10_000, 0)
    with pytest.raises(DataError, match="n-eval"):
        td.test(10_000)
    h = td.hashes(16, 0, 10)
    assert h["test"] == split_hash(td.test(10)) and h["train"] == split_hash(s16)


def test_clean_text_keeps_meaning():
    assert clean_text("I &amp;#039;m <b>happy</b>!<br /><br />Really.") == "I 'm happy ! Really."
    assert clean_text('"""Quoted"""', strip_quotes=True) == "Quoted"
    assert clean_text(None) == "" and clean_text(float("nan")) == ""
    assert clean_text("Keep CASE, punctuation!") == "Keep CASE, punctuation!"


def test_drugs_offline_task_loads_from_the_package():
    td = load_task("drugs")
    assert td.labels == ["negative", "neutral", "positive"]
    assert len(td.test_all) == 379 and len(td.pool) + len(td.validation) == 599
    assert not any("&#039;" in e.text for e in td.test_all[:50])


def test_hf_source_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load(path, name=None, split=None):
        calls.append((path, name, split))
        n = 40
        return datasets.Dataset.from_dict({"sentence": [f"s{split}{i} text" for i in range(n)],
                                           "label": [i % 2 for i in range(n)]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    td = load_task("sst2")
    assert ("nyu-mll/glue", "sst2", "validation") in calls  # GLUE validation is our test set
    assert set(td.labels) == {e.label for e in td.test_all} == {"negative", "positive"}


def test_hf_failure_names_the_offline_alternatives(monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(DataError, match="--task drugs"):
        load_task("imdb")


def test_unknown_task_lists_tasks():
    with pytest.raises(DataError, match="drugs"):
        load_task("nope")


def test_describe_cli_json(tmp_path, capsys):
    path = write_reviews(tmp_path / "r.csv")
    assert data_mod.main(["--data", str(path), "--text-column", "review", "--label-column", "sentiment",
                          "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["test"]["n"] == 12 and info["labels"] == ["neg", "pos"]
    assert data_mod.main(["--data", str(path), "--text-column", "nope", "--label-column", "sentiment"]) == 2
    assert "its columns are: review, sentiment" in capsys.readouterr().err
