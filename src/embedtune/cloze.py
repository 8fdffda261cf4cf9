"""The inverse cloze task's pieces (Lee et al., 2019, "Latent Retrieval for Weakly Supervised
Open Domain Question Answering"): a sentence of a chunk is a query, and the chunk *without*
that sentence is the passage it should find, so a model must match a statement to the context
around it rather than copy words.

Two stages draw such sentences: ``generate`` as training queries no writer wrote
(``generate.train_queries: sentences``), and ``evaluate`` as held-out queries that judge a run
(``val-sentences``, from the validation documents)::

    >>> import random
    >>> text = "CVS keeps a history of every file. Use it. Run cvs log to read a file's history."
    >>> [text[a:b] for a, b in query_spans(text, 2, random.Random(0))]
    ["Run cvs log to read a file's history.", 'CVS keeps a history of every file.']
    >>> without(text, 35, 43)
    "CVS keeps a history of every file. Run cvs log to read a file's history."
"""

from __future__ import annotations

import random

from embedtune.chunk import sentence_spans

__all__ = ["MIN_WORDS", "MAX_WORDS", "query_spans", "without"]

#: A sentence query's length in words: shorter ones are headings and fragments, longer ones
#: whole paragraphs that a PDF's extraction ran together.
MIN_WORDS, MAX_WORDS = 6, 40


def query_spans(text: str, k: int, rng: random.Random) -> list[tuple[int, int]]:
    """Up to ``k`` (start, end) spans of ``text``'s sentences of 6 to 40 words, drawn with
    ``rng`` (in the order drawn)."""
    spans = [
        (a, b) for a, b in sentence_spans(text) if MIN_WORDS <= len(text[a:b].split()) <= MAX_WORDS
    ]
    return rng.sample(spans, min(k, len(spans)))


def without(text: str, start: int, end: int) -> str:
    """``text`` with ``text[start:end]`` taken out, the break around it kept (a line break
    where either side had one, else a space)::

        >>> without("One. Two. Three.", 5, 9), without("Title\\nBody. More.", 6, 11)
        ('One. Three.', 'Title\\nMore.')
    """
    left, right = text[:start], text[end:]
    gap = left[len(left.rstrip()) :] + right[: len(right) - len(right.lstrip())]
    sep = "\n\n" if "\n\n" in gap else "\n" if "\n" in gap else " "
    return (left.rstrip() + sep + right.lstrip()).strip()
