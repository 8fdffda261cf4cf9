"""Stored SmolLM2 replies for the R manuals, so a benchmark session need not regenerate them.

On the project's 2-core machines, writing the defaults' 4,186 questions for the R manuals takes
25 to 90 minutes, depending on whether the CPU computes in bf16. Every quality session used to
pay that again, and each paid-for generation came out a little different (bf16 logits depend on a
prompt's batch-mates), so no two sessions' rows shared a validation split. The replies of one
generation are stored in ``benchmarks/data/r-manuals-replies/``; seeding a run's response cache
with them makes ``embedtune generate`` answer those calls from the cache::

    embedtune prepare ../shared/data/r-manuals --run /tmp/q/tf
    python benchmarks/data/seed_responses.py /tmp/q/tf            # copies the stored replies in
    embedtune generate --run /tmp/q/tf --roundtrip-model all-mpnet-base-v2   # 0 SmolLM2 calls

    python benchmarks/data/seed_responses.py /tmp/q/tf --save     # store a run's replies here

``--store`` names another store: ``cvs-replies``, ``perl-replies`` and ``zsh-replies`` beside
this one hold those domains' replies (benchmarks/data/README.md).

A reply is keyed by a hash of its chunk's text, the prompt template, the backend, the model, the
sampling settings and the question's index. A call that differs in any of these (another prompt,
another chunk size, more questions per chunk) finds no stored reply and is generated as usual.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from embedtune.generate.cache import ResponseCache

STORE = Path(__file__).resolve().parent / "r-manuals-replies"
SPLITS = ("train", "val")


def seed(run: Path, store: Path = STORE) -> dict[str, int]:
    """Append the stored replies a run's cache lacks; returns how many per split."""
    added = {}
    for split in SPLITS:
        source = store / f"{split}.jsonl.gz"
        if not source.is_file():
            raise SystemExit(f"{source} not found: store replies first with --save")
        with ResponseCache(run / "generate/cache" / f"{split}.jsonl") as cache:
            n = 0
            with gzip.open(source, "rt", encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    if row["key"] not in cache:
                        cache.append(row)
                        n += 1
        added[split] = n
    return added


def save(run: Path, store: Path = STORE) -> dict[str, int]:
    """Write a run's cached replies (sorted by key, no timestamp in the gzip) into the store."""
    store.mkdir(parents=True, exist_ok=True)
    saved = {}
    for split in SPLITS:
        cache = ResponseCache(run / "generate/cache" / f"{split}.jsonl")
        rows = sorted(cache, key=lambda r: r["key"])
        if not rows:
            raise SystemExit(f"{cache.path} has no replies: run embedtune generate first")
        with open(store / f"{split}.jsonl.gz", "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                for row in rows:
                    gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        saved[split] = len(rows)
    return saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run directory made by embedtune prepare")
    ap.add_argument("--save", action="store_true", help="store the run's replies instead")
    ap.add_argument("--store", type=Path, default=STORE)
    args = ap.parse_args()
    if not (args.run / "chunks").is_dir():
        raise SystemExit(f"{args.run} has no chunks/: run embedtune prepare --run {args.run} first")
    if args.save:
        counts = save(args.run, args.store)
        print(f"stored {counts} replies in {args.store}")
    else:
        counts = seed(args.run, args.store)
        print(f"added {counts} stored replies to {args.run}/generate/cache")


if __name__ == "__main__":
    main()
