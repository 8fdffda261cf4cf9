"""The offline backend: SmolLM2-135M writes real questions on CPU (slow: loads the model)."""

from __future__ import annotations

import json
import re

import pytest

from embedtune.config import load_config
from embedtune.dataset import QADataset
from embedtune.generate import run_generate
from embedtune.records import Chunk, write_jsonl

PASSAGES = {
    "t0": "The function install.packages() downloads a package from a CRAN mirror and installs "
    "it into a library folder. Use library() to attach the installed package so that its "
    "functions can be called in the current session.",
    "t1": "A data frame is a list of vectors of equal length. read.csv() reads a comma separated "
    "file into a data frame, and write.csv() writes one back to disk.",
    "v0": "Factors store categorical data. The levels() function returns the categories, and "
    "table() counts how often each level occurs.",
}


@pytest.mark.slow
def test_local_model_writes_questions_about_the_passage(tmp_path):
    run = tmp_path / "run"
    for split, ids in (("train", ["t0", "t1"]), ("val", ["v0"])):
        write_jsonl(
            run / "chunks" / f"{split}.jsonl",
            [
                Chunk(id=i, doc_id=i, text=PASSAGES[i], n_tokens=60, page_start=1, page_end=1)
                for i in ids
            ],
        )
    cfg = load_config(environ={})  # backend auto, nothing configured: the offline model
    cfg.generate.roundtrip_top_k = 1  # keep only questions whose own chunk ranks first
    report = run_generate(cfg, run)
    assert report["backend"] == "local"
    assert report["timings"]["model_load_s"] > 0
    rows = [json.loads(x) for x in (run / "generate/cache/train.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["text"].strip() for r in rows)
    train = QADataset.from_json(run / "data" / "train.json")
    assert len(train.queries) >= 2
    stop = {"what", "does", "that", "with", "when", "which", "from", "this", "have", "there"}
    overlaps = 0
    for qid, question in train.queries.items():
        assert question.split()[0] in {"What", "How", "Which", "Why", "When"}, question
        assert question.endswith("?"), question
        passage = PASSAGES[train.relevant_docs[qid][0]].lower()
        words = {w for w in re.findall(r"[a-z]{4,}", question.lower())} - stop
        overlaps += any(w in passage for w in words)
    assert overlaps >= len(train.queries) / 2  # most ask about words the passage uses
    # A second run reuses every cached reply: nothing is generated again.
    again = run_generate(cfg, run)
    assert again.get("skipped") is True
