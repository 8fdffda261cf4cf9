"""Question generation speed and yield: concurrency against a server, batching on CPU.

1. ``server``: the OpenAI backend against the fake OpenAI-protocol server with 200 ms latency per
   call, questions/second at ``--concurrency`` (default 16) over the same run made one call at a
   time (how llama-index's ``generate_qa_embedding_pairs`` calls its LLM).
2. ``local``: the offline SmolLM2-135M backend on this machine's CPU: model load time,
   questions/second at batch sizes 1, 8, 16, 32 (float32, plus bfloat16 at the default batch),
   one-question-per-call prompts vs a two-question list prompt (kept questions per second), and
   a full ``run_generate`` on a sample of chunks cut from the R manuals, with the share the
   filters keep and sample kept/dropped questions.

3. ``batch`` (only when asked for): the offline writer on the default device (the GPU when
   there is one) at each of ``--batch-sizes`` over the same prompts, to choose its batch there.

Run from the repository root (takes a few minutes on 2 cores)::

    python benchmarks/bench_generate.py                      # both parts
    python benchmarks/bench_generate.py --part server
    python benchmarks/bench_generate.py --part local --chunks 40 ../shared/data

Writes ``benchmarks/results/generate.json`` (parts not run keep their previous figures).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fake server lives with the tests

from embedtune.config import load_config  # noqa: E402
from embedtune.records import Chunk, write_jsonl  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "generate.json"


def _chunks_from_pdfs(data: Path, n: int, chars: int = 900) -> list[Chunk]:
    """Simple chunks (~``chars`` characters, cut at paragraph or sentence ends) from the manuals.

    Pages are taken evenly spread across all manuals, skipping front matter and indexes, so the
    sample covers different topics.
    """
    import pypdfium2 as pdfium

    pdfs = sorted((data / "r-manuals").glob("*.pdf"))
    if not pdfs:
        raise SystemExit(f"no PDFs in {data / 'r-manuals'}: pass the data folder as argument")
    per_pdf = max(1, n // len(pdfs) + 1)
    out: list[Chunk] = []
    for pdf_path in pdfs:
        pdf = pdfium.PdfDocument(str(pdf_path))
        n_pages = len(pdf)
        picks = [int(n_pages * (0.15 + 0.7 * i / per_pdf)) for i in range(per_pdf)]
        for page_no in picks:
            text = pdf[page_no].get_textpage().get_text_range()
            text = re.sub(r"[\ufffe\x02]\s*", "", text)
            text = re.sub(r"[ \t]+", " ", text.replace("\r", ""))
            lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
            body = " ".join(lines[1:])  # the first line is a running header
            if len(body) < chars // 2:
                continue
            piece = body[:chars]
            cut = max(piece.rfind(". "), piece.rfind("? "))
            if cut > chars // 2:
                piece = piece[: cut + 1]
            out.append(
                Chunk(
                    id=f"{pdf_path.stem}-p{page_no + 1}",
                    doc_id=pdf_path.stem,
                    text=piece,
                    n_tokens=len(piece) // 4,
                    page_start=page_no + 1,
                    page_end=page_no + 1,
                    source=str(pdf_path),
                )
            )
        pdf.close()
    step = max(1, len(out) // n)
    return out[::step][:n]


def _write_run(run: Path, chunks: list[Chunk], val_share: float = 0.2) -> None:
    n_val = max(1, int(len(chunks) * val_share))
    write_jsonl(run / "chunks" / "train.jsonl", chunks[n_val:])
    write_jsonl(run / "chunks" / "val.jsonl", chunks[:n_val])


# ------------------------------------------------------------------------------ server
def bench_server(n_chunks: int, latency: float, concurrency: int) -> dict:
    from fake_openai import FakeOpenAI

    from embedtune.generate import run_generate

    texts = [
        f"Section {i}: the function f{i}() computes statistic number {i} of a data frame "
        f"column, with argument alpha{i} controlling the {['mean', 'median', 'trim'][i % 3]}."
        for i in range(n_chunks)
    ]
    chunks = [
        Chunk(id=f"c{i}", doc_id=f"d{i}", text=t, n_tokens=30, page_start=1, page_end=1)
        for i, t in enumerate(texts)
    ]
    out = {"chunks": n_chunks, "latency_s": latency, "questions_per_chunk": 2}
    with FakeOpenAI(latency=latency) as server:
        # The first run pays for importing the openai SDK: warm it up outside the timings.
        runs = [("warm-up", concurrency, chunks[:2]), ("sequential", 1, chunks)]
        runs.append(("concurrent", concurrency, chunks))
        for label, conc, run_chunks in runs:
            with tempfile.TemporaryDirectory() as tmp:
                run = Path(tmp)
                _write_run(run, run_chunks)
                cfg = load_config(
                    overrides={
                        "generate": {
                            "base_url": server.url,
                            "model": "fake",
                            "concurrency": conc,
                        }
                    },
                    environ={},
                )
                cfg.generate.roundtrip_top_k = None  # time the calls, not the embedding model
                before = server.calls_total
                start = time.perf_counter()
                report = run_generate(cfg, run).to_json()
                seconds = time.perf_counter() - start
                kept = sum(s["kept"] for s in report["splits"].values())
                if label == "warm-up":
                    continue
                out[label] = {
                    "concurrency": conc,
                    "calls": server.calls_total - before,
                    "seconds": round(seconds, 3),
                    "questions": kept,
                    "questions_per_s": round(kept / seconds, 2),
                }
    out["speedup"] = round(
        out["concurrent"]["questions_per_s"] / out["sequential"]["questions_per_s"], 1
    )
    return out


# ------------------------------------------------------------------------------- local
def bench_local(data: Path, n_chunks: int, batch_sizes: list[int]) -> dict:
    import torch

    from embedtune.generate import run_generate
    from embedtune.generate.filters import QuestionFilter
    from embedtune.generate.local import LocalBackend, default_batch_size
    from embedtune.generate.prompts import load_template, parse_questions, render

    chunks = _chunks_from_pdfs(data, n_chunks)
    out: dict = {
        "cpu_threads": torch.get_num_threads(),
        "chunks": len(chunks),
        "chunk_chars_mean": round(sum(len(c.text) for c in chunks) / len(chunks)),
    }
    g = load_config(environ={}).generate
    single = load_template(None, "local")
    prompts = [render(single, c.text, 1, i) for c in chunks for i in range(2)]

    def timed(backend: LocalBackend, ps: list[str]) -> tuple[float, list]:
        start = time.perf_counter()
        replies = []
        for i in range(0, len(ps), backend.batch_size):
            replies.extend(backend.complete_batch(ps[i : i + backend.batch_size]))
        return time.perf_counter() - start, replies

    sweep = {}
    for dtype in ("float32", "bfloat16"):
        cfg = g.model_copy(update={"local_dtype": dtype})
        backend = LocalBackend(cfg, per_question=True)
        backend.load()
        out[f"load_s_{dtype}"] = round(backend.load_seconds or 0, 2)
        timed(backend, prompts[:2])  # warm-up: first calls allocate and pick kernels
        sizes = (
            batch_sizes
            if dtype == "float32"
            else [g.local_batch_size or default_batch_size(backend.device)]
        )
        for bs in sizes:
            backend.batch_size = bs
            # The first prompts of the sample (sorted by length like the runner does): one full
            # batch per size, and 4 prompts one at a time for batch size 1.
            n = min(len(prompts), max(4, bs))
            ps = sorted(prompts[:n], key=len)
            seconds, _ = timed(backend, ps)
            sweep[f"{dtype}/bs{bs}"] = {
                "dtype": dtype,
                "batch_size": bs,
                "prompts": n,
                "seconds": round(seconds, 2),
                "questions_per_s": round(n / seconds, 3),
            }
            print(f"  local {dtype:8s} batch {bs:3d}: {n / seconds:6.2f} q/s ({n} prompts)")
        if dtype == "float32":
            fp32_backend = backend
        else:
            del backend
    out["batch_sweep"] = sweep

    # One question per call vs a two-question list per call, at the default batch size.
    fp32_backend.batch_size = g.local_batch_size or default_batch_size(fp32_backend.device)
    sample = chunks[: min(len(chunks), 16)]
    compare = {}
    for label, template, per_question in (
        ("one_per_call", single, True),
        ("list_of_2", load_template(None, "openai"), False),
    ):
        fp32_backend.per_question = per_question
        fp32_backend.max_new_tokens = 48 if per_question else 96
        if per_question:
            ps = [render(template, c.text, 1, i) for c in sample for i in range(2)]
        else:
            ps = [render(template, c.text, 2) for c in sample]
        seconds, replies = timed(fp32_backend, ps)
        qf = QuestionFilter(g.min_question_chars, g.max_question_chars)
        kept = 0
        per_chunk = 1 if per_question else 2
        for i, c in enumerate(sample):
            raw = []
            for r in replies[i * (2 // per_chunk) : (i + 1) * (2 // per_chunk)]:
                raw.extend(parse_questions(r.text))
            kept += min(2, sum(1 for _, reason in qf.filter_chunk(c.id, raw) if not reason))
        compare[label] = {
            "calls": len(ps),
            "seconds": round(seconds, 2),
            "kept_questions": kept,
            "kept_per_s": round(kept / seconds, 3),
            "dropped": dict(qf.dropped),
        }
        print(f"  {label:13s}: {kept} kept in {seconds:.1f} s = {kept / seconds:.2f} kept/s")
    out["prompt_comparison"] = compare
    del fp32_backend

    # The real stage end to end on the sample, with the round-trip filter.
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        _write_run(run, chunks)
        cfg = load_config(overrides={"generate": {"backend": "local"}}, environ={})
        start = time.perf_counter()
        report = run_generate(cfg, run).to_json()
        seconds = time.perf_counter() - start
    raw = sum(s["raw_questions"] for s in report["splits"].values())
    kept = sum(s["kept"] for s in report["splits"].values())
    dropped: dict[str, int] = {}
    for s in report["splits"].values():
        for reason, n in s["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    out["run"] = {
        "seconds": round(seconds, 1),
        "timings": report["timings"],
        "raw_questions": raw,
        "kept": kept,
        "kept_share": round(kept / raw, 3) if raw else 0,
        "kept_per_s": round(kept / seconds, 3),
        "dropped": dropped,
        "roundtrip": {k: s["roundtrip"] for k, s in report["splits"].items()},
        "sample_kept": report["samples"]["kept"][:10],
        "sample_dropped": report["samples"]["dropped"][:10],
    }
    return out


def bench_prefix(data: Path, n_chunks: int, kinds: list[int], dtype: str, passes: int = 2) -> dict:
    """transformers' ``generate`` on whole prompts against the backend's own paths: a chunk's
    text read once (shared beginnings), finished replies leaving the batch, and a question
    stopping at its "?". The same calls, batched as the runner batches them (a chunk's calls
    together), in one process; the replies must be the same text (up to the "?" in the last
    mode) and give the question filter the same questions.

    Each mode runs ``passes`` times, the order of the modes reversed every other pass, and its
    figure is the median: one pass of the same calls varies by up to a fifth on a 2-core CPU,
    and a single pass per mode once read 1.18x for a change that was 0.94x when alternated
    (benchmarks/journal/time-to-result.md, session 19)."""
    import statistics

    import torch

    from embedtune.generate.filters import QuestionFilter
    from embedtune.generate.local import LocalBackend
    from embedtune.generate.prompts import load_template, render
    from embedtune.generate.runner import _Call, _local_batches

    chunks = _chunks_from_pdfs(data, n_chunks)
    g = load_config(environ={}).generate.model_copy(update={"local_dtype": dtype})
    backend = LocalBackend(g, per_question=True)
    backend.load()
    template = load_template(None, "local")
    out: dict = {"cpu_threads": torch.get_num_threads(), "dtype": backend.dtype, "rows": []}
    out["passes"] = passes
    backend.complete_batch([render(template, chunks[0].text, 1, 0)])  # warm-up
    modes = {  # (share_prefixes, drop_finished, share_template, stop_at_question_mark)
        "generate() on whole prompts (before)": (False, False, False, False),
        "own loop: finished rows leave": (False, True, False, False),
        "+ a chunk's text read once": (True, True, False, False),
        "+ the template's opening read once per batch": (True, True, True, False),
        "+ a question stops at its '?' (default)": (True, True, True, True),
    }
    labels = list(modes)
    question = QuestionFilter(g.min_question_chars, g.max_question_chars).clean
    for k in kinds:
        calls = [
            _Call("train", c, i, f"{c.id}/{i}", render(template, c.text, 1, i))
            for c in chunks
            for i in range(k)
        ]
        batches = _local_batches(calls, backend.batch_size)
        seconds: dict[str, list[float]] = {label: [] for label in labels}
        replies_of: dict[str, list] = {}
        for p in range(passes):
            for label in labels if p % 2 == 0 else labels[::-1]:
                share, drop, opening, stop_q = modes[label]
                backend.share_prefixes, backend.drop_finished = share, drop
                backend.share_template, backend.stop_at_question_mark = opening, stop_q
                start = time.perf_counter()
                replies = [
                    r for b in batches for r in backend.complete_batch([c.prompt for c in b])
                ]
                seconds[label].append(time.perf_counter() - start)
                replies_of.setdefault(label, replies)
        reference = [r.text for r in replies_of[labels[0]]]
        before = statistics.median(seconds[labels[0]])
        for label in labels:
            replies = replies_of[label]
            texts = [r.text for r in replies]
            median = statistics.median(seconds[label])
            same = sum(a == b for a, b in zip(reference, texts, strict=True))
            # Stopping at the "?" shortens replies; what matters is the question the filter keeps.
            kept_same = sum(
                question(a) == question(b) for a, b in zip(reference, texts, strict=True)
            )
            row = {
                "questions_per_chunk": k,
                "mode": label,
                "calls": len(calls),
                "seconds": round(median, 1),
                "passes_s": [round(x, 1) for x in seconds[label]],
                "speedup": round(before / median, 2),
                "identical_replies": f"{same}/{len(calls)}",
                "identical_kept_questions": f"{kept_same}/{len(calls)}",
                "new_tokens": sum(r.usage["completion_tokens"] for r in replies),
            }
            out["rows"].append(row)
            print(f"  {k} per chunk, {len(calls)} calls, {label}: {median:.1f} s "
                  f"(passes {row['passes_s']}) = {row['speedup']}x; same replies {same}, "
                  f"same kept questions {kept_same}, {row['new_tokens']} tokens written")  # fmt: skip
    return out


def _table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if "server" in results:
        s = results["server"]
        t = Table(title=f"OpenAI backend vs fake server ({s['latency_s'] * 1000:.0f} ms a call)")
        for col in ("mode", "concurrency", "calls", "seconds", "questions/s"):
            t.add_column(col, justify="right" if col != "mode" else "left")
        for mode in ("sequential", "concurrent"):
            r = s[mode]
            t.add_row(
                mode,
                str(r["concurrency"]),
                str(r["calls"]),
                f"{r['seconds']:.2f}",
                f"{r['questions_per_s']:.1f}",
            )
        t.caption = f"speedup {s['speedup']}x (sequential = llama-index's one call at a time)"
        console.print(t)
    if "local" in results:
        loc = results["local"]
        t = Table(title=f"local SmolLM2-135M on {loc['cpu_threads']} CPU threads")
        for col in ("dtype", "batch", "prompts", "seconds", "questions/s"):
            t.add_column(col, justify="right")
        for r in loc["batch_sweep"].values():
            t.add_row(
                r["dtype"],
                str(r["batch_size"]),
                str(r["prompts"]),
                f"{r['seconds']:.1f}",
                f"{r['questions_per_s']:.2f}",
            )
        t.caption = f"load {loc['load_s_float32']} s (float32), {loc['load_s_bfloat16']} s (bf16)"
        console.print(t)
        run = loc["run"]
        console.print(
            f"full run on {loc['chunks']} chunks: {run['kept']}/{run['raw_questions']} kept "
            f"({100 * run['kept_share']:.0f}%), {run['kept_per_s']:.2f} kept questions/s; "
            f"dropped {run['dropped']}; prompt comparison {loc['prompt_comparison']}"
        )
        console.print("[bold]kept[/bold]")
        for q in run["sample_kept"]:
            console.print(f"  {q['question']}   [dim]({q['chunk_id']})[/dim]")
        console.print("[bold]dropped[/bold]")
        for q in run["sample_dropped"]:
            console.print(f"  {q['reason']:>20s}: {q['question']}")

    if "prefix" in results:
        pre = results["prefix"]
        passes = pre.get("passes", 1)  # figures before session 19: one pass per mode
        t = Table(
            title=f"local backend paths, {pre['dtype']}, {pre['cpu_threads']} threads, "
            f"median of {passes} pass(es) per mode"
        )
        cols = ("per chunk", "mode", "calls", "seconds", "speedup", "same replies", "same kept")
        for col in cols:
            t.add_column(col, justify="left" if col == "mode" else "right")
        for r in pre["rows"]:
            t.add_row(
                str(r["questions_per_chunk"]),
                r["mode"],
                str(r["calls"]),
                str(r["seconds"]),
                f"{r['speedup']}x",
                r["identical_replies"],
                r.get("identical_kept_questions", "-"),
            )
        console.print(t)


def bench_batch(data: Path, n_chunks: int, batch_sizes: list[int]) -> dict:
    """The offline writer on this machine's default device (the GPU when there is one), at its
    default dtype: questions/second at each batch size over the same prompts (two per chunk,
    as the runner asks them, a chunk's prompts side by side)."""
    import torch

    from embedtune.generate.local import LocalBackend
    from embedtune.generate.prompts import load_template, render

    chunks = _chunks_from_pdfs(data, n_chunks)
    single = load_template(None, "local")
    prompts = [render(single, c.text, 1, i) for c in chunks for i in range(2)]
    backend = LocalBackend(load_config(environ={}).generate, per_question=True)
    backend.load()
    out: dict = {
        "device": backend.device,
        "gpu": torch.cuda.get_device_name() if backend.device.startswith("cuda") else None,
        "dtype": backend.dtype,
        "default_batch_size": backend.batch_size,
        "prompts": len(prompts),
        "load_s": round(backend.load_seconds or 0, 2),
        "sizes": {},
    }
    backend.complete_batch(prompts[:4])  # warm-up: the first calls allocate and pick kernels
    for bs in batch_sizes:
        start = time.perf_counter()
        for i in range(0, len(prompts), bs):
            backend.complete_batch(prompts[i : i + bs])
        if backend.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        out["sizes"][str(bs)] = {
            "seconds": round(seconds, 2),
            "questions_per_s": round(len(prompts) / seconds, 2),
        }
        print(f"  writer on {backend.device} batch {bs:4d}: {len(prompts) / seconds:7.1f} q/s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--part", choices=("server", "local", "prefix", "batch", "all"), default="all"
    )
    parser.add_argument("--kinds", default="2,4", help="prefix part: questions per chunk")
    parser.add_argument("--dtype", default="auto", help="prefix part: local_dtype")
    parser.add_argument(
        "--passes",
        type=int,
        default=2,
        help="prefix part: passes per mode, the order reversed every other pass (median kept)",
    )
    parser.add_argument("--server-chunks", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=40, help="local part: sample size")
    parser.add_argument("--batch-sizes", default="1,8,16,32")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for the local part (default: torch's choice). On a CPU shared with "
        "other busy processes, 1 avoids threads waiting on each other at every op.",
    )
    args = parser.parse_args()
    if args.passes < 1:
        parser.error(f"--passes must be 1 or more (got {args.passes})")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.part in ("server", "all"):
        results["server"] = bench_server(args.server_chunks, args.latency, args.concurrency)
    if args.part in ("local", "all"):
        sizes = [int(x) for x in args.batch_sizes.split(",")]
        results["local"] = bench_local(Path(args.data), args.chunks, sizes)
    if args.part == "batch":  # not in "all": meant for a GPU (see bench_batch)
        sizes = [int(x) for x in args.batch_sizes.split(",")]
        results["batch"] = bench_batch(Path(args.data), args.chunks, sizes)
    if args.part in ("prefix", "all"):
        kinds = [int(x) for x in args.kinds.split(",")]
        results["prefix"] = bench_prefix(
            Path(args.data), args.chunks, kinds, args.dtype, args.passes
        )
    from embedtune.generate.local import resolve_dtype

    results["machine"] = {
        "cpus": os.cpu_count(),
        "native_bf16": resolve_dtype("auto") == "bfloat16",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    _table(results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
