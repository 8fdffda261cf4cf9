"""Quality levers: fine-tune a base model on a run's generated pairs with several recipes and
seeds, and score each against its base on the generated validation split, the validation
documents' headings, the R FAQ's human questions and an unrelated-domain set (python-faq).

Everything measured here is product code: training is ``embedtune.train.finetune`` (what
``embedtune train --train-data ... --val-data ...`` runs), scoring is
``embedtune.evaluate.evaluator.evaluate_models``, and every interval is the product's
``paired_bootstrap``. A recipe is a set of overrides of ``TrainConfig``'s fields::

    python benchmarks/bench_quality.py --run runs/demo --recipes default,mnrl --seeds 1,2,3
    python benchmarks/bench_quality.py --run runs/demo --recipes distill1 --set epochs=2 \
        --set learning_rate=5e-5 --set weight_decay=0

Recipes: ``default`` (the product's defaults: with MiniLM, mpnet teaches and the round trip's
rejects train on the KL term), ``mnrl`` (``teacher=None``: MultipleNegativesRankingLoss alone)
and ``distill<w>`` (``teacher=--teacher``, ``distill_weight=w``, no rejects). ``--set KEY=VALUE``
(repeatable) overrides any TrainConfig field for every recipe; ``--epochs``, ``--lr``,
``--batch-size`` and ``--hard-negatives`` are shortcuts for the common ones. The rejects are
RUN/data/train_rejects.json (``generate`` writes them), or ``--rejects-data FILE``.

Choose on the run's own sets: "headings" (the validation documents' headings against their
sections, RUN/chunks/val_headings.json, which prepare writes), "sentences" (the validation
chunks' own sentences, as ``embedtune evaluate`` builds val-sentences) and "val" (the writer's
validation questions); the R FAQ and python-faq are for reporting only. Where the validation
file itself is reported (``--train-data`` and ``--val-data``, e.g. llama-index's 10-K pairs),
``--hold-out 0.25`` chooses on the last quarter of the training file's chunks instead. Each
result is appended to benchmarks/results/quality.jsonl; ``--summary`` averages rows that differ
only in seed.

    python benchmarks/bench_quality.py --run runs/demo --zero-shot all-mpnet-base-v2

scores other models (zero-shot, or fine-tuned folders) on the same sets without training; with
``--label`` each folder is also recorded as a row (its recipe and seed read from the training
summary beside it), so ``--summary`` averages, e.g., three seeds of ``embedtune run``.

    python benchmarks/bench_quality.py --compare s12-cvs-gemma s11-cvs-2ep

sets two groups of rows side by side (their ``--label``, e.g. the same recipe on two writers'
questions): on each set both were scored on, except the generated validation split (each run
writes its own), the difference of the seed-averaged gains with its paired bootstrap interval.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedtune.config import EvaluateConfig, TrainConfig
from embedtune.dataset import MIN_HELD_OUT_QUERIES, QADataset, load_dataset_path
from embedtune.evaluate.evaluator import evaluate_models, run_verdict
from embedtune.evaluate.metrics import paired_bootstrap, verdict
from embedtune.evaluate.sentences import validation_sentences
from embedtune.records import read_chunks
from embedtune.train import finetune

REPO = Path(__file__).resolve().parents[1]
BASE = "all-MiniLM-L6-v2"
TRAINER = "embedtune.train.finetune"  # rows without this key came from the retired own loop


def recipe_overrides(recipe: str, teacher: str) -> dict[str, Any]:
    """The TrainConfig fields a named recipe sets."""
    if recipe == "default":
        return {}
    if recipe == "mnrl":
        return {"teacher": None}
    if recipe.startswith("distill"):
        weight = recipe[len("distill") :] or "1"
        try:
            return {"teacher": teacher, "distill_weight": float(weight), "rejects": False}
        except ValueError:
            pass
    raise SystemExit(f"unknown recipe {recipe!r}: use default, mnrl or distill<weight>")


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs; VALUE is read as JSON where it parses (2, 5e-5, null, true)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in TrainConfig.model_fields:
            raise SystemExit(f"--set {item!r}: give FIELD=VALUE with a TrainConfig field")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def train_config(recipe: str, seed: int, args) -> TrainConfig:
    """The recipe's overrides, then the shortcuts, then ``--set``, on the product's defaults."""
    shortcuts = {
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "hard_negatives": args.hard_negatives,
    }
    fields = {
        # a run's pairs passed generate's round trip: not checked again, as the train stage does;
        # pairs from --train-data did not, and are checked as `embedtune train --train-data` does
        **({"roundtrip_top_k": None} if args.run and not args.train_data else {}),
        **recipe_overrides(recipe, args.teacher),
        **{k: v for k, v in shortcuts.items() if v is not None},
        **parse_settings(args.set),
        "seed": seed,
    }
    return TrainConfig(**fields)


def train_model(
    train: QADataset,
    val: QADataset | None,
    rejects: QADataset | None,
    recipe: str,
    seed: int,
    args,
) -> tuple[Path, dict[str, Any]]:
    """Fine-tune ``args.base`` with the product's trainer; the saved folder and its summary."""
    out = args.work / f"{recipe}-s{seed}"
    t0 = time.time()
    summary = finetune(
        args.base,
        train,
        val,
        train_config(recipe, seed, args),
        out,
        rejects=rejects,
        echo=lambda line: print(line, file=sys.stderr),  # the trainer's lines, as the CLI's
    )
    timing = {"train_s": round(time.time() - t0, 1), "steps": summary.steps}
    trip = (
        {"roundtrip_share": summary.data.roundtrip_share,
         "roundtrip_doubted": summary.data.roundtrip_doubted}
        if summary.data.roundtrip_share is not None
        else {}
    )  # fmt: skip
    return out, {**timing, **trip, "bf16": summary.recipe.bf16, "cpu": cpu_name()}


