"""Loading documents: text comes out readable, bad files are skipped with a reason, the split is
by document and reproducible, and validation never repeats training text."""

from __future__ import annotations

import errno
import logging
import random
import re
from pathlib import Path

import pytest
from pdfs import (
    PARAGRAPHS,
    corrupt_pdf,
    empty_file,
    encrypted_pdf,
    image_only_pdf,
    text_pdf,
    truncated_pdf,
    undecodable_text,
)

from embedtune.errors import InputError
from embedtune.ingest import (
    drop_leaked_chunks,
    html_to_text,
    load_documents,
    normalize_text,
    split_documents,
)
from embedtune.records import Chunk, Document, Page

VOCAB = {w.lower() for p in PARAGRAPHS for w in re.findall(r"[A-Za-z]+", p)}


def test_pdf_text_keeps_pages_and_word_spacing(tmp_path):
    path = text_pdf(tmp_path / "guide.pdf")
    (doc,) = load_documents([path]).documents
    assert [p.number for p in doc.pages] == list(range(1, len(PARAGRAPHS) + 1))
    assert doc.pages[2].text.startswith("Vectors are the basic data structure.")
    words = re.findall(r"[A-Za-z]+", doc.text)
    glued = [w for w in words if w.lower() not in VOCAB]
    assert len(words) > 500 and glued == []
    assert doc.id == "guide-pdf" and len(doc.content_hash) == 64


def test_pdf_running_headers_page_numbers_and_hyphenation(tmp_path):
    body = "The garbage collector frees infor-\nmation that is no longer reachable."
    pages = [f"Chapter 2: Memory management {i}\n{body} Page {i} text.\n{i}" for i in range(1, 6)]
    (doc,) = load_documents([text_pdf(tmp_path / "m.pdf", pages)]).documents
    for page in doc.pages:
        assert "Chapter 2" not in page.text  # running header, same on every page
        assert not page.text.rstrip().endswith(f"\n{page.number}")  # bare page number
        assert "frees information that" in page.text  # line-end hyphen joined
        assert f"Page {page.number} text." in page.text  # body text left alone


def test_bad_files_are_skipped_with_reasons_and_the_run_goes_on(tmp_path, caplog):
    text_pdf(tmp_path / "good.pdf")
    encrypted_pdf(tmp_path / "open-encrypted.pdf", password="")
    encrypted_pdf(tmp_path / "locked.pdf", password="s3cret")
    corrupt_pdf(tmp_path / "corrupt.pdf")
    truncated_pdf(tmp_path / "truncated.pdf")
    image_only_pdf(tmp_path / "scan.pdf")
    empty_file(tmp_path / "empty.txt")
    undecodable_text(tmp_path / "blob.txt")
    (tmp_path / "notes.csv").write_text("a,b\n")  # other type: passed over, not an error
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        result = load_documents([tmp_path], [".pdf", ".txt"])
    assert sorted(d.id for d in result.documents) == ["good-pdf", "open-encrypted-pdf"]
    reasons = {s.path.rsplit("/", 1)[-1]: s.kind for s in result.skipped}
    assert reasons == {
        "locked.pdf": "encrypted",
        "corrupt.pdf": "corrupt",
        "truncated.pdf": "corrupt",
        "scan.pdf": "no text",
        "empty.txt": "empty",
        "blob.txt": "undecodable",
    }
    summary = result.summary()
    assert summary["files_read"] == 2 and summary["files_skipped"] == 6
    assert summary["skipped_by_reason"]["corrupt"] == 2 and summary["files_ignored"] == 1
    assert summary["pages"] == len(PARAGRAPHS) + 2 and summary["chars"] > 3000
    logged = caplog.text
    assert "scan.pdf: no text layer" in logged and "OCR" in logged
    assert "locked.pdf: encrypted with a password" in logged


def test_empty_folder_missing_path_and_nothing_readable_raise_clear_errors(tmp_path):
    empty = tmp_path / "docs"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no documents in .*docs.*it is empty"):
        load_documents([empty])
    with pytest.raises(InputError, match=r"nope does not exist"):
        load_documents([tmp_path / "nope"])
    corrupt_pdf(empty / "a.pdf")
    with pytest.raises(InputError, match=r"none of the 1 input file\(s\) could be read: .*a.pdf"):
        load_documents([empty])


