"""The generate stage: chunks in, question/chunk datasets out, every LLM reply cached.

Reads ``RUN/chunks/{train,val}.jsonl`` and writes

- ``RUN/generate/cache/{train,val}.jsonl``: raw replies, appended and fsynced as they arrive;
- ``RUN/data/{train,val}.json``: llama-index ``EmbeddingQAFinetuneDataset`` JSON (corpus = all
  chunks of the split, queries = kept questions, relevant_docs = the source chunk; with
  ``generate.train_queries: sentences`` the training queries are sentences of the chunks and
  the training corpus the chunks without them, see :mod:`embedtune.generate.sentences`);
- ``RUN/data/beir/{train,val}/``: the same as BEIR folders (qrels ``train.tsv`` / ``test.tsv``);
- ``RUN/data/train_rejects.json``: the training questions the round trip dropped, which training
  with a teacher learns from through the teacher's ranking only;
- ``RUN/generate/report.json``: calls, tokens, drops by reason, timings, sample questions.

A rerun makes only the calls the cache lacks; the datasets are rebuilt from cache and filters::

    >>> from embedtune.config import load_config
    >>> report = run_generate(load_config("run/config.yaml"), Path("run"))  # doctest: +SKIP
    >>> report.splits["train"].kept                                           # doctest: +SKIP
    812
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.artifacts import is_current, stage_key, write_manifest
from embedtune.cloze import MAX_WORDS, MIN_WORDS
from embedtune.config import GenerateConfig, PipelineConfig
from embedtune.dataset import QADataset
from embedtune.embeddings import EmbeddingCache, model_fingerprint
from embedtune.errors import ConfigError, GenerationError, InputError
from embedtune.generate.cache import ResponseCache, move_aside, response_key
from embedtune.generate.client import OpenAIBackend, is_openai_host, resolve_api_key
from embedtune.generate.estimate import (
    StepEstimate,
    judge_estimate,
    record_local_rate,
    record_server_latency,
    writer_estimate,
)
from embedtune.generate.filters import DROP_REASONS, QuestionFilter, roundtrip_keep
from embedtune.generate.local import LocalBackend
from embedtune.generate.prompts import (
    QUESTION_KINDS,
    PromptTemplate,
    example_questions,
    load_template,
    parse_questions,
    render,
)
from embedtune.generate.report import DryRunReport, DryRunSplit, GenerateReport, SplitReport
from embedtune.generate.sentences import sentence_pairs
from embedtune.layout import BEIR_SPLIT, SPLITS, RunLayout
from embedtune.models import check_available, is_cross_encoder, load_model
from embedtune.progress import bar
from embedtune.recipe import judge_dtype, judge_length, settle
from embedtune.records import Chunk, content_hash, read_chunks, read_json, write_json_atomic
from embedtune.runlock import holds_run

__all__ = ["run_generate", "resolve_backend", "estimate_cost", "PRICES"]

log = logging.getLogger("embedtune.generate")

#: USD per 1M tokens (input, output), from openai.com/api/pricing as of mid-2025. Prices change:
#: the dry run labels its estimate with this date; check the page before a large run.
PRICES_AS_OF = "2025-08"
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}
#: Rough output length of one question, for estimates.
TOKENS_PER_QUESTION = 25


def resolve_backend(g: GenerateConfig) -> str:
    """'openai' or 'local': ``auto`` picks openai when a server or model is configured."""
    if g.backend != "auto":
        return g.backend
    return "openai" if (g.base_url or g.model) else "local"


def _price(model: str) -> tuple[float, float] | None:
    name = model.lower().split("/")[-1]
    for prefix in sorted(PRICES, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "-"):
            return PRICES[prefix]
    return None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for OpenAI's own models (see ``PRICES``), None for models not in the table."""
    price = _price(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


@dataclass
class _Call:
    split: str
    chunk: Chunk
    index: int
    key: str
    prompt: str


def _select(chunks: list[Chunk], max_chunks: int | None, seed: int) -> list[Chunk]:
    """At most ``max_chunks`` chunks, drawn at random in document order.

    The draw is a prefix of one seeded shuffle, so a larger budget keeps every chunk of a
    smaller one (and every reply already paid for).
    """
    if max_chunks is None or len(chunks) <= max_chunks:
        return chunks
    order = list(range(len(chunks)))
    random.Random(seed).shuffle(order)
    return [chunks[i] for i in sorted(order[:max_chunks])]


def _split_budget(g: GenerateConfig, split: str) -> int | None:
    """Chunks to write for: ``max_chunks``; for validation also at most ``val_max_chunks``."""
    if split == "val" and g.val_max_chunks is not None:
        return min(g.val_max_chunks, g.max_chunks or g.val_max_chunks)
    return g.max_chunks


def scaled_top_k(top_k: int, searched: int, split_size: int) -> int:
    """The round trip's k for a search among ``searched`` of the split's ``split_size`` chunks:
    scaled so that the same share of the ranking passes as in a search of the whole split."""
    if searched >= split_size:
        return top_k
    return max(1, round(top_k * searched / split_size))


def _plan(
    split: str,
    chunks: list[Chunk],
    template: PromptTemplate,
    backend: str,
    model: str,
    sampling: dict[str, Any],
    per_chunk: int,
) -> list[_Call]:
    """The calls on ``chunks``: ``per_chunk`` one-question calls each for a per-question
    template, else one call asking for all ``per_chunk``."""
    calls = []
    for chunk in chunks:
        if template.per_question:
            indices = [(i, 1) for i in range(per_chunk)]
        else:
            indices = [(0, per_chunk)]
        for index, n in indices:
            key = response_key(
                chunk_text=chunk.text,
                template=template.text,
                backend=backend,
                model=model,
                sampling={**sampling, "questions_per_call": n},
                index=index,
            )
            calls.append(_Call(split, chunk, index, key, render(template, chunk.text, n, index)))
    return calls


def _progress(total: int, desc: str) -> Any:
    return bar(total, desc, unit="call")


def _row(call: _Call, backend: str, model: str, reply: Any, seconds: float) -> dict[str, Any]:
    return {
        "key": call.key,
        "split": call.split,
        "chunk_id": call.chunk.id,
        "index": call.index,
        "backend": backend,
        "model": model,
        "text": reply.text,
        "usage": reply.usage,
        "attempts": reply.attempts,
        "json_mode": reply.json_mode,
        "seconds": round(seconds, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


async def _run_openai(
    backend: OpenAIBackend, calls: list[_Call], caches: dict[str, ResponseCache], bar: Any
) -> None:
    queue: asyncio.Queue[_Call] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    failure: list[BaseException] = []

    async def worker() -> None:
        while not failure:
            try:
                call = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            try:
                reply = await backend.complete(call.prompt)
            except GenerationError as exc:
                failure.append(exc)
                return
            caches[call.split].append(
                _row(call, backend.name, backend.model, reply, time.perf_counter() - start)
            )
            bar.update(1)

    try:
        n = min(backend.cfg.concurrency, max(1, len(calls)))
        await asyncio.gather(*(worker() for _ in range(n)))
    finally:
        await backend.aclose()
    if failure:
        raise failure[0]


def _local_batches(calls: list[_Call], size: int) -> list[list[_Call]]:
    """Batches of at most ``size`` calls, a chunk's calls kept together.

    Sorted by chunk length, a batch's prompts pad to nearly the same length; together, one
    chunk's calls (one per kind of question) share its text, which the backend reads once.
    """
    by_chunk: dict[tuple[str, str], list[_Call]] = {}
    for call in sorted(calls, key=lambda c: (len(c.chunk.text), c.split, c.chunk.id, c.index)):
        by_chunk.setdefault((call.split, call.chunk.id), []).append(call)
    batches: list[list[_Call]] = []
    batch: list[_Call] = []
    for group in by_chunk.values():
        while group:
            if batch and len(batch) + len(group) > size:
                batches.append(batch)
                batch = []
            take, group = group[: size - len(batch)], group[size - len(batch) :]
            batch.extend(take)
    if batch:
        batches.append(batch)
    return batches


def _run_local(
    backend: LocalBackend, calls: list[_Call], caches: dict[str, ResponseCache], bar: Any
) -> None:
    for batch in _local_batches(calls, backend.batch_size):
        t0 = time.perf_counter()
        replies = backend.complete_batch([c.prompt for c in batch])
        per_call = (time.perf_counter() - t0) / len(batch)
        for call, reply in zip(batch, replies, strict=True):
            caches[call.split].append(_row(call, backend.name, backend.model, reply, per_call))
        bar.update(len(batch))


def _read_split_chunks(run: RunLayout) -> dict[str, list[Chunk]]:
    out = {}
    for split in SPLITS:
        path = run.chunks_file(split)
        if not path.is_file():
            raise InputError(
                f"{path} not found: run 'embedtune prepare DOCS --run {run.root}' first to "
                "chunk your documents"
            )
        out[split] = read_chunks(path)
    if not out["train"]:
        raise InputError(f"{run.chunks_file('train')} holds no chunks")
    return out


@dataclass
class _Job:
    """One generate run, planned: the chunks each split's queries come from, the writer's
    calls per split, the backend that answers them, the judge of the round trip, and the key
    of the outputs."""

    cfg: PipelineConfig
    run: RunLayout
    judge: str
    backend_name: str
    backend: OpenAIBackend | LocalBackend
    template: PromptTemplate
    chunks: dict[str, list[Chunk]]
    selected: dict[str, list[Chunk]]  # under a budget, a sample of ``chunks``
    plans: dict[str, list[_Call]]  # none for training when its queries are sentences
    key: str

    def from_sentences(self, split: str) -> bool:
        return _from_sentences(self.g, split)

    @property
    def g(self) -> GenerateConfig:
        return self.cfg.generate

    @property
    def questions_per_call(self) -> int:
        """1 for a one-question-per-call template, else all of a chunk's questions."""
        return 1 if self.template.per_question else self.g.questions_per_chunk

    @property
    def outputs(self) -> list[Path]:
        run = self.run
        return [run.data_file("train"), run.data_file("val"), run.rejects_file, run.generate_report]


def _from_sentences(g: GenerateConfig, split: str) -> bool:
    """Whether ``split``'s queries are the chunks' sentences rather than questions."""
    return split == "train" and g.train_queries == "sentences"


def _plan_job(cfg: PipelineConfig, run: RunLayout, *, dry_run: bool) -> _Job:
    """Check the settings, then plan every call; nothing is called yet."""
    g = cfg.generate
    if g.min_question_chars >= g.max_question_chars:
        raise ConfigError(
            f"generate.min_question_chars ({g.min_question_chars}) must be below "
            f"generate.max_question_chars ({g.max_question_chars})"
        )
    judge = g.roundtrip_model or cfg.model  # settled: "auto" is the teacher or the base
    if judge != cfg.model and g.roundtrip_top_k is not None:
        try:  # fail before the paid or slow calls, not after them at the filter
            check_available(judge)
        except InputError as exc:
            raise ConfigError(f"generate.roundtrip_model: {exc}") from None
        if is_cross_encoder(judge):
            raise ConfigError(
                f"generate.roundtrip_model: {judge} is a cross-encoder (a reranker); the round "
                "trip ranks every chunk by its embedding, so name an embedding model ('auto' "
                "takes train.teacher: give a cross-encoder as train.margin_teacher instead)"
            )
    backend_name = resolve_backend(g)
    template = load_template(g.prompt_file, backend_name)
    chunks = _read_split_chunks(run)
    backend: OpenAIBackend | LocalBackend
    if backend_name == "openai":
        backend = OpenAIBackend(g, check_key=not dry_run)
    else:
        backend = LocalBackend(g, per_question=template.per_question)
    sampling = backend.sampling()
    per_chunk = g.questions_per_chunk
    if backend_name == "local" and template.per_question and per_chunk > len(QUESTION_KINDS):
        # Greedy decoding answers a kind's prompt alike each time: calls past the last kind
        # would repeat the first ones' questions, for the duplicate filter to drop.
        per_chunk = len(QUESTION_KINDS)
        log.warning(
            "generate.questions_per_chunk is %d, but the offline writer decodes greedily and "
            "writes one question of each kind (%s): it asks %d per chunk, as more would repeat "
            "them; for more, use a writer that samples (a server: --base-url, --model)",
            g.questions_per_chunk,
            ", ".join(start for _, start in QUESTION_KINDS),
            per_chunk,
        )
    selected = {s: _select(chunks[s], _split_budget(g, s), g.seed) for s in SPLITS}
    plans = {
        s: _plan(
            s,
            [] if _from_sentences(g, s) else selected[s],
            template,
            backend_name,
            backend.model,
            sampling,
            per_chunk,
        )
        for s in SPLITS
    }
    key = stage_key(
        "generate",
        chunks={s: content_hash(run.chunks_file(s).read_bytes()) for s in SPLITS},
        generate=g,
        model=cfg.model,
        template=template.text,
        judge=judge if g.roundtrip_top_k is not None else None,
    )
    return _Job(cfg, run, judge, backend_name, backend, template, chunks, selected, plans, key)


def _open_caches(run: RunLayout, *, fresh: bool, dry_run: bool) -> dict[str, ResponseCache]:
    """The reply cache of each split; ``fresh`` moves the old ones aside (never deletes them);
    a dry run changes nothing, not even rows that are not replies."""
    if fresh:
        for split in SPLITS:
            moved = move_aside(run.reply_cache(split))
            if moved:
                log.info("moved the old cache aside to %s", moved)
    return {s: ResponseCache(run.reply_cache(s), repair=not dry_run) for s in SPLITS}


@holds_run("generate")
def run_generate(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    fresh: bool = False,
    dry_run: bool = False,
    calibrate: bool = False,
) -> GenerateReport | DryRunReport:
    """Write questions for every chunk, filter them, and save the train/val datasets.

    Returns the report (also saved as ``RUN/generate/report.json``; ``skipped`` when the
    outputs were current); with ``dry_run`` only the planned calls, approximate tokens, for
    OpenAI's models an approximate cost, the time each step should take on this machine and
    what would stop the run (an API key not set), without calling the writer or writing to the
    run directory. The times come from rates measured here before; with ``calibrate`` (as
    ``embedtune generate --dry-run`` does) a step never measured is timed on a small sample
    (see :mod:`embedtune.generate.estimate`).
    """
    job = _plan_job(settle(cfg), RunLayout(run_dir), dry_run=dry_run)
    caches = _open_caches(job.run, fresh=fresh and not dry_run, dry_run=dry_run)
    try:
        if dry_run:
            return _dry_run_report(job, caches, calibrate=calibrate)
        missing = [c for s in SPLITS for c in job.plans[s] if c.key not in caches[s]]
        current = is_current(job.run.generate_dir, job.key)
        if not fresh and not missing and current and all(p.is_file() for p in job.outputs):
            # Chunks, config and cache are complete and the outputs were built from them.
            saved = GenerateReport.read_back(
                read_json(job.run.generate_report),
                job.run.generate_report,
                redo="filtering the cached questions again (no new call)",
            )
            if saved is not None:
                return saved
        timings = _call(job, missing, caches)
    finally:
        for cache in caches.values():
            cache.close()
    t0 = time.perf_counter()
    questions = _filter(job, caches)
    timings["filter_s"] = round(time.perf_counter() - t0, 3)
    rejected: list[_Question] = []  # training questions the round trip dropped
    if job.g.roundtrip_top_k is not None and any(questions.kept.values()):
        t0 = time.perf_counter()
        rejected = _roundtrip(job, questions)
        timings["roundtrip_s"] = round(time.perf_counter() - t0, 3)
    _write_datasets(job, questions.kept, rejected, questions.passages)
    report = _report(job, caches, questions, missing, timings)
    write_json_atomic(job.run.generate_report, report.to_json())
    kept = {s: len(questions.kept[s]) for s in SPLITS}
    write_manifest(
        job.run.generate_dir,
        job.key,
        {"backend": job.backend_name, "model": job.backend.model, "kept": kept},
    )
    sentences = job.from_sentences("train")
    if not kept["train"] and sentences and not questions.passages:
        log.warning(
            "no training chunk has a sentence of %d-%d words to ask (generate.train_queries: "
            "sentences); train on the writer's questions instead with --train-queries questions",
            MIN_WORDS,
            MAX_WORDS,
        )
    elif not kept["train"]:
        what = "sentence" if sentences else "question"
        log.warning("no training %s survived the filters; see %s", what, job.run.generate_report)
    return report


def _call(job: _Job, missing: list[_Call], caches: dict[str, ResponseCache]) -> dict[str, float]:
    """Make the calls the cache lacks, each reply cached as it arrives; their timings."""
    start = time.perf_counter()
    if missing and isinstance(job.backend, LocalBackend):
        # Loaded before the bar starts, so the bar's rate and time left are the writing's.
        log.info("loading the offline writer %s", job.backend.model)
        job.backend.load()
    if missing:
        writing = time.perf_counter()
        bar = _progress(len(missing), f"questions ({job.backend_name}: {job.backend.model})")
        try:
            if isinstance(job.backend, OpenAIBackend):
                asyncio.run(_run_openai(job.backend, missing, caches, bar))
                latencies = [caches[c.split].get(c.key) or {} for c in missing]
                record_server_latency(job.backend, [r["seconds"] for r in latencies if r])
            else:
                _run_local(job.backend, missing, caches, bar)
                record_local_rate(job.backend, len(missing), time.perf_counter() - writing)
        except GenerationError as exc:
            done = sum(1 for c in missing if c.key in caches[c.split])
            raise GenerationError(
                f"{exc} ({done} of {len(missing)} new replies were saved in "
                f"{job.run.reply_cache_dir}; the next run resumes from there)"
            ) from None
        finally:
            bar.close()
    timings = {"generate_s": round(time.perf_counter() - start, 3)}
    if isinstance(job.backend, LocalBackend) and job.backend.load_seconds is not None:
        timings["model_load_s"] = round(job.backend.load_seconds, 3)
    return timings


def _dry_run_report(
    job: _Job, caches: dict[str, ResponseCache], *, calibrate: bool
) -> DryRunReport:
    g = job.g
    per_split = {}
    missing: list[_Call] = []
    for split, calls in job.plans.items():
        to_call = [c for c in calls if c.key not in caches[split]]
        missing += to_call
        per_split[split] = DryRunSplit(
            calls=len(calls),
            cached=len(calls) - len(to_call),
            to_call=len(to_call),
            # ~4 characters a token, + chat framing
            prompt_tokens=sum(len(c.prompt) // 4 + 8 for c in to_call),
            completion_tokens=len(to_call)
            * min(g.max_tokens, job.questions_per_call * TOKENS_PER_QUESTION + 10),
        )
    prompt_tokens = sum(s.prompt_tokens for s in per_split.values())
    completion_tokens = sum(s.completion_tokens for s in per_split.values())
    return DryRunReport(
        backend=job.backend_name,
        model=job.backend.model,
        base_url=g.base_url,
        splits=per_split,
        calls=sum(s.to_call for s in per_split.values()),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        estimate=_estimate(job, caches, missing, calibrate=calibrate),
        warnings=_dry_run_warnings(job),
        **_cost(job, prompt_tokens, completion_tokens),
    )


def _estimate(
    job: _Job, caches: dict[str, ResponseCache], missing: list[_Call], *, calibrate: bool
) -> list[StepEstimate]:
    """How long each step should take on this machine (see :mod:`embedtune.generate.estimate`)."""
    rows = [row for s in SPLITS for row in caches[s]]
    steps = [writer_estimate(job.backend, missing, rows, calibrate=calibrate)]
    if job.g.roundtrip_top_k is not None:
        chunks = [c.text for s in SPLITS for c in job.selected[s]]
        questions = sum(len(job.plans[s]) for s in SPLITS) * job.questions_per_call
        if job.from_sentences("train"):  # a passage per sentence: about the chunks again
            questions += len(job.selected["train"]) * job.g.questions_per_chunk
            chunks += [c.text for c in job.selected["train"]] * (job.g.questions_per_chunk - 1)
        steps.append(
            judge_estimate(
                job.judge,
                chunks,
                questions,
                dtype=_judge_dtype(job.g),
                calibrate=calibrate,
            )
        )
    return steps


def _dry_run_warnings(job: _Job) -> list[str]:
    """What would stop the real run: an API key missing from its variable."""
    if job.backend_name != "openai":
        return []
    try:
        resolve_api_key(job.g)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _cost(job: _Job, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """``cost_usd`` and ``prices_as_of`` for OpenAI's own models on api.openai.com."""
    if job.backend_name == "openai" and is_openai_host(job.g.base_url):
        cost = estimate_cost(job.backend.model, prompt_tokens, completion_tokens)
        if cost is not None:
            return {"cost_usd": round(cost, 4), "prices_as_of": PRICES_AS_OF}
    return {}


_Question = tuple[str, str, str]  # (query id, question, chunk id)


@dataclass
class _Questions:
    """The questions kept per split, how many were written, and why the others were dropped."""

    kept: dict[str, list[_Question]] = field(default_factory=dict)
    raw: dict[str, int] = field(default_factory=dict)
    filters: dict[str, QuestionFilter] = field(default_factory=dict)
    dropped_samples: list[dict[str, str]] = field(default_factory=list)
    roundtrip: dict[str, dict[str, Any]] = field(default_factory=dict)
    # generate.train_queries: sentences: passage id -> the chunk without its sentence
    passages: dict[str, str] | None = None

    def sample_drop(self, split: str, chunk_id: str, question: str, reason: str) -> None:
        if len(self.dropped_samples) < 200:
            self.dropped_samples.append(
                {"split": split, "chunk_id": chunk_id, "question": question, "reason": reason}
            )


def _filter(job: _Job, caches: dict[str, ResponseCache]) -> _Questions:
    """Parse every cached reply and filter its questions, split by split."""
    g = job.g
    out = _Questions()
    examples = example_questions(job.template)
    for split in SPLITS:
        qf = QuestionFilter(g.min_question_chars, g.max_question_chars, examples=examples)
        if split == "val":
            # A validation question seen in training would flatter the evaluation.
            qf.inherit(out.filters["train"])
        out.filters[split] = qf
        if job.from_sentences(split):
            drawn = sentence_pairs(job.selected[split], g.questions_per_chunk, g.seed)
            out.kept[split], out.raw[split] = drawn.pairs, len(drawn.pairs)
            out.passages = drawn.passages
            continue
        out.kept[split], out.raw[split] = _filter_split(
            split, job.plans[split], caches[split], qf, g, out
        )
    return out


def _filter_split(
    split: str,
    calls: list[_Call],
    cache: ResponseCache,
    qfilter: QuestionFilter,
    g: GenerateConfig,
    out: _Questions,
) -> tuple[list[_Question], int]:
    """Kept (query id, question, chunk id) for a split, and how many raw questions there were."""
    by_chunk: dict[str, list[_Call]] = {}
    order: list[Chunk] = []
    for call in calls:
        if call.chunk.id not in by_chunk:
            order.append(call.chunk)
        by_chunk.setdefault(call.chunk.id, []).append(call)
    kept: list[_Question] = []
    n_raw = 0
    for chunk in order:
        raw: list[str] = []
        for call in sorted(by_chunk[chunk.id], key=lambda c: c.index):
            row = cache.get(call.key)
            if row is not None:
                raw.extend(parse_questions(row.get("text", "")))
        n_raw += len(raw)
        n_kept = 0
        for text, reason in qfilter.filter_chunk(chunk.id, raw):
            if not reason and n_kept >= g.questions_per_chunk:
                reason = "extra"
                qfilter.dropped["extra"] += 1
            if reason:
                out.sample_drop(split, chunk.id, text, reason)
                continue
            n_kept += 1
            kept.append((f"q-{content_hash(chunk.id, text, length=12)}", text, chunk.id))
    return kept, n_raw


def _roundtrip(job: _Job, questions: _Questions) -> list[_Question]:
    """Keep a question only where the judge ranks its chunk in the top k of its split; returns
    the training questions dropped (which training with a teacher still learns from)."""
    assert job.g.roundtrip_top_k is not None
    dtype = _judge_dtype(job.g)
    log.info("round trip: loading %s (%s) to judge the questions", job.judge, dtype)
    model = load_model(job.judge, dtype=dtype)
    length = judge_length(job.g)
    if length is not None:
        model.max_seq_length = length
    # The teacher's labels encode these same chunks with this same model, length and dtype:
    # share its cache (evaluation encodes in float32, which has a cache of its own).
    cache = EmbeddingCache(model_fingerprint(job.judge, max_seq_length=length, dtype=dtype))
    rejected: list[_Question] = []
    for split in SPLITS:
        kept = questions.kept[split]
        if not kept:
            continue
        # The judge searches the chunks that questions were written for (the whole split by
        # default, the sample under a generate.max_chunks budget), so it reads no chunk that
        # nothing else needs; k is scaled to keep the same share of the ranking. A sentence's
        # answer is its passage (the chunk without it): those are searched instead.
        selected = job.selected[split]
        top_k = scaled_top_k(job.g.roundtrip_top_k, len(selected), len(job.chunks[split]))
        if job.from_sentences(split):
            assert questions.passages is not None
            corpus = questions.passages
        else:
            corpus = {c.id: c.text for c in selected}
        index = {cid: i for i, cid in enumerate(corpus)}
        ranks = roundtrip_keep(
            model,
            list(corpus.values()),
            [q for _, q, _ in kept],
            [index[cid] for _, _, cid in kept],
            top_k,
            cache=cache,
            progress=f"round trip ({_short(job.judge)}, {split})",
        )
        survivors = []
        for item, rank in zip(kept, ranks, strict=True):
            if rank < top_k:
                survivors.append(item)
                continue
            questions.filters[split].dropped["roundtrip"] += 1
            if split == "train":
                rejected.append(item)
            questions.sample_drop(split, item[2], item[1], f"roundtrip (rank {rank + 1})")
        questions.roundtrip[split] = {
            "top_k": top_k,
            "model": job.judge,
            "n_chunks": len(corpus),
            "rank1_share": round(sum(r == 0 for r in ranks) / len(ranks), 4),
            "mean_rank": round(sum(ranks) / len(ranks) + 1, 2),
        }
        questions.kept[split] = survivors
    return rejected


def _judge_dtype(g: GenerateConfig) -> str:
    """The judge's weights: the settled ``generate.roundtrip_dtype``. A run's config.yaml settled
    before that setting existed reads back settled with it still "auto": resolved here."""
    return judge_dtype()[0] if g.roundtrip_dtype == "auto" else g.roundtrip_dtype


def _short(name: str) -> str:
    """A model's name for a progress bar: the last part of a hub id or path."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def _write_datasets(
    job: _Job,
    kept: dict[str, list[_Question]],
    rejected: list[_Question],
    passages: dict[str, str] | None,
) -> None:
    """The datasets of each split (llama-index JSON and BEIR), and the rejects."""
    run = job.run
    corpora = {s: {c.id: c.text for c in job.chunks[s]} for s in SPLITS}
    if passages is not None:  # sentence queries: the training corpus is their passages
        corpora["train"] = passages
    for split in SPLITS:
        ds = QADataset(
            queries={qid: q for qid, q, _ in kept[split]},
            corpus=corpora[split],
            relevant_docs={qid: [cid] for qid, _, cid in kept[split]},
        )
        ds.to_json(run.data_file(split))
        ds.to_beir(run.beir_dir / split, split=BEIR_SPLIT[split])
    # With a teacher, training learns the teacher's ranking of these questions (never their own
    # chunk as the answer); the corpus holds only the chunks they were written from.
    rejected_chunks = {cid for _, _, cid in rejected}
    QADataset(
        queries={qid: q for qid, q, _ in rejected},
        corpus={cid: t for cid, t in corpora["train"].items() if cid in rejected_chunks},
        relevant_docs={qid: [cid] for qid, _, cid in rejected},
    ).to_json(run.rejects_file)


def _report(
    job: _Job,
    caches: dict[str, ResponseCache],
    questions: _Questions,
    missing: list[_Call],
    timings: dict[str, float],
) -> GenerateReport:
    usage: Counter[str] = Counter()
    retries = 0
    for split in SPLITS:
        for row in (caches[split].get(c.key) for c in job.plans[split]):
            if row:
                usage.update(row.get("usage") or {})
                retries += max(0, int(row.get("attempts", 1)) - 1)
    run = job.run
    return GenerateReport(
        backend=job.backend_name,
        model=job.backend.model,
        base_url=job.g.base_url if job.backend_name == "openai" else None,
        template=job.template.source,
        questions_per_chunk=job.g.questions_per_chunk,
        splits={s: _split_report(job, s, caches[s], questions, missing) for s in SPLITS},
        usage={k: round(v) for k, v in usage.items()},  # the local writer's shares are fractions
        retries=retries,
        timings=timings,
        samples={
            "kept": [
                {"split": s, "chunk_id": cid, "question": q}
                for s in SPLITS
                for _, q, cid in questions.kept[s][:10]
            ],
            "dropped": questions.dropped_samples[:50],
        },
        outputs={
            "train": str(run.data_file("train")),
            "val": str(run.data_file("val")),
            "train_rejects": str(run.rejects_file),
            "beir": str(run.beir_dir),
        },
        **_cost(job, usage["prompt_tokens"], usage["completion_tokens"]),
    )


def _split_report(
    job: _Job, split: str, cache: ResponseCache, questions: _Questions, missing: list[_Call]
) -> SplitReport:
    calls, qf = job.plans[split], questions.filters[split]
    raw, kept = questions.raw[split], len(questions.kept[split])
    dropped = {r: qf.dropped.get(r, 0) for r in DROP_REASONS}
    return SplitReport(
        queries="sentences" if job.from_sentences(split) else "questions",
        chunks=len(job.chunks[split]),
        chunks_used=len(job.selected[split]),
        calls=len(calls),
        new_calls=sum(1 for c in missing if c.split == split),
        raw_questions=raw,
        kept=kept,
        kept_share=round(kept / raw, 4) if raw else 0,
        dropped={r: n for r, n in dropped.items() if n},
        cleaned=dict(qf.cleaned),
        roundtrip=questions.roundtrip.get(split),
        torn_cache_lines=cache.torn_lines,
        cache_rows_set_aside=cache.set_aside,
    )
