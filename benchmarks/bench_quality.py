"""Quality levers: fine-tune MiniLM on a run's generated pairs with several recipes and seeds,
and score each against its base on the generated validation split, the R FAQ's human questions
and an unrelated-domain set (python-faq).

    python benchmarks/bench_quality.py --run runs/demo --recipes mnrl,distill1 --seeds 1,2,3 \
        --alpha 1.0,0.5

Recipes: ``mnrl`` (MultipleNegativesRankingLoss), ``distill<w>`` (MNRL plus KL towards the
teacher all-mpnet-base-v2's in-batch ranking, weight w) and ``kl`` (the KL term alone). ``--alpha`` mixes the fine-tuned weights
with the base (1.0 = fine-tuned only). Choose on "val" and "headings" (the validation
documents' headings against their sections, RUN/chunks/val_headings.json, which prepare writes);
the R FAQ and python-faq are for reporting only. Each result is appended to benchmarks/results/quality.jsonl.

    python benchmarks/bench_quality.py --run runs/demo --zero-shot all-mpnet-base-v2

scores other models (zero-shot, or fine-tuned folders) on the same sets without training; with
``--label`` each folder is also recorded as a row (its recipe and seed read from the training
summary beside it), so ``--summary`` averages, e.g., three seeds of ``embedtune run``.

    python benchmarks/bench_quality.py --run runs/demo --recipes distill1 --lr 5e-5 \
        --kl-data runs/demo-unfiltered/data/train.json

adds the questions the round trip dropped (those in the unfiltered set but not in the pairs) as
rows that learn only the teacher's in-batch ranking, in batches of their own.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from embedtune.config import EvaluateConfig
from embedtune.dataset import QADataset
from embedtune.embeddings import EmbeddingCache, model_fingerprint
from embedtune.evaluate.evaluator import evaluate_models
from embedtune.models import load_model

REPO = Path(__file__).resolve().parents[1]
BASE = "all-MiniLM-L6-v2"


def train_model(train, recipe: str, seed: int, args, teacher_cache: dict):
    """Fine-tune ``args.base``; ``teacher_cache`` keeps seed-independent work (teacher labels,
    mined negatives) across seeds."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from embedtune.recipe import cpu_supports_bf16
    from embedtune.train.distill import TeacherDistillLoss, teacher_labels

    model = load_model(args.base, device="cpu")
    pairs = train.pairs()
    rows = {"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}
    if args.hard_negatives:
        if recipe != "mnrl" and args.mine_with != "teacher":
            raise SystemExit("--hard-negatives with a teacher recipe needs --mine-with teacher")
        from embedtune.train.negatives import mine_hard_negatives

        if "negatives" not in teacher_cache:  # mined by an untrained model: the same every seed
            miner, cache = model, None
            if args.mine_with == "teacher":  # its embeddings of the chunks come from the cache
                miner, cache = teacher_and_cache(args, teacher_cache)
            teacher_cache["negatives"] = mine_hard_negatives(
                miner, train, args.hard_negatives, args.margin, cache=cache
            ).to_dict()
        rows = dict(teacher_cache["negatives"])
    if recipe.startswith(("distill", "kl")):
        if "labels" not in teacher_cache:
            teacher, cache = teacher_and_cache(args, teacher_cache)
            teacher_cache["labels"] = teacher_labels(teacher, rows, cache=cache)
        rows["label"] = teacher_cache["labels"]
        if recipe.startswith("kl"):  # the teacher's ranking only, no contrastive term
            loss = TeacherDistillLoss(model, distill_weight=1.0, contrastive_weight=0.0)
        else:
            loss = TeacherDistillLoss(model, distill_weight=float(recipe[len("distill") :] or 1))
    else:
        loss = MultipleNegativesRankingLoss(model)
    train_dataset, train_loss = Dataset.from_dict(rows), loss
    if args.kl_data:
        if not recipe.startswith("distill"):
            raise SystemExit("--kl-data needs a distill recipe (the teacher supplies its signal)")
        if "kl_rows" not in teacher_cache:
            teacher_cache["kl_rows"] = kl_only_rows(args, set(rows["anchor"]), teacher_cache)
        # Their own batches, with the KL term only: the teacher's ranking carries the signal,
        # and the question's own chunk (which the round trip doubted) is not asserted as positive.
        train_dataset = {"pairs": train_dataset, "kl": Dataset.from_dict(teacher_cache["kl_rows"])}
        kl_loss = TeacherDistillLoss(model, distill_weight=1.0, contrastive_weight=0.0)
        train_loss = {"pairs": loss, "kl": kl_loss}
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(args.work / "ckpt"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=0.1,
        seed=seed,
        data_seed=seed,
        bf16=cpu_supports_bf16(),  # emulated bf16 on a CPU without it is slower than fp32
        use_cpu=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=args.kl_sampler,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    t0 = time.time()
    SentenceTransformerTrainer(
        model=model, args=targs, train_dataset=train_dataset, loss=train_loss
    ).train()
    return model, time.time() - t0


def teacher_and_cache(args, teacher_cache: dict):
    """The teacher, loaded once per process, and its embedding cache."""
    if "teacher" not in teacher_cache:
        teacher_cache["teacher"] = (
            load_model(args.teacher, device="cpu"),
            EmbeddingCache(model_fingerprint(args.teacher)),
        )
    return teacher_cache["teacher"]


def kl_only_rows(args, known: set[str], teacher_cache: dict) -> dict[str, list]:
    """(question, its chunk, teacher label) for --kl-data's questions not already trained on:
    given a run's unfiltered questions, these are the ones the filters (the round trip) dropped."""
    from embedtune.train.distill import teacher_labels

    extra = QADataset.from_json(args.kl_data).pairs()
    rows = {"anchor": [], "positive": []}
    for query, passage in extra:
        if query not in known:
            known.add(query)  # one row per question, like the filtered set
            rows["anchor"].append(query)
            rows["positive"].append(passage)
    teacher, cache = teacher_and_cache(args, teacher_cache)
    rows["label"] = teacher_labels(teacher, rows, cache=cache)
    print(f"--kl-data: {len(rows['anchor'])} questions for the KL term only")
    return rows


def mix_with_base(model, alpha: float, base_name: str = BASE):
    base = load_model(base_name, device="cpu").state_dict()
    tuned = model.state_dict()
    mixed = copy.deepcopy(model)
    mixed.load_state_dict(
        {
            k: (1 - alpha) * base[k] + alpha * v if v.is_floating_point() else v
            for k, v in tuned.items()
        }
    )
    return mixed


GROUP_KEYS = (
    "data",
    "base_model",
    "recipe",
    "alpha",
    "epochs",
    "lr",
    "batch_size",
    "hard_negatives",
    "mine_with",
    "kl_data",
)


def summarize(path: Path, samples: int = 2000) -> None:
    """Per recipe (rows differing only in seed): mean and range of the NDCG@10 difference over
    seeds, and a 95% paired bootstrap interval of the seed-averaged per-query difference."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        groups.setdefault(tuple(row.get(k) for k in GROUP_KEYS), []).append(row)
    rng = np.random.default_rng(0)
    print(" | ".join(GROUP_KEYS) + " | seeds | set: mean Δ [min, max] (CI of the seed mean)")
    for key, rows in groups.items():
        cells = []
        for name in ("val", "headings", "rfaq", "pyfaq"):
            have = [r[name] for r in rows if name in r]
            if not have:
                continue
            diffs = [h["diff"] for h in have]
            text = f"{name} {np.mean(diffs):+.4f} [{min(diffs):+.4f}, {max(diffs):+.4f}]"
            per_query = [h["per_query_diff"] for h in have if "per_query_diff" in h]
            if per_query and len({len(p) for p in per_query}) == 1:
                mean = np.mean(per_query, axis=0)
                idx = rng.integers(0, len(mean), size=(samples, len(mean)))
                lo, hi = np.percentile(mean[idx].mean(axis=1), [2.5, 97.5])
                text += f" ({lo:+.4f}, {hi:+.4f})"
            cells.append(text)
        print(" | ".join(str(k) for k in key) + f" | {len(rows)} | " + "; ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a run directory with data/train.json, val.json")
    ap.add_argument("--rfaq", default=str(REPO.parent / "shared/data/r-faq"))
    ap.add_argument("--pyfaq", default=str(REPO / ".embedtune-data/python-faq"))
    ap.add_argument("--recipes", default="mnrl,distill1")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--alpha", default="1.0")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--base", default=BASE, help="the model to fine-tune and compare against")
    ap.add_argument("--teacher", default="all-mpnet-base-v2")
    ap.add_argument(
        "--hard-negatives",
        type=int,
        default=0,
        help="this many negatives per pair, mined by --mine-with (teacher recipes: teacher only)",
    )
    ap.add_argument("--margin", type=float, default=0.1, help="hard negatives' margin")
    ap.add_argument(
        "--mine-with",
        choices=("base", "teacher"),
        default="base",
        help="the model that mines hard negatives (teacher: also for distill recipes, whose "
        "KL term then sees the teacher's ranking of confusable chunks)",
    )
    ap.add_argument(
        "--train-data",
        type=Path,
        help="train on this llama-index JSON instead of RUN/data/train.json",
    )
    ap.add_argument(
        "--kl-data",
        type=Path,
        help="llama-index JSON of more questions (e.g. the run's unfiltered ones): those not in "
        "the training pairs are trained with the teacher's KL term only, in batches of their own",
    )
    ap.add_argument(
        "--kl-sampler",
        choices=("proportional", "round_robin"),
        default="proportional",
        help="how --kl-data's batches interleave with the pairs' (round_robin: equal numbers, "
        "stopping when the pairs run out)",
    )
    ap.add_argument("--label", default="", help="a name for the training data in the results")
    ap.add_argument("--work", type=Path, default=Path("/tmp/embedtune-quality"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/quality.jsonl")
    ap.add_argument("--summary", action="store_true", help="summarise --out and exit")
    ap.add_argument(
        "--zero-shot",
        nargs="*",
        metavar="MODEL",
        help="score these models (zero-shot, or already fine-tuned folders) against the base on "
        "the same sets instead of training",
    )
    ap.add_argument("--val-data", type=Path, help="validation set instead of RUN/data/val.json")
    ap.add_argument(
        "--headings",
        type=Path,
        help="headings set instead of RUN/chunks/val_headings.json (skipped when neither exists)",
    )
    args = ap.parse_args()
    if args.summary:
        summarize(args.out)
        return

    if not args.run:
        ap.error("--run is required (a run directory with data/train.json and data/val.json)")
    run = Path(args.run)
    if args.kl_data and not args.kl_data.is_file():
        ap.error(f"--kl-data {args.kl_data}: no such file (a llama-index JSON of questions)")
    train = QADataset.from_json(args.train_data or run / "data/train.json")
    sets = {"val": QADataset.from_json(args.val_data or run / "data/val.json")}
    headings = args.headings or run / "chunks/val_headings.json"
    if headings.is_file():
        sets["headings"] = QADataset.from_json(headings)
    for name, path in (("rfaq", args.rfaq), ("pyfaq", args.pyfaq)):
        if Path(path).is_dir():
            sets[name] = QADataset.from_beir(path)
    pairs = train.pairs()
    ecfg = EvaluateConfig(corpus="split", bootstrap_samples=1000)
    if args.zero_shot:
        result = evaluate_models([args.base, *args.zero_shot], sets, ecfg, None)
        for name, data in result.datasets.items():
            print(f"{name}: {len(data.query_ids)} queries, base {data.base.metrics['ndcg@10']:.4f}")
            for score in data.scores[1:]:
                c = data.comparisons[score.label]["ndcg@10"]
                print(f"  {score.source:<60} {c.model:.4f} {c.diff:+.4f} "
                      f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}] {c.verdict}")  # fmt: skip
        if args.label:  # record fine-tuned folders (e.g. RUN/model of `embedtune run`) as rows
            for i, model_path in enumerate(args.zero_shot, 1):
                write_row(args.out, _folder_row(model_path, i, args.label), result, i)
        return
    teacher_cache: dict = {}
    print(f"{len(pairs)} training pairs; evaluation sets: {', '.join(sets)}")
    print(f"{'recipe':<10} {'seed':>4} {'alpha':>5} " + " ".join(f"{n + ' Δ':>22}" for n in sets))
    for recipe in args.recipes.split(","):
        for seed in map(int, args.seeds.split(",")):
            model, seconds = train_model(train, recipe, seed, args, teacher_cache)
            for alpha in map(float, args.alpha.split(",")):
                candidate = mix_with_base(model, alpha, args.base) if alpha < 1 else model
                path = args.work / f"{recipe}-s{seed}-a{alpha}"
                candidate.save(str(path))
                result = evaluate_models([args.base, str(path)], sets, ecfg, None)
                row = {"recipe": recipe, "seed": seed, "alpha": alpha, "epochs": args.epochs,
                       "lr": args.lr, "batch_size": args.batch_size, "pairs": len(pairs),
                       "hard_negatives": args.hard_negatives or None,
                       **({"mine_with": args.mine_with} if args.hard_negatives else {}),
                       **({"kl_data": f"{args.kl_data}:{args.kl_sampler}"}
                          if args.kl_data else {}),
                       **({"base_model": args.base} if args.base != BASE else {}),
                       "data": args.label or str(args.train_data or run), "train_s": round(seconds, 1)}  # fmt: skip
                cells = write_row(args.out, row, result)
                print(f"{recipe:<10} {seed:>4} {alpha:>5} " + " ".join(f"{x:>22}" for x in cells))


def write_row(out: Path, row: dict, result, index: int = 1) -> list[str]:
    """Add each set's comparison of model ``index`` with the base to ``row``; append it to
    ``out``. Returns the printed cells."""
    cells = []
    for name, data in result.datasets.items():
        c = data.comparisons[data.scores[index].label]["ndcg@10"]
        per_query = data.scores[index].per_query["ndcg@10"] - data.scores[0].per_query["ndcg@10"]
        row[name] = {"base": round(c.base, 4), "model": round(c.model, 4),
                     "diff": round(c.diff, 4), "ci": [round(c.ci_low, 4), round(c.ci_high, 4)],
                     "per_query_diff": [round(float(x), 4) for x in per_query]}  # fmt: skip
        cells.append(f"{c.diff:+.4f} [{c.ci_low:+.3f},{c.ci_high:+.3f}]")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return cells


def _folder_row(model_path: str, index: int, label: str) -> dict:
    """A results row for a model trained elsewhere, from its training summary where present
    (``embedtune train`` writes it next to the model: RUN/train/metrics.json)."""
    folder = Path(model_path)
    metrics = {}
    for candidate in (folder.parent / "train" / "metrics.json",
                      folder.with_name(folder.name + ".train") / "metrics.json"):  # fmt: skip
        if candidate.is_file():
            metrics = json.loads(candidate.read_text())
            break
    recipe = metrics.get("recipe") or {}
    data = metrics.get("data") or {}
    teacher = (recipe.get("teacher") or {}).get("model")
    return {"recipe": "embedtune" + (f" + teacher {teacher}" if teacher else ""),
            "seed": recipe.get("seed", index), "alpha": 1.0, "epochs": recipe.get("epochs"),
            "lr": recipe.get("learning_rate"), "batch_size": recipe.get("batch_size"),
            "pairs": data.get("train_pairs"), "hard_negatives": recipe.get("hard_negatives") or None,
            **({"kl_data": f"rejects ({data['reject_rows']})"} if data.get("reject_rows") else {}),
            "data": label, "model_path": str(folder),
            "train_s": metrics.get("train_seconds")}  # fmt: skip


if __name__ == "__main__":
    main()
