"""The FAQ-set builder: the zsh, CVS, Perl and Vim FAQs -> entries; each set's docs selection."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "build_faq_sets.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_faq_sets", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


# What YODL writes for the zsh FAQ: flat <h1>/<h2> headings, unclosed <p> and <li>, and the same
# chapter navigation list above and below the entries.
ZSH_PAGE = """<!DOCTYPE html><html><head><meta charset="UTF-8">
<title> Z-Shell Frequently-Asked Questions </title><style>.XXfc {margin: auto;}</style></head>
<body >
<hr>
<ul>
    <li> <a href="FAQ.html">Table of Contents</a>
    <li> <a href="FAQ02.html">Next Chapter</a>
</ul>
<hr>
<a name="l1"></a>
<h1 >Chapter 3: How to get various things to work</h1>
<p>
<a name="l19"></a>
<h2 >3.1: Why does <code >$var</code> where <code >var="foo bar"</code> not do what I expect?</h2>
<a name="31"></a>
<p>
In most Bourne-shell derivatives, multiple-word variables such as
  <pre>

    var="foo bar"

</pre>

  are split into words.  The option <code >SH_WORD_SPLIT</code> exists for that.
<p>
See <a href="FAQ02.html#21">2.1</a> for more.
<a name="l20"></a>
<h2 >3.2: In which startup file do I put...?</h2>
<a name="32"></a>
<p>
Put interactive settings in <code >.zshrc</code>.
<h2 >Acknowledgments:</h2>
<p>
Thanks to everybody.
<p>
<hr>
<ul>
    <li> <a href="FAQ.html">Table of Contents</a>
    <li> <a href="FAQ02.html">Previous Chapter</a>
</ul>
<hr>
</body>
</html>"""


def test_zsh_faq_page_is_cut_at_flat_headings(builder):
    sections = builder.parse_zsh_faq(ZSH_PAGE, "FAQ03")

    assert [(s.id, s.level) for s in sections] == [
        ("FAQ03/chapter", 1),
        ("FAQ03/3.1", 2),
        ("FAQ03/3.2", 2),
        ("FAQ03/acknowledgments", 2),
    ]
    by_id = {s.id: s for s in sections}
    # Numbers go from the heading into the id; inline code stays inline.
    assert by_id["FAQ03/3.1"].heading == 'Why does $var where var="foo bar" not do what I expect?'
    assert by_id["FAQ03/acknowledgments"].heading == "Acknowledgments"
    assert by_id["FAQ03/chapter"].text == ""
    body = by_id["FAQ03/3.1"].text
    assert body.startswith("In most Bourne-shell derivatives, multiple-word variables such as")
    assert 'var="foo bar" are split into words.' in body
    # The body stops at the next heading, and the navigation lists are gone.
    assert body.endswith("See 2.1 for more.")
    assert by_id["FAQ03/3.2"].text == "Put interactive settings in .zshrc."
    assert by_id["FAQ03/acknowledgments"].text == "Thanks to everybody."
    assert not any("Chapter" in s.text or "Contents" in s.text for s in sections)


CVS_FAQ = """-------------------------------------------------------------------------------
   CVS is Copyright (C) 1989-2005 The Free Software Foundation, Inc.
-------------------------------------------------------------------------------

  Category: /, all questions

  Category: /Commands_/Add_ad_new/

          " + Add, ad, new"

    1. What is "add" for?

          To add a new directory or file to the Repository. It takes
          effect on the next commit.

          Last modified: _6/13/1997_

    2. How do I add a whole tree? I want to keep the
    history of every file.

          Two ways:

    1. Use "import".
    2. Use "add" in each directory.

          Last modified: _6/13/1997_

  Category: /Commands_/Checkout_co_get/

          " + Checkout, co, get"

    1. Explain: "cvs checkout: cannot find module"

   The module is not in the modules file.

   Last modified: _12/09/2004_
     _________________________________________________________________

   [Add an answer to this category]
   The FAQ-O-Matic lives at http://example.org/faqomatic.
