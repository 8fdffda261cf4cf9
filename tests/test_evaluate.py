"""Evaluation: metrics agree with sentence-transformers, verdicts are honest, embeddings cached."""

from __future__ import annotations

import copy
import json
import logging
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from embedtune.config import EvaluateConfig, PipelineConfig
from embedtune.dataset import QADataset
from embedtune.errors import InputError
from embedtune.evaluate import ModelSpec, evaluate_models, run_evaluate
from embedtune.evaluate.metrics import paired_bootstrap
from embedtune.records import Chunk, write_jsonl
from embedtune.retrieval import hit_matrix, per_query_metrics, rank_corpus

CORPUS = {
    "c01": "To install a package from CRAN, call install.packages with the package name.",
    "c02": "Packages can also be installed from a local tarball with R CMD INSTALL.",
    "c03": "A data frame is a list of vectors of equal length, shown as a table.",
    "c04": "Use read.csv to load a comma separated file into a data frame.",
    "c05": "Factors store categorical data as integer codes with a set of levels.",
    "c06": "The apply family (lapply, sapply, vapply) applies a function over a list.",
    "c07": "Plots are drawn with plot(); ggplot2 builds them from layers instead.",
    "c08": "Garbage collection in R runs automatically; gc() reports memory use.",
    "c09": "Regular expressions are matched with grepl, sub and gsub.",
    "c10": "Missing values are NA; is.na tests for them and na.omit drops them.",
    "c11": "The Comprehensive R Archive Network mirrors packages around the world.",
    "c12": "Dates are stored as the number of days since 1970-01-01.",
}
QUERIES = {
    "q01": "How do I install a package?",
    "q02": "How can I read a CSV file?",
    "q03": "What is a data frame?",
    "q04": "How are categorical variables stored?",
    "q05": "How do I apply a function to every element of a list?",
    "q06": "How do I make a chart?",
    "q07": "How do I find out how much memory R is using?",
    "q08": "How do I replace text matching a pattern?",
    "q09": "How do I remove missing values?",
    "q10": "Where are packages downloaded from?",
    "q11": "How are dates represented internally?",
}
RELEVANT = {
    "q01": ["c01", "c02"],
    "q02": ["c04"],
    "q03": ["c03", "c04"],
    "q04": ["c05"],
    "q05": ["c06"],
    "q06": ["c07"],
    "q07": ["c08"],
    "q08": ["c09"],
    "q09": ["c10"],
    "q10": ["c11", "c01"],
    "q11": ["c12"],
}


def small_dataset() -> QADataset:
    return QADataset(
        queries=dict(QUERIES), corpus=dict(CORPUS), relevant_docs=copy.deepcopy(RELEVANT)
    )


def perturbed(model, scale: float = 0.02, seed: int = 0):
    """A copy with noise on the last transformer layer: different weights, quickly made."""
    import torch

    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    last = [(n, p) for n, p in other.named_parameters() if ".layer.5." in n]
    assert last, "expected a 6-layer MiniLM"
    with torch.no_grad():
        for _, p in last:
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std().clamp(min=1e-6))
    return other


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDTUNE_CACHE", str(tmp_path / "cache"))


def _cfg(**kw) -> EvaluateConfig:
    return EvaluateConfig(bootstrap_samples=kw.pop("bootstrap_samples", 300), **kw)


# --------------------------------------------------------------------------- metrics
def test_metrics_match_information_retrieval_evaluator(minilm):
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    ds = small_dataset()
    result = evaluate_models(
        [ModelSpec("minilm", minilm)], {"d": ds}, _cfg(), None, use_cache=False
    )
    ours = result.datasets["d"].base.metrics

    ir = InformationRetrievalEvaluator(
        ds.queries, ds.corpus, {q: set(c) for q, c in ds.relevant_docs.items()}
    )
    theirs = {k.removeprefix("cosine_"): v for k, v in ir(minilm).items()}

    shared = sorted(set(ours) & set(theirs))
    assert len(shared) == 15  # accuracy/precision/recall @1,3,5,10, MRR@10, NDCG@10, MAP@100
    for name in shared:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-4), name
    # The data exercises what differs between definitions: two relevant documents per query
    # make precision, recall and NDCG's ideal DCG disagree, and the model misses some.
    assert ours["recall@1"] < ours["accuracy@1"] < 1
    assert 0 < ours["ndcg@10"] < 1
    assert ours["map@100"] != pytest.approx(ours["mrr@10"])


