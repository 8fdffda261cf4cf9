"""PDF text with pypdfium2 (PDFium, the engine in Chrome), one Page per PDF page.

Chosen by measurement on the seven R manuals (``benchmarks/bench_prepare.py``; see
BENCHMARKS.md, prepare): pypdfium2 extracts many times faster than pypdf and pdfplumber, with
the same share of glued words as pypdf, while pdfplumber's default extraction loses the spaces
between words on some of them ("aswellastheTexinfosource...").

PDFium marks a word hyphenated across a line end with U+FFFE (or U+0002) and removes the line
break; we join such words unless the next letter is upper case ("S-Plus" stays).
Running headers and footers (a first or last line that repeats on three or more pages once
digits are ignored, such as "Chapter 1: Introduction 5") and bare page numbers are dropped:
they would otherwise land in the middle of chunks and match every query a little.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from embedtune.ingest.text import SkipFile, normalize_text
from embedtune.records import Page

__all__ = ["extract_pdf_pages", "load_pdf"]

_SOFT_HYPHEN = re.compile(r"[\ufffe\x02\u00ad](?=[a-z])")
_HARD_MARK = re.compile(r"[\ufffe\x02\u00ad]")
_DIGITS = re.compile(r"\d+")
_PAGE_NUMBER = re.compile(
    r"^(?:page\s*)?(?:\d{1,5}|(?=[ivxlc])c{0,3}(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3}))"
    r"(?:\s*(?:/|of)\s*\d+)?$",
    re.IGNORECASE,
)


def extract_pdf_pages(path: Path) -> list[str]:
    """The raw text of every page (empty strings for pages without text).

    Raises SkipFile for files PDFium cannot open: a password it does not have (the empty
    password is tried first, which opens most "protected" PDFs), or a corrupt or truncated file.
    """
    try:
        doc = pdfium.PdfDocument(str(path), password="")
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise SkipFile(
                "encrypted",
                "encrypted with a password (the empty password did not open it); "
                "save an unprotected copy (e.g. qpdf --decrypt --password=... in.pdf out.pdf)",
            ) from None
        raise SkipFile(
            "corrupt",
            "not a readable PDF (corrupt or truncated); re-download or re-export it",
        ) from None
    try:
        pages = []
        for i in range(len(doc)):
            page = doc[i]
            try:
                textpage = page.get_textpage()
                try:
                    pages.append(textpage.get_text_range())
                finally:
                    textpage.close()
            except pdfium.PdfiumError:
                pages.append("")  # one broken page should not cost the whole document
            finally:
                page.close()
        return pages
    finally:
        doc.close()


def _strip_running_lines(pages: list[list[str]]) -> None:
    """Drop bare page numbers and repeating first/last lines, in place."""
    counts: Counter[tuple[int, str]] = Counter()
    for lines in pages:
        if lines:
            counts[(0, _DIGITS.sub("#", lines[0]))] += 1
            counts[(-1, _DIGITS.sub("#", lines[-1]))] += 1
    for lines in pages:
        for pos in (0, -1):
            if not lines:
                break
            line = lines[pos]
            key = _DIGITS.sub("#", line)
            repeated = counts[(pos, key)] >= 3 and len(key) >= 4 and any(c.isalpha() for c in key)
            if _PAGE_NUMBER.match(line) or repeated:
                del lines[pos]


def load_pdf(path: Path) -> list[Page]:
    """Pages with text, numbered as in the PDF (1-based); empty pages are left out."""
    if path.stat().st_size == 0:
        raise SkipFile("empty", "empty file")
    raw = extract_pdf_pages(path)
    split: list[list[str]] = []
    for text in raw:
        text = _SOFT_HYPHEN.sub("", text)
        text = _HARD_MARK.sub("-", text)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        split.append([line.strip() for line in text.split("\n") if line.strip()])
    if len(split) >= 3:
        _strip_running_lines(split)
    pages = []
    for number, lines in enumerate(split, 1):
        text = normalize_text("\n".join(lines))
        if text:
            pages.append(Page(number=number, text=text))
    if not pages:
        raise SkipFile(
            "no text",
            f"no text layer in {len(raw)} page(s) (scanned or image-only?); "
            "run OCR first (e.g. ocrmypdf in.pdf out.pdf)",
        )
    return pages
