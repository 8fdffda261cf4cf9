"""Build evaluation domains from Debian packages: training documents + a BEIR set of FAQ questions.

Each set pairs a package's documentation (what ``embedtune prepare`` reads) with that package's
FAQ, whose question headings were written by people and whose answers sit in known passages. The
FAQ itself is left out of the training documents, so no query's exact text is in them (checked:
``build_stats.json`` counts the headings found in the documents). Nothing from the packages is
committed; this script fetches and rebuilds a set::

    python benchmarks/data/build_faq_sets.py zsh                  # -> .embedtune-data/zsh/
    python benchmarks/data/build_faq_sets.py cvs --baseline minilm --baseline mpnet
    python benchmarks/data/build_faq_sets.py zsh --deb ./zsh-doc_5.9-4_all.deb
    python benchmarks/data/build_faq_sets.py cvs --score-only --baseline minilm

Sets (``SET``):
  zsh   the Z shell FAQ (zsh-doc's FAQ0*.html) over the Z shell manual (zsh-doc's other HTML pages)
  cvs   the CVS FAQ (cvs's FAQ.gz) over the CVS manual, client protocol and paper (cvs's docs)
  perl  perlfaq1-9 (perl-doc's POD) over the Perl manual's other pages, as HTML (``pod2html``)
  vim   the Vim FAQ (vim-doc's FAQ.gz) over the Vim user and reference manuals (vim-doc's HTML)

The output folder ``OUT`` (default ``.embedtune-data/SET``) holds ``docs/`` (the training documents,
as the package ships them) and ``faq/`` (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``,
``build_stats.json``, ``README.md`` and, with ``--baseline``, ``baseline.json``). The Debian FAQ is
kept out on purpose: it is the held-out check, never a set built here.
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_python_faq import (  # noqa: E402  (a sibling script, not a package)
    _BLOCK_TAGS,
    MAX_WORDS,
    MIN_WORDS,
    Section,
    _collapse,
    _deb_fields,
    _run,
    baseline_table,
    build_dataset,
    download_deb,
    is_question,
    score_beir,
)

from embedtune.dataset import QADataset  # noqa: E402
from embedtune.errors import EmbedtuneError, InputError  # noqa: E402
from embedtune.ingest.html import html_to_text  # noqa: E402
from embedtune.ingest.loader import file_sha256, load_documents  # noqa: E402
from embedtune.records import write_json_atomic  # noqa: E402

__all__ = [
    "FaqSet",
    "SETS",
    "split_at_headings",
    "parse_zsh_faq",
    "parse_cvs_faq",
    "pod_inline",
    "parse_pod_faq",
    "parse_vim_faq",
    "is_navigation_page",
    "leaked_queries",
    "build",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO_ROOT / ".embedtune-data"
CHARS_PER_PAGE = 3000
_MARKER = ".built-by-build_faq_sets"  # hidden: embedtune's loader skips dot files


# ---------------------------------------------------------------------------------- parsing
def _drop_link_lists(soup: BeautifulSoup) -> None:
    """Remove lists whose whole text is link text (chapter navigation: "Previous", "Next").

    Compared as text, not item by item: YODL leaves ``<li>`` unclosed, so items nest.
    """
    for ul in soup.find_all(["ul", "ol"]):
        links = ul.find_all("a")
        if links and _collapse(ul.get_text(" ")) == _collapse(
            " ".join(a.get_text(" ") for a in links)
        ):
            ul.decompose()


def split_at_headings(
    html: str, page: str, *, levels: dict[str, int], strip: re.Pattern[str] | None = None
) -> list[Section]:
    """Cut a page whose headings are flat siblings (not nested sections) at each heading.

    ``levels`` maps the heading tags to cut at to their level (e.g. ``{"h1": 1, "h2": 2}``); a
    section's body is all text after its heading up to the next one, in document order, so it
    works whatever the (often unclosed) ``<p>`` tags around the headings nest into. Navigation
    link lists are dropped, block elements separate words, whitespace is collapsed. ``strip``
    removes a prefix from each heading (a section number); the number, or failing that the
    section's position, is its anchor.
    """
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(["script", "style", "head"]):
        tag.decompose()
    _drop_link_lists(soup)
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    tags = tuple(levels)
    sections: list[Section] = []
    parts: list[str] = []

    def flush() -> None:
        if sections:
            sections[-1].text = _collapse("".join(parts))
        parts.clear()

    for node in soup.descendants:
        if isinstance(node, Tag) and node.name in levels:
            flush()
            heading = _collapse(node.get_text(""))
            number = strip.match(heading) if strip else None
            if number:
                heading = heading[number.end() :].strip()
            anchor = number.group(1) if number else f"s{len(sections) + 1}"
            sections.append(Section(page, anchor, levels[node.name], heading, ""))
        elif (
            sections
            and isinstance(node, NavigableString)
            and not isinstance(node, PreformattedString)  # comments, doctype
            and node.find_parent(tags) is None
        ):
            parts.append(str(node))
    flush()
    return sections


_ZSH_NUMBER = re.compile(r"^(\d+(?:\.\d+)*):\s*")


def parse_zsh_faq(html: str, page: str) -> list[Section]:
    """One page of the zsh FAQ (YODL's HTML): ``<h1>`` chapters, ``<h2>`` "3.1: question" entries."""
    sections = split_at_headings(html, page, levels={"h1": 1, "h2": 2}, strip=_ZSH_NUMBER)
    for s in sections:
        if s.level == 1:
            s.anchor = "chapter"
        elif s.anchor.startswith("s"):  # "Acknowledgments:", "Copyright Information:"
            s.heading = s.heading.rstrip(":")
            s.anchor = re.sub(r"[^a-z0-9]+", "-", s.heading.lower()).strip("-")
    return sections


_CVS_CATEGORY = re.compile(r"^  Category: (/.*?)\s*$")
_CVS_QUESTION = re.compile(r"^    (\d+)\. (\S.*)$")
_CVS_CONTINUED = re.compile(r"^    (\S.*)$")
_CVS_MODIFIED = re.compile(r"^\s*Last modified: _[^_]*_\s*$")
_CVS_FOOTER = re.compile(r"^\s*_{20,}\s*$")  # the rule above the FAQ-O-Matic's page footer


def _category_slug(path: str) -> str:
    parts = [re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in path.split("/")]
    return ".".join(p for p in parts if p) or "top"


def parse_cvs_faq(text: str) -> list[Section]:
    """The CVS FAQ as the cvs package ships it (text exported from FAQ-O-Matic).

    ``  Category: /A/B/`` lines open a category; ``    N. question`` lines (4 spaces; a long
    question wraps onto more 4-space lines up to a blank line) open an entry whose answer runs to
    the next entry or category. Entries are numbered 1, 2, 3... within a category, so a numbered
    line out of that sequence is answer text, not a question. "Last modified: _date_" stamps are
    removed; the FAQ-O-Matic's page footer (after a rule of underscores) is not an answer.
    Anchors are ``<category slug>/<number>``.
    """
    sections: list[Section] = []
    lines = text.splitlines()
    category = None
    expected = 1
    body: list[str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _CVS_FOOTER.match(line):
            break
        cat = _CVS_CATEGORY.match(line)
        question = _CVS_QUESTION.match(line)
        if cat:
            category, expected, body = _category_slug(cat.group(1)), 1, None
        elif question and category is not None and int(question.group(1)) == expected:
            heading = [question.group(2)]
            while i + 1 < len(lines) and (more := _CVS_CONTINUED.match(lines[i + 1])):
                heading.append(more.group(1))
                i += 1
            body = []
            sections.append(
                Section(category, question.group(1), 2, _collapse(" ".join(heading)), "")
            )
            expected += 1
        elif body is not None and not _CVS_MODIFIED.match(line):
            body.append(line)
            sections[-1].text = _collapse(" ".join(body))
        i += 1
    return sections


_POD_CODE_MULTI = re.compile(r"([A-Z])(<{2,})\s+(.*?)\s+(>{2,})", re.DOTALL)
_POD_CODE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}


def _pod_code(letter: str, body: str) -> str:
    if letter in "XZ":  # index entries, null
        return ""
    if letter == "E":
        if body.isdigit():
            return chr(int(body))
        if body.lower().startswith("0x"):
            return chr(int(body, 16))
        return _POD_ENTITIES.get(body, body)
    if letter == "L":
        text, bar, _ = body.partition("|")
        if bar:
            return text
        page, slash, section = body.partition("/")
        if slash and not page.startswith(("http:", "https:", "ftp:")):
            section = section.strip('"')
            return f'"{section}" in {page}' if page else f'"{section}"'
        return body
    return body  # C, B, I, F, S: the text itself


def pod_inline(text: str) -> str:
    """POD's formatting codes as plain text: ``C<< $x->y >>`` -> ``$x->y``, ``L<perlop/"Foo">`` ->
    ``"Foo" in perlop``, ``E<gt>`` -> ``>``; index entries (``X<>``) are dropped."""

    def multi(m: re.Match[str]) -> str:
        if len(m.group(2)) != len(m.group(4)):
            return m.group(0)
        return _pod_code(m.group(1), m.group(3))

    text = _POD_CODE_MULTI.sub(multi, text)
    while True:  # innermost codes first, so nested ones (B<C<x>>) resolve
        new = _POD_CODE.sub(lambda m: _pod_code(m.group(1), m.group(2)), text)
        if new == text:
            return text
        text = new


def parse_pod_faq(pod: str, page: str) -> list[Section]:
    """One perlfaq page (POD): ``=head1`` chapters and ``=head2`` entries, each entry's body up to
    the next heading. Other commands (``=over``, ``=item``, ``=back``, ``=pod``, ``=cut``) are
    dropped and an ``=item``'s text is kept; verbatim (indented code) paragraphs are kept as
    they are. Anchors count the page's ``=head2`` entries (``perlfaq4/12``); chapters are
    ``h1-N``.
    """
    sections: list[Section] = []
    entries = chapters = 0
    for para in re.split(r"\n\s*\n", pod):
        m = re.match(
            r"=(head[1-4]|item|over|back|pod|cut|begin|end|for|encoding)\b\s*(.*)", para, re.DOTALL
        )
        if m and m.group(1) in ("head1", "head2"):
            heading = _collapse(pod_inline(m.group(2)))
            if m.group(1) == "head2":
                entries += 1
                sections.append(Section(page, str(entries), 2, heading, ""))
            else:
                chapters += 1
                sections.append(Section(page, f"h1-{chapters}", 1, heading, ""))
            continue
        if not sections:
            continue
        if m:
            if m.group(1) not in ("item", "head3", "head4"):
                continue
            para = m.group(2)
        body = para if para[:1].isspace() else pod_inline(para)  # verbatim: no codes
        sections[-1].text = _collapse(f"{sections[-1].text} {body}")
    return sections


_VIM_RULE = re.compile(r"^={20,}\s*$")
_VIM_SECTION = re.compile(r"^SECTION (\d+) - (\S.*?)\s*$")
_VIM_QUESTION = re.compile(r"^(\d+)\.(\d+)\.\s+(\S.*)$")
_VIM_CONTINUED = re.compile(r"^\s+(\S.*)$")


def parse_vim_faq(text: str) -> list[Section]:
    """The Vim FAQ as vim-doc ships it (plain text, Yegappan Lakshmanan's vim_faq).

    The file opens with an index of every question; the entries follow the first rule of ``=``
    signs. ``SECTION N - TITLE`` lines open a chapter; an ``N.M. question`` line at the left
    margin (a long question wraps onto indented lines up to a blank line) opens an entry whose
    answer runs to the next entry, chapter or rule. An entry's number must be the next one of
    its chapter (``N`` the chapter's, ``M`` one more than the last), so numbered answer lines
    stay answer text. The maintainer's footer after the last rule is not an answer. Anchors are
    the entry numbers (``FAQ/10.2``); chapters are ``FAQ/section-N``.
    """
    sections: list[Section] = []
    lines = text.splitlines()
    i = next((n + 1 for n, line in enumerate(lines) if _VIM_RULE.match(line)), len(lines))
    chapter = expected = 0
    body: list[str] | None = None
    while i < len(lines):
        line = lines[i]
        sec = _VIM_SECTION.match(line)
        question = _VIM_QUESTION.match(line)
        if _VIM_RULE.match(line):
            body = None
        elif sec:
            chapter, expected, body = int(sec.group(1)), 1, None
            sections.append(Section("FAQ", f"section-{chapter}", 1, sec.group(2), ""))
        elif (
            question
            and chapter
            and (int(question.group(1)), int(question.group(2))) == (chapter, expected)
        ):
            heading = [question.group(3)]
            while i + 1 < len(lines) and (more := _VIM_CONTINUED.match(lines[i + 1])):
                heading.append(more.group(1))
                i += 1
            number = f"{chapter}.{expected}"
            sections.append(Section("FAQ", number, 2, _collapse(" ".join(heading)), ""))
            body = []
            expected += 1
        elif body is not None:
            body.append(line)
            sections[-1].text = _collapse(" ".join(body))
        i += 1
    return sections


def is_navigation_page(html: str, *, max_link_share: float = 0.5) -> str | None:
    """Why an HTML page is not a document to train on, or None when it is.

    A page that only redirects (``<meta http-equiv="Refresh">``, Texinfo's stubs for old node
    names) or whose visible text is mostly link text (tables of contents, indexes) is navigation.
    """
    soup = BeautifulSoup(html, "html.parser")
    if soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)}):
        return "redirect stub"
    text = html_to_text(html)
    if not text:
        return "no text"
    for tag in soup.find_all(["head", "script", "style"]):
        tag.decompose()
    linked = sum(len(_collapse(a.get_text(" "))) for a in soup.find_all("a"))
    share = linked / len(_collapse(text))
    if share > max_link_share:
        return f"navigation ({share:.0%} of its text is links)"
    return None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w$]+", " ", text.casefold()).split())


