"""Which validation sets should decide a run (issue 20, goal 4): each judge's verdict against
people's questions, over every fine-tuned model folder that ``bench_quality.py`` rows still
point to.

A row holds the model's scores on the run's generated questions (``val``), the validation
documents' headings (``headings``) and people's questions of its domain (``cvs``, ``perl``,
``zsh``, ``vim``, ``rfaq``). This script adds the one set a row may lack, ``val-sentences`` (the
validation chunks' own sentences, ``embedtune.evaluate.sentences``): it scores each folder and
its base on the run's ``chunks/val.jsonl`` of that domain, appends the result to
benchmarks/results/judge.jsonl (a folder already there is not scored again), and prints, per
judge (a combination of the sets, as ``run_verdict`` combines them), how often its verdict is
of the same kind as people's (better / no clear difference / worse), how often the opposite,
how often it ships a model people's questions find worse (a wrong ship), and how much of
people's NDCG@10 change it keeps by shipping the models it calls better; and, for today's
judge, which models the run gives under each ``evaluate.use_fine_tuned``::

    python benchmarks/bench_judge.py --run cvs=/tmp/s34/cvs --run perl=/tmp/s34/perl \\
        --run zsh=/tmp/s34/zsh

``--table`` prints the table from the stored results without scoring anything; rows written
since session 38 carry val-sentences themselves and need no scoring. ``--label s39-`` tables only
the rows whose label starts so (the models trained after a judge's rule was written), and
scores only those. ``--max-chunks 0 --out FILE`` scores val-sentences drawn from every validation
chunk instead of the product's 150 (the same passages to embed, more queries) into FILE, whose
scores then judge in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from embedtune.config import EvaluateConfig
from embedtune.evaluate.evaluator import evaluate_models, run_verdict
from embedtune.evaluate.metrics import verdict
from embedtune.evaluate.sentences import validation_sentences
from embedtune.pipeline import USES_FINE_TUNED
from embedtune.records import read_chunks

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "benchmarks/results/quality.jsonl"
OUT = REPO / "benchmarks/results/judge.jsonl"
HUMAN = ("cvs", "perl", "zsh", "vim", "rfaq")
#: The domains rules are chosen on; vim (session 40) and the R FAQ are tabled on their own.
CHOOSING = ("cvs", "perl", "zsh")
#: A row's label says it trained on sentences (session 36's helper, session 37's product path)
SENTENCE_LABELS = ("-ict", "-sentences")


def _v(cell: dict | None) -> str:
    return verdict(*cell["ci"]) if cell else "missing"


JUDGES = {
    "val + headings (the judge until session 39)": ("val", "headings"),
    "val-sentences alone": ("sentences",),
    "val + headings + val-sentences": ("val", "headings", "sentences"),
    "headings + val-sentences (since session 39)": ("headings", "sentences"),
}
#: The judge the product uses (``VALIDATION_SETS``), in this script's names of the sets.
TODAY = JUDGES["headings + val-sentences (since session 39)"]


def _rows(labels: tuple[str, ...]) -> list[dict]:
    """The stored rows, only those whose label starts with one of ``labels`` when given."""
    rows = [json.loads(line) for line in ROWS.open()]
    return [r for r in rows if not labels or r.get("data", "").startswith(labels)]


def score(
    runs: dict[str, Path], out: Path, labels: tuple[str, ...] = (), max_chunks: int | None = 150
) -> None:
    """Score every stored folder not yet in ``out`` (of the rows whose label starts with one of
    ``labels``, when given) on its domain's val-sentences, drawn from at most ``max_chunks``
    validation chunks (None: every one)."""
    done = {json.loads(line)["model_path"] for line in out.open()} if out.is_file() else set()
    todo = {}
    for r in _rows(labels):
        path, domain = r.get("model_path"), next((h for h in HUMAN if h in r), None)
        if path and domain in runs and path not in done and os.path.isdir(path):
            todo[path] = (domain, r.get("base_model", "all-MiniLM-L6-v2"))
    sets = {}
    for d, run in runs.items():
        chunks = read_chunks(run / "chunks/val.jsonl")
        sets[d] = validation_sentences(chunks, max_chunks=max_chunks or len(chunks))
    for path, (domain, base) in sorted(todo.items(), key=lambda kv: kv[1]):
        start = time.perf_counter()
        data = evaluate_models([base, path], {"sentences": sets[domain]}, EvaluateConfig(), None)
        result = data.datasets["sentences"]
        c = result.comparisons[result.scores[1].label]["ndcg@10"]
        rec = {"model_path": path, "domain": domain, "base_model": base, "base": c.base,
               "model": c.model, "diff": c.diff, "ci": [c.ci_low, c.ci_high],
               "n": len(sets[domain].queries)}  # fmt: skip
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{domain:5} {path} {c.diff:+.4f} ({c.ci_low:+.4f}, {c.ci_high:+.4f}) "
              f"{verdict(c.ci_low, c.ci_high)} {time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip


def table(out: Path, labels: tuple[str, ...] = ()) -> None:
    """Print each judge's agreement with people's questions; ``labels``: only the rows whose
    label starts with one of them (all rows when empty)."""
    scored = {}
    if out.is_file():
        for line in out.open():
            rec = json.loads(line)
            scored[rec["model_path"]] = rec
    items = []
    for r in _rows(labels):
        domain = next((h for h in HUMAN if h in r), None)
        # rows since session 38 carry val-sentences themselves; older ones were scored here
        # (--max-chunks: the file's own scores win)
        rec = scored.get(r.get("model_path")) or r.get("sentences")
        if domain and rec:
            sets = {
                "val": _v(r.get("val")),
                "headings": _v(r.get("headings")),
                "sentences": _v(rec),
            }
            people = r[domain]
            items.append((r, domain, sets, _v(people), people["diff"]))

    def show(sel: list, title: str) -> None:
        if not sel:
            return
        kinds = {k: sum(i[3] == k for i in sel) for k in ("better", "no clear difference", "worse")}
        print(f"\n{title}: {len(sel)} models; people's verdicts {kinds}; people's change summed "
              f"over every model {sum(i[4] for i in sel):+.3f}")  # fmt: skip
        print(f"{'judge':46} | same kind | opposite | wrong ships | ships | people's change kept")
        for name, used in JUDGES.items():
            says = [
                (run_verdict(sets, used, fallback=())[0], people, diff)
                for _, _, sets, people, diff in sel
            ]
            same = sum(j == p for j, p, _ in says)
            opposite = sum({j, p} == {"better", "worse"} for j, p, _ in says)
            wrong = sum(j == "better" and p == "worse" for j, p, _ in says)
            ships = [d for j, _, d in says if j == "better"]
            print(f"{name:46} | {same:9} | {opposite:8} | {wrong:11} | {len(ships):5} | "
                  f"{sum(ships):+.3f}")  # fmt: skip
        # which model the run gives, by evaluate.use_fine_tuned, over today's judge
        print(f"{'the run gives the fine-tuned model':46} | ships | wrong ships | people's change "
              "kept | python-faq, mean over ships")  # fmt: skip
        said = [(run_verdict(i[2], TODAY, fallback=())[0], i) for i in sel]
        for rule, gives in USES_FINE_TUNED.items():
            shipped = [i for v, i in said if v in gives]
            wrong = sum(i[3] == "worse" for i in shipped)
            py = [i[0]["pyfaq"]["diff"] for i in shipped if "pyfaq" in i[0]]
            pyfaq = f"{sum(py) / len(py):+.4f}" if py else "-"
            print(f"{'  ' + rule:46} | {len(shipped):5} | {wrong:11} | "
                  f"{sum(i[4] for i in shipped):+20.3f} | {pyfaq}")  # fmt: skip

    sentences = [i for i in items if any(s in i[0]["data"] for s in SENTENCE_LABELS)]
    show([i for i in items if i[1] in CHOOSING], "cvs, perl and zsh (choosing)")
    show(
        [i for i in items if i[1] in CHOOSING and i not in sentences],
        "of those, trained on the writer's questions",
    )
    show(
        [i for i in items if i[1] in CHOOSING and i in sentences], "of those, trained on sentences"
    )
    for domain in HUMAN:
        if any(i[1] == domain for i in items):
            show([i for i in items if i[1] == domain], domain)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", default=[], metavar="DOMAIN=RUN",
                    help="the run folder whose chunks/val.jsonl judges DOMAIN's models")  # fmt: skip
    ap.add_argument("--table", action="store_true", help="print the table only")
    ap.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT})")
    ap.add_argument("--label", action="append", default=[], metavar="PREFIX",
                    help="score and table only the rows whose label starts with PREFIX "
                    "(repeatable)")  # fmt: skip
    ap.add_argument("--max-chunks", type=int, default=150, metavar="N",
                    help="draw val-sentences from at most N validation chunks (0: every one; "
                    "the product's default 150)")  # fmt: skip
    args = ap.parse_args(argv)
    if not args.table:
        runs = {}
        for item in args.run:
            domain, _, run = item.partition("=")
            if domain not in HUMAN or not Path(run, "chunks/val.jsonl").is_file():
                ap.error(f"--run {item}: give DOMAIN=RUN, DOMAIN one of {', '.join(HUMAN)}, "
                         "RUN a run folder with chunks/val.jsonl")  # fmt: skip
            runs[domain] = Path(run)
        if not runs:
            ap.error("give --run DOMAIN=RUN at least once, or --table")
        score(runs, args.out, tuple(args.label), args.max_chunks or None)
    if not args.out.is_file() and not args.label:
        sys.exit(f"{args.out} not found: score some folders first (--run DOMAIN=RUN)")
    table(args.out, tuple(args.label))


if __name__ == "__main__":
    main()
