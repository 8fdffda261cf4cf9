"""Keep the questions worth training on; count every one dropped, by reason.

LLMs, small ones most of all, wrap questions in preambles ("Here are two questions:"), number
them, refer to "the passage" a user never sees, repeat themselves, or ask something the chunk
does not answer. Each check here drops a question for one named reason, so the report can say
what was lost and why::

    >>> f = QuestionFilter(min_chars=12, max_chars=300)
    >>> f.clean("1. How do I install a package from CRAN?")
    ('How do I install a package from CRAN?', None)
    >>> f.clean("According to the passage, what does lm() return?")
    (None, 'mentions_context')
    >>> QuestionFilter(examples=["What does a red light mean?"]).clean("What does a red light mean?")
    (None, 'copies_example')

The last check is a round trip through the base embedding model (`roundtrip_keep`): a question
is kept only where the model ranks its source chunk within the top k of the split's chunks, the
filter InPars and Promptagator use to discard questions their chunk does not answer.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from embedtune.embeddings import EmbeddingCache, Role

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DROP_REASONS", "QuestionFilter", "normalise", "roundtrip_keep"]

#: Every reason a question can be dropped for, in the order the checks run.
DROP_REASONS = (
    "empty",
    "preamble",
    "answer",
    "too_short",
    "too_long",
    "not_a_question",
    "mentions_context",
    "copies_example",
    "duplicate_in_chunk",
    "duplicate_in_set",
    "roundtrip",
    "extra",
)

_NUMBERING = re.compile(
    r"^\s*(?:[-*\u2022\u2023\u25e6\u2043\u2219>#]+|\(?\d{1,2}[.):\]]|\(?[a-zA-Z][.)]\s|"
    r"(?:q|question|query)\s*\d*\s*[:.)-])\s*",
    re.I,
)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:question|query|q|search)\s*\d*\s*(?:\*\*)?\s*[:\-]\s*", re.I)
_PREAMBLE = re.compile(
    r"^(?:sure|okay|ok|certainly|of course|here (?:are|is)|below (?:are|is)|the following|"
    r"i (?:have|will|would|can)|these (?:are|questions)|questions?\s*:|"
    r"(?:two|three|four|five|\d+) (?:different |diverse |possible )?(?:questions|queries))\b",
    re.I,
)
_ANSWER = re.compile(
    r"^\s*(?:(?:\*\*)?(?:answer|a|response|explanation)\s*\d*\s*(?:\*\*)?\s*:"
    r"|(?:the|my|an?) (?:answer|response)\b|i(?:'m| am) not sure\b|(?:yes|no)[,.!])",
    re.I,
)
_CONTEXT = re.compile(
    r"\b(?:(?:the|this|that|given|above|provided|following)\s+"
    r"(?:passage|context|text|document|excerpt|paragraph|section|article|snippet|chunk)s?"
    r"|according to the (?:author|passage|text|document|context)"
    r"|(?:is|are|was|were) (?:mentioned|described|discussed|stated) (?:in|above)"
    r"|the author)\b",
    re.I,
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019`*"


def normalise(text: str) -> str:
    """Lowercase, accents and punctuation removed, spaces collapsed: for duplicate checks."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


