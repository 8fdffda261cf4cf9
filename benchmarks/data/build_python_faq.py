"""Build the python-faq retrieval eval set (BEIR format) from the Python FAQ that Debian ships.

The set checks that fine-tuning on one domain (the R manuals) does not make a model forget
general retrieval. Like ``r-faq`` it uses questions written by people: each query is a heading
of the Python FAQ (``/usr/share/doc/python3.X/html/faq/*.html`` in Debian's ``python3.X-doc``)
and its one relevant passage is that section's body. Non-question sections stay in the corpus as
distractors. Nothing from the package is committed; this script fetches and rebuilds it::

    python benchmarks/data/build_python_faq.py                      # -> .embedtune-data/python-faq
    python benchmarks/data/build_python_faq.py --baseline minilm --baseline mpnet
    python benchmarks/data/build_python_faq.py --deb ./python3.11-doc_3.11.2-6+deb12u9_all.deb
    python benchmarks/data/build_python_faq.py --score-only --out ../shared/data/r-faq \\
        --baseline minilm                                            # score any BEIR folder

The output folder holds ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``,
``build_stats.json``, ``README.md`` and, with ``--baseline``, ``baseline.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from embedtune.dataset import QADataset
from embedtune.errors import EmbedtuneError, InputError
from embedtune.ingest.loader import file_sha256
from embedtune.records import write_json_atomic

__all__ = [
    "Section",
    "parse_faq_html",
    "is_question",
    "build_dataset",
    "score_beir",
    "build",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / ".embedtune-data" / "python-faq"
DEFAULT_PACKAGE = "python3.11-doc"
MIN_WORDS = 15
MAX_WORDS = 350

# Elements whose boundaries separate words even when the HTML has no whitespace between them.
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "nav", "ol",
    "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}  # fmt: skip
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_SECTION_NUMBER = re.compile(r"^\d+(\.\d+)*\.?\s+")
_INTERROGATIVES = {
    "how", "what", "why", "when", "where", "which", "who", "whom", "whose", "is", "are", "can",
    "could", "do", "does", "did", "should", "will", "would", "may", "must", "has", "have",
    "was", "were", "shall",
}  # fmt: skip


@dataclass
class Section:
    """One FAQ section: its heading and the text up to the next heading (subsections excluded)."""

    page: str
    anchor: str
    level: int
    heading: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}/{self.anchor}"

    @property
    def n_words(self) -> int:
        return len(self.text.split())


# ---------------------------------------------------------------------------------- parsing
def _collapse(text: str) -> str:
    return " ".join(text.split())


def _is_section(tag: Tag) -> bool:
    # docutils >= 0.17 writes <section>; older Sphinx builds use <div class="section">.
    return tag.name == "section" or (tag.name == "div" and "section" in (tag.get("class") or []))


def _text(node: Any) -> str:
    if isinstance(node, Comment):
        return ""
    if isinstance(node, NavigableString):
        return str(node)
    return node.get_text("")


def parse_faq_html(html: str, page: str) -> list[Section]:
    """Every section of one Sphinx FAQ page, in document order, with its own body text.

    The heading loses its permalink pilcrow and any leading section number; the body is the
    section's text before its first subsection, with the page's local table of contents removed,
    code blocks kept as text, and whitespace collapsed. Empty bodies are kept (as ``""``) so the
    caller can count what it drops.
    """
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(["script", "style"]):
        tag.decompose()
    for tag in soup.select("a.headerlink"):
        tag.decompose()
    # The "Contents" box under each page title lists every question; it is navigation, not text.
    for tag in soup.find_all(["nav", "div"], class_="contents"):
        tag.decompose()
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    root = soup.find(attrs={"role": "main"}) or soup.find("div", class_="body") or soup

    sections: list[Section] = []
    for sec in root.find_all(_is_section):
        heading = next(
            (c for c in sec.children if isinstance(c, Tag) and c.name in _HEADING_TAGS), None
        )
        if heading is None:
            continue
        title = _SECTION_NUMBER.sub("", _collapse(heading.get_text("")).rstrip("¶").strip())
        body = " ".join(
            _text(c)
            for c in sec.children
            if c is not heading and not (isinstance(c, Tag) and _is_section(c))
        )
        sections.append(
            Section(
                page=page,
                anchor=str(sec.get("id") or f"s{len(sections) + 1}"),
                level=int(heading.name[1]),
                heading=title,
                text=_collapse(body),
            )
        )
    return sections


def is_question(heading: str, level: int) -> bool:
    """A heading is a query when it asks something: it has a '?' or opens with a question word.

    Page titles (level 1, e.g. "Programming FAQ") never are. The second rule catches FAQ entries
    whose author left the mark off ("How do you remove multiple items from a list").
    """
    if level <= 1 or not heading:
        return False
    first = heading.split()[0].lower().strip("“\"'(")
    return "?" in heading or first in _INTERROGATIVES


def build_dataset(
    sections: list[Section], *, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> tuple[QADataset, dict[str, Any]]:
    """Turn parsed sections into a QADataset (one relevant passage per question) and its stats.

    Sections with fewer than ``min_words`` body words are dropped (chapter headings whose text
    lives in their subsections); passages are cut to their first ``max_words`` words. A question
    heading asked on two pages becomes one query with both sections relevant.
    """
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    by_text: dict[str, str] = {}
    dropped: list[dict[str, Any]] = []
    distractors: list[str] = []
    truncated = 0
    lengths: list[int] = []
    for s in sections:
        words = s.text.split()
        if len(words) < min_words:
            dropped.append(
                {"id": s.id, "heading": s.heading, "level": s.level, "words": len(words)}
            )
            continue
        if len(words) > max_words:
            truncated += 1
            words = words[:max_words]
        corpus[s.id] = " ".join(words)
        lengths.append(len(words))
        if not is_question(s.heading, s.level):
            distractors.append(f"{s.id}: {s.heading}")
            continue
        key = s.heading.casefold()
        qid = by_text.get(key)
        if qid is None:
            qid = by_text[key] = f"q/{s.id}"
            queries[qid] = s.heading
        relevant.setdefault(qid, []).append(s.id)

    dataset = QADataset(queries=queries, corpus=corpus, relevant_docs=relevant)
    stats: dict[str, Any] = {
        "sections": len(sections),
        "passages": len(corpus),
        "queries": len(queries),
        "qrels": sum(len(v) for v in relevant.values()),
        "queries_with_several_relevant": sorted(q for q, v in relevant.items() if len(v) > 1),
        "distractor_passages": len(distractors),
        "distractors": distractors,
        "truncated_passages": truncated,
        "dropped_sections": dropped,
        "min_words": min_words,
        "max_words": max_words,
        "passage_words": _describe(lengths),
        "query_words": _describe([len(q.split()) for q in queries.values()]),
    }
    return dataset, stats


def _describe(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 1),
        "max": max(values),
    }


# ------------------------------------------------------------------------------ the package
def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InputError(
            f"{cmd[0]} not found: this needs Debian's apt-get and dpkg-deb; on another system "
            "download the .deb by hand and pass --deb PATH"
        ) from None
    if done.returncode != 0:
        raise InputError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def download_deb(package: str, version: str | None, into: Path) -> Path:
    """Fetch ``package`` (optionally ``=version``) with ``apt-get download`` into ``into``."""
    spec = f"{package}={version}" if version else package
    _run(["apt-get", "download", spec], cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise InputError(
            f"apt-get download {spec} wrote no .deb into {into}; run 'apt-get update' and check "
            f"'apt-cache policy {package}'"
        )
    return debs[0]


def _deb_fields(deb: Path) -> dict[str, str]:
    out = _run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Source"])
    fields: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if value:
            fields[key.strip().lower()] = value.strip()
    return fields


def _license(tree: Path, package: str, first_page: Path) -> dict[str, Any]:
    info: dict[str, Any] = {}
    copyright_file = tree / "usr" / "share" / "doc" / package / "copyright"
    if copyright_file.is_file():
        text = copyright_file.read_text(encoding="utf-8", errors="replace")
        info["copyright_file"] = f"/usr/share/doc/{package}/copyright"
        info["copyright_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        for pattern in (r"^Upstream Author:.*$", r"^PYTHON SOFTWARE FOUNDATION LICENSE.*$"):
            m = re.search(pattern, text, re.MULTILINE)
            if m:
                info.setdefault("copyright_lines", []).append(m.group(0).strip())
    footer = BeautifulSoup(first_page.read_text(encoding="utf-8"), "html.parser").find(
        "div", class_="footer"
    )
    if footer is not None:
        text = _collapse(footer.get_text(" "))
        # Keep the copyright and licence sentences, not the build date and Sphinx credit.
        keep = [
            s.strip() + "."
            for s in text.split(".")
            if re.search(r"[Cc]opyright|licensed|License", s)
        ]
        info["page_footer"] = " ".join(keep)
    return info


def _faq_dir(tree: Path) -> Path:
    found = sorted(tree.glob("usr/share/doc/python3*/html/faq"))
    found = [p for p in found if (p / "programming.html").is_file()]
    if not found:
        raise InputError(
            f"no usr/share/doc/python3*/html/faq/programming.html inside the package unpacked at "
            f"{tree}; pass a python3.X-doc package"
        )
    return found[0]


# -------------------------------------------------------------------------------- scoring
def score_beir(folder: Path, model_name: str) -> dict[str, Any]:
    """Zero-shot scores of ``model_name`` on a BEIR folder: cosine ranking of the full corpus."""
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )
    from sentence_transformers.util import cos_sim

    from embedtune.models import load_model, resolve_model

    ds = QADataset.from_beir(folder)
    ds.validate_references(str(folder))
    started = time.perf_counter()
    model = load_model(model_name, device="cpu")
    evaluator = InformationRetrievalEvaluator(
        queries=ds.queries,
        corpus=ds.corpus,
        relevant_docs={q: set(c) for q, c in ds.relevant_docs.items()},
        accuracy_at_k=[1, 5, 10],
        precision_recall_at_k=[10],
        mrr_at_k=[10],
        ndcg_at_k=[10],
        map_at_k=[100],
        score_functions={"cosine": cos_sim},
        main_score_function="cosine",
        write_csv=False,
        batch_size=32,
    )
    metrics = evaluator(model)
    return {
        "model": model_name,
        "resolved": resolve_model(model_name),
        "hit@1": metrics["cosine_accuracy@1"],
        "hit@5": metrics["cosine_accuracy@5"],
        "hit@10": metrics["cosine_accuracy@10"],
        "recall@10": metrics["cosine_recall@10"],
        "mrr@10": metrics["cosine_mrr@10"],
        "ndcg@10": metrics["cosine_ndcg@10"],
        "queries": len(ds.queries),
        "passages": len(ds.corpus),
        "seconds": round(time.perf_counter() - started, 1),
    }


def baseline_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | hit@1 | hit@5 | hit@10 | MRR@10 | NDCG@10 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['hit@1']:.3f} | {r['hit@5']:.3f} | {r['hit@10']:.3f} "
            f"| {r['mrr@10']:.3f} | {r['ndcg@10']:.3f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------- building
def build(
    out: Path,
    *,
    package: str = DEFAULT_PACKAGE,
    version: str | None = None,
    deb: Path | None = None,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> dict[str, Any]:
    """Download (or take) the .deb, parse its FAQ pages and write the BEIR folder at ``out``."""
    with tempfile.TemporaryDirectory(prefix="python-faq-") as tmp:
        tmp_path = Path(tmp)
        if deb is None:
            deb = download_deb(package, version, tmp_path)
        elif not deb.is_file():
            raise InputError(f"{deb} not found (--deb)")
        fields = _deb_fields(deb)
        deb_sha256 = file_sha256(deb)
        tree = tmp_path / "tree"
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
        faq = _faq_dir(tree)
        pages = [p for p in sorted(faq.glob("*.html")) if p.name != "index.html"]
        sections: list[Section] = []
        for page in pages:
            sections.extend(parse_faq_html(page.read_text(encoding="utf-8"), page.stem))
        dataset, stats = build_dataset(sections, min_words=min_words, max_words=max_words)
        license_info = _license(tree, fields.get("package", package), pages[0])

    dataset.validate_references(f"python-faq built from {deb.name}")
    out.mkdir(parents=True, exist_ok=True)
    dataset.to_beir(out, split="test")
    reloaded = QADataset.from_beir(out)
    reloaded.validate_references(str(out))
    if reloaded.queries != dataset.queries or reloaded.corpus != dataset.corpus:
        raise EmbedtuneError(f"{out}: the BEIR folder did not read back as written")

    per_page: dict[str, dict[str, int]] = {}
    for cid in dataset.corpus:
        per_page.setdefault(cid.split("/")[0], {"passages": 0, "queries": 0})["passages"] += 1
    for qid in dataset.queries:
        per_page[qid.split("/")[1]]["queries"] += 1
    stats = {
        "source": {
            "package": fields.get("package", package),
            "version": fields.get("version"),
            "source_package": fields.get("source"),
            "deb_file": deb.name,
            "deb_sha256": deb_sha256,
            "faq_dir": "/" + str(faq.relative_to(tree)),
            "pages": [p.name for p in pages],
            "license": license_info,
        },
        "built_by": "benchmarks/data/build_python_faq.py",
        "per_page": per_page,
        **stats,
    }
    write_json_atomic(out / "build_stats.json", stats)
    return stats


def write_readme(out: Path, stats: dict[str, Any], baselines: list[dict[str, Any]]) -> None:
    src = stats["source"]
    lic = src["license"]
    pw = stats["passage_words"]
    dropped = stats["dropped_sections"]
    n_titles = sum(1 for d in dropped if d["level"] == 1)
    short_q = [d for d in dropped if is_question(d["heading"], d["level"])]
    several = stats["queries_with_several_relevant"]
    pages = ", ".join(f"`{p}`" for p in src["pages"])
    table = (
        baseline_table(baselines)
        if baselines
        else "Not measured in this build; rerun with `--baseline minilm --baseline mpnet`."
    )
    dropped_q = "; ".join(f'"{d["heading"]}" ({d["words"]} words)' for d in short_q) or "none"
    text = f"""# python-faq — BEIR-format retrieval eval set from the Python FAQ

