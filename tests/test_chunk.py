"""Chunking with the model's own tokenizer: sizes the model can read, cuts between words and
sentences, page spans kept."""

from __future__ import annotations

import logging
import re

import pytest
from pdfs import PARAGRAPHS

from embedtune.chunk import Chunker
from embedtune.models import load_tokenizer
from embedtune.records import Document, Page


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker.from_model("all-MiniLM-L6-v2")  # the defaults: 1024 tokens, overlap 200


def _doc(pages: list[str], doc_id: str = "guide") -> Document:
    return Document(
        id=doc_id,
        path=f"/docs/{doc_id}.pdf",
        content_hash="0" * 64,
        pages=[Page(number=i, text=t) for i, t in enumerate(pages, 1)],
    )


def _prose(n_pages: int = 8) -> list[str]:
    return [
        " ".join(PARAGRAPHS[(i + j) % len(PARAGRAPHS)] for j in range(4)) for i in range(n_pages)
    ]


def test_minilm_caps_chunks_to_what_it_reads_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        c = Chunker.from_model("all-MiniLM-L6-v2", chunk_size=1024, chunk_overlap=200)
    assert (c.chunk_size, c.chunk_overlap, c.max_seq_length) == (254, 50, 256)
    assert "all-MiniLM-L6-v2 sees at most 256 tokens, 2 of them its special tokens" in caplog.text
    assert "capped to 254 tokens" in caplog.text and "from 200 to 50" in caplog.text
    small = Chunker.from_model("all-MiniLM-L6-v2", chunk_size=128, chunk_overlap=20)
    assert (small.chunk_size, small.chunk_overlap, small.warnings) == (128, 20, [])


def test_chunks_fit_the_model_and_counts_are_exact(chunker):
    chunks = chunker.chunk_documents([_doc(_prose())])
    assert len(chunks) >= 4
    tokenizer = chunker.tokenizer
    for c in chunks:
        ids = tokenizer(c.text)["input_ids"]  # as the model will see it, [CLS] and [SEP] too
        assert len(ids) == c.n_tokens + 2 <= 256
    assert max(c.n_tokens for c in chunks) > 200  # packed, not timid


def test_chunks_end_at_sentences_and_never_inside_a_word(chunker):
    pages = _prose()
    doc = _doc(pages)
    text = "\n".join(pages)
    chunks = chunker.chunk_documents([doc])
    for c in chunks:
        at = text.find(c.text)
        assert at >= 0
        assert at == 0 or text[at - 1].isspace()
        end = at + len(c.text)
        assert end == len(text) or text[end].isspace()
        assert c.text.endswith("."), c.text[-40:]
    # Neighbours overlap by whole sentences, at most chunk_overlap (50) tokens of them.
    first, second = chunks[0].text, chunks[1].text
    shared = first[first.rfind(second[:40]) :]
    assert second.startswith(shared) and shared[0].isupper() and first[-len(shared) - 2] == "."
    assert 10 < chunker.count_tokens([shared])[0] <= 50


def test_overlong_sentence_is_split_between_words(chunker):
    words = re.findall(r"[a-z]+", " ".join(PARAGRAPHS).lower())
    sentence = " ".join(words * 3)  # ~1000 words, no full stop
    chunks = chunker.chunk_documents([_doc([sentence])])
    assert len(chunks) >= 4
    word_set = set(words)
    for c in chunks:
        assert c.n_tokens <= 254
        assert set(c.text.split()) <= word_set  # every piece a whole word


def test_pages_spanned_by_each_chunk(chunker):
    pages = [f"Page {i} says something unique about subject {i}. " * 12 for i in range(1, 7)]
    chunks = chunker.chunk_documents([_doc(pages)])
    for c in chunks:
        mentioned = [int(n) for n in re.findall(r"Page (\d+) says", c.text)]
        assert (c.page_start, c.page_end) == (min(mentioned), max(mentioned))
        assert c.source == "/docs/guide.pdf" and c.doc_id == "guide"
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 6
    assert len({c.id for c in chunks}) == len(chunks)


def test_short_documents_dropped_and_ids_stable(chunker):
    short = _doc(["Too short to matter."], "short")
    long = _doc(_prose(2), "long")
    chunks = chunker.chunk_documents([short, long])
    assert {c.doc_id for c in chunks} == {"long"}
    assert chunker.stats["dropped_short"] >= 1
    assert [c.id for c in chunker.chunk_documents([long])] == [
        c.id for c in chunks if c.doc_id == "long"
    ]


def test_longer_than_model_when_asked_warns_with_the_count(caplog):
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        c = Chunker.from_model(
            "all-MiniLM-L6-v2", chunk_size=600, chunk_overlap=50, allow_longer_than_model=True
        )
        chunks = c.chunk_documents([_doc(_prose())])
    over = sum(x.n_tokens + 2 > 256 for x in chunks)
    assert c.chunk_size == 600 and over >= 1
    assert f"{over} of {len(chunks)} chunks are longer than the 256 tokens" in caplog.text


def test_tokenizer_and_limit_come_from_the_model_folder(minilm_path):
    tokenizer, max_seq = load_tokenizer(minilm_path)
    assert max_seq == 256  # sentence_bert_config.json, not the tokenizer's 512
    assert tokenizer.model_max_length == 512