def cpu_name() -> str | None:
    """The CPU's model name (rows from different machines differ in speed and, with bf16, in
    numbers); None where /proc/cpuinfo is missing."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    names = [line.partition(":")[2].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")]  # fmt: skip
    return names[0] if names else None


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
    "distill_weight",  # recorded since its default moved from 1.0 to 0.5 (session 22)
    "settings",
    "trainer",
)


def seed_mean_interval(per_query: list[list[float]], samples: int = 2000) -> tuple[float, float]:
    """95% interval of the seed-averaged per-query difference, by the product's paired
    bootstrap (the differences against zero: the base's scores are already subtracted)."""
    mean = np.mean(per_query, axis=0)
    c = paired_bootstrap({"d": np.zeros_like(mean)}, {"d": mean}, samples=samples)["d"]
    return c.ci_low, c.ci_high


# ``--set`` fields that a row also records as resolved (``lr``, ``epochs``): naming the value
# the product would have resolved to anyway is the same recipe.
_RECORDED = {"learning_rate": "lr", "epochs": "epochs"}


def group_key(row: dict, keys: tuple[str, ...] = GROUP_KEYS) -> tuple:
    """The row's recipe as ``keys``' values; a teacher's weight set with ``--set`` counts as
    recorded for rows from before the weight had a key of its own, and a ``--set`` of the
    learning rate or epochs counts only as the value the row records. (Not ``parse_settings``:
    some stored rows' settings hold a note in words, which it would refuse.)"""
    weight = row.get("distill_weight")
    settings = row.get("settings")
    if weight is None and "distill_weight=" in str(settings or ""):
        raw = str(settings).split("distill_weight=", 1)[1].split()[0]  # --set pairs
        weight = float(raw)
    if settings:
        kept = []
        for word in str(settings).split():
            field = _RECORDED.get(word.partition("=")[0])
            if field is None or row.get(field) is None:
                kept.append(word)
        settings = " ".join(kept) or None
    own = {"distill_weight": weight, "settings": settings}
    return tuple(own[k] if k in own else row.get(k) for k in keys)


def summarize(path: Path, samples: int = 2000) -> None:
    """Per recipe (rows differing only in seed): mean and range of the NDCG@10 difference over
    seeds, and a 95% paired bootstrap interval of the seed-averaged per-query difference."""
    groups: dict[tuple, list[dict]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        groups.setdefault(group_key(row), []).append(row)
    print(" | ".join(GROUP_KEYS) + " | seeds | set: mean Δ [min, max] (CI of the seed mean)")
    for key, rows in groups.items():
        cells = []
        for name in set_names(rows):
            have = [r[name] for r in rows if name in r]
            if not have:
                continue
            diffs = [h["diff"] for h in have]
            text = f"{name} {np.mean(diffs):+.4f} [{min(diffs):+.4f}, {max(diffs):+.4f}]"
            per_query = [h["per_query_diff"] for h in have if "per_query_diff" in h]
            if per_query and len({len(p) for p in per_query}) == 1:
                lo, hi = seed_mean_interval(per_query, samples)
                text += f" ({lo:+.4f}, {hi:+.4f})"
            cells.append(text)
        print(" | ".join(str(k) for k in key) + f" | {len(rows)} | " + "; ".join(cells))
    rows = [row for group in groups.values() for row in group]
    for human in set_names(rows):
        if human not in ("val", "pyfaq"):  # people's questions on the documents' domain
            print_agreement(rows, human)


def compare(
    path: Path, label_a: str, label_b: str, samples: int = 2000, *, same_val: bool = False
) -> None:
    """Group ``label_a`` against group ``label_b`` (rows' ``data``): per shared set, each seed
    mean gain and their difference, with the paired bootstrap interval of the per-query
    difference between the two seed means (the same questions, so a paired test). The
    generated ``val`` is left out unless ``same_val`` says both groups trained on one run
    folder or one ``--hold-out`` (each run otherwise writes questions of its own)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    groups = {}
    for label in (label_a, label_b):
        mine = [r for r in rows if r.get("data") == label]
        keys = {group_key(r, tuple(k for k in GROUP_KEYS if k != "data")) for r in mine}
        if len(keys) != 1:
            raise SystemExit(f"--compare {label}: {len(mine)} rows in {len(keys)} groups of "
                             f"{path}; give the label of one group (see --summary)")  # fmt: skip
        groups[label] = mine
    print(f"{label_a} ({len(groups[label_a])} seeds) against {label_b} "
          f"({len(groups[label_b])} seeds): NDCG@10 gain over the base")  # fmt: skip
    print(f"{'set':>10} | {label_a:>14} | {label_b:>14} | first minus second (95% CI)")
    for name in set_names(rows):
        per = {k: [r[name]["per_query_diff"] for r in g if "per_query_diff" in r.get(name, {})]
               for k, g in groups.items()}  # fmt: skip
        lengths = {len(p) for ps in per.values() for p in ps}
        if name == "val" and not same_val or not all(per.values()) or len(lengths) != 1:
            continue  # the generated split differs per run; or not scored on both
        a, b = (np.mean(per[k], axis=0) for k in (label_a, label_b))
        lo, hi = seed_mean_interval([a - b], samples)
        print(f"{name:>10} | {a.mean():>+14.4f} | {b.mean():>+14.4f} | "
              f"{a.mean() - b.mean():+.4f} ({lo:+.4f}, {hi:+.4f})")  # fmt: skip


def set_names(rows: list[dict]) -> list[str]:
    """The scored sets among the rows' keys (a dict with a diff, not a setting), in order."""
    keys = dict.fromkeys(k for r in rows for k in r)
    return [k for k in keys if any(isinstance(r.get(k), dict) and "diff" in r[k] for r in rows)]


#: A row's keys for the run's own sets, and their names in ``embedtune evaluate``.
OWN = {"val": "val", "headings": "val-headings", "sentences": "val-sentences"}


def run_says(row: dict, human: str) -> str:
    """The verdict ``embedtune run`` gives for ``row``, from the validation sets it judges on
    (``run_verdict``'s, less ``human`` when that is the set being checked)."""
    return run_verdict({OWN[n]: verdict(*row[n]["ci"]) for n in OWN if n in row and n != human})[0]


def print_agreement(rows: list[dict], human: str) -> None:
    """How often the run's verdict agrees with people's questions (issue 20): a table of the
    run's verdict against ``human``'s, over every trained row that has both."""
    pairs = [(run_says(r, human), verdict(*r[human]["ci"]), r[human]["diff"]) for r in rows
             if "val" in r and human in r and "ci" in r["val"]]  # fmt: skip
    if not pairs:
        return
    same = sum(run == people for run, people, _ in pairs)
    signed = sum(run == "better" and diff > 0 or run == "worse" and diff < 0
                 for run, _, diff in pairs)  # fmt: skip
    decided = sum(run in ("better", "worse") for run, _, _ in pairs)
    judged = " + ".join(n for n in ("headings", "sentences") if n != human) + " (else val)"
    print(f"\nthe run's verdict ({judged}) against {human}, {len(pairs)} trained rows: same "
          f"verdict {same}/{len(pairs)}; where the run decided, the sign agrees "
          f"{signed}/{decided}")  # fmt: skip
    kinds = ("better", "no clear difference", "worse", "mixed")
    kept = [diff for run, _, diff in pairs if run == "better"]
    print(f"people's mean NDCG@10 change where the run says use the fine-tuned model: "
          f"{_mean(kept)} ({len(kept)} rows); where it keeps the base: "
          f"{_mean([d for run, _, d in pairs if run != 'better'])} ({len(pairs) - len(kept)} rows); "
          f"people's change kept by following it: {sum(kept):+.4f} of {sum(d for *_, d in pairs):+.4f}"
          f" (every row fine-tuned), {sum(max(d, 0) for *_, d in pairs):+.4f} (knowing people's "
          "answers)")  # fmt: skip
    print(f"{'run says':>22} | " + " | ".join(f"{human} {k}" for k in kinds[:3]))
    for run in kinds:
        counts = [sum(r == run and p == k for r, p, _ in pairs) for k in kinds[:3]]
        if any(counts):
            print(f"{run:>22} | " + " | ".join(f"{c:>{len(human) + 1 + len(k)}}"
                                               for c, k in zip(counts, kinds[:3], strict=True)))  # fmt: skip


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):+.4f}" if values else "-"


