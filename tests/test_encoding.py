"""Decoding data files (eval/inputs/encoding.py, docs/encodings.md): real text in the encodings users' files come in is
read back exactly, through eval/inputs/data.py, a training run and the per-example file; an uncertain reading says so;
a wrong --encoding is one line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from eval.errors import DataError
from eval.inputs import data as data_mod
from eval.inputs.encoding import decode, looks_western

# Real sentences (reviews as users write them), each language with its letters outside ASCII.
LATIN1 = [
    ("Le film était une crème, à voir absolument.", "pos"),
    ("Très déçu par la fin, honnête mais trop long.", "neg"),
    ("J'ai adoré ce côté naïf, où l'on voit la forêt.", "pos"),
    ("Ça ne vaut pas le détour, hélas, quelle lenteur.", "neg"),
    ("El señor está aquí y la película es una joya.", "pos"),
    ("Fue pésima, un año perdido; ¿qué pasó con el guión?", "neg"),
    ("Die Größe ist schön und die Geschichte berührt.", "pos"),
    ("Der Käse schmeckt übel, die Straße war zu laut.", "neg"),
    ("A canção é ótima e o coração está lá.", "pos"),
    ("A comunicação não é fácil, uma pena às vezes.", "neg"),
]
LATIN1_TEST = [
    ("Un chef-d'œuvre? Non, mais une belle soirée à Noël.", "pos"),
    ("Mal joué, décor raté, musique pénible.", "neg"),
    ("¡Qué maravilla! La música y el baño de color, ñandú incluido.", "pos"),
    ("Langweilig, öde und viel zu teuer für das Gebotene.", "neg"),
    ("Excelente direção, atuação memorável, não perca.", "pos"),
    ("Péssimo roteiro, uma decepção do começo ao fim.", "neg"),
]
CP1252 = [
    ("He said “great” – and it was, for 12 € … isn’t it?", "pos"),
    ("„Schrecklich“ – nie wieder, 30 € verschwendet.", "neg"),
    ("C’est « génial » — vraiment, œuvre à voir.", "pos"),
    ("‘Meh’ • too long… not worth 9,99 €.", "neg"),
] * 3
CP1251 = [
    ("Отличный фильм, очень понравился, советую всем.", "pos"),
    ("Ужасная игра актёров, не советую никому.", "neg"),
    ("Прекрасная музыка и добрый сюжет.", "pos"),
    ("Скучно и долго, зря потратил вечер.", "neg"),
] * 3
GBK = [
    ("这部电影非常好看，我很喜欢。", "pos"),
    ("演员的表演很糟糕，不推荐。", "neg"),
    ("故事感人，音乐也很美。", "pos"),
    ("太无聊了，浪费时间。", "neg"),
] * 3
SHIFT_JIS = [
    ("この映画はとても面白かったです。", "pos"),
    ("俳優の演技がひどい、おすすめしません。", "neg"),
    ("音楽が素晴らしく、感動しました。", "pos"),
    ("退屈で時間の無駄でした。", "neg"),
] * 3
CASES = {"latin-1": LATIN1, "cp1252": CP1252, "cp1251": CP1251, "gbk": GBK, "shift_jis": SHIFT_JIS}
# what each file is read as: the Western rule for latin-1/cp1252 (windows-1252 is latin-1's superset, the same
# letters), detection for the rest (gb18030 and cp932 are the supersets of gbk and shift_jis that chardet names)
EXPECTED = {"latin-1": {"cp1252"}, "cp1252": {"cp1252"}, "cp1251": {"cp1251"}, "gbk": {"gb18030", "gbk"},
            "shift_jis": {"cp932", "shift_jis"}}


def csv_bytes(rows: list[tuple[str, str]], encoding: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "label"])
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


@pytest.mark.parametrize("encoding", sorted(CASES))
def test_each_encoding_reads_back_exactly(encoding: str) -> None:
    raw = csv_bytes(CASES[encoding], encoding)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the fixture really is not UTF-8
    got = decode(raw, "reviews.csv")
    assert got.encoding in EXPECTED[encoding]
    assert got.text == raw.decode(encoding)
    assert got.note is None


def test_latin1_is_not_read_as_another_latin_code_page() -> None:
    """The corruption the issue saw: 'crème' -> 'crčme', 'señor' -> 'seņor' (iso8859-10 / cp1250 guesses)."""
    got = decode(csv_bytes(LATIN1, "latin-1"), "fr.csv")
    for word in ("crème", "à", "déçu", "señor", "honnête", "Größe", "canção", "coração"):
        assert word in got.text
    assert got.how == "western"


def test_utf8_with_and_without_bom() -> None:
    text = "text,label\ncafé crème,pos\n"
    assert decode(text.encode("utf-8")).encoding == "utf-8"
    bom = decode(text.encode("utf-8-sig"))
    assert (bom.text, bom.encoding, bom.how) == (text, "utf-8-sig", "bom")
    assert decode(text.encode("utf-16")).text == text


def test_given_encoding_wins_and_a_wrong_one_is_one_line() -> None:
    raw = csv_bytes(CP1251, "cp1251")
    assert decode(raw, "ru.csv", "windows-1251").text == raw.decode("cp1251")
    with pytest.raises(DataError, match=r"ru.csv is not utf-8: byte 0x.. at line 2 .*reads as cp1251"):
        decode(raw, "ru.csv", "utf-8")
    with pytest.raises(DataError, match="not an encoding Python knows"):
        decode(raw, "ru.csv", "latin-9000")


def test_an_uncertain_reading_names_both_with_a_sample_line() -> None:
    """Czech in cp1250 also reads as windows-1252 letters ('večer' -> 'veèer'): the Western rule keeps cp1252, and
    the note shows the detector's cp1250 reading so the user can pick it with --encoding."""
    rows = [("Dobrý večer, děkuji. Čeština je krásná řeč, můžeme jít.", "pos"),
            ("Žádné problémy, všechno je v pořádku a líbí se mi to.", "pos")] * 3
    got = decode(csv_bytes(rows, "cp1250"), "cz.csv")
    assert got.encoding == "cp1252" and got.note is not None
    assert "cp1250" in got.note and "večer" in got.note and "veèer" in got.note and "--encoding cp1250" in got.note