def test_ranking_breaks_ties_by_corpus_id_and_pads_short_corpora():
    emb = np.ones((3, 4), dtype=np.float32)
    idx, _ = rank_corpus(emb[:1], emb, ["b", "c", "a"], depth=2)
    assert idx.tolist() == [[2, 0]]  # "a", then "b": equal scores fall back to id order

    hits, n_rel = hit_matrix([["a", "b", "c"]], [{"b"}], depth=3)
    m = per_query_metrics(hits, n_rel, [1, 3, 5, 10])
    assert m["precision@10"][0] == pytest.approx(0.1)  # divided by k, not by the corpus size
    assert m["mrr@10"][0] == pytest.approx(0.5)
    assert m["ndcg@10"][0] == pytest.approx(1 / np.log2(3))


# --------------------------------------------------------------------------- bootstrap
def test_model_against_itself_is_no_clear_difference_with_zero_width_interval():
    rng = np.random.default_rng(0)
    values = {"ndcg@10": rng.random(50), "mrr@10": rng.random(50)}
    comps = paired_bootstrap(values, values, samples=500)
    for c in comps.values():
        assert (c.diff, c.ci_low, c.ci_high) == (0.0, 0.0, 0.0)
        assert c.verdict == "no clear difference"


def test_clearly_better_ranking_is_better_and_worse_the_other_way():
    n = 40
    rel = [{"gold"} for _ in range(n)]
    # base finds the relevant passage at rank 4 (or misses it), the model at rank 1 mostly
    base_ranked = [
        ["x1", "x2", "x3", "gold"] if i % 3 else ["x1", "x2", "x3", "x4"] for i in range(n)
    ]
    model_ranked = [["gold", "x1"] if i % 5 else ["x1", "gold"] for i in range(n)]
    ks = [1, 3, 5, 10]
    base = per_query_metrics(*hit_matrix(base_ranked, rel, 100), ks)
    model = per_query_metrics(*hit_matrix(model_ranked, rel, 100), ks)

    better = paired_bootstrap(base, model, samples=1000, seed=1)
    c = better["ndcg@10"]
    assert c.verdict == "better"
    assert c.ci_low <= c.diff <= c.ci_high and c.ci_low > 0
    assert paired_bootstrap(model, base, samples=1000, seed=1)["ndcg@10"].verdict == "worse"
    # the same seed gives the same interval
    assert paired_bootstrap(base, model, samples=1000, seed=1)["ndcg@10"] == c


# --------------------------------------------------------------------------- corpus
def test_full_corpus_adds_training_chunks_as_distractors(minilm):
    ds = small_dataset()
    # A training chunk that answers q02 better than its relevant validation chunk does.
    train_corpus = {"t01": "How can I read a CSV file? Read the CSV file, read it, CSV file."}
    results = {}
    for mode in ("split", "full"):
        r = evaluate_models(
            [ModelSpec("m", minilm)],
            {"val": ds},
            _cfg(corpus=mode),
            None,
            extra_corpus={"val": train_corpus},
        )
        results[mode] = r.datasets["val"]
    split, full = results["split"], results["full"]
    assert len(split.corpus) == len(CORPUS) and len(full.corpus) == len(CORPUS) + 1
    q02 = split.query_ids.index("q02")
    assert full.base.ranked[q02][0] == "t01"
    assert full.base.metrics["ndcg@10"] < split.base.metrics["ndcg@10"]
    assert (full.corpus_mode, split.corpus_mode) == ("full", "split")


