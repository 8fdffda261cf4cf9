"""Inverse-cloze pairs from a run's training chunks: training data that no writer wrote.

Session 36's measurement (benchmarks/journal/quality-levers.md): with a teacher labelling every
pair, does the student need the writer's questions at all? The inverse cloze task (Lee et al.,
2019, "Latent Retrieval for Weakly Supervised Open Domain Question Answering") takes a sentence of
a passage as the query and the passage without that sentence as its answer. Here: the chunks RUN's
writer was given (those with a kept or rejected question), up to ``--per-chunk`` sentences of 6 to
40 words each, drawn with ``--seed``; a sentence already used as a query elsewhere is skipped::

    python benchmarks/data/ict_pairs.py RUN OUT.json
    echo '{"queries": {}, "corpus": {}, "relevant_docs": {}}' > EMPTY.json
    python benchmarks/bench_quality.py --run RUN --train-data OUT.json --rejects-data EMPTY.json \
        --recipes default --seeds 1,2,3 ...

Sentences are split at ``.``/``!``/``?`` followed by white space and at line breaks, which in the
extracted manuals also makes a heading a "sentence" when it has six words or more.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def written_for(run: Path) -> tuple[list[str], dict[str, str]]:
    """The chunks RUN's writer was given, in the order their questions appear, and every text."""
    train = json.loads((run / "data/train.json").read_text())
    rejects_path = run / "data/train_rejects.json"
    rejects = json.loads(rejects_path.read_text()) if rejects_path.is_file() else {}
    order: dict[str, None] = {}
    for data in (train, rejects):
        for ids in data.get("relevant_docs", {}).values():
            order.update(dict.fromkeys(ids))
    return list(order), {**rejects.get("corpus", {}), **train["corpus"]}


def ict_pairs(chunks: list[str], text: dict[str, str], per_chunk: int, seed: int) -> dict:
    """A llama-index JSON of inverse-cloze pairs over ``chunks``."""
    rng = random.Random(seed)
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    used: set[str] = set()
    for cid in chunks:
        sentences = [s.strip() for s in _SENTENCE_END.split(text[cid]) if s.strip()]
        candidates = [i for i, s in enumerate(sentences) if 6 <= len(s.split()) <= 40]
        for k, i in enumerate(rng.sample(candidates, min(per_chunk, len(candidates)))):
            if sentences[i] in used:
                continue
            used.add(sentences[i])
            qid, pid = f"{cid}-q{k}", f"{cid}-p{k}"
            queries[qid] = sentences[i]
            corpus[pid] = "\n".join(s for j, s in enumerate(sentences) if j != i)
            relevant[qid] = [pid]
    return {"queries": queries, "corpus": corpus, "relevant_docs": relevant, "mode": "text"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run folder after `embedtune generate`")
    ap.add_argument("out", type=Path, help="where to write the pairs (llama-index JSON)")
    ap.add_argument("--per-chunk", type=int, default=2, help="sentences per chunk (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.run / "data/train.json").is_file():
        ap.error(f"{args.run}: no data/train.json; give a run folder after `embedtune generate`")
    chunks, text = written_for(args.run)
    data = ict_pairs(chunks, text, args.per_chunk, args.seed)
    args.out.write_text(json.dumps(data))
    print(f"{args.run}: {len(chunks)} chunks, {len(data['queries'])} pairs -> {args.out}")


if __name__ == "__main__":
    main()