def test_cyrillic_and_cjk_bytes_do_not_look_western() -> None:
    for enc in ("cp1251", "gbk", "shift_jis"):
        assert not looks_western(csv_bytes(CASES[enc], enc).decode("cp1252", errors="replace"))
    assert looks_western(csv_bytes(LATIN1, "latin-1").decode("cp1252"))


@pytest.fixture()
def latin1_files(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "avis"
    d.mkdir()
    train, test = d / "train.csv", d / "test.csv"
    train.write_bytes(csv_bytes(LATIN1, "latin-1"))
    test.write_bytes(csv_bytes([(t.replace("œ", "oe"), lab) for t, lab in LATIN1_TEST], "latin-1"))
    return train, test


def test_latin1_round_trips_through_data_training_and_the_per_example_file(latin1_files, tmp_path, capsys) -> None:
    from baseline.train import cli

    train, test = latin1_files
    # eval/inputs/data.py shows the encoding (text and --json), and the texts are the file's exactly
    assert data_mod.main(["--data", str(train), "--test-data", str(test), "--text-column", "text",
                          "--label-column", "label", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["encoding"] == {"train": "cp1252 (Western rule)", "test": "cp1252 (Western rule)"}
    td = data_mod.load_task(data=str(train), test_data=str(test), text_column="text", label_column="label")
    assert {e.text for e in td.test_all} == {t.replace("œ", "oe") for t, _ in LATIN1_TEST}
    assert {e.text for e in td.pool + td.validation} == {t for t, _ in LATIN1}
    assert data_mod.main(["--data", str(train), "--test-data", str(test), "--text-column", "text",
                          "--label-column", "label"]) == 0
    assert "encoding: train cp1252 (Western rule), test cp1252 (Western rule)" in capsys.readouterr().out

    results = tmp_path / "results"
    assert cli(["--data", str(train), "--test-data", str(test), "--text-column", "text", "--label-column", "label",
                "--n-train", "full", "--class-weight", "none", "--results-dir", str(results)]) == 0
    err = capsys.readouterr().err
    assert "read as" in err and "cp1252 (Western rule)" in err  # the run's data summary
    (record,) = results.glob("runs/*/baseline/*.json")
    rec = json.loads(record.read_text())
    assert rec["data"]["encoding"] == "cp1252" and rec["data"]["test_encoding"] == "cp1252"
    rows = [json.loads(line) for line in record.with_suffix(".jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["text"] for r in rows} == {t.replace("œ", "oe") for t, _ in LATIN1_TEST}


def test_encoding_flag_reaches_the_record_and_changes_the_run(latin1_files, tmp_path) -> None:
    from eval.inputs.dataref import data_ref

    train, test = latin1_files
    kw = {"data": str(train), "test_data": str(test), "text_column": "text", "label_column": "label"}
    assert data_ref(**kw)["encoding"] == "cp1252"
    forced = data_ref(**kw, encoding="latin-1")
    assert forced["encoding"] == "iso8859-1"  # the codec's own name, so one setting is one run
    td = data_mod.load_task(**kw, encoding="latin-1")
    assert {e.text for e in td.pool + td.validation} == {t for t, _ in LATIN1}
