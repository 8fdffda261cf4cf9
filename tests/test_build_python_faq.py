"""The python-faq builder turns Sphinx FAQ pages into a BEIR set: headings -> queries, bodies -> passages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from embedtune.dataset import QADataset

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "build_python_faq.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_python_faq", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


# The same structure Sphinx writes for docs.python.org's FAQ: a page-title section holding a
# "Contents" box and chapter sections, whose subsections are the questions.
PAGE = """<!DOCTYPE html><html><body>
<div class="sphinxsidebar"><h3>Navigation</h3><p>Previous topic: nothing to see here at all today</p></div>
<div class="body" role="main">
<section id="tiny-faq">
<h1><a class="toc-backref" href="#id1">Tiny FAQ</a><a class="headerlink" href="#tiny-faq">¶</a></h1>
<nav class="contents" id="contents"><p class="topic-title">Contents</p>
<ul><li><p><a href="#how-do-i-reverse-a-list">How do I reverse a list?</a></p></li></ul></nav>
<section id="core-language">
<h2>Core Language<a class="headerlink" href="#core-language">¶</a></h2>
<section id="how-do-i-reverse-a-list">
<h3>1.2 How do I reverse a list?<a class="headerlink" href="#how-do-i-reverse-a-list">¶</a></h3>
<p>Use the <code class="docutils literal"><span class="pre">reversed()</span></code> built-in function,
which returns an iterator that walks the list from its last item to its first:</p>
<div class="highlight-python3"><div class="highlight"><pre><span></span><span class="k">for</span> <span class="n">x</span> <span class="ow">in</span> <span class="nb">reversed</span><span class="p">(</span><span class="n">sequence</span><span class="p">):</span>
    <span class="o">...</span>  <span class="c1"># do something with x</span>
</pre></div></div>
<p>This leaves the original list untouched.</p>
</section>
<section id="why-is-it-called-tiny">
<h3>Why is it called Tiny?<a class="headerlink" href="#why-is-it-called-tiny">¶</a></h3>
<p>See the previous question.</p>
</section>
<section id="my-class-defines-del">
<h3>My class defines __del__ but it is not called when I delete the object.</h3>
<p>There are several possible reasons for this: the del statement does not necessarily call
__del__ because it simply decrements the object's reference count.</p>
</section>
</section>
</section>
</div></body></html>"""


def test_parse_keeps_every_section_with_its_own_body(builder):
    sections = builder.parse_faq_html(PAGE, "tiny")

    assert [s.id for s in sections] == [
        "tiny/tiny-faq",
        "tiny/core-language",
        "tiny/how-do-i-reverse-a-list",
        "tiny/why-is-it-called-tiny",
        "tiny/my-class-defines-del",
    ]
    by_id = {s.id: s for s in sections}
    question = by_id["tiny/how-do-i-reverse-a-list"]
    # Section number and permalink pilcrow are gone from the heading.
    assert question.heading == "How do I reverse a list?"
    assert question.level == 3
    # The page title's body is only the Contents box, which is navigation and is dropped;
    # a chapter's body does not swallow its subsections.
    assert by_id["tiny/tiny-faq"].text == ""
    assert by_id["tiny/core-language"].text == ""
    assert "Navigation" not in question.text


def test_body_text_keeps_code_and_collapses_whitespace(builder):
    body = {s.id: s for s in builder.parse_faq_html(PAGE, "tiny")}["tiny/how-do-i-reverse-a-list"]

    assert body.text.startswith("Use the reversed() built-in function, which returns")
    assert "for x in reversed(sequence): ... # do something with x" in body.text
    assert body.text.endswith("This leaves the original list untouched.")
    assert "\n" not in body.text and "  " not in body.text


def test_build_dataset_turns_headings_into_queries_and_drops_short_sections(builder, tmp_path):
    sections = builder.parse_faq_html(PAGE, "tiny")
    dataset, stats = builder.build_dataset(sections, min_words=15, max_words=25)

    assert dataset.queries == {"q/tiny/how-do-i-reverse-a-list": "How do I reverse a list?"}
    assert dataset.relevant_docs == {
        "q/tiny/how-do-i-reverse-a-list": ["tiny/how-do-i-reverse-a-list"]
    }
    # The statement-style entry stays as a distractor passage; the 4-word answer and the empty
    # title/chapter sections are dropped.
    assert set(dataset.corpus) == {"tiny/how-do-i-reverse-a-list", "tiny/my-class-defines-del"}
    assert stats["distractor_passages"] == 1
    assert {d["id"] for d in stats["dropped_sections"]} == {
        "tiny/tiny-faq",
        "tiny/core-language",
        "tiny/why-is-it-called-tiny",
    }
    # Passages are cut to max_words.
    assert len(dataset.corpus["tiny/how-do-i-reverse-a-list"].split()) == 25
    assert stats["truncated_passages"] == 1

    dataset.to_beir(tmp_path / "beir")
    reloaded = QADataset.from_beir(tmp_path / "beir")
    assert reloaded.queries == dataset.queries
    assert reloaded.corpus == dataset.corpus
    header = (tmp_path / "beir" / "qrels" / "test.tsv").read_text().splitlines()[0]
    assert header == "query-id\tcorpus-id\tscore"


def test_same_question_on_two_pages_is_one_query_with_two_answers(builder):
    body = "Python is an interpreted, interactive, object-oriented programming language. " * 2
    sections = [
        builder.Section("general", "what-is-python", 3, "What is Python?", body),
        builder.Section("installed", "what-is-python", 2, "What is Python?", body),
    ]
    dataset, stats = builder.build_dataset(sections)

    assert list(dataset.queries) == ["q/general/what-is-python"]
    assert dataset.relevant_docs["q/general/what-is-python"] == [
        "general/what-is-python",
        "installed/what-is-python",
    ]
    assert stats["queries_with_several_relevant"] == ["q/general/what-is-python"]


@pytest.mark.parametrize(
    ("heading", "level", "expected"),
    [
        ("How do you remove multiple items from a list", 3, True),
        ("How do I delete a file? (And other file questions…)", 3, True),
        ("Why is Python Installed on my Computer? FAQ", 1, False),
        ("Performance", 2, False),
    ],
)
def test_is_question(builder, heading, level, expected):
    assert builder.is_question(heading, level) is expected
