"""Token-aware chunking with the target model's own tokenizer.

Chunk sizes are counted in the tokens of the model that will embed the chunks, because that is
what it truncates: all-MiniLM-L6-v2 reads at most 256 tokens, two of which are its special
tokens ``[CLS]`` and ``[SEP]``, so a 1024-token chunk (llama-index's default) would be embedded
from its first quarter only. Unless ``chunk.allow_longer_than_model`` is set, chunk_size is
capped to what the model reads and the overlap is scaled by the same factor, with a warning;
what it reads is ``train.max_seq_length`` where the user gives one (the trained model reads
that), else the model's own window.

Each document is tokenized once (page by page, in one batch on the fast tokenizer, with offset
mappings); chunks are then cut at token positions chosen by the text between tokens. A chunk
ends at the last sentence or paragraph end that fits; a sentence longer than a whole chunk is
cut at the last line break, else the last space between words (and so is a sentence that
would leave the chunk less than half full): never inside a word (a single
"word" longer than a chunk, such as a base64 blob, is the only exception). The next chunk starts
up to ``chunk_overlap`` tokens earlier, at a sentence start where one is in reach::

    >>> from embedtune.chunk import Chunker
    >>> chunker = Chunker.from_model("all-MiniLM-L6-v2", chunk_size=1024, chunk_overlap=200)
    >>> chunker.chunk_size, chunker.chunk_overlap, chunker.warnings[0][:45]
    (254, 50, 'all-MiniLM-L6-v2 sees at most 256 tokens, 2 o')
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtune.config import PipelineConfig
from embedtune.models import ModelWindow, load_tokenizer
from embedtune.recipe import fit_chunks
from embedtune.records import Chunk, Document, content_hash

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["Chunker", "sentence_spans"]

log = logging.getLogger("embedtune.chunk")

# Boundary levels between two tokens: where a chunk may end, best last.
_NONE, _WORD, _LINE, _SENTENCE, _PARAGRAPH, _END = -1, 0, 1, 2, 3, 4
_PARA = re.compile(r"\n[ \t]*\n\s*")
_NEWLINE = re.compile(r"\n\s*")
# A sentence ends at . ! ? (maybe closed by quotes or brackets) before whitespace and a
# character that is not a lower-case letter; "e.g. this" and initials ("W. N. Venables") are not
# sentence ends.
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]\u2019\u201d]*\s+(?=[^a-z\s])")
_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.$")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|cf|vs|etc|Dr|Mr|Mrs|Ms|Fig|No|approx|resp)\.)$")


def _abbreviated(text: str, end: int, *, initials: bool = False) -> bool:
    """Whether ``text[:end]`` ends with an abbreviation ("e.g."), or with ``initials`` an
    initial ("W."), rather than a sentence."""
    start = max(0, end - 8)
    if _ABBREV.search(text, start, end):
        return True
    return initials and _INITIAL.search(text, start, end) is not None


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, white space trimmed: the chunker's sentence
    ends (not after "e.g." nor after an initial) and every line break, where a heading or a list
    item ends without a full stop::

        >>> text = "Use e.g. cvs add. Then commit.\\nW. N. Venables"
        >>> [text[a:b] for a, b in sentence_spans(text)]
        ['Use e.g. cvs add.', 'Then commit.', 'W. N. Venables']
    """
    cuts = [m.end() for m in _NEWLINE.finditer(text)]
    for m in _SENT_END.finditer(text):
        if not _abbreviated(text, m.start(), initials=True):
            cuts.append(m.end())
    spans = []
    start = 0
    for cut in [*sorted(set(cuts)), len(text)]:
        piece = text[start:cut]
        lead = len(piece) - len(piece.lstrip())
        body = piece.strip()
        if body:
            spans.append((start + lead, start + lead + len(body)))
        start = cut
    return spans


