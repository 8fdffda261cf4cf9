"""The validation documents' headings as a second, human-written set of validation queries."""

from __future__ import annotations

import json
from pathlib import Path

from pdfs import PARAGRAPHS, outlined_pdf, text_pdf

from embedtune.config import load_config
from embedtune.dataset import QADataset
from embedtune.ingest import load_documents
from embedtune.ingest.headings import clean_heading, headings_dataset, markdown_sections
from embedtune.prepare import run_prepare

BODY = PARAGRAPHS[0]


def _manual(path: Path, n_topics: int = 12) -> Path:
    topics = [
        "Installing packages from source",
        "Reading data from files",
        "Writing your own functions",
        "Regular expressions in strings",
        "Memory and garbage collection",
        "Plotting with base graphics",
        "Factors and their levels",
        "Data frames and their columns",
        "Loops and conditional execution",
        "Probability distributions available",
        "Linear models and formulae",
        "Debugging with traceback and browser",
        "Calling compiled code from packages",
        "Environments and variable lookup",
    ][:n_topics]
    sections = [(0, "1", "Introduction", BODY)]
    for i, topic in enumerate(topics):
        sections.append((1, f"1.{i + 1}", topic, f"{PARAGRAPHS[i % 8]} Section {i} of {topic}."))
    sections += [
        (1, "1.99", "Vectors", PARAGRAPHS[2]),  # one word: too vague to be a query
        (1, "1.100", "An empty section", "See below."),  # no body worth a passage
    ]
    return outlined_pdf(path, sections)


def test_pdf_outline_becomes_headings_with_their_own_sections(tmp_path):
    doc = load_documents([_manual(tmp_path / "manual.pdf")], [".pdf"]).documents[0]
    ds, report = headings_dataset([doc])

    assert report["documents_with_headings"] == 1 and report["sections"] == 15
    queries = sorted(ds.queries.values())
    assert "Reading data from files" in queries and len(queries) == 12
    # Numbering stripped; generic ("Introduction"), one-word and empty sections are not queries.
    assert not {"Introduction", "Vectors", "An empty section"} & set(queries)
    assert not any(q[0].isdigit() for q in queries)
    # The generic and one-word sections still stand in the corpus as distractors.
    assert len(ds.corpus) == 14
    for qid, query in ds.queries.items():
        (cid,) = ds.relevant_docs[qid]
        body = ds.corpus[cid]
        assert body.endswith(f"of {query}.")  # its own section, nothing of the next
        assert not body.startswith(("1.", query))  # the heading is not in its passage


def test_markdown_headings_outside_code_fences():
    text = (
        "# Guide\n\nIntro text.\n\n## Install the tool ##\n\nRun the installer.\n\n"
        "```bash\n# not a heading\necho hi\n```\n\n### Configure logging\n\nSet the level.\n"
    )
    sections = markdown_sections(text)
    assert [(s.level, s.title) for s in sections] == [
        (1, "Guide"),
        (2, "Install the tool"),
        (3, "Configure logging"),
    ]
    assert "# not a heading" in sections[1].body and sections[2].body == "Set the level."


def test_heading_numbering_is_removed_but_words_are_kept():
    assert clean_heading("2.1 What is R?") == "What is R?"
    assert clean_heading("Appendix B: Invoking R") == "Invoking R"
    assert clean_heading("A specific example") == "A specific example"
    assert clean_heading("C compiler flags") == "C compiler flags"


def test_repeated_headings_are_ambiguous_and_dropped():
    text = "".join(
        f"# {t}\n\n{PARAGRAPHS[i]}\n\n"
        for i, t in enumerate(["Usage notes", "Usage notes", "Install the tool"])
    )
    doc_path = "guide.md"
    from embedtune.records import Document, Page

    doc = Document(id="guide", path=doc_path, content_hash="x", pages=[Page(number=1, text=text)])
    ds, report = headings_dataset([doc])
    assert list(ds.queries.values()) == ["Install the tool"]
    assert report["dropped_repeated"] == 2 and len(ds.corpus) == 3


def _prepare(tmp_path: Path, seed: int) -> tuple[Path, dict]:
    docs = tmp_path / "docs"
    if not docs.exists():
        _manual(docs / "manual.pdf")
        for i in range(4):
            text_pdf(docs / f"other-{i}.pdf", [" ".join(PARAGRAPHS[i:] + PARAGRAPHS[:i])] * 2)
    cfg = load_config(
        overrides={
            "model": "all-MiniLM-L6-v2",
            "ingest": {"paths": [str(docs)], "val_ratio": 0.2, "seed": seed},
            "chunk": {"chunk_size": 128, "chunk_overlap": 16},
        }
    )
    run = tmp_path / f"run-{seed}"
    return run, run_prepare(cfg, run)