def limit_pairs(ds: QADataset, n: int | None) -> QADataset:
    """The first ``n`` queries of ``ds`` (all when ``n`` is None), with the whole corpus."""
    if not n or len(ds.queries) <= n:
        return ds
    keep = list(ds.queries)[:n]
    return QADataset(
        queries={q: ds.queries[q] for q in keep},
        corpus=ds.corpus,
        relevant_docs={q: ds.relevant_docs[q] for q in keep},
        metadata=ds.metadata,
    )


def hold_out(ds: QADataset, share: float) -> tuple[QADataset, QADataset]:
    """``ds`` cut by chunk: the first chunks (in corpus order, so mostly the documents'
    order) with their questions to train, the last ``share`` of them with theirs to choose
    on; a question whose chunks fall on both sides is dropped."""
    cids = list(ds.corpus)
    held = set(cids[len(cids) - max(1, round(len(cids) * share)) :])

    def part(keep_held: bool) -> QADataset:
        qids = [q for q, docs in ds.relevant_docs.items() if all((d in held) == keep_held
                                                                 for d in docs)]  # fmt: skip
        return QADataset(
            queries={q: ds.queries[q] for q in qids},
            corpus={c: t for c, t in ds.corpus.items() if (c in held) == keep_held},
            relevant_docs={q: ds.relevant_docs[q] for q in qids},
            metadata=ds.metadata,
        )

    return part(False), part(True)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a run directory with data/train.json, val.json")
    ap.add_argument("--rfaq", default=str(REPO.parent / "shared/data/r-faq"))
    ap.add_argument("--pyfaq", default=str(REPO / ".embedtune-data/python-faq"))
    ap.add_argument("--recipes", default="default,mnrl", help="default, mnrl, distill<weight>")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", type=float, help="TrainConfig.epochs (default: the product's)")
    ap.add_argument("--lr", type=float, help="TrainConfig.learning_rate")
    ap.add_argument("--batch-size", type=int, help="TrainConfig.batch_size")
    ap.add_argument("--hard-negatives", type=int, help="TrainConfig.hard_negatives")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any TrainConfig field for every recipe, e.g. weight_decay=0 or max_seq_length=128",
    )
    ap.add_argument("--base", default=BASE, help="the model to fine-tune and compare against")
    ap.add_argument("--teacher", default="all-mpnet-base-v2", help="the distill recipes' teacher")
    ap.add_argument(
        "--train-data", type=Path, help="train on this llama-index JSON instead of RUN/data"
    )
    ap.add_argument(
        "--rejects-data",
        type=Path,
        help="the round trip's rejects (llama-index JSON) instead of RUN/data/train_rejects.json; "
        "with a teacher and rejects on, those not among the pairs train on the KL term alone",
    )
    ap.add_argument("--limit", type=int, help="train on the first N questions only (smoke runs)")
    ap.add_argument(
        "--hold-out",
        type=float,
        metavar="SHARE",
        help="choose without the validation set: the last SHARE of the training corpus's "
        "chunks, with their questions, become 'val' and the rest trains (e.g. 0.25 on a "
        "set whose validation split is reported, never chosen on)",
    )
    ap.add_argument("--label", default="", help="a name for the training data in the results")
    ap.add_argument("--work", type=Path, default=Path("/tmp/embedtune-quality"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/quality.jsonl")
    ap.add_argument("--summary", action="store_true", help="summarise --out and exit")
    ap.add_argument(
        "--compare",
        nargs=2,
        metavar=("LABEL_A", "LABEL_B"),
        help="two groups of --out (by --label) side by side on the sets both have, and exit",
    )
    ap.add_argument(
        "--same-val",
        action="store_true",
        help="--compare: both groups trained on one run folder or one --hold-out, so their "
        "generated validation questions are the same and are compared too",
    )
    ap.add_argument(
        "--zero-shot",
        nargs="*",
        metavar="MODEL",
        help="score these models (zero-shot, or already fine-tuned folders) against the base on "
        "the same sets instead of training",
    )
    ap.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another human-written set (BEIR folder or llama-index JSON) to score, under NAME, "
        "e.g. cvs=.embedtune-data/cvs/faq; repeat it",
    )
    ap.add_argument(
        "--merge-base",
        type=float,
        metavar="SHARE",
        help="with --zero-shot: score each fine-tuned folder after averaging SHARE of --base's "
        "weights back in (train.merge_base, WiSE-FT), written under --work; the same weights "
        "as training again with --set merge_base=SHARE and the folder's seed",
    )
    ap.add_argument(
        "--as-recipe",
        metavar="NAME",
        help="with --zero-shot and --label: record the folders under this recipe name (e.g. "
        "default, for RUN/model of an `embedtune run` with the defaults) so that --summary "
        "and --compare group them with the rows trained here; the seed stays the folder's",
    )
    ap.add_argument("--val-data", type=Path, help="validation set instead of RUN/data/val.json")
    ap.add_argument(
        "--headings",
        type=Path,
        help="headings set instead of RUN/chunks/val_headings.json (skipped when neither exists)",
    )
    return ap


_BUILD = {
    "rfaq": "it is the shared data folder's r-faq, beside this repository",
    "pyfaq": "build it with `python benchmarks/data/build_python_faq.py`",
}


def load_sets(args, ap: argparse.ArgumentParser) -> tuple[QADataset, dict[str, QADataset]]:
    """The training set and the evaluation sets by name (val, headings, rfaq, pyfaq)."""
    run = Path(args.run) if args.run else None
    if run is None and not (args.train_data and (args.val_data or args.hold_out)):
        ap.error("give --run (a run directory with data/), or --train-data with --val-data "
                 "or --hold-out")  # fmt: skip
    train = load_dataset_path(args.train_data or run / "data/train.json")
    train = limit_pairs(train, args.limit)
    if args.hold_out is not None:
        if not 0 < args.hold_out < 1:
            ap.error(f"--hold-out {args.hold_out}: give a share between 0 and 1, e.g. 0.25")
        train, held = hold_out(train, args.hold_out)
        sets = {"val": held}
    else:
        sets = {"val": load_dataset_path(args.val_data or run / "data/val.json")}
    headings = args.headings or (run / "chunks/val_headings.json" if run else None)
    if headings is not None and headings.is_file():
        sets["headings"] = QADataset.from_json(headings)
    chunks = run / "chunks/val.jsonl" if run else None
    if chunks is not None and chunks.is_file():  # as `embedtune evaluate` builds val-sentences
        drawn = validation_sentences(read_chunks(chunks))
        if len(drawn.queries) >= MIN_HELD_OUT_QUERIES:
            sets["sentences"] = drawn
    for name, path in (("rfaq", args.rfaq), ("pyfaq", args.pyfaq)):
        if not path:  # --rfaq '' / --pyfaq '': left out on purpose
            continue
        if Path(path).is_dir():
            sets[name] = QADataset.from_beir(path)
        elif path != ap.get_default(name):
            ap.error(f"--{name} {path}: no such folder (a BEIR folder: corpus, queries, qrels)")
        else:  # a default that is not there: say so, since a row without it is easy to misread
            print(f"{name}: no set at {path}, so these rows are scored without it "
                  f"({_BUILD[name]}; --{name} '' leaves it out without this line)",
                  file=sys.stderr)  # fmt: skip
    for item in args.eval:
        name, _, path = item.partition("=")
        if not (name and path) or name in sets:
            ap.error(f"--eval {item!r}: expected NAME=PATH with a new NAME (not {', '.join(sets)})")
        sets[name] = load_dataset_path(Path(path))
    return train, sets


def load_rejects(args, ap: argparse.ArgumentParser) -> QADataset | None:
    path = args.rejects_data or (Path(args.run) / "data/train_rejects.json" if args.run else None)
    if args.rejects_data and not args.rejects_data.is_file():
        ap.error(f"--rejects-data {args.rejects_data}: no such file (a llama-index JSON)")
    if path is None or not path.is_file() or not json.loads(path.read_text()).get("queries"):
        return None
    rejects = load_dataset_path(path)
    rejects.metadata["source"] = str(path)
    return rejects


def main(argv: list[str] | None = None) -> None:
    ap = parser()
    args = ap.parse_args(argv)
    if args.summary:
        summarize(args.out)
        return
    if args.compare:
        compare(args.out, *args.compare, same_val=args.same_val)
        return
    train, sets = load_sets(args, ap)
    ecfg = EvaluateConfig(corpus="split", bootstrap_samples=1000)
    if args.merge_base is not None and not args.zero_shot:
        ap.error("--merge-base averages already fine-tuned folders: give them with --zero-shot")
    if args.as_recipe and not (args.zero_shot and args.label):
        ap.error("--as-recipe names the rows of already fine-tuned folders: give them with "
                 "--zero-shot, and --label to record them")  # fmt: skip
    if args.zero_shot:
        if args.merge_base is not None:
            args.zero_shot = [
                merged(f, args.base, args.merge_base, args.work) for f in args.zero_shot
            ]
        result = evaluate_models([args.base, *args.zero_shot], sets, ecfg, None)
        for name, data in result.datasets.items():
            print(f"{name}: {len(data.query_ids)} queries, base {data.base.metrics['ndcg@10']:.4f}")
            for score in data.scores[1:]:
                c = data.comparisons[score.label]["ndcg@10"]
                print(f"  {score.source:<60} {c.model:.4f} {c.diff:+.4f} "
                      f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}] {c.verdict}")  # fmt: skip
        if args.label:  # record fine-tuned folders (e.g. RUN/model of `embedtune run`) as rows
            base = {"base_model": args.base} if args.base != BASE else {}
            # `embedtune train` trains with the same code as the rows trained here.
            named = {"recipe": args.as_recipe, "trainer": TRAINER} if args.as_recipe else {}
            for i, model_path in enumerate(args.zero_shot, 1):
                row = {**_folder_row(model_path, i, args.label), **base, **named}
                write_row(args.out, row, result, i)
        return
    rejects = load_rejects(args, ap)
    settings = " ".join(sorted(args.set)) or None
    data = args.label or str(args.train_data or args.run)
    print(f"{len(train.pairs())} training pairs; evaluation sets: {', '.join(sets)}")
    print(f"{'recipe':<10} {'seed':>4} " + " ".join(f"{n + ' Δ':>22}" for n in sets))
    for recipe in args.recipes.split(","):
        for seed in map(int, args.seeds.split(",")):
            path, timing = train_model(train, sets["val"], rejects, recipe, seed, args)
            result = evaluate_models([args.base, str(path)], sets, ecfg, None)
            row = {**_folder_row(str(path), seed, data), "recipe": recipe, **timing,
                   "settings": settings, "trainer": TRAINER,
                   **({"base_model": args.base} if args.base != BASE else {})}  # fmt: skip
            cells = write_row(args.out, row, result)
            print(f"{recipe:<10} {seed:>4} " + " ".join(f"{x:>22}" for x in cells))


