"""`embedtune train` against llama-index's real ``SentenceTransformersFinetuneEngine``, on the
same (question, passage) pairs, in one session (issues 18 and 20).

llama-index lives in its own virtual environment (its pins clash with ours), made once::

    python3.11 -m venv /tmp/livenv
    /tmp/livenv/bin/pip install torch==2.13.0 llama-index-finetuning==0.4.2 'mistralai<2' \
        datasets accelerate

Then, with llama-index JSON files (``EmbeddingQAFinetuneDataset``: queries, corpus,
relevant_docs), e.g. llama-index's own tutorial data (run-llama/finetune-embedding,
``data/train_dataset.json`` and ``data/val_dataset.json``: GPT-written questions on two 10-K
filings; not stored here, it has no licence)::

    python benchmarks/bench_vs_llamaindex.py --train train_dataset.json --val val_dataset.json \
        --llamaindex-python /tmp/livenv/bin/python --out /tmp/vs-li

Each trainer runs as its own process on a cold embedtune cache and is timed whole, from start to
saved model (llama-index: batch 10, 2 epochs, its evaluator every 50 steps, as its tutorial;
embedtune: its defaults, or each ``--variant``'s flags). The engine always trains with the
trainer's default seed, 42; ``--llamaindex-seeds 1,2,3`` runs it once per seed (nothing else
changed) to see its spread beside ours. Then base, the fine-tuned
models (and ``--baseline`` models) are scored by ``embedtune evaluate`` on the validation
queries against the validation corpus, llama-index's own protocol, with 95% paired bootstrap
intervals. Results are appended to ``benchmarks/results/vs_llamaindex.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "vs_llamaindex.jsonl"

LLAMAINDEX_DRIVER = """
import json, sys, time
t0 = time.perf_counter()
if len(sys.argv) > 5:
    # The engine always trains with the trainer's default seed (42); another seed, and
    # nothing else, through the arguments its fit() builds.
    import functools
    from sentence_transformers.sentence_transformer import fit_mixin
    fit_mixin.SentenceTransformerTrainingArguments = functools.partial(
        fit_mixin.SentenceTransformerTrainingArguments, seed=int(sys.argv[5]))
from llama_index.finetuning import SentenceTransformersFinetuneEngine
from llama_index.finetuning.embeddings.common import EmbeddingQAFinetuneDataset
train = EmbeddingQAFinetuneDataset.from_json(sys.argv[1])
val = EmbeddingQAFinetuneDataset.from_json(sys.argv[2])
engine = SentenceTransformersFinetuneEngine(
    train, model_id=sys.argv[3], model_output_path=sys.argv[4], val_dataset=val,
    batch_size=10, epochs=2, show_progress_bar=False,
)
t1 = time.perf_counter()
engine.finetune()
print(json.dumps({"setup_s": t1 - t0, "finetune_s": time.perf_counter() - t1}))
"""


def _timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        # in the output folder: the engine writes its evaluator's checkpoints/ into the cwd
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd[:3])} ... failed (exit {proc.returncode}); see {log}")
    return seconds


def seed_list(text: str) -> list[int]:
    """``1,2,3`` as seeds (argparse names this function when a value is not)."""
    return [int(part) for part in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--train", required=True, help="llama-index JSON training pairs")
    ap.add_argument("--val", required=True, help="llama-index JSON validation set")
    ap.add_argument("--llamaindex-python", required=True, help="python of llama-index's venv")
    ap.add_argument("--out", required=True, help="a new folder for models, logs and caches")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=FLAGS",
        help="an `embedtune train` run with extra flags, e.g. 'pairs=--no-passage-batches' "
        "(repeatable; default: one run 'defaults' with no extra flags)",
    )
    ap.add_argument("--baseline", action="append", default=[])
    ap.add_argument(
        "--llamaindex-seeds",
        type=seed_list,
        default=None,
        metavar="1,2,3",
        help="run the engine once per seed (OUT/llamaindex-sN) instead of once with the seed it "
        "always uses (42, sentence-transformers' trainer default)",
    )
    ap.add_argument("--skip-llamaindex", action="store_true", help="reuse OUT/llamaindex*")
    args = ap.parse_args()

    from embedtune.models import cache_dir, resolve_model

    out = Path(args.out).resolve()
    args.train, args.val = str(Path(args.train).resolve()), str(Path(args.val).resolve())
    out.mkdir(parents=True, exist_ok=True)
    base = resolve_model(args.model)  # a folder both environments can read
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    times: dict[str, float] = {}

    li_models = {
        ("llamaindex" if seed is None else f"llamaindex-s{seed}"): seed
        for seed in (args.llamaindex_seeds or [None])
    }
    driver = out / "llamaindex_driver.py"
    driver.write_text(LLAMAINDEX_DRIVER, encoding="utf-8")
    for label, seed in ({} if args.skip_llamaindex else li_models).items():
        times[label] = _timed(
            [args.llamaindex_python, str(driver), args.train, args.val, base, str(out / label),
             *([] if seed is None else [str(seed)])],
            env,
            out / f"{label}.log",
        )  # fmt: skip
        print(f"llama-index engine ({label}): {times[label]:.0f} s", flush=True)

    variants = dict(v.split("=", 1) for v in args.variant) or {"defaults": ""}
    et_models = []
    for label, flags in variants.items():
        et_model = out / f"embedtune-{label}"
        # a cold embedding cache; the unpacked teacher is the user's (unpacked once per machine)
        cold = out / f"cache-{label}"
        cold.mkdir(exist_ok=True)
        if not (cold / "models").exists():
            (cold / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
        et_env = dict(env, EMBEDTUNE_CACHE=str(cold))
        times[label] = _timed(
            [
                sys.executable, "-m", "embedtune", "train", "--train-data", args.train,
                "--val-data", args.val, "--model", args.model, "--output", str(et_model),
                *shlex.split(flags),
            ],
            et_env,
            out / f"embedtune-{label}.log",
        )  # fmt: skip
        et_models.append(str(et_model))
        print(f"embedtune train ({label}): {times[label]:.0f} s", flush=True)

    report = out / "eval"
    models = [args.model, *(str(out / label) for label in li_models), *et_models, *args.baseline]
    subprocess.run(
        [sys.executable, "-m", "embedtune", "evaluate", *[a for m in models for a in ("--model", m)],
         "--data", args.val, "--output", str(report)],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    row = {
        "variants": variants,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "train": args.train,
        "val": args.val,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "evaluation": metrics,
    }
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print((report / "report.md").read_text(encoding="utf-8"))
    li_times = sorted(times[label] for label in li_models if label in times)
    if li_times:
        li_time = li_times[len(li_times) // 2]  # the median run
        for label in variants:
            ratio = li_time / times[label]
            print(f"wall time, llama-index (median of {len(li_times)}) / embedtune ({label}): "
                  f"{ratio:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