# --------------------------------------------------------------------------- cache
def test_second_evaluation_reads_embeddings_from_cache(minilm):
    calls: list[int] = []
    original = minilm.encode

    def counting_encode(inputs, *args, **kwargs):
        calls.append(len(inputs))
        return original(inputs, *args, **kwargs)

    minilm.encode = counting_encode  # encode_query / encode_document go through it
    ds = small_dataset()
    first = evaluate_models([ModelSpec("m", minilm)], {"d": ds}, _cfg(), None)
    assert sum(calls) == len(QUERIES) + len(CORPUS)

    calls.clear()
    second = evaluate_models([ModelSpec("m", minilm)], {"d": ds}, _cfg(), None)
    assert calls == []
    assert second.datasets["d"].base.metrics == first.datasets["d"].base.metrics
    assert second.datasets["d"].base.cached == len(QUERIES) + len(CORPUS)

    # only a text the cache has not seen is encoded
    ds.queries["q12"] = "Which function tests for NA?"
    ds.relevant_docs["q12"] = ["c10"]
    evaluate_models([ModelSpec("m", minilm)], {"d": ds}, _cfg(), None)
    assert calls == [1]


def test_cached_model_folder_is_not_even_loaded(minilm, tmp_path, monkeypatch):
    from embedtune.evaluate import evaluator

    folder = tmp_path / "model"
    minilm.save(str(folder))
    loads: list[str] = []
    real_load = evaluator._load
    monkeypatch.setattr(evaluator, "_load", lambda name: loads.append(name) or real_load(name))
    ds = small_dataset()
    first = evaluate_models([str(folder)], {"d": ds}, _cfg(), None)
    second = evaluate_models([str(folder)], {"d": ds}, _cfg(), None)
    assert loads == [str(folder)]
    assert second.datasets["d"].base.metrics == first.datasets["d"].base.metrics

    # changed weights, same path: a new fingerprint, so the model is loaded and encodes again
    perturbed(minilm).save(str(folder))
    evaluate_models([str(folder)], {"d": ds}, _cfg(), None)
    assert loads == [str(folder)] * 2


# --------------------------------------------------------------------------- reports
def test_reports_are_self_contained_and_state_the_verdict(minilm, tmp_path):
    out = tmp_path / "eval"
    result = evaluate_models(
        [ModelSpec("base", minilm), ModelSpec("noisy", perturbed(minilm, scale=0.5))],
        {"d": small_dataset()},
        _cfg(),
        out,
    )
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<svg" in page and "<polyline" in page  # difference bars and the hit-rate line chart
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page

    verdict = result.datasets["d"].verdict("noisy")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"**Verdict: noisy vs base: {verdict}. NDCG@10" in md

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    comp = metrics["datasets"]["d"]["comparisons"]["noisy"]["ndcg@10"]
    assert comp["verdict"] == verdict and comp["ci_low"] <= comp["diff"] <= comp["ci_high"]
    assert metrics["datasets"]["d"]["metrics"]["base"]["ndcg@10"] == pytest.approx(comp["base"])
    rows = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert len(rows) == len(QUERIES) and set(rows[0]["models"]) == {"base", "noisy"}


# --------------------------------------------------------------------------- bad input
def test_query_without_relevant_document_is_named(minilm):
    ds = small_dataset()
    ds.relevant_docs["q03"] = []
    with pytest.raises(InputError, match="query 'q03' has no relevant document"):
        evaluate_models([ModelSpec("m", minilm)], {"mine": ds}, _cfg(), None)


def test_model_that_cannot_load_is_named(tmp_path):
    not_a_model = tmp_path / "weights"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="is a folder but not a model"):
        evaluate_models([str(not_a_model)], {"d": small_dataset()}, _cfg(), None)
    with pytest.raises(InputError, match="does not exist"):
        evaluate_models([str(tmp_path / "missing")], {"d": small_dataset()}, _cfg(), None)
    # A report folder is claimed only once there is a report: a failed load leaves none behind.
    with pytest.raises(InputError, match="does not exist"):
        evaluate_models(
            [str(tmp_path / "missing")], {"d": small_dataset()}, _cfg(), tmp_path / "eval"
        )
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------- run dir
def _make_run(tmp_path: Path, minilm) -> Path:
    run = tmp_path / "run"
    ds = small_dataset()
    ds.to_json(run / "data" / "val.json")
    QADataset(
        queries={"tq": "What does gsub do?"},
        corpus={"t01": "gsub replaces every match of a pattern in a string."},
        relevant_docs={"tq": ["t01"]},
    ).to_json(run / "data" / "train.json")
    perturbed(minilm, scale=0.05).save(str(run / "model"))
    return run


