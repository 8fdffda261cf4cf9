"""HTML pages: the visible text, with navigation, scripts and styles dropped.

BeautifulSoup finds the encoding (byte-order mark, ``<meta charset>``, then a guess). Block
elements (paragraphs, headings, list items, table rows...) become paragraph breaks, inline ones
(links, emphasis) stay inside their sentence, and ``<pre>`` keeps its line breaks. The
doctype, comments and processing instructions are markup, not text.

:func:`html_headings` gives the ``<h1>``-``<h6>`` headings of the same visible text, for the
validation headings set (``ingest/headings.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from embedtune.ingest.text import SkipFile, normalize_text
from embedtune.records import Page

__all__ = ["html_headings", "html_to_text", "load_html"]

_DROP = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head", "form")
_BLOCKS = (
    "p", "div", "section", "article", "main", "aside", "header", "footer", "h1", "h2", "h3",
    "h4", "h5", "h6", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "blockquote", "pre",
    "figure", "figcaption", "hr", "br", "title", "caption", "details", "summary", "address",
)  # fmt: skip
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_WS = re.compile(r"\s+")


def _drop_invisible(soup: BeautifulSoup) -> BeautifulSoup:
    """Remove what a reader never sees: scripts, styles, navigation, comments."""
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    return soup


def _collapsed(tag: Tag) -> str:
    """A tag's text as html_to_text renders it: inline parts joined as written, a line break
    as a space, source whitespace collapsed."""
    parts = []
    for node in tag.descendants:
        if type(node) is NavigableString:
            parts.append(str(node))
        elif isinstance(node, Tag) and node.name == "br":
            parts.append(" ")
    return _WS.sub(" ", "".join(parts)).strip()


def html_to_text(html: str | bytes) -> str:
    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    _drop_invisible(soup)
    # Source formatting is not content: collapse it, except inside <pre>. Only plain strings:
    # a Doctype, Declaration or ProcessingInstruction made plain would become text.
    for string in soup.find_all(string=True):
        if type(string) is NavigableString and string.find_parent("pre") is None:
            string.replace_with(_WS.sub(" ", str(string)))
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    body = soup.get_text()
    text = normalize_text(body)
    if title and not text.startswith(title):
        text = f"{title}\n\n{text}" if text else title
    return text


def html_headings(html: str | bytes) -> list[tuple[str, int]]:
    """(text, level) of every visible ``<h1>``-``<h6>``, in document order."""
    out = []
    soup = _drop_invisible(BeautifulSoup(html, "html.parser"))
    for tag in soup.find_all(_HEADINGS):
        text = _collapsed(tag)
        if text:
            out.append((text, int(tag.name[1])))
    return out


def load_html(path: Path) -> list[Page]:
    data = path.read_bytes()
    if not data.strip():
        raise SkipFile("empty", "empty file")
    text = html_to_text(data)
    if not text:
        raise SkipFile("empty", "no visible text (only markup, scripts or navigation)")
    return [Page(number=1, text=text)]
