"""Loading documents: one loader per format (pdf.py, text.py, html.py), the folder walker that
accounts for every skipped file (loader.py), and the by-document train/validation split with
its leakage guard (split.py).

    >>> from embedtune.ingest import load_documents, split_documents
    >>> loaded = load_documents(["docs/"], [".pdf", ".md"])      # doctest: +SKIP
    >>> loaded.summary()["files_read"], loaded.summary()["skipped_by_reason"]  # doctest: +SKIP
    (12, {'no text': 1})
    >>> split = split_documents(loaded.documents, val_ratio=0.2, seed=42)  # doctest: +SKIP
"""

from __future__ import annotations

from embedtune.ingest.html import html_to_text, load_html
from embedtune.ingest.loader import (
    LOADERS,
    LoadResult,
    Skipped,
    SourceFile,
    file_sha256,
    find_files,
    load_documents,
)
from embedtune.ingest.pdf import extract_pdf_pages, load_pdf
from embedtune.ingest.split import DocumentSplit, drop_leaked_chunks, jaccard, split_documents
from embedtune.ingest.text import SkipFile, decode_text, load_text, normalize_text

__all__ = [
    "LOADERS",
    "LoadResult",
    "Skipped",
    "SkipFile",
    "SourceFile",
    "DocumentSplit",
    "find_files",
    "file_sha256",
    "load_documents",
    "load_pdf",
    "load_text",
    "load_html",
    "extract_pdf_pages",
    "html_to_text",
    "decode_text",
    "normalize_text",
    "split_documents",
    "drop_leaked_chunks",
    "jaccard",
]
