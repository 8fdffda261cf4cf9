"""Build small PDFs (and other awkward inputs) for the ingest tests, with fpdf2 and pypdf.

Each helper writes one file and returns its path, so a test reads like the situation it covers:
``encrypted_pdf(tmp_path / "locked.pdf", password="s3cret")``.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

__all__ = [
    "PARAGRAPHS",
    "text_pdf",
    "outlined_pdf",
    "encrypted_pdf",
    "truncated_pdf",
    "corrupt_pdf",
    "image_only_pdf",
    "empty_file",
    "undecodable_text",
]

# Distinct, ordinary prose: every page gets different sentences, so chunks differ from page to
# page and the words are all in a dictionary (a glued pair like "theofficial" would show).
PARAGRAPHS = [
    "The official document giving the specification of the language is short. It explains how "
    "expressions are parsed and evaluated, and how functions find the values of their arguments.",
    "Packages extend the system with new functions and data sets. Each package has a description "
    "file naming its authors, its licence and the other packages it depends on.",
    "Vectors are the basic data structure. A vector holds values of one type, such as numbers or "
    "strings, and most functions operate on whole vectors at once rather than single values.",
    "Data frames store tables in which each column is a vector of the same length. Rows usually "
    "describe observations and columns describe the variables measured for each of them.",
    "Graphics are produced by high level plotting functions that draw a complete figure, and by "
    "low level functions that add points, lines and text to an existing figure.",
    "Regular expressions describe patterns in character strings. They are used for searching, "
    "replacing and splitting text, and several different flavours are supported.",
    "Memory is managed automatically by a garbage collector. Objects that can no longer be "
    "reached from the workspace are freed when more space is needed by the session.",
    "Installation from source needs a compiler for the numerical libraries and a set of tools "
    "for building the documentation in several formats including manuals and help pages.",
]


_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _pdf(pages: list[str]):  # noqa: ANN202 - fpdf is a test-only dependency
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(_EPOCH)  # same bytes every time, so content hashes are stable
    pdf.set_auto_page_break(auto=True, margin=15)
    for body in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, body)
    return pdf


def outlined_pdf(path: Path, sections: list[tuple[int, str, str, str]]) -> Path:
    """A PDF with an outline (bookmarks), like a manual exported from Texinfo or LaTeX.

    ``sections`` are (level, number, title, body): the bookmark says ``title``; the page shows
    the heading as "number title" on its own line, then the body. A level-0 section starts a
    new page.
    """
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(_EPOCH)
    pdf.set_auto_page_break(auto=True, margin=15)
    for level, number, title, body in sections:
        if level == 0 or pdf.page == 0:
            pdf.add_page()
        pdf.start_section(title, level=level)
        pdf.set_font("Helvetica", style="B", size=12)
        pdf.multi_cell(0, 7, f"{number} {title}".strip(), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        if body:
            pdf.multi_cell(0, 6, body, new_x="LMARGIN", new_y="NEXT")
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def text_pdf(path: Path, pages: list[str] | None = None, *, repeat: int = 3) -> Path:
    """A PDF with a real text layer; page i holds ``pages[i]`` (default: PARAGRAPHS, one per page,
    each repeated ``repeat`` times so pages carry a few hundred tokens)."""
    if pages is None:
        pages = [" ".join([p] * repeat) for p in PARAGRAPHS]
    path.parent.mkdir(parents=True, exist_ok=True)
    _pdf(pages).output(str(path))
    return path


def encrypted_pdf(path: Path, password: str = "", pages: list[str] | None = None) -> Path:
    """A text PDF encrypted with pypdf (AES-128). ``password=""`` gives the common case of a PDF
    that opens without a password but is still encrypted (to stop copying or printing)."""
    from pypdf import PdfReader, PdfWriter

    plain = io.BytesIO()
    _pdf(pages or PARAGRAPHS[:2]).output(plain)
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(plain.getvalue())))
    writer.encrypt(user_password=password, owner_password="owner-" + (password or "x"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        writer.write(f)
    return path


def truncated_pdf(path: Path) -> Path:
    """The first 40% of a real PDF, as left by an interrupted download."""
    buf = io.BytesIO()
    _pdf(PARAGRAPHS[:3]).output(buf)
    data = buf.getvalue()
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


def corrupt_pdf(path: Path) -> Path:
    """A file named .pdf that is not a PDF at all."""
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    return path


def image_only_pdf(path: Path) -> Path:
    """A two-page 'scan': each page is a raster image and there is no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    pdf = FPDF()
    pdf.set_creation_date(_EPOCH)
    for i in range(2):
        img = Image.new("RGB", (400, 500), "white")
        draw = ImageDraw.Draw(img)
        for y in range(40, 460, 20):
            draw.line((30, y, 370 - 7 * i, y), fill="black", width=3)
        pdf.add_page()
        pdf.image(img, x=10, y=10, w=180)
    pdf.output(str(path))
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def undecodable_text(path: Path) -> Path:
    """Bytes that are neither UTF-8 nor Windows-1252 text (a binary blob named .txt)."""
    path.write_bytes(b"\x81\x8d\x00\x9d\x90\xff\xfe\x00\x01\x02" * 50)
    return path
