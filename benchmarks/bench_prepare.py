"""Benchmark of `embedtune prepare` on real PDFs, and the measurement behind its PDF extractor.

What it measures, in one run on one machine:

1. Extractor comparison on every PDF in DATA_DIR: pypdfium2 (what embedtune uses), pypdf and
   pdfplumber (if installed): pages/s, and two glued-word rates per 1,000 words, since some
   extractors lose the spaces between words ("Theofficialdocumentgiving..."):
   - ``long``: words of more than 25 letters, URLs removed (a few are real identifiers, such as
     "UnsupportedClassVersionError", and count the same for every extractor);
   - ``glued``: words of 8+ letters that are not in a 20k-word English vocabulary (the
     whole-word entries of all-MiniLM-L6-v2's vocab.txt) but split into two or more words of
     it ("theofficial" -> "the" + "official"). Real compounds the vocabulary lacks
     ("workspace", "Bioconductor") set a floor that is the same for every extractor: compare
     the rates, not their absolute size.
2. The pypdf floor: the time pypdf alone takes to extract the same text.
3. The prepare stage (load, split, chunk with all-MiniLM-L6-v2 at the default settings, drop
   duplicates, write files) cold (first call: includes importing transformers for the
   tokenizer) and warm, extraction alone (embedtune's loader: PDFium plus normalisation), and a
   re-run with nothing changed. Aim: prepare within 1.3x of the pypdf floor.

Writes benchmarks/results/prepare.json.

    python benchmarks/bench_prepare.py                    # ../shared/data/r-manuals
    python benchmarks/bench_prepare.py DIR --quick        # pdfplumber on 20 pages per file
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "r-manuals"
_URL = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+")
_WORD = re.compile(r"[A-Za-z]+")


def _pypdfium2(path: Path, limit: int | None) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    out = []
    for i in range(min(len(doc), limit or len(doc))):
        page = doc[i]
        textpage = page.get_textpage()
        out.append(textpage.get_text_range())
        textpage.close()
        page.close()
    doc.close()
    return out


def _pypdf(path: Path, limit: int | None) -> list[str]:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    pages = reader.pages[: limit or len(reader.pages)]
    return [p.extract_text() or "" for p in pages]


def _pdfplumber(path: Path, limit: int | None) -> list[str]:
    import pdfplumber

    with pdfplumber.open(str(path)) as pdf:
        return [p.extract_text() or "" for p in pdf.pages[: limit or len(pdf.pages)]]


def _vocab() -> set[str]:
    from embedtune.models import resolve_model

    path = Path(resolve_model("all-MiniLM-L6-v2")) / "vocab.txt"
    if not path.is_file():
        return set()
    words = path.read_text(encoding="utf-8").split()
    return {w for w in words if w.isalpha() and w.islower() and len(w) >= 2}


# Short words that glue onto their neighbours ("aswellas"); other pieces need 3+ letters, so
# that "workspace" is not read as "w" + "or" + "k"...
_SHORT = {"a", "i", "as", "is", "of", "to", "in", "on", "at", "by", "an", "or", "be", "it", "we",
          "if", "no", "so", "do", "up", "he", "me", "my"}  # fmt: skip


def _splits_into_words(word: str, vocab: set[str]) -> bool:
    """True if ``word`` is two or more vocabulary words glued together."""
    n = len(word)
    best = [0] + [-1] * n  # best[i]: most pieces covering word[:i] (-1: impossible)
    for i in range(1, n + 1):
        for j in range(0, i):
            piece = word[j:i]
            ok = piece in _SHORT or (len(piece) >= 3 and piece in vocab)
            if best[j] >= 0 and ok:
                best[i] = max(best[i], best[j] + 1)
    return best[n] >= 2


def glued_word_rates(pages: list[str], vocab: set[str]) -> dict[str, float]:
    text = _URL.sub(" ", "\n".join(pages).replace("\ufffe", "").replace("\x02", ""))
    words = _WORD.findall(text)
    long = [w for w in words if len(w) > 25]
    glued = []
    if vocab:
        for w in words:
            lw = w.lower()
            if len(lw) >= 8 and lw not in vocab and _splits_into_words(lw, vocab):
                glued.append(w)
    per_k = 1000 / max(1, len(words))
    return {
        "words": len(words),
        "long_per_1k": round(len(long) * per_k, 3),
        "glued_per_1k": round(len(glued) * per_k, 3),
        "long_examples": sorted(set(long), key=long.index)[:3],
        "glued_examples": sorted(set(glued), key=glued.index)[:5],
    }


def compare_extractors(pdfs: list[Path], quick: bool) -> list[dict]:
    vocab = _vocab()
    extractors = [("pypdfium2", _pypdfium2, None), ("pypdf", _pypdf, None)]
    try:
        import pdfplumber  # noqa: F401

        extractors.append(("pdfplumber", _pdfplumber, 20 if quick else None))
    except ImportError:
        print("pdfplumber not installed: left out of the comparison", file=sys.stderr)
    rows = []
    for name, fn, limit in extractors:
        t = time.perf_counter()
        pages = [p for pdf in pdfs for p in fn(pdf, limit)]
        seconds = time.perf_counter() - t
        row = {"extractor": name, "pages": len(pages), "seconds": round(seconds, 3)}
        row["pages_per_s"] = round(len(pages) / seconds, 1)
        if limit:
            row["note"] = f"first {limit} pages of each file (--quick)"
        row.update(glued_word_rates(pages, vocab))
        rows.append(row)
    return rows


def bench_prepare(data: Path, n_pages: int, floor_s: float) -> dict:
    from embedtune.config import load_config
    from embedtune.ingest import load_documents
    from embedtune.prepare import run_prepare

    cfg = load_config(overrides={"ingest": {"paths": [str(data)]}}, environ={})
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        summary = run_prepare(cfg, Path(tmp) / "run", fresh=True)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        run_prepare(cfg, Path(tmp) / "run", fresh=True)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        cached = run_prepare(cfg, Path(tmp) / "run")
        rerun = time.perf_counter() - t
        assert cached.skipped
    t = time.perf_counter()
    load_documents([data], cfg.ingest.extensions)
    extract = time.perf_counter() - t
    return {
        "summary": summary.to_json(),
        "rows": [
            {"what": "pypdf extraction alone (floor)", "seconds": floor_s},
            {"what": "embedtune extraction (pypdfium2 + normalisation)", "seconds": extract},
            {"what": "prepare, cold (incl. importing transformers)", "seconds": cold},
            {"what": "prepare, warm", "seconds": warm},
            {"what": "prepare, re-run with nothing changed", "seconds": rerun},
        ],
        "n_pages": n_pages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="pdfplumber on 20 pages per file")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/prepare.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pdfs = sorted(args.data.glob("**/*.pdf"))
    if not pdfs:
        sys.exit(f"no PDFs in {args.data}: pass the folder of the R manuals (or any PDFs)")

    extractors = compare_extractors(pdfs, args.quick)
    pages = next(r["pages"] for r in extractors if r["extractor"] == "pypdfium2")
    floor_s = next(r["seconds"] for r in extractors if r["extractor"] == "pypdf")
    prep = bench_prepare(args.data, pages, floor_s)

    print(f"\nExtractors on {len(pdfs)} PDFs in {args.data}:")
    print(f"{'extractor':<11} {'pages':>6} {'pages/s':>9} {'words':>8} {'long/1k':>8} "
          f"{'glued/1k':>9}  glued examples")  # fmt: skip
    for r in extractors:
        print(
            f"{r['extractor']:<11} {r['pages']:>6} {r['pages_per_s']:>9.1f} {r['words']:>8} "
            f"{r['long_per_1k']:>8.3f} {r['glued_per_1k']:>9.3f}  "
            f"{', '.join(r['glued_examples'][:3])[:60]}"
            + (f"  [{r['note']}]" if "note" in r else "")
        )
    print(f"\nprepare on {pages} pages (all-MiniLM-L6-v2, chunk_size 1024 -> capped):")
    print(f"{'step':<50} {'seconds':>8} {'pages/s':>9} {'x floor':>8}")
    for row in prep["rows"]:
        row["pages_per_s"] = round(pages / row["seconds"], 1)
        row["ratio_to_pypdf_floor"] = round(row["seconds"] / floor_s, 3)
        print(
            f"{row['what']:<50} {row['seconds']:>8.2f} {row['pages_per_s']:>9.1f} "
            f"{row['ratio_to_pypdf_floor']:>8.2f}"
        )
    s = prep["summary"]
    print(
        f"\nchunks: train {s['chunks']['train']}, val {s['chunks']['val']} "
        f"(documents {s['documents']['train']}/{s['documents']['val']}; tokens "
        f"{s['tokens']['train']}/{s['tokens']['val']}); chunk_size "
        f"{s['chunking']['chunk_size']}, overlap {s['chunking']['chunk_overlap']}; dropped from "
        f"val: {s['dropped_duplicates']['exact']} exact, {s['dropped_duplicates']['near']} near"
        f"\nvalidation documents: {', '.join(s['documents_by_split']['val'])}"
    )
    cold = prep["rows"][2]["ratio_to_pypdf_floor"]
    print(f"verdict: prepare (cold) is {cold:.2f}x the pypdf floor (aim <= 1.3x): "
          + ("OK" if cold <= 1.3 else "TOO SLOW"))  # fmt: skip

    result = {
        "data": str(args.data),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "extractors": extractors,
        "prepare": prep["rows"],
        "pages": pages,
        "chunks": s["chunks"],
        "documents": s["documents"],
        "documents_by_split": s["documents_by_split"],
        "tokens": s["tokens"],
        "chunking": s["chunking"],
        "dropped_duplicates": {k: s["dropped_duplicates"][k] for k in ("exact", "near")},
        "seconds": s["seconds"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
