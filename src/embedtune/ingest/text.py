"""Plain text and Markdown files, and the text normalisation every loader shares.

Encodings tried, in order: a byte-order mark (UTF-8, UTF-16, UTF-32), UTF-8, then Windows-1252
(what "ANSI" text from Windows editors usually is; Latin-1 is a subset of it). A file that is
none of these, or that holds NUL bytes, is binary or in an encoding we cannot guess safely, and
is skipped with that reason rather than read as mojibake.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from pathlib import Path

from embedtune.records import Page

__all__ = ["SkipFile", "decode_text", "normalize_text", "load_text"]


class SkipFile(Exception):  # noqa: N818 - a signal between loader and walker, not an error
    """Raised by a format loader: this file cannot be used; ``str(exc)`` is the reason a user
    reads, ``kind`` the short category counted in the summary."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than tab, newline, carriage return and form feed: real text has none.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode ``data`` as text; returns ``(text, encoding)`` or raises SkipFile('undecodable')."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                break
    else:
        if b"\x00" not in data:
            try:
                return data.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                pass
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = ""
            if text and len(_CONTROL.findall(text)) <= len(text) // 1000:
                return text, "cp1252"
    raise SkipFile(
        "undecodable",
        "not text in UTF-8, UTF-16 or Windows-1252 (binary, or another encoding); "
        "convert it to UTF-8 (e.g. iconv -f <encoding> -t utf-8)",
    )


# A line-end hyphen between lower-case letters is typesetting ("infor-\nmation"); one before
# an upper-case letter or digit is usually a real hyphen ("S-\nPlus", "UTF-\n8") and is kept.
_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-\n[ \t]*(?=[a-z])")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_SPACE_AROUND_NL = re.compile(r" *\n *")
_MANY_NL = re.compile(r"\n{3,}")
# Dot leaders of tables of contents (". . . . . . 12"): a token per dot, and no meaning.
_LEADER = re.compile(r"(?: ?\.){5,}")
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")


def normalize_text(text: str) -> str:
    """Tidy extracted text without changing its words.

    NFKC (ligatures such as "ﬁ" become "fi"), line endings to ``\\n``, line-end hyphenation
    joined, dot leaders shortened to "...", runs of spaces collapsed, at most one blank line in
    a row. Single line breaks are
    kept: in code listings and tables they carry meaning, and the chunker treats them as
    places where it may cut.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ZERO_WIDTH.sub("", text)
    text = _CONTROL.sub(" ", text)
    text = _HYPHEN_BREAK.sub("", text)
    text = _LEADER.sub(" ... ", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NL.sub("\n", text)
    text = _MANY_NL.sub("\n\n", text)
    return text.strip()


def load_text(path: Path) -> list[Page]:
    """A .txt or .md file as one page (Markdown is kept as written: its markup is readable)."""
    data = path.read_bytes()
    if not data.strip():
        raise SkipFile("empty", "empty file")
    text, _ = decode_text(data)
    text = normalize_text(text)
    if not text:
        raise SkipFile("empty", "holds only whitespace")
    return [Page(number=1, text=text)]
