"""The generate stage: chunks in, question/chunk datasets out, every LLM reply cached.

Reads ``RUN/chunks/{train,val}.jsonl`` and writes

- ``RUN/generate/cache/{train,val}.jsonl``: raw replies, appended and fsynced as they arrive;
- ``RUN/data/{train,val}.json``: llama-index ``EmbeddingQAFinetuneDataset`` JSON (corpus = all
  chunks of the split, queries = kept questions, relevant_docs = the source chunk);
- ``RUN/data/beir/{train,val}/``: the same as BEIR folders (qrels ``train.tsv`` / ``test.tsv``);
- ``RUN/data/train_rejects.json``: the training questions the round trip dropped, which training
  with a teacher learns from through the teacher's ranking only;
- ``RUN/generate/report.json``: calls, tokens, drops by reason, timings, sample questions.

A rerun makes only the calls the cache lacks; the datasets are rebuilt from cache and filters::

    >>> from embedtune.config import load_config
    >>> summary = run_generate(load_config("run/config.yaml"), Path("run"))  # doctest: +SKIP
    >>> summary["splits"]["train"]["kept"]                                     # doctest: +SKIP
    812
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtune.artifacts import is_current, stage_key, write_manifest
from embedtune.config import GenerateConfig, PipelineConfig
from embedtune.dataset import QADataset
from embedtune.errors import ConfigError, GenerationError, InputError
from embedtune.generate.cache import ResponseCache, move_aside, response_key
from embedtune.generate.client import OpenAIBackend, is_openai_host
from embedtune.generate.filters import DROP_REASONS, QuestionFilter, roundtrip_keep
from embedtune.generate.local import LocalBackend
from embedtune.generate.prompts import PromptTemplate, load_template, parse_questions, render
from embedtune.recipe import settle
from embedtune.records import Chunk, content_hash, read_chunks, write_json_atomic

__all__ = ["run_generate", "resolve_backend", "estimate_cost", "PRICES", "summary_table"]

log = logging.getLogger("embedtune.generate")

SPLITS = ("train", "val")
#: BEIR qrels file name per split: validation is written as "test", BEIR's evaluation split.
BEIR_SPLIT = {"train": "train", "val": "test"}

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
    if max_chunks is None or len(chunks) <= max_chunks:
        return chunks
    keep = sorted(random.Random(seed).sample(range(len(chunks)), max_chunks))
    return [chunks[i] for i in keep]


def _plan(
    split: str,
    chunks: list[Chunk],
    g: GenerateConfig,
    template: PromptTemplate,
    backend: str,
    model: str,
    sampling: dict[str, Any],
) -> list[_Call]:
    calls = []
    for chunk in chunks:
        if template.per_question:
            indices = [(i, 1) for i in range(g.questions_per_chunk)]
        else:
            indices = [(0, g.questions_per_chunk)]
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
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="call", dynamic_ncols=True, smoothing=0.1)


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


def _read_split_chunks(run_dir: Path) -> dict[str, list[Chunk]]:
    out = {}
    for split in SPLITS:
        path = run_dir / "chunks" / f"{split}.jsonl"
        if not path.is_file():
            raise InputError(
                f"{path} not found: run 'embedtune prepare DOCS --run {run_dir}' first to "
                "chunk your documents"
            )
        out[split] = read_chunks(path)
    if not out["train"]:
        raise InputError(f"{run_dir / 'chunks' / 'train.jsonl'} holds no chunks")
    return out


def _dry_run_report(
    plans: dict[str, list[_Call]],
    caches: dict[str, ResponseCache],
    backend: str,
    model: str,
    g: GenerateConfig,
    template: PromptTemplate,
) -> dict[str, Any]:
    per_split = {}
    prompt_tokens = completion_tokens = 0
    for split, calls in plans.items():
        missing = [c for c in calls if c.key not in caches[split]]
        p = sum(len(c.prompt) // 4 + 8 for c in missing)  # ~4 characters a token, + chat framing
        q_per_call = 1 if template.per_question else g.questions_per_chunk
        c = len(missing) * min(g.max_tokens, q_per_call * TOKENS_PER_QUESTION + 10)
        prompt_tokens += p
        completion_tokens += c
        per_split[split] = {
            "calls": len(calls),
            "cached": len(calls) - len(missing),
            "to_call": len(missing),
            "prompt_tokens": p,
            "completion_tokens": c,
        }
    report: dict[str, Any] = {
        "dry_run": True,
        "backend": backend,
        "model": model,
        "base_url": g.base_url,
        "splits": per_split,
        "calls": sum(s["to_call"] for s in per_split.values()),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": None,
        "prices_as_of": None,
    }
    if backend == "openai" and is_openai_host(g.base_url):
        cost = estimate_cost(model, prompt_tokens, completion_tokens)
        if cost is not None:
            report["cost_usd"] = round(cost, 4)
            report["prices_as_of"] = PRICES_AS_OF
    return report


def _build_split(
    split: str,
    all_chunks: list[Chunk],
    calls: list[_Call],
    cache: ResponseCache,
    qfilter: QuestionFilter,
    g: GenerateConfig,
    dropped_samples: list[dict[str, str]],
) -> tuple[list[tuple[str, str, str]], int]:
    """Kept (query id, question, chunk id) for a split, and how many raw questions there were."""
    by_chunk: dict[str, list[_Call]] = {}
    order: list[Chunk] = []
    for call in calls:
        if call.chunk.id not in by_chunk:
            order.append(call.chunk)
        by_chunk.setdefault(call.chunk.id, []).append(call)
    kept: list[tuple[str, str, str]] = []
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
                if len(dropped_samples) < 200:
                    dropped_samples.append(
                        {"split": split, "chunk_id": chunk.id, "question": text, "reason": reason}
                    )
                continue
            n_kept += 1
            kept.append((f"q-{content_hash(chunk.id, text, length=12)}", text, chunk.id))
    return kept, n_raw


def _stage_key(cfg: PipelineConfig, run_dir: Path, template: PromptTemplate, judge: str) -> str:
    hashes = {}
    for split in SPLITS:
        hashes[split] = content_hash((run_dir / "chunks" / f"{split}.jsonl").read_bytes())
    return stage_key(
        "generate",
        chunks=hashes,
        generate=cfg.generate,
        model=cfg.model,
        template=template.text,
        judge=judge if cfg.generate.roundtrip_top_k is not None else None,
    )


def run_generate(
    cfg: PipelineConfig, run_dir: Path, *, fresh: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Write questions for every chunk, filter them, and save the train/val datasets.

    Returns the report (also saved as ``RUN/generate/report.json``); with ``dry_run`` only the
    planned calls, approximate tokens and, for OpenAI's models, an approximate cost, without
    calling anything or writing any file.
    """
    run_dir = Path(run_dir)
    cfg = settle(cfg)
    g = cfg.generate
    if g.min_question_chars >= g.max_question_chars:
        raise ConfigError(
            f"generate.min_question_chars ({g.min_question_chars}) must be below "
            f"generate.max_question_chars ({g.max_question_chars})"
        )
    judge = g.roundtrip_model or cfg.model  # settled: "auto" is the teacher or the base
    if judge != cfg.model and g.roundtrip_top_k is not None:
        # Fail before the paid or slow calls, not after them at the filter.
        from embedtune.models import resolve_model

        try:
            resolve_model(judge)
        except InputError as exc:
            raise ConfigError(f"generate.roundtrip_model: {exc}") from None
    backend_name = resolve_backend(g)
    template = load_template(g.prompt_file, backend_name)
    chunks = _read_split_chunks(run_dir)
    gen_dir = run_dir / "generate"
    data_dir = run_dir / "data"
    key = _stage_key(cfg, run_dir, template, judge)
    backend: OpenAIBackend | LocalBackend
    if backend_name == "openai":
        backend = OpenAIBackend(g, check_key=not dry_run)
    else:
        backend = LocalBackend(g, per_question=template.per_question)
    model_name = backend.model
    sampling = backend.sampling()

    cache_dir = gen_dir / "cache"
    if fresh and not dry_run:
        for split in SPLITS:
            moved = move_aside(cache_dir / f"{split}.jsonl")
            if moved:
                log.info("moved the old cache aside to %s", moved)
    caches = {s: ResponseCache(cache_dir / f"{s}.jsonl") for s in SPLITS}
    plans = {
        s: _plan(
            s,
            _select(chunks[s], g.max_chunks, g.seed),
            g,
            template,
            backend_name,
            model_name,
            sampling,
        )
        for s in SPLITS
    }
    if dry_run:
        for c in caches.values():
            c.close()
        return _dry_run_report(plans, caches, backend_name, model_name, g, template)

    missing = [c for s in SPLITS for c in plans[s] if c.key not in caches[s]]
    outputs = [
        data_dir / "train.json",
        data_dir / "val.json",
        data_dir / "train_rejects.json",
        gen_dir / "report.json",
    ]
    if not fresh and not missing and is_current(gen_dir, key) and all(p.is_file() for p in outputs):
        # Chunks, config and cache are complete and the outputs were built from them.
        for c in caches.values():
            c.close()
        report = json.loads((gen_dir / "report.json").read_text(encoding="utf-8"))
        report["skipped"] = True
        return report
    timings: dict[str, float] = {}
    start = time.perf_counter()
    try:
        if missing:
            bar = _progress(len(missing), f"questions ({backend_name}: {model_name})")
            try:
                if isinstance(backend, OpenAIBackend):
                    asyncio.run(_run_openai(backend, missing, caches, bar))
                else:
                    _run_local(backend, missing, caches, bar)
            finally:
                bar.close()
    except GenerationError as exc:
        done = sum(1 for c in missing if c.key in caches[c.split])
        raise GenerationError(
            f"{exc} ({done} of {len(missing)} new replies were saved in {cache_dir}; the next "
            "run resumes from there)"
        ) from None
    finally:
        for c in caches.values():
            c.close()
    timings["generate_s"] = round(time.perf_counter() - start, 3)
    if isinstance(backend, LocalBackend) and backend.load_seconds is not None:
        timings["model_load_s"] = round(backend.load_seconds, 3)

    # ------------------------------------------------------------------ filter and write
    t0 = time.perf_counter()
    dropped_samples: list[dict[str, str]] = []
    filters: dict[str, QuestionFilter] = {}
    kept: dict[str, list[tuple[str, str, str]]] = {}
    raw_counts: dict[str, int] = {}
    for split in SPLITS:
        qf = QuestionFilter(g.min_question_chars, g.max_question_chars)
        if split == "val":
            # A validation question seen in training would flatter the evaluation.
            qf.inherit(filters["train"])
        filters[split] = qf
        kept[split], raw_counts[split] = _build_split(
            split, chunks[split], plans[split], caches[split], qf, g, dropped_samples
        )
    timings["filter_s"] = round(time.perf_counter() - t0, 3)

    roundtrip: dict[str, dict[str, Any]] = {}
    rejected: list[tuple[str, str, str]] = []  # training questions the round trip dropped
    if g.roundtrip_top_k is not None and any(kept.values()):
        from embedtune.models import load_model

        t0 = time.perf_counter()
        from embedtune.embeddings import EmbeddingCache, model_fingerprint

        model = load_model(judge, device="cpu")
        # Training and evaluation encode these same chunks with this same model (the base, or
        # the judge as the teacher or a baseline): share its cache.
        embedding_cache = EmbeddingCache(model_fingerprint(judge))
        for split in SPLITS:
            if not kept[split]:
                continue
            index = {c.id: i for i, c in enumerate(chunks[split])}
            ranks = roundtrip_keep(
                model,
                [c.text for c in chunks[split]],
                [q for _, q, _ in kept[split]],
                [index[cid] for _, _, cid in kept[split]],
                g.roundtrip_top_k,
                cache=embedding_cache,
            )
            survivors = []
            for item, rank in zip(kept[split], ranks, strict=True):
                if rank < g.roundtrip_top_k:
                    survivors.append(item)
                else:
                    filters[split].dropped["roundtrip"] += 1
                    if split == "train":
                        rejected.append(item)
                    if len(dropped_samples) < 200:
                        dropped_samples.append(
                            {
                                "split": split,
                                "chunk_id": item[2],
                                "question": item[1],
                                "reason": f"roundtrip (rank {rank + 1})",
                            }
                        )
            roundtrip[split] = {
                "top_k": g.roundtrip_top_k,
                "model": judge,
                "n_chunks": len(chunks[split]),
                "rank1_share": round(sum(r == 0 for r in ranks) / len(ranks), 4),
                "mean_rank": round(sum(ranks) / len(ranks) + 1, 2),
            }
            kept[split] = survivors
        timings["roundtrip_s"] = round(time.perf_counter() - t0, 3)

    for split in SPLITS:
        ds = QADataset(
            queries={qid: q for qid, q, _ in kept[split]},
            corpus={c.id: c.text for c in chunks[split]},
            relevant_docs={qid: [cid] for qid, _, cid in kept[split]},
        )
        ds.to_json(data_dir / f"{split}.json")
        ds.to_beir(data_dir / "beir" / split, split=BEIR_SPLIT[split])
    # With a teacher, training learns the teacher's ranking of these questions (never their own
    # chunk as the answer); the corpus holds only the chunks they were written from.
    rejected_chunks = {cid for _, _, cid in rejected}
    QADataset(
        queries={qid: q for qid, q, _ in rejected},
        corpus={c.id: c.text for c in chunks["train"] if c.id in rejected_chunks},
        relevant_docs={qid: [cid] for qid, _, cid in rejected},
    ).to_json(data_dir / "train_rejects.json")

    usage: Counter[str] = Counter()
    retries = 0
    splits_report: dict[str, Any] = {}
    for split in SPLITS:
        calls = plans[split]
        rows = [caches[split].get(c.key) for c in calls]
        for row in rows:
            if row:
                usage.update(row.get("usage") or {})
                retries += max(0, int(row.get("attempts", 1)) - 1)
        dropped = {r: filters[split].dropped.get(r, 0) for r in DROP_REASONS}
        splits_report[split] = {
            "chunks": len(chunks[split]),
            "chunks_used": len({c.chunk.id for c in calls}),
            "calls": len(calls),
            "new_calls": sum(1 for c in missing if c.split == split),
            "raw_questions": raw_counts[split],
            "kept": len(kept[split]),
            "kept_share": round(len(kept[split]) / raw_counts[split], 4)
            if raw_counts[split]
            else 0,
            "dropped": {r: n for r, n in dropped.items() if n},
            "cleaned": dict(filters[split].cleaned),
            "roundtrip": roundtrip.get(split),
            "torn_cache_lines": caches[split].torn_lines,
        }
    report: dict[str, Any] = {
        "backend": backend_name,
        "model": model_name,
        "base_url": g.base_url if backend_name == "openai" else None,
        "template": template.source,
        "questions_per_chunk": g.questions_per_chunk,
        "splits": splits_report,
        "usage": dict(usage),
        "retries": retries,
        "timings": timings,
        "samples": {
            "kept": [
                {"split": s, "chunk_id": cid, "question": q}
                for s in SPLITS
                for _, q, cid in kept[s][:10]
            ],
            "dropped": dropped_samples[:50],
        },
        "outputs": {
            "train": str(data_dir / "train.json"),
            "val": str(data_dir / "val.json"),
            "train_rejects": str(data_dir / "train_rejects.json"),
            "beir": str(data_dir / "beir"),
        },
    }
    if backend_name == "openai" and is_openai_host(g.base_url):
        cost = estimate_cost(model_name, usage["prompt_tokens"], usage["completion_tokens"])
        if cost is not None:
            report["cost_usd"] = round(cost, 4)
            report["prices_as_of"] = PRICES_AS_OF
    write_json_atomic(gen_dir / "report.json", report)
    write_manifest(
        gen_dir,
        key,
        {"backend": backend_name, "model": model_name, "kept": {s: len(kept[s]) for s in SPLITS}},
    )
    if not kept["train"]:
        log.warning("no training question survived the filters; see %s", gen_dir / "report.json")
    return report


