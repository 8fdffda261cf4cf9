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

Aims: served/in-process >= 0.8 at 32 clients; no errors during the soak; flat RSS; onnx-int8
>= 1.5x torch. Texts come from r-faq's corpus (consecutive passages joined to ~200 tokens), or
generated text when the data is absent.

    python benchmarks/bench_serve.py                       # full run (~6 minutes)
    python benchmarks/bench_serve.py --seconds-per-level 5 --soak-seconds 10   # quick check
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

    def __init__(self, model: str, backend: str, max_batch_size: int, max_wait_ms: float):
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
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    args = ap.parse_args()

    from embedtune.serve.backends import load_backend

    torch_model = load_backend(args.model, "torch")
    texts, source = chunk_texts(args.data, torch_model.tokenizer)
    results: dict = {
        "model": args.model,
        "texts": {"n": len(texts), "tokens_each": 200, "source": source},
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
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

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