def leaked_queries(queries: dict[str, str], docs_text: str) -> list[str]:
    """Ids of queries whose whole text (case, spaces and punctuation aside) is in the documents."""
    haystack = f" {_norm(docs_text)} "
    return [qid for qid, q in queries.items() if f" {_norm(q)} " in haystack]


# ------------------------------------------------------------------------------------ sets
@dataclass
class FaqSet:
    """How to cut one package into training documents and a FAQ eval set."""

    name: str
    package: str
    faq_title: str
    faq_files: Callable[[Path], list[Path]]
    parse: Callable[[list[Path]], list[Section]]
    docs: Callable[[Path], tuple[list[Path], list[dict[str, str]]]]
    docs_title: str
    license: list[str]
    how_built: list[str]
    caveats: list[str] = field(default_factory=list)


def _one(tree: Path, pattern: str) -> Path:
    found = sorted(tree.glob(pattern))
    if not found:
        raise InputError(f"no {pattern} in the package unpacked at {tree}; is it the right .deb?")
    return found[0]


_ZSH_HTML = "usr/share/doc/zsh-common/html"


def _zsh_faq_files(tree: Path) -> list[Path]:
    _one(tree, f"{_ZSH_HTML}/FAQ01.html")
    return sorted((tree / _ZSH_HTML).glob("FAQ0*.html"))