def summary_table(report: dict[str, Any]) -> Any:
    """A rich table of a report (or a dry-run report) for the terminal."""
    from rich.table import Table

    if report.get("dry_run"):
        table = Table(title=f"generate --dry-run: {report['backend']} / {report['model']}")
        for col in ("split", "calls", "cached", "to call", "prompt tok", "output tok"):
            table.add_column(col, justify="right" if col != "split" else "left")
        for split, s in report["splits"].items():
            table.add_row(
                split,
                str(s["calls"]),
                str(s["cached"]),
                str(s["to_call"]),
                f"~{s['prompt_tokens']:,}",
                f"~{s['completion_tokens']:,}",
            )
        cost = report.get("cost_usd")
        if cost is not None:
            table.caption = f"estimated cost ~${cost:.4f} at {report['prices_as_of']} prices"
        elif report["backend"] == "local":
            table.caption = "offline model on this machine: no API cost"
        else:
            table.caption = "no cost estimate: not one of OpenAI's models on api.openai.com"
        return table
    title = f"generate: {report['backend']} / {report['model']}"
    if report.get("skipped"):
        title += " (up to date, nothing to do)"
    table = Table(title=title)
    for col in ("split", "chunks", "calls", "new", "questions", "kept", "kept %", "top drops"):
        table.add_column(col, justify="left" if col in ("split", "top drops") else "right")
    for split, s in report["splits"].items():
        drops = sorted(s["dropped"].items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            split,
            str(s["chunks_used"]),
            str(s["calls"]),
            str(s["new_calls"]),
            str(s["raw_questions"]),
            str(s["kept"]),
            f"{100 * s['kept_share']:.0f}",
            ", ".join(f"{r} {n}" for r, n in drops) or "-",
        )
    t = report.get("timings", {})
    caption = f"{t.get('generate_s', 0):.1f} s generating"
    if report.get("cost_usd") is not None:
        caption += f", ~${report['cost_usd']:.4f} at {report['prices_as_of']} prices"
    table.caption = caption
    return table
