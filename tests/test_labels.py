import pytest

from eval.scoring.labels import INVALID, LabelScheme, extract, strip_think

BIN = LabelScheme.from_labels(["negative", "positive"], {"negative": ["negative", "0"], "positive": ["positive", "1"]})
TRI = LabelScheme.from_labels(["negative", "neutral", "positive"])


@pytest.mark.parametrize("raw,expected", [
    ("positive", "positive"),
    ("POSITIVE.", "positive"),
    ("Answer: 1", "positive"),
    ("0", "negative"),
    ("The answer is negative", "negative"),
    # the last mention wins: models repeat the instruction's label list before answering
    ("Is it negative or positive? I think positive", "positive"),
    ("positive ... on reflection, negative", "negative"),
    # digits only on word boundaries: 10 pills is not the label 1
    ("I took 10 pills and 20 mg", INVALID),
    ("nothing useful here", INVALID),
    ("", INVALID),
    (None, INVALID),
    # word boundaries: "positively" and "nonnegative" are not labels
    ("positively", INVALID),
])
def test_extract_words_and_digits(raw, expected):
    assert extract(raw, BIN) == expected


def test_closed_think_block_is_stripped():
    assert extract("<think>it says negative... but</think> positive", BIN) == "positive"
    assert extract("<think>negative</think>", BIN) == INVALID  # the answer after reasoning is empty
    assert extract("<THINK>a\nb negative</THINK>\nAnswer: 1", BIN) == "positive"


def test_unclosed_think_block_is_invalid_not_a_guess():
    assert extract("<think>the review is clearly positive so the answer is", BIN) == INVALID
    assert extract("<think>x</think> ok <think>positive", BIN) == INVALID


def test_prompt_opened_think_block():
    # the template opened <think>; the output must close it, and only what follows counts
    assert extract("reasoning: negative words... </think>\n1", BIN, think_open=True) == "positive"
    assert extract("reasoning that never ends: negative", BIN, think_open=True) == INVALID
    # a stray closing tag without think_open still splits reasoning from the answer
    assert extract("negative? no.</think> positive", BIN) == "positive"
    assert strip_think("a</think>b") == "b"


def test_neutral_and_three_classes():
    assert extract("Sentiment: Neutral", TRI) == "neutral"
    assert extract("positive, neutral or negative? neutral", TRI) == "neutral"


def test_chinese_verbalizers_match_inside_running_text():
    zh = LabelScheme.from_labels(["negative", "positive"], {"negative": ["负面"], "positive": ["正面"]})
    assert extract("这条评论是正面的。", zh) == "positive"
    assert extract("不是正面，是负面", zh) == "negative"
    assert extract("无法判断", zh) == INVALID


def test_longest_verbalizer_wins_over_its_prefix():
    s = LabelScheme.from_labels(["pos", "vpos"], {"pos": ["positive"], "vpos": ["very positive"]})
    assert extract("it is very positive", s) == "vpos"
    assert extract("it is positive", s) == "pos"


def test_scheme_rejects_ambiguous_or_unknown_verbalizers():
    with pytest.raises(ValueError, match="names both"):
        LabelScheme.from_labels(["a", "b"], {"a": ["x"], "b": ["X"]})
    with pytest.raises(ValueError, match="unknown labels"):
        LabelScheme.from_labels(["a", "b"], {"c": ["x"]})
    with pytest.raises(ValueError, match="at least two"):
        LabelScheme.from_labels(["a"])


def test_canonical_verbalizer_and_reverse_lookup():
    assert BIN.verbalizer("positive") == "positive"
    assert BIN.label_of("1") == "positive"
    assert BIN.to_dict()["verbalizers"]["negative"] == ["negative", "0"]