"""


def test_cvs_faq_entries_by_category_number_and_wrapped_heading(builder):
    sections = builder.parse_cvs_faq(CVS_FAQ)

    assert [s.id for s in sections] == [
        "commands.add-ad-new/1",
        "commands.add-ad-new/2",
        "commands.checkout-co-get/1",
    ]
    first, second, third = sections
    assert first.heading == 'What is "add" for?'
    assert first.text == (
        "To add a new directory or file to the Repository. It takes effect on the next commit."
    )
    # A wrapped question is joined; "1." and "2." out of the category's sequence are answer text.
    assert second.heading == "How do I add a whole tree? I want to keep the history of every file."
    assert second.text == 'Two ways: 1. Use "import". 2. Use "add" in each directory.'
    # The date stamps and the FAQ-O-Matic's footer are not answer text.
    assert third.text == "The module is not in the modules file."
    assert all("Last modified" not in s.text for s in sections)


def test_cvs_explain_entries_are_distractors(builder):
    dataset, stats = builder.build_dataset(builder.parse_cvs_faq(CVS_FAQ), min_words=3)

    assert sorted(dataset.queries.values()) == [
        "How do I add a whole tree? I want to keep the history of every file.",
        'What is "add" for?',
    ]
    assert stats["distractors"] == [
        'commands.checkout-co-get/1: Explain: "cvs checkout: cannot find module"'
    ]


REDIRECT = """<html><head><meta http-equiv="Refresh" content="0; url=Shell-Grammar.html#Aliasing">
</head><body><p>The node you are looking for is at <a href="Shell-Grammar.html">Aliasing</a>.</p>
</body></html>"""
INDEX = """<html><body><h1>Concept Index</h1><table>
<tr><td><a href="Expansion.html#a">alias expansion</a></td><td><a href="Expansion.html">Expansion</a></td></tr>
<tr><td><a href="Options.html#b">options, setting</a></td><td><a href="Options.html">Options</a></td></tr>
</table></body></html>"""
CHAPTER = """<html><body><h2>Expansion</h2><p>The following types of expansions are performed in
the indicated order in five steps: history expansion, alias expansion, process substitution,
parameter expansion and filename generation. See <a href="Options.html">Options</a>.</p>
</body></html>"""


def test_navigation_pages_are_told_apart_from_documents(builder):
    assert builder.is_navigation_page(REDIRECT) == "redirect stub"
    assert builder.is_navigation_page(INDEX).startswith("navigation (")
    assert builder.is_navigation_page(CHAPTER) is None


def test_zsh_docs_keep_the_manual_and_leave_out_faq_and_navigation(builder, tmp_path):
    html = tmp_path / "usr/share/doc/zsh-common/html"
    html.mkdir(parents=True)
    for name, text in {
        "Expansion.html": CHAPTER,
        "Aliasing.html": REDIRECT,
        "Concept-Index.html": INDEX,
        "FAQ01.html": ZSH_PAGE,
        "zsh_abt.html": CHAPTER.replace("Expansion", "About This Document"),
    }.items():
        (html / name).write_text(text, encoding="utf-8")

    keep, dropped = builder._zsh_docs(tmp_path)

    assert [p.name for p in keep] == ["Expansion.html"]
    assert {d["file"] for d in dropped} == {
        "Aliasing.html",
        "Concept-Index.html",
        "FAQ01.html",
        "zsh_abt.html",
    }
    assert [p.name for p in builder._zsh_faq_files(tmp_path)] == ["FAQ01.html"]


def test_cvs_docs_are_the_manuals_not_the_faq(builder, tmp_path):
    doc = tmp_path / "usr/share/doc/cvs"
    doc.mkdir(parents=True)
    for name in ("cvs.html", "cvsclient.html", "cvs-paper.pdf", "cvs.pdf", "NEWS.gz"):
        (doc / name).write_bytes(b"x")
    (doc / "FAQ.gz").write_bytes(gzip.compress(CVS_FAQ.encode()))

    keep, dropped = builder._cvs_docs(tmp_path)

    assert [p.name for p in keep] == ["cvs.html", "cvsclient.html", "cvs-paper.pdf"]
    assert {d["file"] for d in dropped} == {"cvs.pdf", "NEWS.gz", "FAQ.gz"}
    faq = builder.SETS["cvs"]
    assert [s.id for s in faq.parse(faq.faq_files(tmp_path))][0] == "commands.add-ad-new/1"


def test_leaked_queries_ignore_case_and_punctuation(builder):
    queries = {"q1": "What is completion?", "q2": "How do I get a newline in my prompt?"}
    docs = "Chapter 4. WHAT IS COMPLETION: an overview of the completion system."

    assert builder.leaked_queries(queries, docs) == ["q1"]


def test_docs_folder_not_written_by_the_builder_is_left_alone(builder, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "mine.md").write_text("notes", encoding="utf-8")
    source = tmp_path / "tree" / "a.html"
    source.parent.mkdir()
    source.write_text(CHAPTER, encoding="utf-8")

    with pytest.raises(builder.InputError, match="not written by this script"):
        builder._copy_docs([source], tmp_path / "tree", docs)
    assert (docs / "mine.md").is_file()

    fresh = tmp_path / "fresh"
    assert builder._copy_docs([source], tmp_path / "tree", fresh) == [
        {"file": "a.html", "from": "/a.html"}
    ]
    # A second build replaces what the first one wrote.
    (fresh / "old.html").write_text(CHAPTER, encoding="utf-8")
    builder._copy_docs([source], tmp_path / "tree", fresh)
    assert sorted(p.name for p in fresh.iterdir()) == [".built-by-build_faq_sets", "a.html"]


# A perlfaq page as perl-doc ships it: POD with chapters, entries, formatting codes (some with
# doubled brackets), a list and a verbatim code paragraph.
PERL_FAQ = """=head1 NAME

