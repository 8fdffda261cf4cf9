"""The validation documents' own headings as queries written by people.

A 135M generator's questions make a poor judge: on the R manuals, the generated validation split
ranked recipes against what people's questions showed, and rated all-mpnet-base-v2 no better
than MiniLM where people's questions rate it clearly better (benchmarks/journal/quality-levers.md).
Most documents carry a second set of queries for free: their headings, written by the authors to
say what each section answers. A heading is the query, the section's body (the
heading itself removed) is its one relevant passage, and every other section is a distractor; the
R FAQ and Python FAQ evaluation sets are built the same way, by hand.

Headings come from a PDF's outline (bookmarks, via pypdfium2), matched in order to lines of the
extracted page text; from Markdown's ATX headings (``# Title``) outside code fences; and from
HTML's ``<h1>``-``<h6>``, matched in order to lines of the page's extracted text as a PDF's
bookmarks are. Plain text has no reliable outline and gives none.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium

from embedtune.dataset import QADataset
from embedtune.ingest.html import html_headings
from embedtune.ingest.text import normalize_text
from embedtune.records import Document

__all__ = [
    "Section",
    "document_sections",
    "headings_dataset",
    "html_sections",
    "markdown_sections",
    "pdf_sections",
]

MIN_BODY_WORDS = 15  # a shorter body answers nothing (the R FAQ set's rule)
MAX_BODY_WORDS = 350  # longer bodies are cut, as the R FAQ set's are
# Headings that say where a section is, not what it answers.
_GENERIC = {
    "abstract", "acknowledgements", "acknowledgments", "appendix", "background", "bibliography",
    "conclusion", "conclusions", "contents", "discussion", "example", "examples", "foreword",
    "glossary", "index", "introduction", "notes", "overview", "preface", "references",
    "summary", "table of contents", "see also", "further reading", "concept index",
    "function and variable index",
}  # fmt: skip
# "2.1", "A.3", "IV.", "Chapter 2", "Appendix B:" before a heading's words; a bare capital letter
# or Roman numeral only with a keyword or a dot, so "A specific example" keeps its "A".
_PREFIX = (
    r"(?:(?:[Cc]hapter|CHAPTER|[Aa]ppendix|APPENDIX|[Ss]ection|[Pp]art)\s+"
    r"(?:\d+|[A-Z]|[IVXLC]+)(?:\.\d+)*[.:)]?\s+"
    r"|\d+(?:\.\d+)*[.:)]?\s+|[A-Z](?:\.\d+)+[.:)]?\s+|[IVXLC]+[.)]\s+)"
)
_NUMBERING = re.compile(rf"^{_PREFIX}")
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Section:
    """One heading and the text under it, up to the next heading of any level."""

    title: str
    body: str
    level: int


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _sections_from_spans(text: str, spans: list[tuple[str, int, int, int]]) -> list[Section]:
    """``spans`` are (title, level, start, end) of each heading found in ``text``, in order."""
    out = []
    for i, (title, level, _, end) in enumerate(spans):
        stop = spans[i + 1][2] if i + 1 < len(spans) else len(text)
        out.append(Section(title=_collapse(title), body=_collapse(text[end:stop]), level=level))
    return out


def pdf_outline(path: Path) -> list[tuple[str, int, int]]:
    """(title, level, 1-based page) of every bookmark that points at a page, in outline order."""
    try:
        doc = pdfium.PdfDocument(str(path), password="")
    except pdfium.PdfiumError:
        return []
    try:
        entries = []
        for item in doc.get_toc(max_depth=8):
            dest = item.get_dest()
            index = dest.get_index() if dest is not None else None
            title = _collapse(item.get_title() or "")
            if title and index is not None:
                entries.append((title, item.level, index + 1))
        return entries
    finally:
        doc.close()


def _match_in_order(
    text: str, headings: list[tuple[str, int]], windows: list[tuple[int, int]]
) -> list[tuple[str, int, int, int]]:
    """Spans of ``headings`` (title, level) found as whole lines of ``text``, each searched in its
    window (start, stop) and after the previous match, so a line of a code example or of the
    table of contents cannot be taken for a later heading."""
    spans: list[tuple[str, int, int, int]] = []
    pos = 0
    for (title, level), (start, stop) in zip(headings, windows, strict=True):
        words = r"\s+".join(re.escape(w) for w in title.split())
        if not words:
            continue
        line = re.compile(rf"(?m)^[ \t]*{_PREFIX}?{words}[ \t]*$")
        match = line.search(text, max(start, pos), stop)
        if match:
            spans.append((title, level, match.start(), match.end()))
            pos = match.end()
    return spans


def pdf_sections(path: Path, doc: Document) -> list[Section]:
    """Sections of a PDF: each bookmark found as a line of its page's text (or the next page's).

    Only the document's own pages are searched, so a validation part cut from a longer PDF gives
    the sections on its pages only. Bookmarks are matched in outline order.
    """
    outline = pdf_outline(path)
    if not outline:
        return []
    offsets: dict[int, int] = {}
    text = ""
    for page in doc.pages:
        offsets[page.number] = len(text)
        text += page.text + "\n"
    headings, windows = [], []
    for title, level, page in outline:
        if page not in offsets:
            continue
        later = [n for n in offsets if n > page + 1]
        headings.append((title, level))
        windows.append((offsets[page], offsets[min(later)] if later else len(text)))
    return _sections_from_spans(text, _match_in_order(text, headings, windows))


def html_sections(path: Path, doc: Document) -> list[Section]:
    """Sections of an HTML page: each visible ``<h1>``-``<h6>`` found, in order, as a line of
    the text the loader extracted (so a section's body is the same text its chunks hold)."""
    try:
        found = html_headings(path.read_bytes())
    except OSError:
        return []
    headings = [(normalize_text(title), level) for title, level in found]
    text = doc.text
    spans = _match_in_order(text, headings, [(0, len(text))] * len(headings))
    return _sections_from_spans(text, spans)


def markdown_sections(text: str) -> list[Section]:
    """Sections under Markdown's ATX headings (``#`` to ``######``), ignoring fenced code."""
    spans: list[tuple[str, int, int, int]] = []
    offset = 0
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        fence_match = _FENCE.match(line)
        if fence_match:
            mark = fence_match.group(1)
            fence = None if fence == mark else (fence or mark)
        elif fence is None:
            m = _ATX.match(line.rstrip("\n"))
            if m:
                spans.append((m.group(2), len(m.group(1)), offset, offset + len(line)))
        offset += len(line)
    return _sections_from_spans(text, spans)


def document_sections(doc: Document) -> list[Section]:
    """The sections of one loaded document, or [] when its format has no outline we can read."""
    path = Path(doc.path)
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return pdf_sections(path, doc) if path.is_file() else []
    if suffix in (".md", ".markdown"):
        return markdown_sections(doc.text)
    if suffix in (".html", ".htm", ".xhtml"):
        return html_sections(path, doc) if path.is_file() else []
    return []


def clean_heading(title: str) -> str:
    """The heading as a query: numbering ("2.1", "Appendix A") removed."""
    return _collapse(_NUMBERING.sub("", title, count=1))


def _usable(query: str) -> bool:
    words = query.split()
    return len(words) >= 2 and query.lower().rstrip(".:?") not in _GENERIC


def headings_dataset(docs: Sequence[Document]) -> tuple[QADataset, dict[str, Any]]:
    """A retrieval set from the headings of ``docs``: heading -> its section's body.

    Every section with a body of at least 15 words is a passage (cut to 350 words). A heading is
    a query unless it has one word, says where rather than what ("Introduction", "Index"), or
    repeats another heading of the set (which section would be right?). Returns the dataset
    and a report of what was found per document.
    """
    per_doc: dict[str, list[Section]] = {}
    for doc in docs:
        sections = document_sections(doc)
        if sections:
            per_doc[doc.id] = sections
    corpus: dict[str, str] = {}
    candidates: list[tuple[str, str]] = []  # (corpus id, query)
    for doc_id, sections in per_doc.items():
        for i, section in enumerate(sections):
            words = section.body.split()
            if len(words) < MIN_BODY_WORDS:
                continue
            cid = f"{doc_id}#s{i}"
            corpus[cid] = " ".join(words[:MAX_BODY_WORDS])
            query = clean_heading(section.title)
            if _usable(query):
                candidates.append((cid, query))
    counts = Counter(q.lower() for _, q in candidates)
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    for cid, query in candidates:
        if counts[query.lower()] == 1:
            qid = cid.replace("#s", "#h")
            queries[qid] = query
            relevant[qid] = [cid]
    report = {
        "documents": len(docs),
        "documents_with_headings": len(per_doc),
        "sections": sum(len(s) for s in per_doc.values()),
        "passages": len(corpus),
        "queries": len(queries),
        "dropped_repeated": sum(n for n in counts.values() if n > 1),
    }
    return QADataset(queries=queries, corpus=corpus, relevant_docs=relevant), report
