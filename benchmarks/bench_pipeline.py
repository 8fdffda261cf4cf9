"""The whole default pipeline, timed stage by stage from a cold cache (issue 18).

Runs ``embedtune prepare``, ``generate``, ``train`` and ``evaluate`` as separate processes on one
run folder, exactly as a user would, and reads each stage's own report for its counts. It prints,
per stage, the wall time, the work done (writer calls, teacher encodings, training rows) and the
achieved GFLOP/s against the matrix-multiply peak measured in the same process::

    python benchmarks/bench_pipeline.py --docs ../shared/data/r-manuals --run /tmp/pipe/new \
        --cold --eval-data ../shared/data/r-faq --label new

``--cold`` points embedtune's cache (unpacked models, embeddings) at an empty folder beside the
run, so nothing computed earlier is reused. ``--src DIR`` runs another checkout's ``src`` (e.g. a
worktree of an older commit) with this venv, to compare two versions in one session.
``--replies DIR`` seeds the generate cache with stored writer replies
(``benchmarks/data/r-manuals-replies``) so that quality runs skip the writer; its time is then
not a cold figure, and the table says so.

FLOP counts are 2 x non-embedding parameters per token read (x3 for a training step, forward and
backward), from the token counts the stages report (the writer's: the positions it computed,
``prompt_tokens_read``); attention is left out, so the figures are a slight undercount. Results
are appended to ``benchmarks/results/pipeline.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "pipeline.jsonl"

#: Non-embedding parameters (the weights a token's forward pass multiplies through).
PARAMS = {
    "writer": 106.2e6,  # SmolLM2-135M: 30 layers x (attention 0.885M + MLP 2.654M)
    "teacher": 84.9e6,  # all-mpnet-base-v2: 12 layers x 7.08M
    "student": 10.6e6,  # all-MiniLM-L6-v2: 6 layers x 1.77M
}


def matmul_peak(dtype: str = "float32", n: int = 2048, reps: int = 8) -> float:
    """GFLOP/s of an n x n matrix product with torch's threads, best of ``reps``."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def gpu_matmul_peak(dtype: str, n: int = 8192, reps: int = 10) -> float:
    """GFLOP/s of an n x n matrix product on the GPU, mean of ``reps`` after warm-up."""
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(n, n, dtype=dt, device="cuda")
    b = torch.randn(n, n, dtype=dt, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def cpu_flags() -> dict[str, bool]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    flags = set(
        next(
            (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
        )
    )
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}


def _stage(args: argparse.Namespace, env: dict[str, str], *cmd: str) -> float:
    """Run one embedtune command as its own process; return its wall seconds."""
    log = Path(args.run) / f"{cmd[0]}.log"
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "embedtune", *cmd], env=env, stdout=out, stderr=out
        )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"embedtune {cmd[0]} failed (exit {proc.returncode}); see {log}")
    print(f"  {cmd[0]:<9} {seconds:8.1f} s", flush=True)
    return seconds


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _training_tokens(run: Path, epochs: float, rejects: bool) -> int:
    """Tokens the student reads per training pass: every row's query and passage, truncated to
    the student's window, times the epochs."""
    from embedtune.dataset import load_dataset_path
    from embedtune.models import load_model

    model = load_model("all-MiniLM-L6-v2", device="cpu")
    tok, limit = model.tokenizer, model.max_seq_length

    def count(texts: list[str]) -> int:
        return sum(min(limit, len(ids)) for ids in tok(texts)["input_ids"])

    files = [run / "data" / "train.json"] + (
        [run / "data" / "train_rejects.json"] if rejects else []
    )
    total = 0
    for path in files:
        if not path.is_file():
            continue
        ds = load_dataset_path(path)
        pairs = ds.pairs()
        total += count([q for q, _ in pairs]) + count([p for _, p in pairs])
    return int(total * epochs)