perlfaq4 - Data Manipulation

=head1 Data: Numbers

=head2 Why is C<int()> broken?

Your C<int()> is most probably working just fine. See
L<perlop/"Floating-point Arithmetic"> and L<the manual|perlnumber>.

    print int(0.6/0.2-2), "\\n";   # B<not> a code here

=head2 How do I sort a hash by value?

Use C<< sort { $h{$a} <=> $h{$b} } keys %h >>X<sort>, as E<lt>perlfuncE<gt> shows:

=over 4

=item * by B<I<value>>

=back

=cut
"""


def test_perl_faq_entries_come_from_pod_headings_with_codes_as_text(builder):
    sections = builder.parse_pod_faq(PERL_FAQ, "perlfaq4")

    assert [(s.id, s.level) for s in sections] == [
        ("perlfaq4/h1-1", 1),
        ("perlfaq4/h1-2", 1),
        ("perlfaq4/1", 2),
        ("perlfaq4/2", 2),
    ]
    first, second = sections[2:]
    assert first.heading == "Why is int() broken?"
    assert first.text == (
        'Your int() is most probably working just fine. See "Floating-point Arithmetic" in '
        'perlop and the manual. print int(0.6/0.2-2), "\\n"; # B<not> a code here'
    )
    assert second.heading == "How do I sort a hash by value?"
    # Doubled brackets keep the inner "<=>"; X<> index entries vanish; =item text stays.
    assert second.text == (
        "Use sort { $h{$a} <=> $h{$b} } keys %h, as <perlfunc> shows: * by value"
    )


def test_perl_docs_are_the_manual_as_text_without_faq_toc_or_release_notes(builder, tmp_path):
    if builder.shutil.which("pod2html") is None:
        pytest.skip("pod2html (perl) is not installed")
    pod = tmp_path / "usr/share/perl/5.36.0/pod"
    pod.mkdir(parents=True)
    page = "=head1 NAME\n\n{0} - a page\n\n=head1 DESCRIPTION\n\nUse C<sort> to sort.\n"
    for name in ("perlfunc", "perlfaq1", "perlfaq", "perltoc", "perl5360delta", "perlwin32",
                 "perlguts", "perlunifaq"):  # fmt: skip
        (pod / f"{name}.pod").write_text(page.format(name), encoding="utf-8")

    keep, dropped = builder._perl_docs(tmp_path)

    assert [p.name for p in keep] == ["perlfunc.html"]
    assert "Use <code>sort</code> to sort." in keep[0].read_text(encoding="utf-8")
    assert len(dropped) == 7 and "perlfunc.pod" not in {d["file"] for d in dropped}
    assert [p.name for p in builder._perl_faq_files(tmp_path)] == ["perlfaq1.pod"]


# The Vim FAQ as vim-doc ships it (FAQ.gz): an index of every question, then a rule, then the
# chapters and their entries, a wrapped question, an answer with a numbered line of its own, and
# the maintainer's footer after the last rule.
VIM_FAQ = """vim:tw=75:wrap:fo=tcqn2:sw=4:sts=4:et

