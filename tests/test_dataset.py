"""Datasets other tools use: llama-index JSON and BEIR folders, losslessly both ways."""

from __future__ import annotations

import json

import pytest

from embedtune.dataset import QADataset, load_dataset_path
from embedtune.errors import InputError


def _ds() -> QADataset:
    return QADataset(
        queries={"q1": "What is R?", "q2": "How do I install packages?"},
        corpus={
            "c1": "R is a language for statistics.",
            "c2": "Use install.packages().",
            "c3": "x",
        },
        relevant_docs={"q1": ["c1"], "q2": ["c2", "c3"]},
    )


def test_llama_index_json_round_trip_is_exact(tmp_path):
    original = {
        "queries": {"a": "q?"},
        "corpus": {"n1": "text"},
        "relevant_docs": {"a": ["n1"]},
        "mode": "text",
    }
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(original))
    ds = QADataset.from_json(path)
    out = tmp_path / "out.json"
    ds.to_json(out)
    assert json.loads(out.read_text()) == original


def test_json_beir_json_round_trip(tmp_path):
    ds = _ds()
    ds.to_beir(tmp_path / "beir")
    assert (tmp_path / "beir" / "qrels" / "test.tsv").read_text().startswith("query-id\t")
    back = QADataset.from_beir(tmp_path / "beir")
    assert back == ds
    back.to_json(tmp_path / "ds.json")
    assert QADataset.from_json(tmp_path / "ds.json") == ds


def test_beir_with_titles_grades_and_unjudged_queries_round_trips(tmp_path):
    src = tmp_path / "src"
    (src / "qrels").mkdir(parents=True)
    (src / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Intro", "text": "alpha"}\n{"_id": "d2", "title": "", "text": "b"}\n'
    )
    (src / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "alpha?"}\n{"_id": "q9", "text": "?"}\n'
    )
    (src / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    ds = load_dataset_path(src)
    assert ds.relevant_docs == {"q1": ["d1"]}  # score 0 is a judged non-relevant
    assert list(ds.queries) == ["q1"]  # q9 has no judgment: not evaluable
    ds.to_json(tmp_path / "mid.json")
    QADataset.from_json(tmp_path / "mid.json").to_beir(tmp_path / "out")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/dev.tsv"):
        assert (tmp_path / "out" / name).read_text() == (src / name).read_text(), name


def test_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_dataset_path(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"queries": {}, "corpus": {}}')
    with pytest.raises(InputError, match=r"bad.json.*missing relevant_docs"):
        QADataset.from_json(bad)
    (tmp_path / "beir").mkdir()
    with pytest.raises(InputError, match="corpus.jsonl is missing"):
        QADataset.from_beir(tmp_path / "beir")


def test_validate_references_finds_queries_without_relevant_docs():
    ds = _ds()
    ds.relevant_docs["q1"] = []
    with pytest.raises(InputError, match="query 'q1' has no relevant document"):
        ds.validate_references("train.json")
    ds = _ds()
    ds.relevant_docs["q1"] = ["missing"]
    with pytest.raises(InputError, match="'missing', which is not in the corpus"):
        ds.validate_references("train.json")
