"""A run's generated pairs and rejects restricted to some kinds of question.

Session 32's screen of the question kinds (benchmarks/journal/quality-levers.md). The offline
writer prefills each reply with its kind's first word ("What", "How", "Which", "Why", ...:
``generate/prompts.QUESTION_KINDS``), and decodes greedily, so the questions of a run generated
with ``--questions-per-chunk 4`` that start with "How" or "Why" are those a run asking only How
and Why would write (less the near duplicates of another kind's question, which that run would
keep)::

    embedtune generate --run RUN --questions-per-chunk 4
    python benchmarks/data/question_kinds.py RUN OUT --words How,Why
    # -> OUT/train.json and OUT/rejects.json
    python benchmarks/bench_quality.py --run OLD_RUN --train-data OUT/train.json \
        --rejects-data OUT/rejects.json --recipes default --seeds 1,2,3 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def keep_words(data: dict, words: set[str]) -> dict:
    """``data`` (llama-index JSON) with only the queries whose first word is in ``words``."""
    queries = {
        qid: text
        for qid, text in data["queries"].items()
        if text.split() and text.split()[0] in words
    }
    relevant = {qid: docs for qid, docs in data["relevant_docs"].items() if qid in queries}
    return {**data, "queries": queries, "relevant_docs": relevant}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run directory with data/train.json")
    ap.add_argument("out", type=Path, help="folder for train.json and rejects.json")
    ap.add_argument("--words", required=True, help="first words to keep, e.g. How,Why")
    args = ap.parse_args()
    words = {w.strip() for w in args.words.split(",") if w.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, dst in (("train.json", "train.json"), ("train_rejects.json", "rejects.json")):
        src = args.run / "data" / name
        if not src.is_file():
            raise SystemExit(f"{src}: no such file (run `embedtune generate --run {args.run}`)")
        kept = keep_words(json.loads(src.read_text(encoding="utf-8")), words)
        (args.out / dst).write_text(json.dumps(kept), encoding="utf-8")
        print(f"{args.out / dst}: {len(kept['queries'])} questions")


if __name__ == "__main__":
    main()