class QuestionFilter:
    """Cleans and filters questions, counting drops (``dropped``) and cleanups (``cleaned``)."""

    def __init__(
        self,
        min_chars: int = 12,
        max_chars: int = 300,
        similarity: float = 0.9,
        examples: Sequence[str] = (),
    ) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.similarity = similarity
        # the prompt's worked example questions: a small writer copies them now and then
        self._examples = [n for n in map(normalise, examples) if n]
        self.dropped: Counter[str] = Counter()
        self.cleaned: Counter[str] = Counter()
        self._seen: dict[str, str] = {}  # normalised text -> first chunk id that had it
        self._seen_tokens: set[frozenset[str]] = set()
        self._last_cleanup: str | None = None

    def clean(self, raw: str) -> tuple[str | None, str | None]:
        """(cleaned question, None) or (None, drop reason), without updating any counter."""
        text = " ".join((raw or "").split())
        if not text:
            return None, "empty"
        if _ANSWER.match(text):
            return None, "answer"
        stripped = _LABEL.sub("", _NUMBERING.sub("", text, count=1), count=1)
        stripped = stripped.strip().strip(_QUOTES).strip()
        if stripped != text:
            self._last_cleanup = "numbering_stripped"
        else:
            self._last_cleanup = None
        text = stripped
        if not text:
            return None, "empty"
        if "?" in text and not text.endswith("?") or text.count("?") > 1:
            # "What is X? What is Y?" or "What is X? In R, X is ...": the question ends at the
            # first "?"; what follows is another question or the model answering itself. Cut
            # first, then judged: a reply that stopped at its "?" is judged the same way.
            text = text[: text.index("?") + 1]
            self._last_cleanup = "cut_after_question"
        if _PREAMBLE.match(text) and (text.endswith(":") or not text.endswith("?")):
            return None, "preamble"
        if len(text) < self.min_chars:
            return None, "too_short"
        if len(text) > self.max_chars:
            return None, "too_long"
        if "?" not in text and len(text.split()) > 10:
            return None, "not_a_question"  # a long line without "?" is an answer or a remark
        if _CONTEXT.search(text):
            return None, "mentions_context"
        if self._examples and self._similar(normalise(text), self._examples):
            return None, "copies_example"
        return text, None

    def _similar(self, norm: str, others: Sequence[str]) -> bool:
        return any(
            norm == k or difflib.SequenceMatcher(None, norm, k).ratio() >= self.similarity
            for k in others
        )

    def filter_chunk(self, chunk_id: str, raw_questions: Sequence[str]) -> list[tuple[str, str]]:
        """Cleaned questions kept for one chunk, and ``(raw, reason)`` for the dropped ones.

        Returns ``[(question, "")]`` for kept and ``[(raw, reason)]`` for dropped, in order; the
        counters are updated.
        """
        out: list[tuple[str, str]] = []
        kept_here: list[str] = []
        for raw in raw_questions:
            self._last_cleanup = None
            text, reason = self.clean(raw)
            if text is not None:
                norm = normalise(text)
                if self._similar(norm, kept_here):
                    reason = "duplicate_in_chunk"
                elif norm in self._seen or frozenset(norm.split()) in self._seen_tokens:
                    reason = "duplicate_in_set"
            if reason is not None:
                self.dropped[reason] += 1
                out.append((raw, reason))
                continue
            assert text is not None
            if self._last_cleanup:
                self.cleaned[self._last_cleanup] += 1
            norm = normalise(text)
            kept_here.append(norm)
            self._seen[norm] = chunk_id
            self._seen_tokens.add(frozenset(norm.split()))
            out.append((text, ""))
        return out

    def inherit(self, other: QuestionFilter) -> None:
        """Treat the questions ``other`` kept as seen: duplicates of them are dropped here."""
        self._seen.update(other._seen)
        self._seen_tokens.update(other._seen_tokens)

    def seen(self, question: str) -> bool:
        """Whether a question (or the same words reordered) was kept already."""
        norm = normalise(question)
        return norm in self._seen or frozenset(norm.split()) in self._seen_tokens


def roundtrip_keep(
    model: SentenceTransformer,
    chunk_texts: Sequence[str],
    questions: Sequence[str],
    source_index: Sequence[int],
    top_k: int,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    progress: str | None = None,
) -> list[int]:
    """Rank of each question's source chunk (0 = first) among ``chunk_texts``.

    A caller keeps questions whose rank is below ``top_k``. Chunks are encoded once and
    questions in batches; scores are cosine similarities (normalised embeddings, one matmul).
    With ``cache`` (the shared embedding cache of this model), embeddings are
    read from and added to it, so the evaluation of the base model later encodes nothing twice.
    ``progress`` labels the progress bars of the two encoding passes.
    """
    if not questions:
        return []
    store = cache if cache is not None else EmbeddingCache(None)

    def embed(texts: Sequence[str], role: Role, what: str) -> torch.Tensor:
        label = f"{progress}: {what}" if progress else None
        vectors = store.encode_with(model, texts, role, batch_size=batch_size, progress=label)
        return torch.nn.functional.normalize(torch.from_numpy(vectors), dim=-1)

    docs = embed(chunk_texts, "document", "chunks")
    queries = embed(questions, "query", "questions")
    ranks: list[int] = []
    src = torch.tensor(list(source_index), device=docs.device)
    for start in range(0, len(questions), 1024):
        scores = queries[start : start + 1024] @ docs.T
        own = scores.gather(1, src[start : start + 1024].unsqueeze(1))
        # Ties count against the source chunk, so a rank is never flattering.
        ranks.extend(((scores >= own).sum(dim=1) - 1).tolist())
    return ranks
