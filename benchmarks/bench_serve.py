"""Load benchmark of `embedtune serve`: throughput vs in-process encode, latency, soak, ONNX.

What it measures, all in one run on one machine (so the ratios are fair):

1. In-process ``model.encode`` throughput (texts/s) at batch sizes 1, 8, 32, 64: the ceiling.
2. For each backend (torch, onnx, onnx-int8), a server started as a subprocess on 127.0.0.1 and
   loaded by 1, 8, 32 and 64 concurrent httpx clients, each sending one ~200-token text per
   request to ``/v1/embeddings``: texts/s, that divided by in-process throughput at the batch size
   the server can form (min(clients, max_batch_size)), p50/p99 latency, errors.
3. A soak: 64 clients for ``--soak-seconds`` against the torch server, sampling its RSS every
   second; errors and RSS growth over the second half (after warm-up).
4. Quality: NDCG@10 on the r-faq BEIR set for each backend (cosine ranking), so the speed of
   ONNX int8 is reported next to what it costs.

Two more parts measure fairness and overload (issue 16), against the torch server:

5. ``fairness``: a request of ``--big-texts`` texts of ``--big-chars`` characters is sent, and once
   its texts are queued (the server's ``embedtune_queue_texts`` gauge), ``--small-clients`` clients
   send one-text requests back to back (0.2 s apart) until it completes: their p50/p99 latency.
6. ``overload``: the server's capacity (texts/s) with 32 closed-loop clients, then one-text
   requests sent open-loop at ``--overload-factor`` times that rate for ``--overload-seconds``:
   connection errors, how many were refused and how fast (the 429s' latency), Retry-After.
   These requests go out through aiohttp, each on its own connection, as independent callers'
   would: httpx's client, sharing 2 cores with the server, sent only 10-50 of 80 requests/s
   while its pool grew, and held them seconds before the server saw them (measured by logging
   arrivals in the server), so it timed itself rather than the server.

Aims: served/in-process >= 0.8 at 32 clients; no errors during the soak; flat RSS; onnx-int8
>= 1.5x torch; one-text p99 <= 5 s beside the big request; at 4x capacity no connection error
and every refusal a 429 within 100 ms. Texts come from r-faq's corpus (consecutive passages
joined to ~200 tokens), or generated text when the data is absent.

``--server-src DIR`` runs the server from another source tree (e.g. an older commit's ``src``,
from ``git archive``), so that before and after are measured in one session; ``--label`` names
the run in the results, which are merged into ``--out`` by part and label.

    python benchmarks/bench_serve.py                       # full run (~6 minutes)
    python benchmarks/bench_serve.py --seconds-per-level 5 --soak-seconds 10   # quick check
    git archive ec49700 src | tar -x -C /tmp/before
    python benchmarks/bench_serve.py --parts fairness overload --server-src /tmp/before/src \
        --label before
    python benchmarks/bench_serve.py --parts fairness overload --label after
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------------------------- inputs
def chunk_texts(data: Path, tokenizer, n: int = 256, tokens: int = 200) -> tuple[list[str], str]:
    """~``tokens``-token texts: consecutive r-faq passages joined, else generated sentences."""
    corpus = data / "r-faq" / "corpus.jsonl"
    passages: list[str] = []
    source = "generated"
    if corpus.is_file():
        with corpus.open(encoding="utf-8") as f:
            passages = [json.loads(line)["text"] for line in f if line.strip()]
        source = str(corpus)
    if not passages:
        rng = random.Random(0)
        words = (
            "package install vector list data frame function model plot matrix factor "
            "apply loop error warning memory file read write string regression"
        ).split()
        passages = [" ".join(rng.choice(words) for _ in range(60)) + "." for _ in range(200)]
    out: list[str] = []
    i = 0
    while len(out) < n:
        ids: list[int] = []
        while len(ids) < tokens:
            ids += tokenizer(passages[i % len(passages)], add_special_tokens=False)["input_ids"]
            i += 1
        out.append(tokenizer.decode(ids[:tokens]))
    return out, source


# ------------------------------------------------------------------------------- in-process
def inprocess_throughput(model, texts: list[str], batch_size: int, seconds: float) -> float:
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    done, start, k = 0, time.perf_counter(), 0
    while True:
        batch = [texts[(k * batch_size + j) % len(texts)] for j in range(batch_size)]
        model.encode(batch, batch_size=batch_size)
        done += batch_size
        k += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and k >= 2:
            return done / elapsed


def ndcg_at_10(model, data: Path) -> float | None:
    from embedtune.dataset import QADataset

    folder = data / "r-faq"
    if not (folder / "corpus.jsonl").is_file():
        return None
    ds = QADataset.from_beir(folder)
    cids, qids = list(ds.corpus), list(ds.queries)
    docs = model.encode([ds.corpus[c] for c in cids], normalize_embeddings=True)
    queries = model.encode([ds.queries[q] for q in qids], normalize_embeddings=True)
    scores = queries @ docs.T
    total = 0.0
    for row, qid in zip(scores, qids, strict=True):
        relevant = set(ds.relevant_docs.get(qid, []))
        top = np.argsort(-row)[:10]
        dcg = sum(1 / math.log2(r + 2) for r, j in enumerate(top) if cids[j] in relevant)
        ideal = sum(1 / math.log2(r + 2) for r in range(min(10, len(relevant))))
        total += dcg / ideal if ideal else 0.0
    return total / len(qids)


# ---------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`embedtune serve` in a subprocess, waited for until /health answers."""

    def __init__(
        self,
        model: str,
        backend: str,
        max_batch_size: int,
        max_wait_ms: float,
        src: Path | None = None,
        extra: tuple[str, ...] = (),
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-c",
            "from embedtune.cli import main; main()",
            "serve",
            model,
            "--backend",
            backend,
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--max-batch-size",
            str(max_batch_size),
            "--max-wait-ms",
            str(max_wait_ms),
            "--log-level",
            "warning",
            *extra,
        ]
        env = dict(os.environ)
        if src is not None:  # another source tree first on the path: e.g. the code before a change
            env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            )
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not become healthy in 180 s")
            time.sleep(0.2)

    def model_stats(self) -> tuple[float, float, float]:
        """(model calls, texts embedded, seconds in the model) so far, from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        values = {}
        for family in text_string_to_metric_families(httpx.get(self.url + "/metrics").text):
            for sample in family.samples:
                values[sample.name] = sample.value
        return (
            values.get("embedtune_batch_size_count", 0.0),
            values.get("embedtune_batch_size_sum", 0.0),
            values.get("embedtune_batch_seconds_sum", 0.0),
        )

    def queued_texts(self) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(httpx.get(self.url + "/metrics").text):
            for sample in family.samples:
                if sample.name == "embedtune_queue_texts":
                    return sample.value
        return 0.0

    def rss_mb(self) -> float:
        p = psutil.Process(self.proc.pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def load(
    url: str,
    texts: list[str],
    clients: int,
    seconds: float,
    max_requests: int,
    texts_per_request: int = 1,
) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    stop_at = time.perf_counter() + seconds

    async def client(seed: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        rng = random.Random(seed)
        while time.perf_counter() < stop_at and sent < max_requests:
            sent += 1
            batch = [rng.choice(texts) for _ in range(texts_per_request)]
            t0 = time.perf_counter()
            try:
                r = await http.post(
                    url + "/v1/embeddings",
                    json={"input": batch, "model": "bench", "encoding_format": "base64"},
                )
                ok = r.status_code == 200
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                ok, key = False, type(exc).__name__
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {
        "clients": clients,
        "requests_ok": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "texts_per_s": round(len(latencies) * texts_per_request / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
    }


def soak(server: Server, texts: list[str], clients: int, seconds: float) -> dict:
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not done.is_set():
            samples.append((time.perf_counter() - t0, server.rss_mb()))
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = asyncio.run(load(server.url, texts, clients, seconds, max_requests=10**9))
    done.set()
    sampler.join()
    half = [m for t, m in samples if t >= seconds / 2] or [samples[-1][1]]
    result.update(
        rss_mb_start=round(samples[0][1], 1),
        rss_mb_end=round(samples[-1][1], 1),
        rss_mb_max=round(max(m for _, m in samples), 1),
        rss_mb_growth_second_half=round(half[-1] - half[0], 1),
        rss_samples=[round(m, 1) for _, m in samples],
    )
    return result


# --------------------------------------------------------------------- fairness, overload
def long_texts(texts: list[str], n: int, chars: int) -> list[str]:
    """``n`` different texts of ``chars`` characters, made of the chunk texts end to end."""
    out = []
    for i in range(n):
        parts, size, j = [], 0, i
        while size < chars:
            parts.append(texts[j % len(texts)])
            size += len(parts[-1]) + 1
            j += 1
        out.append(" ".join(parts)[:chars])
    return out


def _ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


async def fairness(
    server: Server, big: list[str], small_text: str, clients: int, max_seconds: float
) -> dict:
    """One-text latency while ``big`` is being embedded: does a small request wait for it all?"""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    big_done = asyncio.Event()
    result: dict = {"big_texts": len(big), "big_chars_each": len(big[0])}
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=max_seconds + 600, limits=limits) as http:

        async def send_big() -> None:
            t0 = time.perf_counter()
            body = {"input": big, "model": "bench", "encoding_format": "base64"}
            try:
                r = await http.post(server.url + "/v1/embeddings", json=body)
                result["big_status"] = r.status_code
            except httpx.HTTPError as exc:
                result["big_status"] = type(exc).__name__
            result["big_seconds"] = round(time.perf_counter() - t0, 2)
            big_done.set()

        async def send_small(seed: int, start: float) -> None:
            await asyncio.sleep(0.05 * seed)
            while not big_done.is_set() and time.perf_counter() - start < max_seconds:
                t0 = time.perf_counter()
                try:
                    r = await http.post(server.url + "/v1/embeddings", json={"input": small_text})
                    key = "ok" if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                if key == "ok":
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[key] = errors.get(key, 0) + 1
                await asyncio.sleep(0.2)

        big_task = asyncio.create_task(send_big())
        # "In flight" means its texts wait for the model, not that its upload has begun.
        while not big_done.is_set() and await asyncio.to_thread(server.queued_texts) < 1:
            await asyncio.sleep(0.05)
        start = time.perf_counter()
        await asyncio.gather(*(send_small(i, start) for i in range(clients)))
        await big_task
    result.update(
        small_requests=len(latencies),
        small_errors=errors,
        small_p50_ms=_ms(latencies, 50),
        small_p99_ms=_ms(latencies, 99),
        small_max_ms=_ms(latencies, 100),
    )
    return result


async def overload(
    server: Server, texts: list[str], factor: float, seconds: float, capacity_seconds: float
) -> dict:
    """Open-loop one-text requests at ``factor`` x capacity: refusals, and how fast they come."""
    capacity = await load(server.url, texts, 32, capacity_seconds, max_requests=10**6)
    rate = factor * capacity["texts_per_s"]
    outcomes: list[tuple[str, float, str | None]] = []
    timeout = aiohttp.ClientTimeout(total=600.0, connect=60.0)
    # limit=0: no cap on connections, so no request waits in the client for a free one.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(i: int) -> None:
            body = {"input": texts[i % len(texts)], "model": "bench", "encoding_format": "base64"}
            t0 = time.perf_counter()
            try:
                async with http.post(server.url + "/v1/embeddings", json=body) as r:
                    await r.read()
                    outcome, retry = str(r.status), r.headers.get("retry-after")
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome, retry = type(exc).__name__, None
            outcomes.append((outcome, time.perf_counter() - t0, retry))

        tasks, start, i = [], time.perf_counter(), 0
        while (now := time.perf_counter()) - start < seconds:
            # Always yield, even when behind schedule: the requests already sent need the loop.
            await asyncio.sleep(max(0.0, start + i / rate - now))
            tasks.append(asyncio.create_task(one(i)))
            i += 1
        sent_s = time.perf_counter() - start
        await asyncio.gather(*tasks)
        drained_s = time.perf_counter() - start
    by_outcome: dict[str, int] = {}
    for outcome, _, _ in outcomes:
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
    refused = [t for o, t, _ in outcomes if o in ("429", "503")]
    served = [t for o, t, _ in outcomes if o == "200"]
    retry_after = sorted({int(r) for o, _, r in outcomes if o == "429" and r and r.isdigit()})
    return {
        "capacity_texts_per_s": capacity["texts_per_s"],
        "factor": factor,
        "rate_per_s": round(rate, 2),
        "sent": len(outcomes),
        "sent_seconds": round(sent_s, 2),
        "seconds_until_all_answered": round(drained_s, 2),
        "outcomes": by_outcome,
        "connection_errors": sum(
            n for o, n in by_outcome.items() if not o.isdigit() or int(o) >= 500 and o != "503"
        ),
        "refused": len(refused),
        "refused_p50_ms": _ms(refused, 50),
        "refused_p99_ms": _ms(refused, 99),
        "refused_max_ms": _ms(refused, 100),
        "refused_over_100ms": sum(1 for t in refused if t > 0.1),
        "retry_after_values": retry_after[:10],
        "served_p50_ms": _ms(served, 50),
        "served_p99_ms": _ms(served, 99),
        "served_max_ms": _ms(served, 100),
    }


def issue16_parts(args: argparse.Namespace, texts: list[str], machine: dict) -> dict:
    """Fairness and overload against one torch server (from ``--server-src`` if given)."""
    extra: tuple[str, ...] = ()
    server = Server(
        args.model, "torch", args.max_batch_size, args.max_wait_ms, args.server_src, extra
    )
    out: dict = {"machine": machine, "server_src": str(args.server_src or "this checkout")}
    try:
        asyncio.run(load(server.url, texts, 4, 2.0, 8))  # warm-up
        if "fairness" in args.parts:
            big = long_texts(texts, args.big_texts, args.big_chars)
            small = "How do I install a package?"
            out["fairness"] = r = asyncio.run(
                fairness(server, big, small, args.small_clients, args.fairness_max_seconds)
            )
            print(
                f"fairness [{args.label}]: {r['small_requests']} one-text requests beside "
                f"{r['big_texts']} x {r['big_chars_each']} chars: p50 {r['small_p50_ms']} ms, "
                f"p99 {r['small_p99_ms']} ms, max {r['small_max_ms']} ms; the big request took "
                f"{r['big_seconds']} s ({r['big_status']})",
                flush=True,
            )
        if "overload" in args.parts:
            out["overload"] = r = asyncio.run(
                overload(
                    server,
                    texts,
                    args.overload_factor,
                    args.overload_seconds,
                    args.capacity_seconds,
                )
            )
            print(
                f"overload [{args.label}]: {r['sent']} requests at {r['rate_per_s']}/s "
                f"({r['factor']}x {r['capacity_texts_per_s']} texts/s) for {r['sent_seconds']} s: "
                f"{r['outcomes']}; refused p99 {r['refused_p99_ms']} ms, max "
                f"{r['refused_max_ms']} ms ({r['refused_over_100ms']} over 100 ms); served p99 "
                f"{r['served_p99_ms']} ms; all answered after {r['seconds_until_all_answered']} s",
                flush=True,
            )
    finally:
        server.stop()
    return out


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"])
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32, 64])
    ap.add_argument("--seconds-per-level", type=float, default=20.0)
    ap.add_argument("--requests-per-level", type=int, default=5000)
    ap.add_argument("--soak-seconds", type=float, default=60.0)
    ap.add_argument("--soak-clients", type=int, default=64)
    ap.add_argument("--inprocess-seconds", type=float, default=5.0)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="Where to export ONNX (default: a temporary folder).",
    )
    ap.add_argument("--note", default="", help="Stored in the results, e.g. 'shared CPU'.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    ap.add_argument(
        "--parts",
        nargs="+",
        default=["throughput", "fairness", "overload"],
        choices=["throughput", "fairness", "overload"],
    )
    ap.add_argument("--server-src", type=Path, default=None, help="Serve from this source tree.")
    ap.add_argument("--label", default="this checkout", help="Names the run in the results.")
    ap.add_argument("--big-texts", type=int, default=400)
    ap.add_argument("--big-chars", type=int, default=10_000)
    ap.add_argument("--small-clients", type=int, default=4)
    ap.add_argument("--fairness-max-seconds", type=float, default=900.0)
    ap.add_argument("--overload-factor", type=float, default=4.0)
    ap.add_argument("--overload-seconds", type=float, default=30.0)
    ap.add_argument("--capacity-seconds", type=float, default=10.0)
    args = ap.parse_args()

    from embedtune.serve.backends import load_backend

    torch_model = load_backend(args.model, "torch")
    texts, source = chunk_texts(args.data, torch_model.tokenizer)
    machine = {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    if "throughput" not in args.parts:
        del torch_model
        merge_results(args, issue16_parts(args, texts, machine), {})
        return
    results: dict = {
        "model": args.model,
        "texts": {"n": len(texts), "tokens_each": 200, "source": source},
        "machine": machine,
        "settings": {
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "seconds_per_level": args.seconds_per_level,
            "soak_seconds": args.soak_seconds,
        },
        "note": args.note,
        "inprocess": {},
        "served": {},
        "ndcg@10": {},
    }

    tmp = None
    serve_path = {"torch": args.model}
    onnx_wanted = [b for b in args.backends if b != "torch"]
    if onnx_wanted:
        from embedtune.serve.export import export_onnx

        export_dir = args.export_dir
        if export_dir is None:
            tmp = tempfile.TemporaryDirectory()
            export_dir = Path(tmp.name) / "model-onnx"
        info = export_onnx(args.model, export_dir)
        results["export"] = info
        for b in onnx_wanted:
            serve_path[b] = str(export_dir)

    sizes = sorted({min(c, args.max_batch_size) for c in args.concurrency})
    for backend in args.backends:
        model = torch_model if backend == "torch" else load_backend(serve_path[backend], backend)
        results["inprocess"][backend] = {
            str(b): round(inprocess_throughput(model, texts, b, args.inprocess_seconds), 2)
            for b in sizes
        }
        results["ndcg@10"][backend] = (
            None if (v := ndcg_at_10(model, args.data)) is None else round(v, 4)
        )
        print(
            f"in-process {backend}: {results['inprocess'][backend]} texts/s; "
            f"NDCG@10 {results['ndcg@10'][backend]}",
            flush=True,
        )
        if model is not torch_model:
            del model

    for backend in args.backends:
        server = Server(serve_path[backend], backend, args.max_batch_size, args.max_wait_ms)
        try:
            levels = []
            for clients in args.concurrency:
                asyncio.run(load(server.url, texts, clients, 1.0, clients * 2))  # warm-up
                before = server.model_stats()
                r = asyncio.run(
                    load(
                        server.url, texts, clients, args.seconds_per_level, args.requests_per_level
                    )
                )
                calls, n_texts, busy = (
                    a - b for a, b in zip(server.model_stats(), before, strict=True)
                )
                # Where a gap to in-process goes: small batches (requests not coalesced), a model
                # left idle (time lost outside it: HTTP, JSON, a CPU shared with the client), or
                # the model itself running slower than in-process (model_texts_per_busy_s).
                r["mean_batch_size"] = round(n_texts / calls, 1) if calls else None
                r["model_busy_fraction"] = round(busy / r["seconds"], 3)
                r["model_texts_per_busy_s"] = round(n_texts / busy, 2) if busy else None
                base = results["inprocess"][backend][str(min(clients, args.max_batch_size))]
                r["inprocess_texts_per_s"] = base
                r["ratio_to_inprocess"] = round(r["texts_per_s"] / base, 3)
                levels.append(r)
                print(
                    f"served {backend} {clients:>3} clients: {r['texts_per_s']:.1f} texts/s "
                    f"({r['ratio_to_inprocess']:.2f} of in-process), p50 {r['p50_ms']} ms, "
                    f"p99 {r['p99_ms']} ms, errors {r['errors'] or 0}; mean batch "
                    f"{r['mean_batch_size']}, model busy {r['model_busy_fraction']:.0%}",
                    flush=True,
                )
            results["served"][backend] = levels
            if backend == "torch" and args.soak_seconds > 0:
                results["soak"] = soak(server, texts, args.soak_clients, args.soak_seconds)
                s = results["soak"]
                print(
                    f"soak torch {args.soak_clients} clients {args.soak_seconds:.0f} s: "
                    f"{s['requests_ok']} ok, errors {s['errors'] or 0}, RSS {s['rss_mb_start']}"
                    f" -> {s['rss_mb_end']} MB (second half +{s['rss_mb_growth_second_half']})",
                    flush=True,
                )
        finally:
            server.stop()

    # Verdicts against the aims.
    aims: dict = {}
    torch_levels = {r["clients"]: r for r in results["served"].get("torch", [])}
    if 32 in torch_levels:
        aims["served_vs_inprocess_at_32_clients"] = torch_levels[32]["ratio_to_inprocess"]
        aims["served_vs_inprocess_at_32_clients_ok"] = torch_levels[32]["ratio_to_inprocess"] >= 0.8
    if "soak" in results:
        s = results["soak"]
        aims["soak_errors"] = sum(s["errors"].values())
        aims["soak_rss_growth_mb"] = s["rss_mb_growth_second_half"]
        aims["soak_ok"] = aims["soak_errors"] == 0 and s["rss_mb_growth_second_half"] < 50
    if "onnx-int8" in results["inprocess"] and "torch" in results["inprocess"]:
        b = str(min(32, args.max_batch_size))
        if b in results["inprocess"]["torch"]:
            speedup = results["inprocess"]["onnx-int8"][b] / results["inprocess"]["torch"][b]
            aims["int8_speedup_inprocess_batch32"] = round(speedup, 2)
            aims["int8_speedup_ok"] = speedup >= 1.5
        int8_levels = {r["clients"]: r for r in results["served"].get("onnx-int8", [])}
        if 32 in int8_levels and 32 in torch_levels:
            aims["int8_speedup_served_32_clients"] = round(
                int8_levels[32]["texts_per_s"] / torch_levels[32]["texts_per_s"], 2
            )
    if results["ndcg@10"].get("torch") is not None:
        aims["ndcg@10_lost"] = {
            b: round(results["ndcg@10"]["torch"] - v, 4)
            for b, v in results["ndcg@10"].items()
            if b != "torch" and v is not None
        }
    results["aims"] = aims

    print("\n| backend | clients | texts/s | in-process | ratio | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for backend, levels in results["served"].items():
        for r in levels:
            print(
                f"| {backend} | {r['clients']} | {r['texts_per_s']} | "
                f"{r['inprocess_texts_per_s']} | {r['ratio_to_inprocess']} | {r['p50_ms']} | "
                f"{r['p99_ms']} | {sum(r['errors'].values())} |"
            )
    print("\nNDCG@10 (r-faq):", results["ndcg@10"])
    print("aims:", json.dumps(aims))

    if tmp is not None:
        tmp.cleanup()
    run16 = (
        issue16_parts(args, texts, machine) if {"fairness", "overload"} & set(args.parts) else {}
    )
    merge_results(args, run16, results)


def merge_results(args: argparse.Namespace, run16: dict, results: dict) -> None:
    """Write ``results`` over ``--out``, keeping the fairness and overload runs of other labels."""
    merged = {}
    if args.out.is_file():
        merged = json.loads(args.out.read_text(encoding="utf-8"))
    merged.update(results)
    for part in ("fairness", "overload"):
        if part in run16:
            merged.setdefault(part, {})[args.label] = {
                **run16[part],
                "machine": run16["machine"],
                "server_src": run16["server_src"],
                "note": args.note,
                "command": " ".join(sys.argv),
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
