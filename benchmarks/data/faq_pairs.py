"""Split a BEIR set of people's questions into training pairs and held-out questions.

A FAQ built by ``build_faq_sets.py`` pairs each question people wrote with its answer passage:
that is what a user who brings their own pairs (``embedtune train --train-data``) has, written by
people rather than by a model. This writes two ``EmbeddingQAFinetuneDataset`` JSON files: a
seeded share of the questions with their answers to train on, and the other questions to score,
both over the whole corpus (a user's corpus holds the passages they trained on). Questions whose
answers overlap stay on one side, so no answer is a training positive of a held-out question::

    python benchmarks/data/faq_pairs.py .embedtune-data/perl/faq /tmp/perl-pairs --seed 0
    # -> /tmp/perl-pairs/train.json, /tmp/perl-pairs/val.json

Nothing here is committed data: the sets are rebuilt from Debian's packages.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def read_beir(folder: Path) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """The corpus (title and text joined, as embedtune's evaluation reads them), the queries and
    each query's relevant passages of a BEIR folder."""
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        title = (row.get("title") or "").strip()
        corpus[row["_id"]] = f"{title}\n{row['text']}" if title else row["text"]
    queries = {
        row["_id"]: row["text"]
        for row in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())
    }
    relevant: dict[str, list[str]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, cid, score = line.split("\t")
        if int(score) > 0 and qid in queries and cid in corpus:
            relevant.setdefault(qid, []).append(cid)
    return corpus, queries, relevant


def groups(relevant: dict[str, list[str]]) -> list[list[str]]:
    """Queries joined where their answers share a passage (connected components)."""
    parent = {q: q for q in relevant}

    def root(q: str) -> str:
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    owner: dict[str, str] = {}
    for q, cids in relevant.items():
        for c in cids:
            if c in owner:
                parent[root(q)] = root(owner[c])
            else:
                owner[c] = q
    out: dict[str, list[str]] = {}
    for q in sorted(relevant):
        out.setdefault(root(q), []).append(q)
    return sorted(out.values())


def split(folder: Path, train_share: float, seed: int) -> tuple[dict, dict]:
    corpus, queries, relevant = read_beir(folder)
    parts = groups(relevant)
    random.Random(seed).shuffle(parts)
    target = round(train_share * len(relevant))
    train_q: list[str] = []
    held_q: list[str] = []
    for part in parts:
        (train_q if len(train_q) < target else held_q).extend(part)

    def dataset(qids: list[str]) -> dict:
        return {
            "queries": {q: queries[q] for q in sorted(qids)},
            "corpus": corpus,
            "relevant_docs": {q: relevant[q] for q in sorted(qids)},
            "mode": "text",
        }

    return dataset(train_q), dataset(held_q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("beir", type=Path, help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/")
    ap.add_argument("out", type=Path, help="folder for train.json and val.json")
    ap.add_argument("--train-share", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train, val = split(args.beir, args.train_share, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, ds in (("train", train), ("val", val)):
        (args.out / f"{name}.json").write_text(json.dumps(ds, ensure_ascii=False), "utf-8")
    print(
        f"{args.out}: {len(train['queries'])} training pairs, {len(val['queries'])} held-out "
        f"questions, {len(train['corpus'])} passages"
    )


if __name__ == "__main__":
    main()