def test_text_encodings_markdown_and_duplicates(tmp_path):
    (tmp_path / "a.md").write_bytes("\ufeff# Café guide\n\nÜber  alles.".encode())
    (tmp_path / "b.txt").write_bytes("Naïve café, 20 €.".encode("cp1252"))
    (tmp_path / "c.txt").write_bytes("Grüße aus Köln.".encode("utf-16"))
    (tmp_path / "copy.md").write_bytes((tmp_path / "a.md").read_bytes())
    result = load_documents([tmp_path])
    texts = {d.id: d.text for d in result.documents}
    assert texts == {
        "a-md": "# Café guide\n\nÜber alles.",
        "b-txt": "Naïve café, 20 €.",
        "c-txt": "Grüße aus Köln.",
    }
    assert [(s.kind, s.reason) for s in result.skipped] == [
        ("duplicate", f"same content as {tmp_path / 'a.md'}")
    ]


def test_html_keeps_visible_text_only(tmp_path):
    html = b"""<html><head><title>Setup</title><style>p{color:red}</style></head><body>
      <nav><a href="/">Home</a> | <a href="/x">Menu item</a></nav>
      <h1>Installing</h1>
      <p>Run the <b>installer</b> and
         follow the prompts.</p><script>var secret = 1;</script>
      <ul><li>First step</li><li>Second step</li></ul>
      <pre>make
make install</pre></body></html>"""
    (tmp_path / "setup.html").write_bytes(html)
    (doc,) = load_documents([tmp_path / "setup.html"]).documents
    assert doc.text == (
        "Setup\n\nInstalling\n\nRun the installer and follow the prompts.\n\n"
        "First step\n\nSecond step\n\nmake\nmake install"
    )
    assert html_to_text(b"<p>a<br>b</p>") == "a\n\nb"


def test_normalize_text():
    assert normalize_text("1 Introduction . . . . . . . . . 5") == "1 Introduction ... 5"
    assert normalize_text("ﬁle  name\r\nis   long-\nish and S-\nPlus\n\n\n\nend") == (
        "file name\nis longish and S-\nPlus\n\nend"
    )


def _doc(i: int, text: str | None = None, pages: int = 1) -> Document:
    body = text or f"Document number {i} talks about topic {i}. " * 20
    return Document(
        id=f"doc-{i}",
        path=f"/d/{i}.txt",
        content_hash=f"{i:064x}",
        pages=[Page(number=n, text=f"{body} (page {n})") for n in range(1, pages + 1)],
    )


def test_split_is_by_document_reproducible_and_independent_of_order():
    docs = [_doc(i) for i in range(10)]
    first = split_documents(docs, val_ratio=0.2, seed=7)
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    again = split_documents(shuffled, val_ratio=0.2, seed=7)
    assert [d.id for d in first.val] == [d.id for d in again.val]
    assert len(first.val) == 2 and len(first.train) == 8
    assert not {d.id for d in first.train} & {d.id for d in first.val}
    other_seeds = {tuple(d.id for d in split_documents(docs, 0.2, s).val) for s in range(8)}
    assert len(other_seeds) > 1  # the seed matters
    # Both splits get a document even when the ratio rounds to zero or to everything.
    two = [_doc(1), _doc(2)]
    for ratio in (0.01, 0.99):
        s = split_documents(two, ratio, 0)
        assert len(s.train) == 1 and len(s.val) == 1


def test_single_document_is_split_into_sections_with_a_warning(caplog):
    doc = _doc(1, pages=10)
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        s = split_documents([doc], val_ratio=0.2, seed=0)
    assert [p.number for p in s.train[0].pages] == list(range(1, 9))
    assert [p.number for p in s.val[0].pages] == [9, 10]
    assert "only one document (/d/1.txt): validation is its pages 9-10" in caplog.text
    one_page = _doc(2, text="First sentence here. " * 50)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        s = split_documents([one_page], val_ratio=0.2, seed=0)
    assert re.search(r"validation is its last \d+% of text", caplog.text), caplog.text
    train_text, val_text = s.train[0].pages[0].text, s.val[0].pages[0].text
    assert 0.1 < len(val_text) / len(one_page.text) < 0.3
    assert train_text.endswith("here.") and val_text.startswith("First")  # cut between sentences


