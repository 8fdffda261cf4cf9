"""A run's generated pairs plus its training documents' headings as training queries.

Session 31's screen of the headings as training data (benchmarks/journal/quality-levers.md).
The headings come from the training documents of RUN (its config.yaml's ingest paths, split
as prepare split them), by the rules ``ingest/headings.py`` gives the validation headings; each
is paired with the first training chunk of its document that holds the first 12 words of its
section. mpnet's round trip (top 20 of the training chunks, bf16, 256 tokens, as generate's)
keeps a heading as a pair or sends it to the rejects (the teacher's ranking alone)::

    python benchmarks/data/heading_pairs.py RUN OUT
    # -> OUT/train.json (RUN's pairs + the kept headings), OUT/rejects.json (RUN's rejects +
    #    the doubted headings), OUT/headings_kept.json
    python benchmarks/bench_quality.py --run RUN --train-data OUT/train.json \
        --rejects-data OUT/rejects.json --recipes default --seeds 1,2,3 ...

The product's version of the same (branch ``train-headings``, not merged) searches each
document's chunks in section order, so a section opening with an earlier one's words is not
given the earlier chunk; this helper takes the first chunk that matches.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from embedtune.dataset import QADataset, load_dataset_path
from embedtune.ingest.headings import headings_dataset
from embedtune.ingest.loader import load_documents
from embedtune.ingest.split import split_documents
from embedtune.models import load_model
from embedtune.train.roundtrip import joined, roundtrip_split

_WS = re.compile(r"\s+")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run folder with chunks/ and data/")
    ap.add_argument("out", type=Path)
    ap.add_argument("--top-k", type=int, default=20)
    args = ap.parse_args()
    run, out = args.run, args.out
    out.mkdir(parents=True, exist_ok=True)
    ingest = yaml.safe_load((run / "config.yaml").read_text())["ingest"]
    docs = load_documents(ingest["paths"], ingest["extensions"]).documents
    split = split_documents(docs, ingest["val_ratio"], ingest["seed"])
    headings, report = headings_dataset(split.train)
    print("training documents' headings:", report)

    chunks: dict[str, str] = {}
    by_doc: dict[str, list[tuple[str, str]]] = {}
    for line in (run / "chunks/train.jsonl").read_text(encoding="utf-8").splitlines():
        c = json.loads(line)
        chunks[c["id"]] = c["text"]
        by_doc.setdefault(c["doc_id"], []).append((c["id"], _WS.sub(" ", c["text"])))
    queries, relevant = {}, {}
    for qid, query in headings.queries.items():
        start = " ".join(headings.corpus[headings.relevant_docs[qid][0]].split()[:12])
        doc = qid.split("#h")[0]
        hit = next((cid for cid, text in by_doc.get(doc, []) if start in text), None)
        if hit is not None:
            queries[f"h:{qid}"], relevant[f"h:{qid}"] = query, [hit]
    print(f"headings with a chunk: {len(queries)} of {len(headings.queries)}")

    teacher = load_model("sentence-transformers/all-mpnet-base-v2", dtype="bfloat16")
    teacher.max_seq_length = 256
    asked = QADataset(queries=queries, corpus=chunks, relevant_docs=relevant)
    trip = roundtrip_split(teacher, asked, args.top_k)
    print(f"round trip: {len(trip.kept.queries)} kept, {trip.n_doubted} doubted of {trip.asked}")
    train = joined(load_dataset_path(run / "data/train.json"), trip.kept)
    rejects = joined(load_dataset_path(run / "data/train_rejects.json"), trip.doubted)
    assert train is not None and rejects is not None
    train.to_json(out / "train.json")
    rejects.to_json(out / "rejects.json")
    kept = sorted(trip.kept.queries.values())
    (out / "headings_kept.json").write_text(json.dumps(kept, indent=1), encoding="utf-8")
    print(
        f"{len(train.queries)} pairs over {len(train.corpus)} chunks; {len(rejects.queries)} rejects"
    )


if __name__ == "__main__":
    main()