def _zsh_docs(tree: Path) -> tuple[list[Path], list[dict[str, str]]]:
    keep: list[Path] = []
    dropped: list[dict[str, str]] = []
    for page in sorted((tree / _ZSH_HTML).glob("*.html")):
        html = page.read_text(encoding="utf-8", errors="replace")
        if page.name.startswith(("FAQ", "The-Zsh-FAQ")):
            why = "the FAQ (the queries' source)"
        elif page.name == "zsh_abt.html":
            why = "navigation (texi2any's 'About This Document' page on its buttons)"
        else:
            why = is_navigation_page(html)
        if why:
            dropped.append({"file": page.name, "why": why})
        else:
            keep.append(page)
    return keep, dropped


def _cvs_faq_files(tree: Path) -> list[Path]:
    return [_one(tree, "usr/share/doc/cvs/FAQ.gz")]


_CVS_DOCS = ("cvs.html", "cvsclient.html", "cvs-paper.pdf")


def _cvs_docs(tree: Path) -> tuple[list[Path], list[dict[str, str]]]:
    folder = _one(tree, "usr/share/doc/cvs/cvs.html").parent
    keep = [folder / name for name in _CVS_DOCS if (folder / name).is_file()]
    dropped = [
        {"file": p.name, "why": why}
        for p in sorted(folder.iterdir())
        if p.name not in _CVS_DOCS
        and (
            why := "the FAQ (the queries' source)"
            if p.name.startswith("FAQ")
            else "same text as a kept file in another format"
            if p.name in ("cvs.pdf", "cvsclient.pdf", "cvs.txt.gz", "cvsclient.txt.gz")
            or p.name.startswith("cvs-paper.")
            else "not a manual (changelog, notes, licence, packaging)"
        )
    ]
    return keep, dropped