def _chunk(i: int, text: str, doc: str = "d") -> Chunk:
    return Chunk(id=f"{doc}{i}", doc_id=doc, text=text, n_tokens=100, page_start=1, page_end=1)


def test_exact_and_near_duplicates_are_dropped_from_validation_only():
    rng = random.Random(0)
    words = [w for p in PARAGRAPHS for w in p.split()]
    texts = [" ".join(rng.choice(words) for _ in range(120)) for _ in range(40)]
    train = [_chunk(i, t, "train") for i, t in enumerate(texts[:30])]
    near = texts[3].split()
    near[60] = "CHANGED"
    val = [
        _chunk(0, texts[30], "val"),  # distinct
        _chunk(1, texts[5].upper(), "val"),  # same text, other case: exact after normalising
        _chunk(2, " ".join(near), "val"),  # one word changed: Jaccard ~0.92
        _chunk(3, texts[31], "val"),
    ]
    kept, report = drop_leaked_chunks(train, val, threshold=0.9)
    assert [c.id for c in kept] == ["val0", "val3"]
    assert report["exact"] == 1 and report["near"] == 1
    near_example = [e for e in report["examples"] if e["val_chunk"] == "val2"][0]
    assert near_example["train_chunk"] == "train3" and 0.9 <= near_example["similarity"] < 1
    # Below the threshold nothing is dropped.
    kept, report = drop_leaked_chunks(train, val[2:3], threshold=0.97)
    assert len(kept) == 1 and report["near"] == 0


def test_html_doctype_and_processing_instructions_are_not_text():
    html = (
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" '
        b'"http://www.w3.org/TR/html4/loose.dtd">\n<?xml-stylesheet href="s.css"?>\n'
        b"<html><body><p>Only   this.</p></body></html>"
    )
    assert html_to_text(html) == "Only this."


def deny_reading(monkeypatch, *paths: Path) -> None:
    """Make ``paths`` unreadable: chmod 0, and (since root reads any file) every open of them
    through pathlib raises PermissionError, as it does for a user without read permission."""
    denied = {Path(p) for p in paths}
    real_open = Path.open

    def guarded(self, *args, **kwargs):
        if self in denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    for path in denied:
        path.chmod(0)
    monkeypatch.setattr(Path, "open", guarded)


def test_links_that_lead_nowhere_and_unreadable_entries_are_named_and_skipped(
    tmp_path, monkeypatch
):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text(" ".join(PARAGRAPHS), encoding="utf-8")
    (docs / "loop-a.md").symlink_to(docs / "loop-b.md")
    (docs / "loop-b.md").symlink_to(docs / "loop-a.md")
    (docs / "gone.md").symlink_to(tmp_path / "moved-away.md")
    (docs / "self").symlink_to(docs, target_is_directory=True)
    locked = docs / "locked.md"
    locked.write_text("secret", encoding="utf-8")
    deny_reading(monkeypatch, locked)
    result = load_documents([docs])
    assert [d.id for d in result.documents] == ["good-md"]
    reasons = {s.path: (s.kind, s.reason) for s in result.skipped}
    assert reasons[str(docs / "loop-a.md")][0] == "broken link"
    assert "symbolic link loop" in reasons[str(docs / "loop-b.md")][1]
    assert reasons[str(docs / "gone.md")] == (
        "broken link",
        f"a symbolic link to {tmp_path / 'moved-away.md'}, which does not exist; fix or "
        "remove the link",
    )
    assert reasons[str(docs / "self")][0] == "link to folder"
    assert reasons[str(locked)] == (
        "unreadable",
        "cannot be read (Permission denied); check its permissions",
    )


def test_a_link_loop_named_directly_is_skipped_and_named(tmp_path):
    loop = tmp_path / "loop.pdf"
    loop.symlink_to(loop)
    good = text_pdf(tmp_path / "good.pdf")
    result = load_documents([loop, good])
    assert [d.id for d in result.documents] == ["good-pdf"]
    assert [(s.path, s.kind) for s in result.skipped] == [(str(loop), "broken link")]
    with pytest.raises(InputError, match=r"loop\.pdf: a symbolic link loop"):
        load_documents([loop])