**Task:** given a question from the Python FAQ (written by the FAQ's authors), find the FAQ section
that answers it, out of all Python FAQ sections. It is the general-domain counterpart of `r-faq`:
a model fine-tuned on the R manuals should score about the same here as before.

## Source
- Document: the *Python Frequently Asked Questions* pages of the Python {src["version"]} documentation,
  `{src["faq_dir"]}/` ({pages}; `index.html` is only a list of pages).
- Debian package: **{src["package"]} {src["version"]}** (source package `{src["source_package"]}`),
  file `{src["deb_file"]}` (sha256 `{src["deb_sha256"]}`).

## License
From `{lic.get("copyright_file", "?")}`: {" / ".join(lic.get("copyright_lines", []))}
(the PSF License Agreement covers Python "and its associated documentation").
Each FAQ page's footer: "{lic.get("page_footer", "")}"
The pages themselves are not stored in the repository; `build_python_faq.py` rebuilds this folder.

## Files
- `corpus.jsonl` — `{{"_id": "<page>/<section anchor>", "title": "", "text": "<section body>"}}`
  (titles are left empty on purpose: each heading is the query itself)
- `queries.jsonl` — `{{"_id": "q/<page>/<section anchor>", "text": "<question heading>"}}`
- `qrels/test.tsv` — `query-id  corpus-id  score` (header line included), score 1
- `build_stats.json` — counts, per-page counts, dropped sections, distractor headings, source and license
- `baseline.json` — zero-shot baselines (when built with `--baseline`)

## How it was built
`python benchmarks/data/build_python_faq.py` (`apt-get download {src["package"]}`, `dpkg-deb -x`, BeautifulSoup):
1. Every `<section>` of each FAQ page is one section: its heading (the permalink `¶` and any
   section number removed) and its body = the text before its first subsection. The "Contents" box
   under each page title is removed (it lists every question).
2. Text is taken from paragraphs, lists, tables, notes and code blocks alike (code is kept as text);
   whitespace, line breaks included, is collapsed to single spaces.
3. Sections with fewer than {stats["min_words"]} words are dropped, then passages are cut to their first
   {stats["max_words"]} words ({stats["truncated_passages"]} were longer).
4. Queries = sections (below the page title) whose heading contains "?" or opens with a question word
   (how, what, why, is, can, do, ...); the heading text is the query, its section the one relevant passage.
   A question asked on two pages would become one query with both sections relevant: {len(several)} such.
5. Every other kept section (e.g. "{stats["distractors"][0].split(": ", 1)[1] if stats["distractors"] else "-"}") stays in the corpus as a distractor.

## Counts
- sections parsed: {stats["sections"]}; dropped: {len(dropped)} — {n_titles} page titles and
  {len(dropped) - n_titles - len(short_q)} chapter headings whose text lives in their subsections, and
  {len(short_q)} question(s) with a too-short answer: {dropped_q}
- corpus: **{stats["passages"]}** passages; words per passage: min {pw.get("min")}, median {pw.get("median")},
  max {pw.get("max")} (mean {pw.get("mean")})
- queries: **{stats["queries"]}**; qrels: {stats["qrels"]}
- {stats["distractor_passages"]} corpus passages are non-question sections and act as distractors.
- per page (passages / queries): {", ".join(f"{p} {c['passages']}/{c['queries']}" for p, c in stats["per_page"].items())}

## Caveats
- Titles are blank: a section's heading is exactly its query, so encoding it would turn the task into
  string matching.
- Bodies often refer to other sections and to library reference pages by name; kept as in the source.
- Code blocks are flattened into one line with the prose around them; interactive `>>>` prompts stay.
- FAQ entries phrased as statements ("My class defines __del__ but it is not called ...") are not
  queries under the rule in step 4; they stay as distractors (listed in `build_stats.json`).
- Queries are short (median {stats["query_words"].get("median")} words) and many name their topic
  directly ("What is a class?"), so zero-shot scores are high (higher than on r-faq); the room left
  is mostly in hit@1 and MRR. Compare a fine-tuned model with its base on this set, not across sets.
- Scores move in small steps: with {stats["queries"]} queries, one answer slipping from rank 1 to rank 2
  costs (1 - 1/log2(3)) / {stats["queries"]} = {(1 - 1 / math.log2(3)) / stats["queries"]:.4f} NDCG@10, so a
  0.01 drop is about {0.01 / ((1 - 1 / math.log2(3)) / stats["queries"]):.0f} such slips. Ranking is deterministic.

## Baselines (CPU, full-corpus cosine ranking, normalized embeddings, passage text only)
{table}
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the python-faq BEIR eval set from Debian's python3.X-doc package.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("::", 1)[1].split("The output", 1)[0] if __doc__ else None,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--package", default=DEFAULT_PACKAGE, help="Debian package to download")
    parser.add_argument("--version", help="exact package version (default: apt's candidate)")
    parser.add_argument("--deb", type=Path, help="use this .deb instead of downloading one")
    parser.add_argument("--min-words", type=int, default=MIN_WORDS)
    parser.add_argument("--max-words", type=int, default=MAX_WORDS)
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="MODEL",
        help="score MODEL zero-shot (repeatable; e.g. minilm, mpnet, a hub id or a local path)",
    )
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="do not build: score the existing BEIR folder --out with each --baseline and print",
    )
    args = parser.parse_args(argv)

    try:
        if args.score_only:
            if not args.baseline:
                parser.error("--score-only needs at least one --baseline MODEL")
            rows = [score_beir(args.out, m) for m in args.baseline]
            print(baseline_table(rows))
            return 0
        stats = build(
            args.out,
            package=args.package,
            version=args.version,
            deb=args.deb,
            min_words=args.min_words,
            max_words=args.max_words,
        )
        print(
            f"{args.out}: {stats['passages']} passages, {stats['queries']} queries "
            f"({stats['source']['package']} {stats['source']['version']})"
        )
        rows = []
        for model in args.baseline:
            rows.append(score_beir(args.out, model))
            print(f"{model}: NDCG@10 {rows[-1]['ndcg@10']:.3f}", flush=True)
        if rows:
            write_json_atomic(args.out / "baseline.json", rows)
        elif (args.out / "baseline.json").exists():
            # A rebuild may change the set; scores of an earlier build would mislead.
            (args.out / "baseline.json").unlink()
        write_readme(args.out, stats, rows)
        if rows:
            print(baseline_table(rows))
    except EmbedtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