def _commit(checkout: Path) -> str:
    """The checkout's short commit, or $EMBEDTUNE_BENCH_COMMIT where it has no git (a copy of
    the working tree on a GPU machine)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        out = ""
    return out or os.environ.get("EMBEDTUNE_BENCH_COMMIT", "")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--docs", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--config", help="YAML config for the run (default: embedtune's defaults)")
    ap.add_argument("--label", default="run")
    ap.add_argument("--cold", action="store_true", help="an empty embedtune cache for this run")
    ap.add_argument("--src", help="run this checkout's src/ instead of the installed embedtune")
    ap.add_argument("--replies", help="seed the writer's cache from stored replies (not cold)")
    ap.add_argument("--eval-data", action="append", default=[])
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ENV=VALUE",
        help="extra EMBEDTUNE_* settings, e.g. EMBEDTUNE_TRAIN__SEED=1",
    )
    args = ap.parse_args()

    run = Path(args.run)
    if run.exists() and any(run.iterdir()):
        raise SystemExit(f"{run} exists and is not empty; give a new --run folder")
    run.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if args.cold:
        env["EMBEDTUNE_CACHE"] = str(run.with_name(run.name + ".cache"))
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    for item in args.set:
        key, _, value = item.partition("=")
        env[key] = value

    import torch

    from embedtune.models import default_device
    from embedtune.recipe import cpu_supports_bf16

    flags = cpu_flags()
    gpu = None
    if default_device(env.get("EMBEDTUNE_DEVICE")).startswith("cuda"):
        # every stage runs on the GPU: its peak is the one to compare against
        gpu = torch.cuda.get_device_name()
        peak = {dtype: round(gpu_matmul_peak(dtype), 1) for dtype in ("float32", "bfloat16")}
    else:
        peak = {"float32": round(matmul_peak("float32"), 1)}
        if cpu_supports_bf16():  # the product's own check: the writer and training run in bf16
            peak["bfloat16"] = round(matmul_peak("bfloat16"), 1)
    print(
        f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"flags {', '.join(f for f, on in flags.items() if on)}"
        + (f"; GPU {gpu}" if gpu else "")
        + "; matmul peak "
        + ", ".join(f"{dtype} {gf} GFLOP/s" for dtype, gf in peak.items()),
        flush=True,
    )

    config = ["--config", args.config] if args.config else []
    times: dict[str, float] = {}
    times["prepare"] = _stage(args, env, "prepare", args.docs, "--run", str(run), *config)
    if args.replies:
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "data" / "seed_responses.py"), str(run)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    times["generate"] = _stage(args, env, "generate", "--run", str(run))
    times["train"] = _stage(args, env, "train", "--run", str(run))
    eval_args = [a for d in args.eval_data for a in ("--data", d)]
    times["evaluate"] = _stage(args, env, "evaluate", "--run", str(run), *eval_args)
    total = sum(times.values())

    gen = _read(run / "generate" / "report.json")
    train = _read(run / "train" / "metrics.json")
    result = _read(run / "eval" / "manifest.json").get("summary") or {}
    usage = gen.get("usage") or {}
    new_calls = sum(s.get("new_calls", 0) for s in gen.get("splits", {}).values())
    timings = gen.get("timings") or {}
    writer_s = timings.get("generate_s") or 0.0
    # The positions the writer computed (shared beginnings once, padding included) where the
    # local writer reports them; each prompt counted whole overstated it 2.5x (session 18).
    read = usage.get("prompt_tokens_read", usage.get("prompt_tokens", 0))
    writer_tokens = read + usage.get("completion_tokens", 0)
    recipe = train.get("recipe") or {}
    data = train.get("data") or {}
    rows = data.get("train_pairs", 0) + data.get("reject_rows", 0)
    epochs = float(recipe.get("epochs") or 1)
    train_s = train.get("train_seconds") or 0.0
    tokens = _training_tokens(run, epochs, bool(data.get("reject_rows")))
    teacher_s = (recipe.get("teacher") or {}).get("seconds")

    def gflops(params: float, n_tokens: float, seconds: float, passes: int = 1) -> float | None:
        return round(2 * passes * params * n_tokens / seconds / 1e9, 1) if seconds else None

    row = {
        "label": args.label,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": _commit(Path(args.src or REPO)),
        "cpu_flags": flags,
        "gpu": gpu,
        "threads": torch.get_num_threads(),
        "peak_gflops": peak,
        "cold": args.cold,
        "stored_replies": bool(args.replies),
        "seconds": {k: round(v, 1) for k, v in times.items()} | {"total": round(total, 1)},
        "writer": {
            "new_calls": new_calls,
            "seconds": writer_s,
            "calls_per_s": round(new_calls / writer_s, 3) if writer_s and new_calls else None,
            "gflops": gflops(PARAMS["writer"], writer_tokens, writer_s) if new_calls else None,
            "roundtrip_s": timings.get("roundtrip_s"),
            "kept": {s: v.get("kept") for s, v in gen.get("splits", {}).items()},
        },
        "train": {
            "pairs": data.get("train_pairs"),
            "reject_rows": data.get("reject_rows"),
            "epochs": epochs,
            "seconds": train_s,
            "rows_per_s": round(rows * epochs / train_s, 3) if train_s else None,
            "tokens": tokens,
            "gflops": gflops(PARAMS["student"], tokens, train_s, passes=3),
            "teacher_label_s": teacher_s,
        },
        "evaluation": {
            name: {
                k: ds.get(k) for k in ("base", "fine_tuned", "diff", "ci_low", "ci_high", "verdict")
            }
            for name, ds in (result.get("datasets") or {}).items()
        },
        # the stages run one by one, so no RUN/result.json: the verdict `embedtune run` would
        # write is evaluate's, over the run's own validation sets
        "verdict": result.get("verdict"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")

    w, t = row["writer"], row["train"]
    peaks = " / ".join(f"{gf} {dtype}" for dtype, gf in peak.items())
    print(f"\n| stage | seconds | work | rate | GFLOP/s (peak {peaks}) |")
    print("|---|---:|---|---|---:|")
    print(f"| prepare | {times['prepare']:.0f} | | | |")
    print(
        f"| generate | {times['generate']:.0f} | {new_calls} writer calls"
        f"{' (stored replies)' if args.replies else ''}; round trip {w['roundtrip_s']} s | "
        f"{w['calls_per_s'] or '-'} calls/s | {w['gflops'] or '-'} |"
    )
    print(
        f"| train | {times['train']:.0f} | {t['pairs']} pairs + {t['reject_rows']} rejects x "
        f"{epochs:g} epochs; teacher labels {teacher_s} s | {t['rows_per_s']} rows/s | {t['gflops']} |"
    )
    print(f"| evaluate | {times['evaluate']:.0f} | | | |")
    print(f"| **total** | **{total:.0f}** ({total / 60:.1f} min) | | | |")
    for name, ev in row["evaluation"].items():
        print(
            f"  {name}: base {ev['base']} -> {ev['fine_tuned']} ({ev['diff']}, "
            f"[{ev['ci_low']}, {ev['ci_high']}], {ev['verdict']})"
        )
    print(f"run verdict: {row['verdict']}; appended to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
