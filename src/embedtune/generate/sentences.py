"""Training queries no writer wrote: sentences of the chunks (``generate.train_queries``).

The inverse cloze task (:mod:`embedtune.cloze`): a sentence of a chunk is the query, and the
chunk *without* that sentence is the passage it should find. With a teacher, training learns
mpnet's ranking of every pair anyway, and on three domains' human questions these pairs trained
MiniLM as well as the offline writer's questions or better (sessions 36-39, BENCHMARKS.md,
Quality) at no writer call: the writer then writes only the validation questions, which are
reported (the validation documents' headings and sentences judge the run).

Each chunk gives up to ``per_chunk`` sentences of 6 to 40 words, drawn with ``seed`` (a
sentence already drawn from another chunk is skipped: boilerplate repeats)::

    >>> from embedtune.records import Chunk
    >>> text = "CVS keeps a history of every file. Use cvs log to read the history of a file."
    >>> chunk = Chunk(id="c1", doc_id="d", text=text, n_tokens=20, page_start=1, page_end=1)
    >>> drawn = sentence_pairs([chunk], per_chunk=1, seed=0)
    >>> [(q, drawn.passages[p]) for _, q, p in drawn.pairs]
    [('Use cvs log to read the history of a file.', 'CVS keeps a history of every file.')]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from embedtune.cloze import query_spans, without
from embedtune.records import Chunk, content_hash

__all__ = ["SentencePairs", "sentence_pairs"]


@dataclass
class SentencePairs:
    """The drawn pairs ``(query id, sentence, passage id)`` and the passages they point to."""

    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    passages: dict[str, str] = field(default_factory=dict)


def sentence_pairs(chunks: Sequence[Chunk], per_chunk: int, seed: int) -> SentencePairs:
    """Up to ``per_chunk`` sentence queries of each chunk, with the chunk without each."""
    rng = random.Random(seed)
    out = SentencePairs()
    used: set[str] = set()
    for chunk in chunks:
        for a, b in query_spans(chunk.text, per_chunk, rng):
            sentence = " ".join(chunk.text[a:b].split())
            passage = without(chunk.text, a, b)
            if sentence in used or not passage:
                continue
            used.add(sentence)
            pid = f"{chunk.id}-{content_hash(sentence, length=8)}"
            out.passages[pid] = passage
            out.pairs.append((f"q-{content_hash(chunk.id, sentence, length=12)}", sentence, pid))
    return out
