"""``val-sentences``: the validation documents' own sentences as held-out queries that judge a
run, at no writer call.

Each of up to ``max_chunks`` validation chunks (drawn with ``seed``) gives up to ``per_chunk``
sentences of 6 to 40 words (:mod:`embedtune.cloze`); the query is the sentence, and the chunk
with its drawn sentences taken out is the one relevant entry of a corpus of every validation
chunk. People wrote the sentences, about documents no training saw. With the headings they
judge the run (:func:`~embedtune.evaluate.evaluator.run_verdict`): on 94 fine-tuned models of
three domains their verdict matched people's questions' more often than the writer's questions
with the headings did (55 against 44), and on 18 models trained afterwards (session 39) it
shipped no model people's questions found worse and kept at least as much of their gain
(BENCHMARKS.md, Quality)::

    >>> from embedtune.records import Chunk
    >>> text = "CVS keeps a history of every file. Run cvs log to read the history of a file."
    >>> chunk = Chunk(id="c1", doc_id="d", text=text, n_tokens=20, page_start=1, page_end=1)
    >>> ds = validation_sentences([chunk], per_chunk=1)
    >>> list(ds.queries.values()), ds.corpus
    (['Run cvs log to read the history of a file.'], {'c1': 'CVS keeps a history of every file.'})
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from embedtune.cloze import query_spans, without
from embedtune.dataset import QADataset
from embedtune.records import Chunk, content_hash

__all__ = ["VERSION", "validation_sentences"]

VERSION = "1"  # part of evaluate's key: a change to what is drawn evaluates again


def validation_sentences(
    chunks: Sequence[Chunk], *, max_chunks: int = 150, per_chunk: int = 2, seed: int = 0
) -> QADataset:
    """The sentence queries of ``chunks`` and the corpus they search (see the module)."""
    rng = random.Random(seed)
    drawn = {c.id for c in rng.sample(list(chunks), min(max_chunks, len(chunks)))}
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    corpus: dict[str, str] = {}
    seen: set[str] = set()
    for chunk in chunks:
        text = chunk.text
        if chunk.id in drawn:
            for a, b in sorted(query_spans(text, per_chunk, rng), reverse=True):
                sentence = " ".join(text[a:b].split())
                if sentence in seen:
                    continue
                seen.add(sentence)
                qid = f"s-{content_hash(chunk.id, sentence, length=12)}"
                queries[qid], relevant[qid] = sentence, [chunk.id]
                text = without(text, a, b)
        corpus[chunk.id] = text
    return QADataset(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        metadata={"source": "the validation chunks' sentences (val-sentences)"},
    )
