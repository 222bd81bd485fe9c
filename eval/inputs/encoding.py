"""Decoding a data file's bytes: read right, or said to be uncertain, or refused; never garbled in silence.

    decoded = decode(raw, "reviews.csv")               # Decoded(text, encoding="cp1252", how="western", note=None)
    decoded = decode(raw, "reviews.csv", "cp1251")     # --encoding: strict, or one line naming the byte and the fix

The order (docs/encodings.md has the reasons and the public sources):
1. a byte-order mark (UTF-8, UTF-16, UTF-32) names the encoding;
2. bytes that are valid UTF-8 are UTF-8 (other encodings' non-ASCII text is almost never valid UTF-8);
3. the Western rule: bytes that decode as windows-1252 (the superset of latin-1 that the WHATWG Encoding Standard
   reads for every "iso-8859-1" label) into text that looks like Western European text are windows-1252. Statistical
   detectors guess between the Latin code pages from letter frequencies, and on a short French or Spanish file they
   pick iso8859-10 / cp1250 ("crème" -> "crčme"); the rule keeps every accented letter of latin-1/cp1252 text;
4. otherwise chardet's detection (multi-byte CJK, Cyrillic, Greek, ... where its byte-pair models are good).
When a second reading is about as likely and reads differently, `note` says so with a sample line of each, and the
summary shows it; `--encoding` picks one.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass

from eval.errors import DataError

WESTERN = "cp1252"
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Code pages whose reading of Western text equals windows-1252's on letters (what the detector may call it)
WESTERN_FAMILY = {"cp1252", "latin_1", "iso8859_15", "ascii"}
# Non-ASCII characters that sit between two letters in real Western text: apostrophes, the Catalan middle dot, the
# soft hyphen. Any other symbol inside a word ("wi³¹cz", "Õâ²¿") is the mark of a wrong code page.
JOINERS = set("\u2019\u2018\u00b7\u00ad'")
MAX_DETECT_BYTES = 2_000_000
SAMPLE_CHARS = 1_000_000  # the plausibility checks look at the first million characters (a pure-Python loop)
EXAMPLES = "utf-8, cp1252, latin-1, cp1250, cp1251, gbk, big5, shift_jis, euc-kr"


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # a Python codec name; `--encoding` with it reads the same text
    how: str  # "bom", "utf-8", "western", "detected", "given"
    note: str | None = None  # the runner-up reading, when it is about as likely and reads differently

    def describe(self) -> str:
        why = {"bom": "byte-order mark", "utf-8": "valid UTF-8", "western": "Western rule",
               "detected": "detected", "given": "--encoding", "binary": "binary format"}[self.how]
        return f"{self.encoding} ({why})"


def codec_name(encoding: str) -> str:
    """The canonical Python codec name of an encoding label (one setting however it is spelled)."""
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise DataError(f"--encoding {encoding!r} is not an encoding Python knows; e.g. {EXAMPLES} "
                        "(docs/encodings.md)") from exc


def _script(ch: str) -> str:
    """The script of a letter, from its Unicode name (LATIN SMALL LETTER E WITH GRAVE -> LATIN); Han, kana and the
    CJK symbols are one script, as Japanese mixes them."""
    name = unicodedata.name(ch, "")
    head = name.split(" ", 1)[0]
    if head in ("CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC", "HALFWIDTH", "FULLWIDTH"):
        return "CJK"
    return head


def suspicious(text: str) -> int:
    """How many places look like a wrong code page: control or unassigned characters, a non-ASCII symbol inside a
    word, two scripts inside one word (a Latin letter next to a Hebrew one)."""
    bad = 0
    prev = ""
    for i, ch in enumerate(text):
        cat = unicodedata.category(ch)
        if (cat == "Cc" and ch not in "\t\n\r") or cat in ("Cn", "Co", "Cs") or ch == "\ufffd":
            bad += 1
        elif ord(ch) > 127 and not ch.isalnum() and cat != "Mn" and ch not in JOINERS:
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if prev.isalpha() and nxt.isalpha():
                bad += 1
        elif ch.isalpha() and prev.isalpha() and (ord(ch) > 127 or ord(prev) > 127) and _script(ch) != _script(prev):
            bad += 1
        prev = ch
    return bad


def looks_western(text: str) -> bool:
    """Text as Western European languages write it: a minority of the letters are non-ASCII (French ~3%, German ~1%,
    Portuguese ~4%; Cyrillic or CJK bytes read as windows-1252 are nearly all non-ASCII "letters"), and nothing is
    suspicious more than once per thousand letters (in the first SAMPLE_CHARS characters)."""
    text = text[:SAMPLE_CHARS]
    letters = sum(ch.isalpha() for ch in text)
    if not letters:
        return True
    accented = sum(ch.isalpha() and ord(ch) > 127 for ch in text)
    return accented <= 0.35 * letters and suspicious(text) * 1000 <= letters


def _strict(raw: bytes, encoding: str) -> str | None:
    try:
        return raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _where(raw: bytes, exc: UnicodeDecodeError) -> str:
    line = raw[: exc.start].count(b"\n") + 1
    return f"byte 0x{raw[exc.start]:02x} at line {line}"


def _detect(raw: bytes) -> list[tuple[str, float, str]]:
    """chardet's readings that decode the whole file, best first: (codec, confidence, text). Modern web encodings
    first; the legacy ones (DOS, Mac, EBCDIC) only when none of those decodes it."""
    import chardet
    from chardet import EncodingEra

    out: list[tuple[str, float, str]] = []
    for era in (EncodingEra.MODERN_WEB, EncodingEra.ALL):
        found = chardet.detect_all(raw, encoding_era=era, prefer_superset=True,
                                   max_bytes=min(len(raw), MAX_DETECT_BYTES))
        for d in found:
            if not d.get("encoding"):
                continue
            try:
                name = codecs.lookup(d["encoding"]).name
            except LookupError:
                continue
            text = _strict(raw, name)
            if text is not None and name not in {n for n, _, _ in out}:
                out.append((name, float(d.get("confidence") or 0.0), text))
        if out:
            return out
    return out


def _sample(a: str, b: str) -> tuple[str, str]:
    """The first line where two readings differ, as each reads it (shortened around the first difference)."""
    for la, lb in zip(a.splitlines(), b.splitlines()):
        if la != lb:
            i = next((k for k, (x, y) in enumerate(zip(la, lb)) if x != y), 0)
            lo = max(0, i - 30)
            return la[lo: lo + 80], lb[lo: lo + 80]
    return a[:80], b[:80]


def _note(chosen: str, text: str, other: str, other_text: str) -> str:
    mine, theirs = _sample(text, other_text)
    return (f"the encoding is uncertain: read as {chosen}: {mine!r}; as {other}: {theirs!r}. "
            f"Using {chosen}; pass --encoding {other} if that reading is the right one")


def decode(raw: bytes, name: str = "file", encoding: str | None = None) -> Decoded:
    """Bytes of a text file -> Decoded (see the module docstring for the order). A DataError names the fix when
    `encoding` does not fit the bytes or no reading fits."""
    if encoding:
        enc = codec_name(encoding)
        try:
            return Decoded(raw.decode(enc), enc, "given")
        except UnicodeDecodeError as exc:
            hint = ""
            if _strict(raw, "utf-8") is None:
                found = _detect(raw)
                hint = f"; it reads as {found[0][0]}, or leave --encoding out to detect it" if found else ""
            raise DataError(f"{name} is not {enc}: {_where(raw, exc)} is not valid there{hint}") from exc
    for bom, enc in BOMS:
        if raw.startswith(bom):
            try:
                return Decoded(raw.decode(enc), enc, "bom")
            except UnicodeDecodeError as exc:
                raise DataError(f"{name} starts with a {enc} byte-order mark but is not {enc}: {_where(raw, exc)}; "
                                f"fix the file or pass --encoding") from exc
    text = _strict(raw, "utf-8")
    if text is not None:
        return Decoded(text, "utf-8", "utf-8")
    western = _strict(raw, WESTERN)
    found = _detect(raw)
    if western is not None and looks_western(western):
        rival = next(((n, t) for n, _, t in found if n not in WESTERN_FAMILY and t != western), None)
        best_is_rival = bool(found) and rival is not None and found[0][0] == rival[0]
        if best_is_rival and suspicious(rival[1]) * 1000 <= max(sum(c.isalpha() for c in rival[1][:SAMPLE_CHARS]), 1):
            return Decoded(western, WESTERN, "western", _note(WESTERN, western, rival[0], rival[1]))
        return Decoded(western, WESTERN, "western")
    if not found:
        raise DataError(f"cannot tell the encoding of {name}: it is not UTF-8 and no common encoding reads it; "
                        f"pass --encoding (e.g. {EXAMPLES})")
    enc, conf, text = found[0]
    note = None
    for other, other_conf, other_text in found[1:]:
        if other_text != text and other_conf >= 0.9 * conf and not suspicious(other_text):
            note = _note(enc, text, other, other_text)
            break
    return Decoded(text, enc, "detected", note)
