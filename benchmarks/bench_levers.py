"""Two speed levers of issue 18, each against its baseline in the same process on a run's data.

- ``teacher``: the teacher's pass (the round trip's judge, the teacher's labels) with bfloat16
  weights against float32: seconds to encode ``--chunks`` training chunks both ways, then how
  many of the round trip's keep decisions change on the whole training split (float32
  embeddings are read from the run's embedding cache where the run left them, else encoded).
- ``step``: one training step of the base (MNRL on ``--batch`` question/chunk pairs, forward and
  backward and AdamW) with the attention layers' dropout at the model's own rate against
  ``train.attention_dropout: 0``, in bf16 autocast where the CPU has native bf16 (as
  ``train.bf16: auto``), else float32.

    EMBEDTUNE_CACHE=RUN.cache python benchmarks/bench_levers.py --run RUN

It prints a table and appends one row per lever to ``benchmarks/results/levers.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from embedtune.embeddings import EmbeddingCache, model_fingerprint
from embedtune.models import load_model
from embedtune.recipe import AUTO_TEACHER, cpu_supports_bf16
from embedtune.train.rows import load_for_training

RESULTS = Path(__file__).parent / "results" / "levers.jsonl"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _normed(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _ranks(queries: np.ndarray, docs: np.ndarray, source: np.ndarray) -> np.ndarray:
    scores = queries @ docs.T
    own = scores[np.arange(len(source)), source]
    return (scores >= own[:, None]).sum(axis=1) - 1  # ties count against the source chunk


def _run_data(run: Path) -> tuple[list[str], list[str], np.ndarray]:
    """The training chunks, every question the round trip judged (kept and rejected), and the
    index of each question's own chunk."""
    chunks = [json.loads(line) for line in (run / "chunks" / "train.jsonl").open()]
    index = {c["id"]: i for i, c in enumerate(chunks)}
    questions, source = [], []
    for name in ("train.json", "train_rejects.json"):
        path = run / "data" / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        for qid, text in data["queries"].items():
            questions.append(text)
            source.append(index[data["relevant_docs"][qid][0]])
    return [c["text"] for c in chunks], questions, np.asarray(source)


def teacher(run: Path, judge: str, n_chunks: int, top_k: int) -> dict:
    texts, questions, source = _run_data(run)
    sample = texts[:n_chunks]
    seconds = {}
    models = {}
    for dtype in ("float32", "bfloat16"):
        model = models[dtype] = load_model(judge, dtype=dtype)
        model.encode_document(sample[:4])  # warm-up, not timed
        t0 = time.perf_counter()
        model.encode_document(sample, batch_size=64)
        seconds[dtype] = time.perf_counter() - t0
        print(f"  {dtype}: {len(sample)} chunks in {seconds[dtype]:.1f} s", flush=True)
    ranks = {}
    for dtype, model in models.items():
        cache = EmbeddingCache(model_fingerprint(judge, dtype=dtype))
        docs = _normed(cache.encode_with(model, texts, "document", batch_size=64))
        queries = _normed(cache.encode_with(model, questions, "query", batch_size=64))
        ranks[dtype] = _ranks(queries, docs, source)
    kept = {dtype: r < top_k for dtype, r in ranks.items()}
    return {
        "lever": "teacher bf16",
        "model": judge,
        "chunks_timed": len(sample),
        "float32_s": round(seconds["float32"], 2),
        "bfloat16_s": round(seconds["bfloat16"], 2),
        "speedup": round(seconds["float32"] / seconds["bfloat16"], 2),
        "questions": len(questions),
        "split_chunks": len(texts),
        "top_k": top_k,
        "decisions_changed": int((kept["float32"] != kept["bfloat16"]).sum()),
        "kept_float32": int(kept["float32"].sum()),
        "kept_bfloat16": int(kept["bfloat16"].sum()),
    }


def _train_step(model, optimizer, questions: list[str], chunks: list[str], bf16: bool) -> None:
    """MNRL on in-batch negatives: forward, backward and one AdamW step."""
    q, d = model.preprocess(questions), model.preprocess(chunks)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        eq = torch.nn.functional.normalize(model(q)["sentence_embedding"], dim=-1)
        ed = torch.nn.functional.normalize(model(d)["sentence_embedding"], dim=-1)
        scores = (eq @ ed.T).float() * 20
    torch.nn.functional.cross_entropy(scores, torch.arange(len(questions))).backward()
    optimizer.step()
    optimizer.zero_grad()


def step(run: Path, base: str, batch: int, steps: int) -> dict:
    texts, questions, source = _run_data(run)
    bf16 = cpu_supports_bf16()
    seconds = {}
    for label, rate in (("own", None), ("zero", 0.0)):
        torch.manual_seed(0)
        model = load_for_training(base, attention_dropout=rate)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        batches = [range(i * batch, (i + 1) * batch) for i in range(steps + 1)]
        for i, picked in enumerate(batches):
            if i == 1:  # the first step warms up: not timed
                t0 = time.perf_counter()
            _train_step(
                model,
                optimizer,
                [questions[j] for j in picked],
                [texts[source[j]] for j in picked],
                bf16,
            )
        seconds[label] = (time.perf_counter() - t0) / steps
        print(f"  attention dropout {label}: {seconds[label]:.2f} s a step", flush=True)
    return {
        "lever": "attention dropout 0",
        "model": base,
        "batch": batch,
        "steps": steps,
        "bf16_autocast": bf16,
        "own_s_per_step": round(seconds["own"], 3),
        "zero_s_per_step": round(seconds["zero"], 3),
        "speedup": round(seconds["own"] / seconds["zero"], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", required=True, type=Path, help="a run after `embedtune generate`")
    p.add_argument("--parts", default="teacher,step")
    p.add_argument("--judge", default=AUTO_TEACHER)
    p.add_argument("--base", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--chunks", type=int, default=300, help="chunks timed in the teacher part")
    p.add_argument("--top-k", type=int, default=20, help="the round trip's k (the default's)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--label", default="")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    meta = {"label": args.label, "run": str(args.run), "cpu": _cpu(), "bf16": cpu_supports_bf16()}
    print(f"{meta['cpu']}, native bf16: {meta['bf16']}")
    rows = []
    for part in args.parts.split(","):
        print(f"{part}:", flush=True)
        if part == "teacher":
            rows.append({**meta, **teacher(args.run, args.judge, args.chunks, args.top_k)})
        elif part == "step":
            rows.append({**meta, **step(args.run, args.base, args.batch, args.steps)})
        else:
            raise SystemExit(f"--parts: unknown part {part!r} (teacher, step)")
    print()
    print(f"{'lever':<22} {'baseline':>12} {'lever on':>12} {'speedup':>8}  effect")
    for r in rows:
        if r["lever"] == "teacher bf16":
            print(
                f"{r['lever']:<22} {r['float32_s']:>10.1f} s {r['bfloat16_s']:>10.1f} s "
                f"{r['speedup']:>7.2f}x  {r['decisions_changed']} of {r['questions']} round-trip "
                f"decisions changed (kept {r['kept_float32']} -> {r['kept_bfloat16']})"
            )
        else:
            print(
                f"{r['lever']:<22} {r['own_s_per_step']:>8.2f} s/st {r['zero_s_per_step']:>8.2f} "
                f"s/st {r['speedup']:>7.2f}x  batch {r['batch']}, "
                + ("bf16 autocast" if r["bf16_autocast"] else "float32")
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"\nappended to {RESULTS}")


if __name__ == "__main__":
    main()