class Chunker:
    """Split documents into chunks of at most ``chunk_size`` tokens of ``tokenizer``.

    Build one with :meth:`from_config` or :meth:`from_model`, which apply the model's limit;
    the constructor takes the sizes as given. ``n_tokens`` of a chunk counts its text's tokens
    without the special tokens the model adds around it.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        chunk_size: int,
        chunk_overlap: int,
        min_chunk_tokens: int = 1,
        max_seq_length: int | None = None,
        model_name: str = "the model",
        warnings: list[str] | None = None,
    ) -> None:
        if chunk_overlap >= chunk_size:
            raise ValueError(f"chunk_overlap ({chunk_overlap}) must be below chunk_size")
        self.tokenizer = tokenizer
        self.backend = tokenizer.backend_tokenizer
        self.backend.no_truncation()
        self.backend.no_padding()
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.min_chunk_tokens = min_chunk_tokens
        self.max_seq_length = max_seq_length
        self.model_name = model_name
        self.n_special = tokenizer.num_special_tokens_to_add(pair=False)
        pre = type(self.backend.pre_tokenizer).__name__
        self._whitespace_pretokenized = pre in {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
        self.warnings: list[str] = list(warnings or [])
        self.stats: dict[str, int] = {"dropped_short": 0, "over_model_limit": 0, "trimmed": 0}

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_model(
        cls,
        model: str,
        *,
        chunk_size: int = 1024,
        chunk_overlap: int = 200,
        min_chunk_tokens: int = 32,
        allow_longer_than_model: bool = False,
        max_seq_length: int | None = None,
    ) -> Chunker:
        """A chunker for ``model``'s tokenizer whose chunks it reads whole: it reads
        ``max_seq_length`` tokens where given (``train.max_seq_length``), else its own window."""
        tokenizer, max_seq = load_tokenizer(model)
        window = ModelWindow.of(model, tokenizer, max_seq, max_seq_length)
        warnings = []
        size, overlap = chunk_size, chunk_overlap
        if not allow_longer_than_model:
            size, overlap, why = fit_chunks(chunk_size, chunk_overlap, window)
            if why:
                warnings.append(why)
        if min_chunk_tokens >= size:
            min_chunk_tokens = max(1, size // 4)
            warnings.append(
                f"min_chunk_tokens is not below the chunk size {size}; using {min_chunk_tokens}"
            )
        for w in warnings:
            log.warning(w)
        return cls(
            tokenizer,
            chunk_size=size,
            chunk_overlap=overlap,
            min_chunk_tokens=min_chunk_tokens,
            max_seq_length=window.max_seq_length,
            model_name=window.name,
            warnings=warnings,
        )

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> Chunker:
        c = cfg.chunk
        return cls.from_model(
            cfg.model,
            chunk_size=c.chunk_size,
            chunk_overlap=c.chunk_overlap,
            min_chunk_tokens=c.min_chunk_tokens,
            allow_longer_than_model=c.allow_longer_than_model,
            max_seq_length=cfg.train.max_seq_length,
        )

    def settings(self) -> dict[str, Any]:
        """What the chunks were cut with, for the manifest and the summary."""
        return {
            "model": self.model_name,
            "chunk_size": self.chunk_size,
            "chunk_overlap": self.chunk_overlap,
            "min_chunk_tokens": self.min_chunk_tokens,
            "max_seq_length": self.max_seq_length,
            "special_tokens": self.n_special,
        }

    # --- tokens ---------------------------------------------------------------------------

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, without special tokens (one batch call)."""
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encs]

    # --- chunking -------------------------------------------------------------------------

    def chunk_documents(self, docs: Sequence[Document]) -> list[Chunk]:
        """Chunks of every document, in document order; short ones (below min_chunk_tokens)
        dropped, and a warning when chunks exceed what the model reads (only possible with
        allow_longer_than_model)."""
        texts, starts_per_doc = [], []
        for doc in docs:
            starts, pos = [], 0
            for page in doc.pages:
                starts.append(pos)
                pos += len(page.text) + 1  # pages are joined by one newline
            texts.append("\n".join(p.text for p in doc.pages))
            starts_per_doc.append(starts)
        # One batch over every page of every document: the tokenizer runs it in parallel.
        flat_pages = [p.text for d in docs for p in d.pages]
        flat_starts = [s for starts in starts_per_doc for s in starts]
        encs = self.backend.encode_batch(flat_pages, add_special_tokens=False)
        chunks: list[Chunk] = []
        unsure: list[int] = []  # chunks whose standalone token count may differ
        i = 0
        for doc, text, starts in zip(docs, texts, starts_per_doc, strict=True):
            parts = []
            for base in flat_starts[i : i + len(starts)]:
                offs = encs[i].offsets
                if len(offs):
                    parts.append(np.asarray(offs, dtype=np.int64) + base)
                i += 1
            offsets = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
            for chunk, exact in self._chunk_one(doc, text, offsets, np.asarray(starts)):
                if not (exact and self._whitespace_pretokenized):
                    unsure.append(len(chunks))
                chunks.append(chunk)
        self._check_lengths(chunks, unsure)
        return chunks

    def _levels(self, text: str, offsets: np.ndarray) -> np.ndarray:
        """levels[k]: how good a place it is to cut before token k (k = n: end of text)."""
        n = len(offsets)
        levels = np.full(n + 1, _NONE, dtype=np.int8)
        levels[n] = _END
        if n == 0:
            return levels
        starts, ends = offsets[:, 0], offsets[:, 1]
        # A word boundary: whitespace between token k-1 and token k (or at the start of token k,
        # for tokenizers whose tokens carry their leading space).
        gap = starts[1:] > ends[:-1]
        boundary = gap.copy()
        for k in np.flatnonzero(~gap):
            if text[starts[k + 1]].isspace():
                boundary[k] = True
        levels[1:n][boundary] = _WORD

        def mark(pattern: re.Pattern[str], level: int, check_abbrev: bool = False) -> None:
            ws_starts = []
            for m in pattern.finditer(text):
                if check_abbrev and _abbreviated(text, m.start()):
                    continue
                ws_starts.append(m.end() - 1)
            if not ws_starts:
                return
            # Cut before the first token at or after the whitespace's last character (a token
            # carrying its leading space starts there; others start just after it).
            k = np.searchsorted(starts, np.asarray(ws_starts), side="left")
            k = k[(k > 0) & (k < n)]
            levels[k] = np.maximum(levels[k], level)

        mark(_NEWLINE, _LINE)
        mark(_SENT_END, _SENTENCE, check_abbrev=True)
        mark(_PARA, _PARAGRAPH)
        return levels

    def _cut(self, levels: np.ndarray, s: int, n: int) -> int:
        """Where the chunk starting at token s ends (exclusive): the last sentence end that
        fits, provided it leaves the chunk at least half full; else (a sentence too long to
        pack after it) the last line break in the second half, else the last word boundary."""
        e = min(n, s + self.chunk_size)
        if e == n:
            return n
        half = s + max(1, self.chunk_size // 2)
        window = levels[half : e + 1]
        for at_least in (_SENTENCE, _LINE):
            hits = np.flatnonzero(window >= at_least)
            if len(hits):
                return half + int(hits[-1])
        hits = np.flatnonzero(levels[s + 1 : e + 1] >= _WORD)
        if len(hits):
            return s + 1 + int(hits[-1])
        return e  # one "word" longer than a chunk: cut it at the token limit

    def _next_start(self, levels: np.ndarray, s: int, cut: int) -> int:
        if self.chunk_overlap == 0:
            return cut
        lo = max(s + 1, cut - self.chunk_overlap)
        window = levels[lo:cut]
        for at_least in (_SENTENCE, _LINE, _WORD):
            hits = np.flatnonzero(window >= at_least)
            if len(hits):
                return lo + int(hits[0])
        return cut

    def _chunk_one(
        self, doc: Document, text: str, offsets: np.ndarray, page_starts: np.ndarray
    ) -> list[tuple[Chunk, bool]]:
        """Chunks of one document, each with whether both its ends fall between words."""
        n = len(offsets)
        if n == 0:
            return []
        levels = self._levels(text, offsets)
        spans: list[tuple[int, int]] = []
        s = 0
        while s < n:
            cut = self._cut(levels, s, n)
            spans.append((s, cut))
            if cut >= n:
                break
            s = self._next_start(levels, s, cut)
        # A short tail would be dropped: start the last chunk earlier instead, so the end of
        # the document still lands in a full-size chunk.
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] < self.min_chunk_tokens:
            lo = max(0, n - self.chunk_size)
            window = levels[lo:n]
            start = lo
            for at_least in (_SENTENCE, _LINE, _WORD):
                hits = np.flatnonzero(window >= at_least)
                if len(hits):
                    start = lo + int(hits[0])
                    break
            spans[-1] = (start, n)
            if len(spans) > 1 and start <= spans[-2][0]:
                del spans[-2]  # now inside the last chunk

        out = []
        for idx, (a, b) in enumerate(spans):
            n_tok = b - a
            if n_tok < self.min_chunk_tokens:
                self.stats["dropped_short"] += 1
                continue
            c0, c1 = int(offsets[a, 0]), int(offsets[b - 1, 1])
            body = text[c0:c1].strip()
            p0 = int(np.searchsorted(page_starts, c0, side="right")) - 1
            p1 = int(np.searchsorted(page_starts, max(c0, c1 - 1), side="right")) - 1
            out.append(
                (
                    Chunk(
                        id=content_hash(doc.id, str(idx), body),
                        doc_id=doc.id,
                        text=body,
                        n_tokens=n_tok,
                        page_start=doc.pages[p0].number,
                        page_end=doc.pages[p1].number,
                        source=doc.path,
                    ),
                    (a == 0 or levels[a] >= _WORD) and levels[b] >= _WORD,
                )
            )
        return out

    def _check_lengths(self, chunks: list[Chunk], unsure: Sequence[int]) -> None:
        """Recount, standalone, the chunks whose count may differ from their span's tokens in
        the whole document, and trim the rare one that came out longer than its budget.

        With a whitespace-splitting pre-tokenizer (BERT's WordPiece, as in MiniLM and MPNet) a
        chunk cut between words has exactly the tokens of its span, so only chunks cut inside
        an overlong word are recounted; other tokenizers get every chunk recounted."""
        if unsure:
            counts = self.count_tokens([chunks[i].text for i in unsure])
            for i, k in zip(unsure, counts, strict=True):
                c = chunks[i]
                if k > self.chunk_size:
                    c, k = self._trim(c)
                    self.stats["trimmed"] += 1
                if k != c.n_tokens:
                    c = c.model_copy(update={"n_tokens": k})
                chunks[i] = c
        if self.max_seq_length:
            over = sum(c.n_tokens + self.n_special > self.max_seq_length for c in chunks)
            self.stats["over_model_limit"] = over
            if over:
                msg = (
                    f"{over} of {len(chunks)} chunks are longer than the {self.max_seq_length} "
                    f"tokens {self.model_name} reads; it will embed only their first "
                    f"{self.max_seq_length - self.n_special} tokens"
                )
                self.warnings.append(msg)
                log.warning(msg)

    def _trim(self, c: Chunk) -> tuple[Chunk, int]:
        enc = self.backend.encode(c.text, add_special_tokens=False)
        end = enc.offsets[self.chunk_size - 1][1]
        ws = max(c.text.rfind(" ", 0, end + 1), c.text.rfind("\n", 0, end + 1))
        text = c.text[: ws if ws > 0 else end].rstrip()
        k = self.count_tokens([text])[0]
        return c.model_copy(update={"text": text, "n_tokens": k}), k