This Vim FAQ is created from the questions and answers posted to the list.

INDEX

SECTION 1 - GENERAL INFORMATION
    1.1. What is Vim?
    1.2. Who wrote Vim?

SECTION 7 - BACKUP
    7.1. When I edit and save files, Vim creates a file with a "~". How do I stop
         Vim from creating this file?

=============================================================================

SECTION 1 - GENERAL INFORMATION


1.1. What is Vim?

Vim stands for Vi IMproved.

    :help intro


1.2. Who wrote Vim?

Most of Vim was written by Bram Moolenaar.


=============================================================================

SECTION 7 - BACKUP


7.1. When I edit and save files, Vim creates a file with a "~". How do I stop
     Vim from creating this file?

You have to reset the 'backup' option:
1.2. is not an entry here.

    :set nobackup


=============================================================================

Current Maintainer: Yegappan Lakshmanan
Last updated on: 2 January 2005
"""


def test_vim_faq_entries_follow_the_index_with_wrapped_headings_and_no_footer(builder):
    sections = builder.parse_vim_faq(VIM_FAQ)

    assert [(s.id, s.level) for s in sections] == [
        ("FAQ/section-1", 1),
        ("FAQ/1.1", 2),
        ("FAQ/1.2", 2),
        ("FAQ/section-7", 1),
        ("FAQ/7.1", 2),
    ]
    by_id = {s.id: s for s in sections}
    assert by_id["FAQ/section-7"].heading == "BACKUP"
    assert by_id["FAQ/1.1"].text == "Vim stands for Vi IMproved. :help intro"
    # The rule closes the chapter's last entry; the index above the first rule is not parsed.
    assert by_id["FAQ/1.2"].text == "Most of Vim was written by Bram Moolenaar."
    # A wrapped question is joined; "1.2." out of the chapter's sequence is answer text.
    assert by_id["FAQ/7.1"].heading == (
        'When I edit and save files, Vim creates a file with a "~". How do I stop Vim from '
        "creating this file?"
    )
    assert by_id["FAQ/7.1"].text == (
        "You have to reset the 'backup' option: 1.2. is not an entry here. :set nobackup"
    )
    assert all("Maintainer" not in s.text for s in sections)


def test_vim_docs_are_the_help_pages_without_release_notes_tags_or_contents(builder, tmp_path):
    doc = tmp_path / "usr/share/doc/vim"
    html = doc / "html"
    html.mkdir(parents=True)
    for name in ("usr_01", "options", "version9", "todo", "tags", "index", "usr_toc", "uganda",
                 "develop"):  # fmt: skip
        (html / f"{name}.html").write_text(CHAPTER, encoding="utf-8")
    (html / "helptoc.html").write_text(INDEX, encoding="utf-8")
    (doc / "FAQ.gz").write_bytes(gzip.compress(VIM_FAQ.encode()))

    keep, dropped = builder._vim_docs(tmp_path)

    assert [p.name for p in keep] == ["options.html", "usr_01.html"]
    assert {d["file"] for d in dropped} == {
        "version9.html",
        "todo.html",
        "tags.html",
        "index.html",
        "usr_toc.html",
        "uganda.html",
        "develop.html",
        "helptoc.html",
    }
    faq = builder.SETS["vim"]
    dataset, stats = builder.build_dataset(faq.parse(faq.faq_files(tmp_path)), min_words=3)
    assert sorted(dataset.queries) == ["q/FAQ/1.1", "q/FAQ/1.2", "q/FAQ/7.1"]