_PERL_POD = "usr/share/perl/5.*/pod"
# The platform READMEs (perlaix ... perlwin32, and the translated perlcn/jp/ko/tw) are notes on
# building perl for one system, not the manual.
_PERL_PLATFORMS = {
    "perlaix", "perlamiga", "perlandroid", "perlbs2000", "perlcn", "perlcygwin", "perldos",
    "perlfreebsd", "perlhaiku", "perlhpux", "perlhurd", "perlirix", "perljp", "perlko",
    "perllinux", "perlmacos", "perlmacosx", "perlopenbsd", "perlos2", "perlos390", "perlos400",
    "perlplan9", "perlqnx", "perlriscos", "perlsolaris", "perlsynology", "perltru64", "perltw",
    "perlvms", "perlvos", "perlwin32", "perlebcdic",
}  # fmt: skip
# perl's internals and the guides to changing perl itself, for the people who work on perl.
_PERL_INTERNALS = (
    "perlapi", "perlintern", "perlguts", "perlhack", "perlreguts", "perldebguts", "perlinterp",
    "perlsource", "perlgit", "perlclib", "perlxs", "perlapio", "perliol", "perlmroapi",
    "perlpolicy", "perlgov", "perlrepository", "perldocstyle", "perlpodspec", "perlexperiment",
    "perlartistic", "perlgpl", "perlcommunity", "perlbook", "perldeprecation", "perlcall",
    "perlembed", "perlfilter", "perlport", "perlunitut",
)  # fmt: skip


def _perl_pod_dir(tree: Path) -> Path:
    return _one(tree, f"{_PERL_POD}/perlfaq1.pod").parent


def _perl_faq_files(tree: Path) -> list[Path]:
    return sorted(_perl_pod_dir(tree).glob("perlfaq[1-9].pod"))


def _perl_docs(tree: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The Perl manual's pages, each turned into HTML by ``pod2html`` next to its POD (HTML, so
    that prepare finds the pages' headings as it would in a user's HTML manual)."""
    if shutil.which("pod2html") is None:
        raise InputError("pod2html not found: it ships with perl (apt-get install perl)")
    keep: list[Path] = []
    dropped: list[dict[str, str]] = []
    for pod in sorted(_perl_pod_dir(tree).glob("*.pod")):
        name = pod.stem
        if name == "perlfaq":
            why = "the FAQ's index"
        elif name.startswith("perlfaq"):
            why = "the FAQ (the queries' source)"
        elif name == "perlunifaq":
            why = "another FAQ (on Unicode)"
        elif name == "perltoc":
            why = "the table of contents (holds the FAQ's headings)"
        elif re.fullmatch(r"perl\d*delta|perlhist", name):
            why = "release notes"
        elif name in _PERL_PLATFORMS:
            why = "a platform's build notes"
        elif name == "perluniprops":
            why = "tables of Unicode properties"
        elif name.startswith(_PERL_INTERNALS):
            why = "perl's internals, licences or community pages"
        else:
            why = None
        if why:
            dropped.append({"file": pod.name, "why": why})
            continue
        html = pod.with_suffix(".html")
        _run(
            ["pod2html", "--quiet", "--noindex", f"--infile={pod}", f"--outfile={html}"],
            cwd=pod.parent,  # its link cache files (pod2htmd.tmp) stay in the unpacked tree
        )
        keep.append(html)
    return keep, dropped


_VIM_HTML = "usr/share/doc/vim/html"


def _vim_faq_files(tree: Path) -> list[Path]:
    return [_one(tree, "usr/share/doc/vim/FAQ.gz")]


def _vim_docs(tree: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The Vim help (user manual ``usr_*`` and reference manual) as vim-doc's HTML pages."""
    folder = _one(tree, f"{_VIM_HTML}/usr_01.html").parent
    keep: list[Path] = []
    dropped: list[dict[str, str]] = []
    for page in sorted(folder.glob("*.html")):
        name = page.stem
        if re.fullmatch(r"version\d+|todo", name):
            why = "release notes and the to-do list"
        elif name == "tags":
            why = "the help's tag index (every tag, with its page)"
        elif name in ("index", "usr_toc", "howto"):
            why = "a table of contents (links to the other pages)"
        elif name in ("uganda", "sponsor"):
            why = "licence and charity pages"
        elif name in ("develop", "debug"):
            why = "the guides to developing and debugging Vim itself"
        else:
            why = is_navigation_page(page.read_text(encoding="utf-8", errors="replace"))
        if why:
            dropped.append({"file": page.name, "why": why})
        else:
            keep.append(page)
    return keep, dropped


def _read_gz_or_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


