"""Retrieval datasets in the two shapes other tools use, read and written losslessly.

- llama-index's ``EmbeddingQAFinetuneDataset`` JSON: ``{"queries": {qid: text}, "corpus":
  {cid: text}, "relevant_docs": {qid: [cid, ...]}, "mode": "text"}``.
- BEIR folders: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
  ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``).

What one shape has and the other lacks (BEIR titles and graded scores, extra metadata) travels in
extra JSON keys that llama-index ignores, so either shape round-trips through the other::

    >>> ds = QADataset(queries={"q1": "What is R?"}, corpus={"c1": "R is a language."},
    ...                relevant_docs={"q1": ["c1"]})
    >>> ds.to_beir("/tmp/beir-demo")
    >>> QADataset.from_beir("/tmp/beir-demo") == ds
    True
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedtune.errors import InputError
from embedtune.records import read_jsonl, write_json_atomic, write_jsonl

__all__ = ["MIN_HELD_OUT_QUERIES", "QADataset", "load_dataset_path", "leaked_questions"]

#: Fewer held-out queries than this (a run's headings, its chunks' sentences) make no verdict
#: worth reporting: prepare writes no headings set and evaluate builds no val-sentences.
MIN_HELD_OUT_QUERIES = 10


class QADataset(BaseModel):
    """Queries, a corpus, and which corpus entries answer each query."""

    model_config = ConfigDict(extra="forbid")

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant_docs: dict[str, list[str]]
    mode: str = "text"
    # Carried for lossless BEIR round trips; empty when the source had none.
    corpus_titles: dict[str, str] = Field(default_factory=dict)
    scores: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Graded BEIR scores where any differs from 1."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    # ------------------------------------------------------------------ checks
    def validate_references(self, source: str = "dataset") -> None:
        """Raise InputError when a query or relevant id points nowhere."""
        if not self.queries:
            raise InputError(f"{source} has no queries")
        if not self.corpus:
            raise InputError(f"{source} has an empty corpus")
        for qid in self.queries:
            if not self.relevant_docs.get(qid):
                raise InputError(
                    f"{source}: query {qid!r} has no relevant document; every query needs at "
                    "least one entry in relevant_docs"
                )
        for qid, cids in self.relevant_docs.items():
            if qid not in self.queries:
                raise InputError(f"{source}: relevant_docs names unknown query {qid!r}")
            for cid in cids:
                if cid not in self.corpus:
                    raise InputError(
                        f"{source}: query {qid!r} points to corpus id {cid!r}, which is not in "
                        "the corpus"
                    )

    # --------------------------------------------------------- llama-index JSON
    @classmethod
    def from_json(cls, path: str | Path) -> QADataset:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path} not found") from None
        except UnicodeDecodeError:
            raise InputError(
                f"{path} is not UTF-8 text; convert it to UTF-8 (e.g. iconv -f <its encoding> "
                "-t utf-8)"
            ) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON ({exc})") from None
        except OSError as exc:
            raise InputError(
                f"{path} cannot be read ({exc.strerror or exc}); check its permissions"
            ) from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object with queries, corpus, relevant_docs")
        missing = [k for k in ("queries", "corpus", "relevant_docs") if k not in data]
        if missing:
            raise InputError(
                f"{path} is not an EmbeddingQAFinetuneDataset JSON: missing {', '.join(missing)}"
            )
        known = set(cls.model_fields)
        extra = {k: v for k, v in data.items() if k not in known}
        data = {k: v for k, v in data.items() if k in known}
        if extra:
            data.setdefault("metadata", {})["extra_keys"] = extra
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise InputError(f"{path}: field '{field}': {first['msg']}") from None

    def to_json(self, path: str | Path) -> None:
        obj: dict[str, Any] = {
            "queries": self.queries,
            "corpus": self.corpus,
            "relevant_docs": self.relevant_docs,
            "mode": self.mode,
        }
        if self.corpus_titles:
            obj["corpus_titles"] = self.corpus_titles
        if self.scores:
            obj["scores"] = self.scores
        meta = dict(self.metadata)
        obj.update(meta.pop("extra_keys", {}))
        if meta:
            obj["metadata"] = meta
        write_json_atomic(path, obj)

    # --------------------------------------------------------------------- BEIR
    @classmethod
    def from_beir(cls, folder: str | Path, split: str | None = None) -> QADataset:
        folder = Path(folder)
        for name in ("corpus.jsonl", "queries.jsonl"):
            if not (folder / name).is_file():
                raise InputError(f"{folder} is not a BEIR folder: {name} is missing")
        qrels_dir = folder / "qrels"
        if split is None:
            tsvs = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
            if not tsvs:
                raise InputError(f"{folder} is not a BEIR folder: no qrels/<split>.tsv")
            names = [p.stem for p in tsvs]
            split = "test" if "test" in names else names[0]
        qrels_path = qrels_dir / f"{split}.tsv"
        if not qrels_path.is_file():
            raise InputError(f"{qrels_path} not found (BEIR split {split!r})")

        corpus: dict[str, str] = {}
        titles: dict[str, str] = {}
        for cid, text, title in _beir_rows(folder / "corpus.jsonl", with_title=True):
            corpus[cid] = text
            if title:
                titles[cid] = title
        queries = {qid: text for qid, text, _ in _beir_rows(folder / "queries.jsonl")}
        relevant, scores = _read_qrels(qrels_path)
        graded = any(score != 1 for per_query in scores.values() for score in per_query.values())
        if not relevant:
            raise InputError(
                f"no relevance judgements (qrels) in {qrels_path}: it needs lines "
                "'query-id<TAB>corpus-id<TAB>score' with a score above 0"
            )
        if not set(relevant) & set(queries):
            raise InputError(
                f"none of the {len(relevant)} queries judged in {qrels_path} is in "
                f"{folder / 'queries.jsonl'}: check that their ids match (e.g. "
                f"{next(iter(relevant))!r})"
            )
        # BEIR keeps queries without judgments in queries.jsonl; only judged ones are evaluable.
        judged = {qid: text for qid, text in queries.items() if qid in relevant}
        unjudged = {qid: text for qid, text in queries.items() if qid not in relevant}
        meta: dict[str, Any] = {"beir_split": split}
        if unjudged:
            meta["unjudged_queries"] = unjudged
        return cls(
            queries=judged,
            corpus=corpus,
            relevant_docs=relevant,
            corpus_titles=titles,
            scores=scores if graded else {},
            metadata=meta if split != "test" or unjudged else {},
        )

    def to_beir(self, folder: str | Path, split: str | None = None) -> None:
        folder = Path(folder)
        split = split or self.metadata.get("beir_split", "test")
        write_jsonl(
            folder / "corpus.jsonl",
            (
                {"_id": cid, "title": self.corpus_titles.get(cid, ""), "text": text}
                for cid, text in self.corpus.items()
            ),
        )
        all_queries = dict(self.queries)
        all_queries.update(self.metadata.get("unjudged_queries", {}))
        write_jsonl(
            folder / "queries.jsonl", ({"_id": qid, "text": t} for qid, t in all_queries.items())
        )
        qrels = folder / "qrels" / f"{split}.tsv"
        qrels.parent.mkdir(parents=True, exist_ok=True)
        with qrels.open("w", encoding="utf-8", newline="") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid in self.queries:
                graded = self.scores.get(qid)
                if graded:
                    for cid, score in graded.items():
                        f.write(f"{qid}\t{cid}\t{score}\n")
                else:
                    for cid in self.relevant_docs.get(qid, []):
                        f.write(f"{qid}\t{cid}\t1\n")

    # ------------------------------------------------------------------ helpers
    def pairs(self) -> list[tuple[str, str]]:
        """(query text, relevant passage text) pairs, for training."""
        return [
            (self.queries[qid], self.corpus[cid])
            for qid, cids in self.relevant_docs.items()
            if qid in self.queries
            for cid in cids
            if cid in self.corpus
        ]


def _beir_rows(path: Path, *, with_title: bool = False) -> Iterator[tuple[str, str, str]]:
    """(id, text, title) of each row of a BEIR ``corpus.jsonl`` or ``queries.jsonl``."""
    for i, row in enumerate(read_jsonl(path), 1):
        if "_id" not in row or "text" not in row:
            raise InputError(f"{path}: line {i} needs '_id' and 'text'")
        text, title = row["text"], row.get("title") if with_title else None
        for field, value in (("text", text), ("title", title)):
            if value is not None and not isinstance(value, str):
                raise InputError(
                    f"{path}: line {i}: '{field}' must be a string, not "
                    f"{type(value).__name__} ({json.dumps(value)[:40]})"
                )
        if text is None:
            raise InputError(f"{path}: line {i}: 'text' must be a string, not null")
        yield str(row["_id"]), text, title or ""


def _read_qrels(path: Path) -> tuple[dict[str, list[str]], dict[str, dict[str, int]]]:
    """Relevant corpus ids per query (score above 0) and every score, from a qrels TSV."""
    relevant: dict[str, list[str]] = {}
    scores: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise InputError(
            f"{path} is not UTF-8 text; convert it to UTF-8 (e.g. iconv -f <its encoding> -t utf-8)"
        ) from None
    except OSError as exc:
        raise InputError(
            f"{path} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    for lineno, row in enumerate(csv.reader(lines, delimiter="\t"), 1):
        if not row or (lineno == 1 and row[0] == "query-id"):
            continue
        if len(row) < 3:
            raise InputError(f"{path}:{lineno}: expected query-id, corpus-id, score")
        qid, cid, raw = row[0], row[1], row[2]
        try:
            score = int(float(raw))
        except ValueError:
            raise InputError(f"{path}:{lineno}: score {raw!r} is not a number") from None
        scores.setdefault(qid, {})[cid] = score
        if score > 0:
            relevant.setdefault(qid, []).append(cid)
    return relevant, scores


def load_dataset_path(path: str | Path, split: str | None = None) -> QADataset:
    """Load a llama-index JSON file or a BEIR folder, whichever ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return QADataset.from_beir(path, split=split)
    if path.is_file():
        return QADataset.from_json(path)
    raise InputError(
        f"{path} not found: pass a llama-index EmbeddingQAFinetuneDataset JSON file or a BEIR "
        "folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"
    )


#: The share of validation questions also asked in training above which a run is warned.
LEAK_SHARE = 0.05


def leaked_questions(train: QADataset, val: QADataset, role: str = "validation") -> str | None:
    """A warning where more than :data:`LEAK_SHARE` of the ``role`` questions (validation, or
    evaluation) are training questions too (the same text, case and spacing aside): the same
    file given twice, or splits that overlap. Scores on them flatter the fine-tuned model and,
    for validation, sway the verdict."""

    def plain(question: str) -> str:
        return " ".join(str(question).lower().split())

    asked = {plain(q) for q in train.queries.values()}
    shared = [q for q in val.queries.values() if plain(q) in asked]
    if not val.queries or len(shared) <= LEAK_SHARE * len(val.queries):
        return None
    where = val.metadata.get("source", f"the {role} data")
    harm = "and sway the verdict; validate" if role == "validation" else "; evaluate"
    return (
        f"{len(shared)} of the {len(val.queries)} {role} questions in {where} are training "
        f"questions too (e.g. {shared[0][:80]!r}): their scores flatter the fine-tuned model "
        f"{harm} on questions about documents not trained on"
    )