def test_prepare_writes_headings_of_validation_documents_only(tmp_path):
    run, summary = _prepare(tmp_path, seed=6)  # seed 6 puts the manual in validation
    assert summary.documents_by_split["val"] == ["manual-pdf"]
    assert summary.headings["written"] and summary.headings["queries"] == 12
    ds = QADataset.from_json(run / "chunks/val_headings.json")
    assert len(ds.queries) == 12 and all(q.startswith("manual-pdf#") for q in ds.queries)
    assert json.loads((run / "chunks/manifest.json").read_text())["summary"]["headings"]

    run, summary = _prepare(tmp_path, seed=3)  # the manual trains: its headings must not validate
    assert "manual-pdf" in summary.documents_by_split["train"]
    assert summary.headings["queries"] == 0 and not summary.headings["written"]
    assert not (run / "chunks/val_headings.json").exists()


def _html_manual(path: Path, topics: list[str]) -> Path:
    """An HTML 4.01 page (doctype, navigation, a title unlike its first heading)."""
    sections = "".join(
        f"<h2>{i + 1}. {topic}</h2>\n<p>{PARAGRAPHS[i % 8]}\n  Section {i} of {topic}.</p>\n"
        for i, topic in enumerate(topics)
    )
    path.write_text(
        '<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN" '
        '"http://www.w3.org/TR/html4/strict.dtd">\n'
        "<html><head><title>Site - manual</title></head><body>\n"
        "<nav><h2>Reading data from files</h2><a href='/'>Home</a></nav>\n"
        f"<h1>The manual</h1><p>{BODY}</p>\n{sections}</body></html>",
        encoding="utf-8",
    )
    return path


def test_html_headings_become_queries_with_their_own_sections(tmp_path):
    topics = [
        "Installing packages from source",
        "Reading data from files",  # also in the navigation, which is not text
        "Plotting <em>with</em> base graphics",
    ]
    (doc,) = load_documents([_html_manual(tmp_path / "manual.html", topics)]).documents
    assert "DOCTYPE" not in doc.text and "PUBLIC" not in doc.text
    assert doc.text.startswith("Site - manual\n\nThe manual\n\n")
    ds, report = headings_dataset([doc])
    assert report["documents_with_headings"] == 1 and report["sections"] == 4
    assert sorted(ds.queries.values()) == [
        "Installing packages from source",
        "Plotting with base graphics",
        "Reading data from files",
        "The manual",
    ]
    for qid, query in ds.queries.items():
        (cid,) = ds.relevant_docs[qid]
        body = ds.corpus[cid]
        assert not body.startswith(("1", "2", "3", query))  # its heading is not in its passage
        assert body.endswith(BODY if query == "The manual" else f"of {query}.")


def test_prepare_finds_enough_html_headings_for_the_validation_set(tmp_path):
    topics = [
        "Installing packages from source", "Reading data from files",
        "Writing your own functions", "Regular expressions in strings",
        "Memory and garbage collection", "Plotting with base graphics",
        "Factors and their levels", "Data frames and their columns",
        "Loops and conditional execution", "Probability distributions available",
        "Linear models and formulae",
    ]  # fmt: skip
    docs = tmp_path / "docs"
    docs.mkdir()
    _html_manual(docs / "manual.html", topics)
    for i in range(4):
        text_pdf(docs / f"other-{i}.pdf", [" ".join(PARAGRAPHS[i:] + PARAGRAPHS[:i])] * 2)
    for seed in range(20):  # a seed that puts the manual in validation
        cfg = load_config(
            overrides={
                "model": "all-MiniLM-L6-v2",
                "ingest": {"paths": [str(docs)], "val_ratio": 0.2, "seed": seed},
                "chunk": {"chunk_size": 128, "chunk_overlap": 16},
            }
        )
        summary = run_prepare(cfg, tmp_path / "run", fresh=True)
        if summary.documents_by_split["val"] == ["manual-html"]:
            break
    assert summary.documents_by_split["val"] == ["manual-html"]
    assert summary.headings["queries"] == 12 and summary.headings["written"]
    ds = QADataset.from_json(tmp_path / "run" / "chunks" / "val_headings.json")
    assert "Linear models and formulae" in ds.queries.values()