SETS: dict[str, FaqSet] = {
    "zsh": FaqSet(
        name="zsh",
        package="zsh-doc",
        faq_title="the Z-Shell Frequently-Asked Questions (Peter Stephenson et al.)",
        faq_files=_zsh_faq_files,
        parse=lambda paths: [
            s
            for p in paths
            for s in parse_zsh_faq(p.read_text(encoding="utf-8", errors="replace"), p.stem)
        ],
        docs=_zsh_docs,
        docs_title="the Z Shell Manual, HTML (texi2any), one page per chapter",
        license=[
            "The FAQ's own notice (section 'Copyright Information'): copyright P.W. Stephenson "
            "1995-2020; 'Permission is hereby granted, without written agreement and without "
            "license or royalty fees, to use, copy, modify, and distribute this documentation "
            "for any purpose, provided that the above copyright notice appears in all copies' "
            "(Debian's copyright file calls it `PWS-Zsh-FAQ`).",
            "The manual: the Zsh license (MIT-like; `Files: *` in "
            "/usr/share/doc/zsh-common/copyright, which belongs to package zsh-common: zsh-doc's "
            "/usr/share/doc/zsh-doc is a symlink to that folder).",
        ],
        how_built=[
            "FAQ: `/usr/share/doc/zsh-common/html/FAQ01.html` ... `FAQ06.html` (YODL's HTML; "
            "`FAQ.html` is only the table of contents). Each page is cut at its `<h1>` chapter "
            "and `<h2>` entry headings, taken in document order (the headings are flat "
            "siblings, not nested sections); the body is the text up to the next heading. The "
            "'Table of Contents / Previous / Next Chapter' link lists are dropped; code blocks "
            "are kept as text. Entry numbers ('3.1: ') are removed from the headings and become "
            "the passage ids (`FAQ03/3.1`).",
            "Training documents: every other HTML page of the same folder, minus Texinfo's "
            "redirect stubs (pages for old node names that only point to another page), pages "
            "whose text is mostly links (the indexes, the table of contents, `index.html`), "
            "`zsh_abt.html` (help for the navigation buttons) and the FAQ pages. `zsh.pdf` (the "
            "same manual) is not copied.",
        ],
        caveats=[
            "Some headings only make sense in the FAQ's context: 'What is it?' and 'What is it "
            "good at?' ('it' = zsh), 'In which startup file do I put...?'. They are kept as "
            "written; a retriever has to guess the subject from the corpus.",
            "The FAQ is dated 2010 in its header with later edits; a few answers describe "
            "versions and sites of their time.",
        ],
    ),
    "cvs": FaqSet(
        name="cvs",
        package="cvs",
        faq_title="the CVS FAQ (David Grubbs' 1995 FAQ as kept on Pascal Molli's FAQ-O-Matic)",
        faq_files=_cvs_faq_files,
        parse=lambda paths: parse_cvs_faq(_read_gz_or_text(paths[0])),
        docs=_cvs_docs,
        docs_title="the CVS manual ('the Cederqvist', cvs.html), the client/server protocol "
        "(cvsclient.html) and Brian Berliner's paper 'CVS II: Parallelizing Software "
        "Development' (cvs-paper.pdf)",
        license=[
            "From /usr/share/doc/cvs/copyright: 'GNU CVS itself is Copyright (C) 1986-2005 The "
            "Free Software Foundation, Inc. ... licenced under the GNU General Public License, "
            "version 2 or later'; the FAQ file opens with the same CVS notice (GPL version 1 "
            "or later).",
            "The manual's own notice (on the copyright page of cvs.pdf, the same manual; the HTML "
            "omits it): copyright 1993-2005 Free Software Foundation and others, 'Permission "
            "is granted to make and distribute verbatim copies of this manual' and modified "
            "versions under a permission notice identical to it.",
        ],
        how_built=[
            "FAQ: `/usr/share/doc/cvs/FAQ.gz`, plain text exported from the FAQ-O-Matic. "
            "`  Category: /A/B/` lines open a category; a `    N. question` line (a long "
            "question wraps onto further 4-space-indented lines up to a blank line) opens an "
            "entry whose answer runs to the next entry or category. Entries are numbered 1, 2, "
            "3... within a category, so numbered lines out of sequence stay answer text. The "
            "'Last modified: _date_' stamps are removed. Passage ids are "
            "`<category slug>/<N>`, e.g. `advanced-topics.branching-and-mergin/7` (the "
            "FAQ-O-Matic's own truncated category names).",
            "Training documents: `cvs.html`, `cvsclient.html` and `cvs-paper.pdf` from "
            "`/usr/share/doc/cvs/`. Left out: the FAQ; the same manuals in other formats "
            "(`cvs.pdf`, `cvs.txt.gz`, `cvsclient.pdf`, ...); changelogs, NEWS, TODO, "
            "packaging notes.",
        ],
        caveats=[
            "Old: most answers are dated 6/13/1997 and come from the 1995 FAQ; the file itself "
            "warns that many are out of date. The questions are still real users' questions "
            "about CVS, answered in the passage.",
            "Several headings lean on the previous entry ('Wow! Isn't that dangerous?', 'So I "
            "*can* edit the History file?'); kept as written.",
            "Entries phrased 'Explain: <error message>' are not questions under the shared "
            "rule (a '?' or an opening question word), so they stay as distractors; so do "
            "statement-style entries.",
            "`cvs-paper.pdf` (27 kB of text, 5% of the documents) reads with pypdf's kerning "
            "gaps ('Backgr ound', 'softw are'); the HTML manuals are clean.",
        ],
    ),
    "perl": FaqSet(
        name="perl",
        package="perl-doc",
        faq_title="the Perl FAQ (perlfaq1-9, by Tom Christiansen, Nathan Torkington, brian d "
        "foy and others)",
        faq_files=_perl_faq_files,
        parse=lambda paths: [
            s
            for p in paths
            for s in parse_pod_faq(p.read_text(encoding="utf-8", errors="replace"), p.stem)
        ],
        docs=_perl_docs,
        docs_title="the Perl manual's pages on the language, its functions, regular "
        "expressions, modules, I/O and tutorials (perl-doc's POD as HTML, one page per POD)",
        license=[
            "perlfaq's own notice (each page's 'AUTHOR AND COPYRIGHT'): copyright 1997-2010 Tom "
            "Christiansen, Nathan Torkington, and other authors as noted; 'This documentation "
            "is free; you can redistribute it and/or modify it under the same terms as Perl "
            "itself' (Artistic or GPL-1+).",
            "The manual: the same terms as Perl itself (`Files: *` in "
            "/usr/share/doc/perl-doc/copyright).",
        ],
        how_built=[
            "FAQ: `/usr/share/perl/5.*/pod/perlfaq1.pod` ... `perlfaq9.pod` (`perlfaq.pod` is "
            "only their index). POD paragraphs are read in order: `=head1` opens a chapter, "
            "`=head2` an entry whose body is every paragraph up to the next heading (code "
            "included; `=item` text kept; other commands dropped). Formatting codes become "
            'plain text (`C<< $x->y >>` -> `$x->y`, `L<perlop/"Foo">` -> `"Foo" in perlop`, '
            "`X<>` dropped). Passage ids count a page's entries (`perlfaq4/12`).",
            "Training documents: the other POD pages of the same folder, each turned into HTML "
            "by `pod2html --noindex` (embedtune reads no POD; HTML keeps the headings). Left "
            "out: the FAQ pages, `perlunifaq` (another FAQ) and `perlfaq.pod`; `perltoc` (it "
            "lists every FAQ heading); release notes (`perl*delta`, `perlhist`); the platform READMEs "
            "(`perlaix` ... `perlwin32`); `perluniprops` (tables); perl's internals and the "
            "guides to changing perl (`perlapi`, `perlguts`, `perlhack*`, `perlxs*`, ...), "
            "licences and community pages.",
        ],
        caveats=[
            'Many answers name the function or page they lean on ("see sort in perlfunc"); '
            "those pages are among the training documents, which is the point of the set.",
            "Some answers quote another entry's question in a cross-reference ('First, see the "
            'answer to "Why am I getting long decimals..."\'); kept as written.',
            "A few entries are dated: modules and sites of their time (CPAN mirrors, Usenet).",
        ],
    ),
    "vim": FaqSet(
        name="vim",
        package="vim-doc",
        faq_title="the Vim FAQ (Yegappan Lakshmanan's, from questions and answers on the vim@vim.org "
        "list and comp.editors)",
        faq_files=_vim_faq_files,
        parse=lambda paths: parse_vim_faq(_read_gz_or_text(paths[0])),
        docs=_vim_docs,
        docs_title="the Vim user manual and reference manual (Vim's help files as vim-doc's HTML, "
        "one page per help file)",
        license=[
            "The FAQ carries no notice of its own (its opening credits 'Peppe, Benji, Charles "
            "Campbell and numerous others'; 'Current Maintainer: Yegappan Lakshmanan'); "
            "/usr/share/doc/vim-doc/copyright gives it no stanza of its own; its `Files: *` "
            "stanza is the Vim licence (charityware).",
            "The manual: `Files: runtime/doc/*` in /usr/share/doc/vim-doc/copyright, copyright "
            "1988-2003 Bram Moolenaar, Open Publication License v1.0 or later (OPL-1+), 'No "
            "license options are exercised'.",
        ],
        how_built=[
            "FAQ: `/usr/share/doc/vim/FAQ.gz`, plain text. Its index of every question (up to "
            "the first rule of `=` signs) is skipped. `SECTION N - TITLE` lines open a chapter; "
            "an `N.M. question` line at the left margin (a long question wraps onto indented "
            "lines up to a blank line) opens an entry whose answer runs to the next entry, "
            "chapter or rule. An entry's number must be the next one of its chapter, so numbered "
            "answer lines stay answer text; the maintainer's footer after the last rule is "
            "dropped. Passage ids are the entry numbers (`FAQ/10.2`).",
            "Training documents: the HTML pages of `/usr/share/doc/vim/html/` (the user manual "
            "`usr_*.html` and the reference manual), minus the release notes (`version4` ... "
            "`version9`) and `todo`; `tags` (the index of every help tag); the tables of "
            "contents (`index`, the main help page; `usr_toc`; `howto`); the licence and "
            "charity pages (`uganda`, `sponsor`); and the guides to developing and debugging "
            "Vim itself (`develop`, `debug`). No FAQ page is among them (the FAQ ships only as "
            "`FAQ.gz`).",
        ],
        caveats=[
            "Old: the FAQ was last updated in January 2005 (Vim 6.3), the manual is Vim 9.0's. "
            "A few answers describe options, sites and platforms of their time.",
            "Almost every answer ends with 'For more information, read :help <tag> ...', "
            "naming the help tags it leans on; those tags' pages are the training documents, "
            "which is the point of the set.",
            "Easy for zero-shot models: answers often restate their question ('You can add the "
            "'<' flag to the 'whichwrap' option to configure Vim to move the cursor to the end of "
            "the previous line, when ...'). For about half the queries, 80% or more of the "
            "question's words (stop words aside) are in the answer's first 60 words, against "
            "9-16% of the zsh, cvs and perl queries; there is less room to gain than there.",
            "Nearly every entry asks a question; the two that only state a problem (22.5, "
            "24.8: 'Vim syntax highlighting is broken. ...') stay as distractors under the "
            "shared rule. Answers are short (median under 50 words).",
            "vim-doc's HTML (vim2html) is one `<pre>` block per help file in which every word "
            "that is also a help tag ('it', 'window', 'options') is a link; the pages declare "
            "ISO-8859-1 while some are UTF-8, so the non-ASCII examples of a few pages "
            "(`arabic`, `digraph`, `spell`, `ft_raku`) read garbled.",
        ],
    ),
}


