"""Fine-tuning: embedtune's recipe vs llama-index's SentenceTransformersFinetuneEngine.

Both train all-MiniLM-L6-v2 on the same (query, passage) pairs, on the same machine in the same
run, and are scored before and after on the held-out validation queries (searched against the
full corpus: training and validation passages) and on the R FAQ's 73 human questions.

llama-index is not installed (llama-index-finetuning pulls in llama-index-core and dozens of
packages); its engine is reimplemented line by line from
llama-index-finetuning/llama_index/finetuning/embeddings/sentence_transformer.py: one
InputExample per query with its first relevant passage, ``DataLoader(examples, batch_size=10)``
(no shuffle), ``MultipleNegativesRankingLoss``, ``model.fit(epochs=2,
warmup_steps=int(len(loader) * epochs * 0.1), evaluator=IR evaluator on the validation split,
evaluation_steps=50)``.

Data, in order of preference: ``--run RUN`` (RUN/data/train.json, val.json), ``--train-data`` /
``--val-data`` (llama-index JSON or BEIR), else ``--synthetic N``: passages cut from the R manuals
(R-FAQ.pdf left out, since the R FAQ is an evaluation set) with one random sentence of each
passage, removed from it, as its pseudo-query (inverse cloze task). The output says which.

    python benchmarks/bench_train.py                       # synthetic pairs, ~10 min CPU
    python benchmarks/bench_train.py --limit 200           # quick check
    python benchmarks/bench_train.py --run runs/first      # a real run's generated questions
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# the script's folder is on sys.path when it runs: one copy of the query limit for both benches
from bench_quality import limit_pairs  # noqa: E402

from embedtune.config import TrainConfig  # noqa: E402
from embedtune.dataset import QADataset, load_dataset_path  # noqa: E402
from embedtune.models import load_model, resolve_model  # noqa: E402

MODEL = "all-MiniLM-L6-v2"


# ------------------------------------------------------------------------------------- data
def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if len(s.split()) >= 6]


def synthetic_pairs(manuals: Path, n: int, seed: int = 0) -> tuple[QADataset, QADataset]:
    """ICT pairs from the R manuals, split by manual: ~80% of the pairs train, ~20% validate."""
    import pypdfium2 as pdfium

    rng = random.Random(seed)
    chunks: dict[str, list[str]] = {}
    for pdf in sorted(manuals.glob("*.pdf")):
        if pdf.name == "R-FAQ.pdf":
            continue
        doc = pdfium.PdfDocument(str(pdf))
        words: list[str] = []
        for page in doc:
            words += page.get_textpage().get_text_range().split()
        doc.close()
        chunks[pdf.stem] = [" ".join(words[i : i + 160]) for i in range(0, len(words), 160)]
    docs = sorted(chunks)
    val_docs = {"R-intro", "R-data"} & set(docs) or {docs[-1]}

    def build(names: list[str], limit: int, tag: str) -> QADataset:
        pool = [(d, i, c) for d in names for i, c in enumerate(chunks[d])]
        rng.shuffle(pool)
        queries, corpus, rel = {}, {}, {}
        for d, i, text in pool:
            cid = f"{d}-{i}"
            if len(corpus) >= 2 * limit:  # passages without a query are distractors
                break
            corpus[cid] = text
            if len(queries) >= limit:
                continue
            sents = _sentences(text)
            if len(sents) < 3:
                continue
            q = rng.choice(sents)
            corpus[cid] = text.replace(q, " ").strip()
            qid = f"{tag}{len(queries)}"
            queries[qid] = q
            rel[qid] = [cid]
        return QADataset(queries=queries, corpus=corpus, relevant_docs=rel)

    n_val = max(20, n // 5)
    train = build([d for d in docs if d not in val_docs], n, "t")
    val = build(sorted(val_docs), n_val, "v")
    return train, val


def load_data(args) -> tuple[QADataset, QADataset, str]:
    if args.run:
        run = Path(args.run)
        return (
            QADataset.from_json(run / "data" / "train.json"),
            QADataset.from_json(run / "data" / "val.json"),
            f"generated questions from {run}/data",
        )
    if args.train_data:
        return (
            load_dataset_path(args.train_data),
            load_dataset_path(args.val_data),
            f"{args.train_data} / {args.val_data}",
        )
    n = args.limit or args.synthetic
    train, val = synthetic_pairs(Path(args.data) / "r-manuals", n)
    return train, val, f"synthetic ICT pairs ({n}) from the R manuals, R-FAQ.pdf excluded"


# ------------------------------------------------------------------------------- scoring
def score(model, queries, corpus, relevant) -> dict[str, float]:
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    ev = InformationRetrievalEvaluator(
        queries=queries,
        corpus=corpus,
        relevant_docs={q: set(c) for q, c in relevant.items()},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[5],
        precision_recall_at_k=[10],
        map_at_k=[10],
        batch_size=64,
        write_csv=False,
        name="x",
        query_prompt_name="query" if model.prompts.get("query") else None,
    )
    r = ev(model)
    return {
        "ndcg@10": round(r["x_cosine_ndcg@10"], 4),
        "mrr@10": round(r["x_cosine_mrr@10"], 4),
        "hit@5": round(r["x_cosine_accuracy@5"], 4),
    }


def score_all(model, val: QADataset, full_corpus, faq: QADataset | None) -> dict:
    out = {"val": score(model, val.queries, full_corpus, val.relevant_docs)}
    if faq is not None:
        out["r_faq"] = score(model, faq.queries, faq.corpus, faq.relevant_docs)
    return out


# ------------------------------------------------------------------------------ training
def token_counts(model, pairs: list[tuple[str, str]]) -> int:
    tok = model.tokenizer
    limit = model.max_seq_length
    total = 0
    for q, p in pairs:
        total += min(len(tok(q)["input_ids"]), limit) + min(len(tok(p)["input_ids"]), limit)
    return total


def train_llamaindex(train: QADataset, val: QADataset, out: Path) -> float:
    """llama-index's engine, line for line (see the module docstring); returns wall seconds."""
    from sentence_transformers import InputExample, SentenceTransformer, losses
    from sentence_transformers.evaluation import InformationRetrievalEvaluator
    from torch.utils.data import DataLoader

    model = SentenceTransformer(resolve_model(MODEL), device="cpu")
    examples = []
    for query_id, query in train.queries.items():
        node_id = train.relevant_docs[query_id][0]
        examples.append(InputExample(texts=[query, train.corpus[node_id]]))
    loader = DataLoader(examples, batch_size=10)
    evaluator = InformationRetrievalEvaluator(val.queries, val.corpus, val.relevant_docs)
    loss = losses.MultipleNegativesRankingLoss(model)
    epochs = 2
    t0 = time.perf_counter()
    model.fit(
        train_objectives=[(loader, loss)],
        epochs=epochs,
        warmup_steps=int(len(loader) * epochs * 0.1),
        output_path=str(out),
        show_progress_bar=False,
        evaluator=evaluator,
        evaluation_steps=50,
    )
    return time.perf_counter() - t0