def test_run_evaluate_scores_base_and_fine_tuned_and_skips_when_current(
    minilm, minilm_path, tmp_path, caplog
):
    run = _make_run(tmp_path, minilm)
    cfg = PipelineConfig(model=minilm_path, evaluate=_cfg())
    summary = run_evaluate(cfg, run)
    val = summary.datasets["val"]
    assert summary.verdict == val.verdict in ("better", "worse", "no clear difference")
    assert val.n_corpus == len(CORPUS) + 1 and val.corpus == "full"
    assert val.diff == pytest.approx(val.fine_tuned - val.base)
    assert val.ci_low <= val.diff <= val.ci_high
    for name in ("metrics.json", "report.md", "report.html", "per_query.jsonl"):
        assert (run / "eval" / name).is_file()
    assert summary.skipped is False

    again = run_evaluate(cfg, run)
    assert again.skipped is True and again.datasets == summary.datasets

    # A summary saved under an older judge is judged again by today's, scoring nothing.
    manifest = run / "eval" / "manifest.json"
    saved = json.loads(manifest.read_text(encoding="utf-8"))
    saved["summary"]["verdict"], saved["summary"]["judged_on"] = "mixed", ["an-older-judge"]
    manifest.write_text(json.dumps(saved), encoding="utf-8")
    rejudged = run_evaluate(cfg, run)
    assert rejudged.skipped is True
    assert (rejudged.verdict, rejudged.judged_on) == (summary.verdict, summary.judged_on)

    # A saved summary this version cannot read (an older embedtune's) is evaluated anew.
    saved = json.loads(manifest.read_text(encoding="utf-8"))
    del saved["summary"]["verdict"]
    manifest.write_text(json.dumps(saved), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        anew = run_evaluate(cfg, run)
    assert anew.skipped is False and anew.datasets == summary.datasets
    assert f"{manifest}: the saved summary cannot be read (verdict: Field required)" in caplog.text
    assert run_evaluate(cfg, run).skipped is True  # and its summary is saved again

    cfg.evaluate.corpus = "split"  # a changed setting is evaluated anew
    split = run_evaluate(cfg, run)
    assert split.skipped is False and split.datasets["val"].n_corpus == len(CORPUS)


def test_evaluation_questions_the_run_trained_on_are_warned_of(minilm, minilm_path, tmp_path):
    run = _make_run(tmp_path, minilm)
    mine = QADataset.from_json(run / "data" / "train.json")  # "my questions" = training ones
    mine.to_json(tmp_path / "mine.json")
    clean = small_dataset()
    clean.to_json(tmp_path / "clean.json")
    cfg = PipelineConfig(model=minilm_path, evaluate=_cfg())
    cfg.evaluate.data = [str(tmp_path / "mine.json"), str(tmp_path / "clean.json")]
    said: list[str] = []
    summary = run_evaluate(cfg, run, progress=said.append)
    assert len(summary.warnings) == 1
    assert summary.warnings[0].startswith(
        f"1 of the 1 evaluation questions in {tmp_path / 'mine.json'} are training questions too"
    )
    assert f"warning: {summary.warnings[0]}" in said
    assert run_evaluate(cfg, run).warnings == summary.warnings  # kept when skipped


def test_run_evaluate_without_generated_data_says_what_to_run(tmp_path):
    with pytest.raises(InputError, match="embedtune generate --run"):
        run_evaluate(PipelineConfig(), tmp_path / "empty-run")


# --------------------------------------------------------------------------- base choice
def _scored(per_model: dict[str, np.ndarray]):
    """A DatasetResult from per-query NDCG@10 values; the first model is the base."""
    from embedtune.evaluate.evaluator import DatasetResult, ModelScores

    scores = [
        ModelScores(
            label,
            label,
            None,
            "cosine",
            {"ndcg@10": float(v.mean())},
            {"ndcg@10": v},
            [],
            [],
            0,
            0,
            0.0,
        )  # fmt: skip
        for label, v in per_model.items()
    ]
    base = scores[0].per_query
    ds = DatasetResult("val", "full", [], [], [], {}, scores)
    for s in scores[1:]:
        ds.comparisons[s.label] = paired_bootstrap(base, s.per_query, samples=500, seed=0)
    return ds


def test_a_baseline_that_beats_base_and_fine_tuned_is_recommended():
    from embedtune.evaluate.evaluator import recommend_base

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, 60)
    ds = _scored({"base": base, "fine-tuned": base + 0.02, "all-mpnet-base-v2": base + 0.10})
    rec = recommend_base(ds)
    assert rec is not None and rec["model"] == "all-mpnet-base-v2"
    assert rec["over_fine_tuned"] == pytest.approx(0.08)
    assert rec["ci_low"] > 0 and "--model all-mpnet-base-v2" in rec["message"]
    assert "over the base on val" in rec["message"]  # names the data it is based on