# --------------------------------------------------------------------------------- building
def _copy_docs(files: list[Path], tree: Path, docs: Path) -> list[dict[str, Any]]:
    if docs.exists():
        if any(docs.iterdir()) and not (docs / _MARKER).is_file():
            raise InputError(
                f"{docs} exists and was not written by this script; move it away or pass "
                "another --out"
            )
        shutil.rmtree(docs)
    docs.mkdir(parents=True)
    (docs / _MARKER).write_text("benchmarks/data/build_faq_sets.py\n", encoding="utf-8")
    copied = []
    for src in files:
        shutil.copyfile(src, docs / src.name)
        copied.append({"file": src.name, "from": "/" + str(src.relative_to(tree))})
    return copied


def build(
    spec: FaqSet,
    out: Path,
    *,
    version: str | None = None,
    deb: Path | None = None,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> dict[str, Any]:
    """Download (or take) the .deb; write ``out/docs`` and the BEIR folder ``out/faq``."""
    faq_out, docs_out = out / "faq", out / "docs"
    with tempfile.TemporaryDirectory(prefix=f"{spec.name}-faq-") as tmp:
        tmp_path = Path(tmp)
        if deb is None:
            deb = download_deb(spec.package, version, tmp_path)
        elif not deb.is_file():
            raise InputError(f"{deb} not found (--deb)")
        fields = _deb_fields(deb)
        if fields.get("package") != spec.package:
            raise InputError(f"{deb} is package {fields.get('package')!r}, not {spec.package}")
        deb_sha256 = file_sha256(deb)
        tree = tmp_path / "tree"
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
        faq_files = spec.faq_files(tree)
        sections = spec.parse(faq_files)
        dataset, stats = build_dataset(sections, min_words=min_words, max_words=max_words)
        doc_files, docs_dropped = spec.docs(tree)
        copied = _copy_docs(doc_files, tree, docs_out)

    dataset.validate_references(f"{spec.name} built from {deb.name}")
    faq_out.mkdir(parents=True, exist_ok=True)
    dataset.to_beir(faq_out, split="test")
    reloaded = QADataset.from_beir(faq_out)
    reloaded.validate_references(str(faq_out))
    if reloaded.queries != dataset.queries or reloaded.corpus != dataset.corpus:
        raise EmbedtuneError(f"{faq_out}: the BEIR folder did not read back as written")

    loaded = load_documents([docs_out])
    docs_text = "\n".join(p.text for d in loaded.documents for p in d.pages)
    leaked = leaked_queries(dataset.queries, docs_text)
    per_file = {
        d.path.rsplit("/", 1)[-1]: sum(len(p.text) for p in d.pages) for d in loaded.documents
    }
    stats = {
        "set": spec.name,
        "source": {
            "package": fields.get("package"),
            "version": fields.get("version"),
            "source_package": fields.get("source"),
            "deb_file": deb.name,
            "deb_sha256": deb_sha256,
            "faq_files": ["/" + str(p.relative_to(tree)) for p in faq_files],
            "license": spec.license,
        },
        "built_by": f"benchmarks/data/build_faq_sets.py {spec.name}",
        "docs": {
            "folder": "docs/",
            "title": spec.docs_title,
            "files": len(copied),
            "chars": loaded.chars,
            "approx_pages": round(loaded.chars / CHARS_PER_PAGE),
            "loader_pages": loaded.pages,
            "files_skipped_by_loader": loaded.summary()["files_skipped"],
            "chars_per_file": per_file,
            "copied": copied,
            "left_out": docs_dropped,
            "queries_found_verbatim_in_docs": [dataset.queries[q] for q in leaked],
        },
        **stats,
    }
    write_json_atomic(faq_out / "build_stats.json", stats)
    return stats


def write_readme(spec: FaqSet, out: Path, stats: dict[str, Any], rows: list[dict]) -> None:
    src, docs = stats["source"], stats["docs"]
    pw = stats["passage_words"]
    dropped = stats["dropped_sections"]
    short_q = [d for d in dropped if is_question(d["heading"], d["level"])]
    dropped_q = "; ".join(f'"{d["heading"]}" ({d["words"]} words)' for d in short_q) or "none"
    leaked = docs["queries_found_verbatim_in_docs"]
    twice = stats["queries_with_several_relevant"]
    several = (
        f"{len(twice)} question(s) asked twice in the FAQ (same heading, case aside) have both "
        f"entries relevant: {', '.join(twice)}."
        if twice
        else "Every query has one relevant passage."
    )
    left_out: dict[str, int] = {}
    for d in docs["left_out"]:
        why = d["why"].split(" (")[0]  # "navigation (93% of its text is links)" -> "navigation"
        left_out[why] = left_out.get(why, 0) + 1
    table = (
        baseline_table(rows)
        if rows
        else "Not measured in this build; rerun with `--baseline minilm --baseline mpnet`."
    )
    steps = "\n".join(f"{i}. {s}" for i, s in enumerate(spec.how_built, 1))
    n = len(spec.how_built)
    text = f"""# {spec.name} — training documents and a FAQ eval set from Debian's `{src["package"]}`

**Task:** given a question from {spec.faq_title}, as the FAQ's authors wrote it, find the
FAQ entry that answers it, out of all the FAQ's entries. The training documents in `../docs/` are
{docs["title"]}: fine-tune on them (`embedtune prepare ../docs`), then score here.

## Source
- Debian package: **{src["package"]} {src["version"]}** (source package `{src["source_package"]}`),
  file `{src["deb_file"]}` (sha256 `{src["deb_sha256"]}`).
- FAQ: {", ".join(f"`{f}`" for f in src["faq_files"])}.

## License
{chr(10).join(f"- {line}" for line in src["license"])}

Neither the documents nor this folder are stored in the repository;
`python benchmarks/data/build_faq_sets.py {spec.name}` rebuilds both.

## Files
- `corpus.jsonl` — `{{"_id", "title": "", "text": "<answer body>"}}` (titles are empty on purpose:
  each heading is the query itself)
- `queries.jsonl` — `{{"_id": "q/<passage id>", "text": "<question heading>"}}`
- `qrels/test.tsv` — `query-id  corpus-id  score` (header line included), score 1
- `build_stats.json` — counts, dropped entries, distractor headings, the training documents
  (files, characters, what was left out and why), source, sha256
- `baseline.json` — zero-shot baselines (when built with `--baseline`)

## How it was built
`python benchmarks/data/build_faq_sets.py {spec.name}` (`apt-get download {src["package"]}`,
`dpkg-deb -x`, BeautifulSoup):
{steps}
{n + 1}. Entries with fewer than {stats["min_words"]} answer words are dropped, then passages are cut
   to their first {stats["max_words"]} words ({stats["truncated_passages"]} were longer).
{n + 2}. Queries = entries whose heading contains "?" or opens with a question word (how, what,
   why, is, can, do, ...), the rule `python-faq` uses; the heading is the query and its entry the
   one relevant passage. Every other kept entry stays in the corpus as a distractor.

## Counts
- FAQ entries parsed: {stats["sections"]}; dropped for fewer than {stats["min_words"]} answer words:
  {len(dropped) - len(short_q)} headings that are not questions (e.g. chapter titles whose text
  lives in their entries) and {len(short_q)} questions: {dropped_q}
- corpus: **{stats["passages"]}** passages; words per passage: min {pw.get("min")}, median
  {pw.get("median")}, max {pw.get("max")} (mean {pw.get("mean")})
- queries: **{stats["queries"]}**; qrels: {stats["qrels"]}; query words: median
  {stats["query_words"].get("median")}. {several}
- {stats["distractor_passages"]} corpus passages are non-question entries (distractors).
- training documents (`../docs/`): **{docs["files"]} files, {docs["chars"]:,} characters, about
  {docs["approx_pages"]} pages** at {CHARS_PER_PAGE:,} characters a page (as embedtune's loaders read
  them). Left out of the package's folder: {"; ".join(f"{c} {w}" for w, c in left_out.items())}.
- queries whose whole text occurs in the training documents: {len(leaked)}{": " + "; ".join(f'"{q}"' for q in leaked) if leaked else ""}

## Caveats
{chr(10).join(f"- {c}" for c in spec.caveats)}
- Titles are blank: a heading is exactly its query, so encoding it would turn the task into
  string matching. Answers may quote other entries' headings in cross-references; kept.
- Code and examples are flattened into one line with the prose around them.
- With {stats["queries"]} queries one answer slipping from rank 1 to rank 2 moves NDCG@10 by about
  {0.3691 / stats["queries"]:.4f}; compare a fine-tuned model with its base on this set, not
  across sets. A newer package version may change every count: compare scores only between runs
  on the same build (`deb_sha256`).

## Baselines (CPU, full-corpus cosine ranking, normalized embeddings, passage text only)
{table}
"""
    (out / "faq" / "README.md").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build a Debian package's training documents and FAQ eval set.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("::", 1)[1].split("The output", 1)[0] if __doc__ else None,
    )
    parser.add_argument("set", choices=sorted(SETS), help="which set to build")
    parser.add_argument("--out", type=Path, help="default: .embedtune-data/SET")
    parser.add_argument("--version", help="exact package version (default: apt's candidate)")
    parser.add_argument("--deb", type=Path, help="use this .deb instead of downloading one")
    parser.add_argument("--min-words", type=int, default=MIN_WORDS)
    parser.add_argument("--max-words", type=int, default=MAX_WORDS)
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="MODEL",
        help="score MODEL zero-shot on OUT/faq (repeatable; e.g. minilm, mpnet, a local path)",
    )
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="do not build: score the existing OUT/faq with each --baseline and print",
    )
    args = parser.parse_args(argv)
    spec = SETS[args.set]
    out = args.out or DATA_ROOT / spec.name

    try:
        if args.score_only:
            if not args.baseline:
                parser.error("--score-only needs at least one --baseline MODEL")
            print(baseline_table([score_beir(out / "faq", m) for m in args.baseline]))
            return 0
        stats = build(
            spec,
            out,
            version=args.version,
            deb=args.deb,
            min_words=args.min_words,
            max_words=args.max_words,
        )
        docs = stats["docs"]
        print(
            f"{out}/faq: {stats['passages']} passages, {stats['queries']} queries; {out}/docs: "
            f"{docs['files']} files, {docs['chars']:,} chars (~{docs['approx_pages']} pages) "
            f"({stats['source']['package']} {stats['source']['version']})"
        )
        rows = []
        for model in args.baseline:
            rows.append(score_beir(out / "faq", model))
            print(f"{model}: NDCG@10 {rows[-1]['ndcg@10']:.3f}", flush=True)
        if rows:
            write_json_atomic(out / "faq" / "baseline.json", rows)
        elif (out / "faq" / "baseline.json").exists():
            # A rebuild may change the set; scores of an earlier build would mislead.
            (out / "faq" / "baseline.json").unlink()
        write_readme(spec, out, stats, rows)
        if rows:
            print(baseline_table(rows))
    except EmbedtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
