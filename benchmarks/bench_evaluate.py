"""Benchmark of `embedtune evaluate`: quality on r-faq, and what the embeddings cache saves.

For each model (all-MiniLM-L6-v2, and all-mpnet-base-v2 when its package is installed) on the
r-faq BEIR set (73 R FAQ questions, 95 passages):

1. cold: evaluate with an empty embeddings cache (load the model, encode everything, rank);
2. warm: evaluate again; every text comes from the cache and the model is not even loaded.

It prints the metrics (expected NDCG@10: MiniLM 0.846, mpnet 0.894, from the data set's README),
the cold and warm times and the speed-up, and with ``--check-st`` the largest difference from
sentence-transformers' InformationRetrievalEvaluator on the same model. Results go to
benchmarks/results/evaluate.json.

    python benchmarks/bench_evaluate.py                        # MiniLM and mpnet if installed
    python benchmarks/bench_evaluate.py --models minilm --check-st
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EXPECTED_NDCG10 = {"minilm": 0.846, "mpnet": 0.894}


def _resolve(alias: str) -> str | None:
    from embedtune.errors import InputError
    from embedtune.models import resolve_model

    try:
        path = resolve_model(alias)
    except InputError:
        return None
    return path if os.path.isdir(path) else None


def _check_st(path: str, ds) -> float:  # noqa: ANN001
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    from embedtune.config import EvaluateConfig
    from embedtune.evaluate import evaluate_models
    from embedtune.models import load_model

    model = load_model(path)
    ir = InformationRetrievalEvaluator(
        ds.queries, ds.corpus, {q: set(c) for q, c in ds.relevant_docs.items()}
    )
    theirs = {k.removeprefix("cosine_"): v for k, v in ir(model).items()}
    ours = evaluate_models([path], {"d": ds}, EvaluateConfig(), None).datasets["d"].base.metrics
    return max(abs(ours[k] - theirs[k]) for k in ours if k in theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data",
        nargs="?",
        default=str(ROOT.parent / "shared" / "data" / "r-faq"),
        help="BEIR folder (default: ../shared/data/r-faq)",
    )
    parser.add_argument("--models", default="minilm,mpnet", help="comma-separated aliases")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--check-st", action="store_true", help="compare with ST's evaluator")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "evaluate.json"))
    args = parser.parse_args()

    import torch

    from embedtune.config import EvaluateConfig
    from embedtune.dataset import load_dataset_path
    from embedtune.evaluate import evaluate_models

    ds = load_dataset_path(args.data)
    cfg = EvaluateConfig(bootstrap_samples=args.bootstrap, batch_size=args.batch_size)
    rows = []
    for alias in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = _resolve(alias)  # before switching caches: mpnet unpacks into the real one
        if path is None:
            print(f"skip {alias}: not installed")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["EMBEDTUNE_CACHE"] = tmp  # an empty embeddings cache: a true cold run
            out = Path(tmp) / "report"
            t0 = time.perf_counter()
            cold = evaluate_models([path], {"r-faq": ds}, cfg, out)
            t1 = time.perf_counter()
            warm = evaluate_models([path], {"r-faq": ds}, cfg, out)
            t2 = time.perf_counter()
        os.environ.pop("EMBEDTUNE_CACHE", None)
        c, w = cold.datasets["r-faq"].base, warm.datasets["r-faq"].base
        assert w.metrics == c.metrics, "cached embeddings changed the metrics"
        row = {
            "model": alias,
            "path": path,
            "queries": len(ds.queries),
            "passages": len(ds.corpus),
            "metrics": c.metrics,
            "expected_ndcg@10": EXPECTED_NDCG10.get(alias),
            "cold_seconds": round(t1 - t0, 3),
            "warm_seconds": round(t2 - t1, 3),
            "speedup": round((t1 - t0) / max(t2 - t1, 1e-9), 1),
            "cold_encoded": c.encoded,
            "warm_encoded": w.encoded,
        }
        if args.check_st:
            row["max_abs_diff_vs_st_ir_evaluator"] = _check_st(path, ds)
        rows.append(row)

    print(f"\nr-faq ({len(ds.queries)} queries, {len(ds.corpus)} passages), {platform.node()}")
    header = f"{'model':8} {'NDCG@10':>8} {'expect':>7} {'Hit@1':>6} {'Hit@5':>6} {'MRR@10':>7}"
    header += f" {'cold s':>7} {'warm s':>7} {'speedup':>8}"
    print(header)
    for r in rows:
        m = r["metrics"]
        exp = r["expected_ndcg@10"]
        print(
            f"{r['model']:8} {m['ndcg@10']:8.4f} {exp if exp else '-':>7} {m['accuracy@1']:6.3f} "
            f"{m['accuracy@5']:6.3f} {m['mrr@10']:7.4f} {r['cold_seconds']:7.2f} "
            f"{r['warm_seconds']:7.2f} {r['speedup']:7.1f}x"
        )
        if "max_abs_diff_vs_st_ir_evaluator" in r:
            print(
                f"  max |ours - InformationRetrievalEvaluator| = {r['max_abs_diff_vs_st_ir_evaluator']:.2e}"
            )
    result = {
        "benchmark": "evaluate",
        "data": str(args.data),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "config": cfg.model_dump(mode="json"),
        "models": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