def test_no_recommendation_when_fine_tuned_wins_or_baseline_is_not_clearly_better():
    from embedtune.evaluate.evaluator import recommend_base

    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.7, 60)
    noise = rng.normal(0, 0.2, 60)
    # the fine-tuned model is the best of all: nothing to switch to
    assert (
        recommend_base(_scored({"base": base, "fine-tuned": base + 0.1, "b": base + 0.05})) is None
    )
    # a baseline whose gain is within the noise is not clearly better, so not recommended
    assert recommend_base(_scored({"base": base, "b": base + 0.01 + noise})) is None


def test_run_evaluate_scores_the_validation_headings_when_prepare_wrote_them(
    minilm, minilm_path, tmp_path
):
    run = _make_run(tmp_path, minilm)
    headings = small_dataset()
    headings.to_json(run / "chunks" / "val_headings.json")
    cfg = PipelineConfig(model=minilm_path, evaluate=_cfg())
    summary = run_evaluate(cfg, run)
    row = summary.datasets["val-headings"]
    assert row.n_queries == len(headings.queries) and row.n_corpus == len(CORPUS)
    assert row.verdict in ("better", "worse", "no clear difference")
    assert summary.judged_on == ["val-headings"]  # people's words judge, not the writer's

    cfg.evaluate.headings = False
    assert "val-headings" not in run_evaluate(cfg, run).datasets


@pytest.mark.parametrize(
    "headings, sentences, expected",
    [
        ("no clear difference", "better", "better"),
        ("better", None, "better"),
        ("better", "worse", "mixed"),
        ("worse", "no clear difference", "worse"),
        (None, "no clear difference", "no clear difference"),
    ],
)
def test_run_verdict_needs_a_gain_on_one_validation_set_and_a_loss_on_none(
    headings, sentences, expected
):
    from embedtune.evaluate.evaluator import run_verdict

    # the writer's questions and the sets a user adds do not decide while people's words exist
    verdicts = {"val": "worse", "r-faq": "worse"}
    for name, v in (("val-headings", headings), ("val-sentences", sentences)):
        if v is not None:
            verdicts[name] = v
    assert run_verdict(verdicts)[0] == expected


def test_the_writers_questions_judge_a_run_only_without_headings_or_sentences():
    from embedtune.evaluate.evaluator import run_verdict

    assert run_verdict({"val": "better", "r-faq": "worse"}) == ("better", ["val"])
    assert run_verdict({"val": "better", "val-sentences": "no clear difference"}) == (
        "no clear difference",
        ["val-sentences"],
    )
    nothing_trained = {"val": "missing", "val-headings": "missing", "val-sentences": "missing"}
    assert run_verdict(nothing_trained) == ("missing", [])