def merged(folder: str, base: str, share: float, work: Path) -> str:
    """``folder``'s weights with ``share`` of ``base``'s averaged back in (the product's
    :func:`~embedtune.train.merge.merge_base`), saved under ``work`` beside a copy of the
    folder's training summary with ``merge_base`` recorded, so its row keeps seed and share."""
    from sentence_transformers import SentenceTransformer

    from embedtune.train.merge import merge_base

    source = Path(folder)
    out = work / f"{source.parent.name}-{source.name}-merge{share:g}" / source.name
    model = SentenceTransformer(str(source), device="cpu")
    merge_base(model, _base_weights(base), share)
    model.save(str(out))
    summary = source.with_name(source.name + ".train") / "metrics.json"
    if summary.is_file():
        metrics = json.loads(summary.read_text())
        metrics.setdefault("recipe", {})["merge_base"] = share
        target = out.with_name(out.name + ".train") / "metrics.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(metrics, indent=1))
    return str(out)


@functools.cache
def _base_weights(base: str) -> dict:
    """``base``'s weights on the CPU, loaded once for every folder averaged with it."""
    from sentence_transformers import SentenceTransformer

    from embedtune.models import resolve_model
    from embedtune.train.merge import base_snapshot

    return base_snapshot(SentenceTransformer(resolve_model(base), device="cpu"))


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
    """A results row for a fine-tuned folder, from its training summary where present
    (``embedtune train`` writes it next to the model: RUN/train/metrics.json, or
    <output>.train/metrics.json)."""
    folder = Path(model_path)
    metrics = {}
    for candidate in (folder.with_name(folder.name + ".train") / "metrics.json",
                      folder.parent / "train" / "metrics.json"):  # fmt: skip
        if candidate.is_file():
            metrics = json.loads(candidate.read_text())
            break
    recipe = metrics.get("recipe") or {}
    data = metrics.get("data") or {}
    teacher = (recipe.get("teacher") or {}).get("model")
    return {"recipe": "embedtune" + (f" + teacher {teacher}" if teacher else ""),
            "seed": recipe.get("seed", index), "alpha": 1 - (recipe.get("merge_base") or 0.0), "epochs": recipe.get("epochs"),
            "lr": recipe.get("learning_rate"), "batch_size": recipe.get("batch_size"),
            "pairs": data.get("train_pairs"), "hard_negatives": recipe.get("hard_negatives") or None,
            **({"kl_data": f"rejects ({data['reject_rows']})"} if data.get("reject_rows") else {}),
            **({"distill_weight": recipe.get("distill_weight")} if teacher else {}),
            "data": label, "model_path": str(folder),
            "train_s": metrics.get("train_seconds")}  # fmt: skip


if __name__ == "__main__":
    main()