def train_embedtune(train, val, out: Path, cfg: TrainConfig) -> tuple[float, Any]:
    from embedtune.train import finetune

    t0 = time.perf_counter()
    summary = finetune(MODEL, train, val, cfg, out)
    return time.perf_counter() - t0, summary


def matmul_peak(threads: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(2048, 2048, dtype=dtype)
        b = torch.randn(2048, 2048, dtype=dtype)
        for _ in range(2):
            a @ b
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            a @ b
            n += 1
        out[name] = round(2 * 2048**3 * n / (time.perf_counter() - t0) / 1e9, 1)
    return out


# ---------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--run")
    ap.add_argument("--train-data")
    ap.add_argument("--val-data")
    ap.add_argument("--synthetic", type=int, default=1500, help="ICT pairs when no data given")
    ap.add_argument("--limit", type=int, help="use at most this many training pairs")
    ap.add_argument("--epochs", type=float, default=None, help="embedtune epochs (default: ours)")
    ap.add_argument("--bf16-check", action="store_true", help="also train embedtune in fp32")
    ap.add_argument("--skip-llamaindex", action="store_true")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train.json"))
    args = ap.parse_args()
    for name in ("data", "run", "train_data", "val_data", "out"):
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    # sentence-transformers' fit() (the llama-index engine) writes "checkpoints/" into the
    # working directory: keep that out of the repository.
    os.chdir(tempfile.mkdtemp(prefix="bench-train-"))

    import torch

    threads = torch.get_num_threads()
    train, val, source = load_data(args)
    train = limit_pairs(train, args.limit)
    val = limit_pairs(val, max(20, args.limit // 5) if args.limit else None)
    full_corpus = {**train.corpus, **val.corpus}
    faq_dir = Path(args.data) / "r-faq"
    faq = QADataset.from_beir(faq_dir) if faq_dir.is_dir() else None
    pairs = [(train.queries[q], train.corpus[train.relevant_docs[q][0]]) for q in train.queries]
    print(
        f"data: {source}: {len(train.queries)} training pairs, {len(val.queries)} validation "
        f"queries, {len(full_corpus)} passages; threads {threads}",
        flush=True,
    )

    peak = matmul_peak(threads)
    print(
        f"matmul 2048^2 on {threads} threads: fp32 {peak['fp32']} GFLOP/s, bf16 "
        f"{peak['bf16']} GFLOP/s",
        flush=True,
    )

    base = load_model(MODEL, device="cpu")
    # Embedding tables are lookups, not matmuls: FLOPs ~ 6 x non-embedding params x tokens.
    n_params = sum(p.numel() for n, p in base.named_parameters() if "embeddings" not in n)
    tokens = token_counts(base, pairs)
    base_scores = score_all(base, val, full_corpus, faq)
    results: dict = {
        "command": "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]),
        "data": source,
        "train_pairs": len(pairs),
        "val_queries": len(val.queries),
        "corpus": len(full_corpus),
        "threads": threads,
        "matmul_gflops": peak,
        "model_params_non_embedding": n_params,
        "tokens_per_pair": round(tokens / len(pairs), 1),
        "base": base_scores,
        "methods": {},
    }

    def record(
        name: str, path: Path, seconds: float, epochs: float, note: str, total: float | None = None
    ) -> None:
        """``seconds``: the training loop with its periodic evaluations and checkpoints (for
        llama-index: model.fit); ``total``: also loading and scoring the base model, saving."""
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu")
        scores = score_all(model, val, full_corpus, faq)
        seen = len(pairs) * epochs
        flops = 6 * n_params * tokens * epochs
        results["methods"][name] = {
            "note": note,
            "epochs": epochs,
            "wall_s": round(seconds, 1),
            "end_to_end_s": round(total or seconds, 1),
            "pairs_per_s": round(seen / seconds, 2),
            "train_gflops_per_s": round(flops / seconds / 1e9, 1),
            "share_of_fp32_peak": round(flops / seconds / 1e9 / peak["fp32"], 3),
            "after": scores,
        }
        print(
            f"{name}: {seconds:.1f} s, {seen / seconds:.2f} pairs/s, val NDCG@10 "
            f"{base_scores['val']['ndcg@10']:.4f} -> {scores['val']['ndcg@10']:.4f}",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_llamaindex:
            secs = train_llamaindex(train, val, tmp / "li")
            record(
                "llama-index",
                tmp / "li",
                secs,
                2,
                "SentenceTransformersFinetuneEngine reimplemented (not installed): batch 10, "
                "2 epochs, MNRL, model.fit",
            )
        cfg = TrainConfig(**({"epochs": args.epochs} if args.epochs else {}))
        total, summary = train_embedtune(train, val, tmp / "et", cfg)
        secs = summary.train_seconds
        record(
            "embedtune",
            tmp / "et",
            secs,
            cfg.epochs,
            f"embedtune defaults: batch {cfg.batch_size}, {cfg.epochs:g} epoch(s), lr "
            f"{cfg.learning_rate}, MNRL + no-duplicate batches, best checkpoint",
            total,
        )
        results["methods"]["embedtune"]["steps"] = summary.steps
        if args.bf16_check:
            cfg16 = cfg.model_copy(update={"bf16": "off"})
            total, s16 = train_embedtune(train, val, tmp / "et16", cfg16)
            record(
                "embedtune-fp32",
                tmp / "et16",
                s16.train_seconds,
                cfg.epochs,
                "as embedtune, bf16 autocast off",
                total,
            )

    print()
    head = f"{'method':<16}{'pairs/s':>9}{'wall s':>8}{'GFLOP/s':>9}"
    head += "".join(f"{m:>10}" for m in ("val ndcg", "val mrr", "val hit5", "faq ndcg"))
    print(head)

    def row(name: str, pps, wall, gf, s) -> None:
        faq_n = s.get("r_faq", {}).get("ndcg@10", float("nan"))
        print(
            f"{name:<16}{pps:>9}{wall:>8}{gf:>9}{s['val']['ndcg@10']:>10.4f}"
            f"{s['val']['mrr@10']:>10.4f}{s['val']['hit@5']:>10.4f}{faq_n:>10.4f}"
        )

    row("base", "-", "-", "-", base_scores)
    for name, m in results["methods"].items():
        row(name, m["pairs_per_s"], m["wall_s"], m["train_gflops_per_s"], m["after"])
    m = results["methods"]
    if "llama-index" in m:
        b = base_scores["val"]["ndcg@10"]
        speed = m["embedtune"]["pairs_per_s"] / m["llama-index"]["pairs_per_s"]
        gain_et = m["embedtune"]["after"]["val"]["ndcg@10"] - b
        gain_li = m["llama-index"]["after"]["val"]["ndcg@10"] - b
        results["verdict"] = {
            "speedup_pairs_per_s": round(speed, 2),
            "ndcg_gain_embedtune": round(gain_et, 4),
            "ndcg_gain_llamaindex": round(gain_li, 4),
            "meets_speed_aim_1_5x": speed >= 1.5,
            "larger_gain": gain_et > gain_li,
        }
        print(
            f"\nembedtune vs llama-index: {speed:.2f}x pairs/s (aim 1.5x); val NDCG@10 gain "
            f"{gain_et:+.4f} vs {gain_li:+.4f}"
        )
    print(
        f"peak matmul: fp32 {peak['fp32']} / bf16 {peak['bf16']} GFLOP/s; FLOPs per pair "
        f"counted as 6 x {n_params / 1e6:.1f}M params x {tokens / len(pairs):.0f} tokens"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