def test_models_reading_different_lengths_of_each_text_are_noted(tmp_path):
    """A MiniLM fine-tuned with --max-seq-length 512 against MiniLM reading its own 256: on
    llama-index's 10-K pairs the window alone gave +0.016 of the +0.104, which the comparison
    would credit to training without a word."""
    from embedtune.evaluate.evaluator import windows_differ

    longer = tmp_path / "mine"
    longer.mkdir()
    (longer / "sentence_bert_config.json").write_text('{"max_seq_length": 512}')
    note = windows_differ(["all-MiniLM-L6-v2", str(longer)])
    assert note is not None and "all-MiniLM-L6-v2 256, " in note and " 512)" in note
    assert "not its training" in note
    same = tmp_path / "same"
    same.mkdir()
    (same / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    assert windows_differ(["all-MiniLM-L6-v2", str(same)]) is None


def test_validation_searches_the_training_chunks_not_the_training_sets_passages(
    minilm, minilm_path, tmp_path
):
    """With sentences as training queries, train.json's corpus holds each chunk without a
    sentence (twice over); a deployed index holds the chunks, so validation searches those."""
    run = _make_run(tmp_path, minilm)
    chunk = "gsub replaces every match of a pattern. sub replaces the first match only."
    write_jsonl(
        run / "chunks" / "train.jsonl",
        [Chunk(id="t01", doc_id="t", text=chunk, n_tokens=14, page_start=1, page_end=1)],
    )
    QADataset(
        queries={"s1": "sub replaces the first match only.", "s2": "gsub replaces every match."},
        corpus={"t01-a": "gsub replaces every match of a pattern.", "t01-b": "sub replaces."},
        relevant_docs={"s1": ["t01-a"], "s2": ["t01-b"]},
    ).to_json(run / "data" / "train.json")
    summary = run_evaluate(PipelineConfig(model=minilm_path, evaluate=_cfg()), run)
    assert summary.datasets["val"].n_corpus == len(CORPUS) + 1  # the one chunk, not 2 passages


def _val_chunks(run: Path) -> list[Chunk]:
    """Six validation chunks of two sentences each (of 6-40 words), from CORPUS's texts."""
    texts = list(CORPUS.values())
    chunks = [
        Chunk(id=f"v{i}", doc_id="v", text=f"{a} {b}", n_tokens=30, page_start=1, page_end=1)
        for i, (a, b) in enumerate(zip(texts[0:12:2], texts[1:12:2], strict=True))
    ]
    write_jsonl(run / "chunks" / "val.jsonl", chunks)
    return chunks


def test_run_evaluate_asks_the_validation_chunks_own_sentences(minilm, minilm_path, tmp_path):
    """val-sentences: each validation chunk's sentences, asked against the chunk without them,
    at no writer call; people wrote them, about documents no training saw. They judge the run
    (session 39's rule, BENCHMARKS.md); the writer's questions are reported."""
    run = _make_run(tmp_path, minilm)
    chunks = _val_chunks(run)
    cfg = PipelineConfig(model=minilm_path, evaluate=_cfg())
    summary = run_evaluate(cfg, run)
    row = summary.datasets["val-sentences"]
    assert (row.n_queries, row.n_corpus) == (12, len(chunks))
    assert row.verdict in ("better", "worse", "no clear difference")
    assert summary.judged_on == ["val-sentences"]
    assert summary.verdict == row.verdict

    cfg.evaluate.sentences = False
    without = run_evaluate(cfg, run)
    assert "val-sentences" not in without.datasets and without.judged_on == ["val"]


def test_validation_sentences_are_not_found_by_copying_words():
    """No passage holds a query word for word: its own chunk lost it, and each query's one
    relevant entry is the chunk it came from."""
    from embedtune.evaluate.sentences import validation_sentences

    chunks = _val_chunks(Path(tempfile.mkdtemp()))
    ds = validation_sentences(chunks)
    assert len(ds.queries) == 12 and set(ds.corpus) == {c.id for c in chunks}
    for qid, sentence in ds.queries.items():
        assert not any(sentence in text for text in ds.corpus.values())
        (source,) = ds.relevant_docs[qid]
        assert sentence in next(c.text for c in chunks if c.id == source)
    assert validation_sentences(chunks) == ds  # drawn the same way every time
    fewer = validation_sentences(chunks, max_chunks=2, per_chunk=1)
    assert len(fewer.queries) == 2 and len(fewer.corpus) == len(chunks)


def test_too_few_validation_sentences_make_no_verdict(minilm, minilm_path, tmp_path):
    run = _make_run(tmp_path, minilm)
    write_jsonl(
        run / "chunks" / "val.jsonl",
        [Chunk(id="v0", doc_id="v", text=CORPUS["c01"], n_tokens=15, page_start=1, page_end=1)],
    )
    summary = run_evaluate(PipelineConfig(model=minilm_path, evaluate=_cfg()), run)
    assert "val-sentences" not in summary.datasets
    assert summary.judged_on == ["val"]  # nothing of people's: the writer's questions judge
