"""Prompt templates for question generation, and tolerant parsing of what models send back.

A template is plain text with two placeholders: ``{context}`` (the chunk) and ``{num_questions}``
(or ``{kind}`` and ``{start}``, one question per call: see below). Only these are substituted
(by plain replacement, not ``str.format``), so a template may show literal JSON such as
``{"questions": [...]}``. The built-in templates ship as ``.txt`` files next
to this module; ``GenerateConfig.prompt_file`` replaces them::

    >>> t = load_template(None, "openai")
    >>> "{context}" in t.text and t.questions_per_call is None
    True
    >>> parse_questions('```json\\n{"questions": ["What is R?", "install packages"]}\\n```')
    ['What is R?', 'install packages']

The local model (135M parameters) writes one question per call: asked for a list it repeats
itself, drifts into answers and numbering. Its template shows two worked example turns from no
particular field (an R example leaked into questions about other documents: see
benchmarks/journal/offline-writer.md) and ends with an ``[[assistant]]`` turn holding
``{start}``, which the local backend prefills: the reply must begin with "What", "How",
"Which", ... (``QUESTION_KINDS``, one per call on a chunk), so it is a question, and the
questions on one chunk differ even with greedy decoding.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from embedtune.errors import ConfigError

__all__ = [
    "to_messages",
    "to_passages",
    "PromptTemplate",
    "load_template",
    "render",
    "parse_questions",
    "example_questions",
    "QUESTION_KINDS",
]

#: What the local template's ``{kind}`` and ``{start}`` placeholders become for the 1st, 2nd, ...
#: call on a chunk. A reply that must begin with "What" or "How" is a question: left free, the
#: 135M model answers its own instruction ("The answer to this question would be ...") in about
#: half of its replies (measured in benchmarks/bench_generate.py).
#: The response cache keys a call by its position here (``runner._plan``'s index), not by
#: the words: append kinds, never reorder or reword one, or a cached reply answers another kind.
QUESTION_KINDS = (
    ("question starting with What", "What"),
    ("question starting with How", "How"),
    ("question starting with Which", "Which"),
    ("question starting with Why", "Why"),
    ("question starting with When", "When"),
)


@dataclass(frozen=True)
class PromptTemplate:
    """A template's text, where it came from, and how many questions one call asks for.

    ``questions_per_call`` is None when a call asks for ``{num_questions}`` questions (one call
    per chunk) and 1 for one-question-per-call templates with a ``{kind}`` placeholder.
    """

    text: str
    source: str
    questions_per_call: int | None

    @property
    def per_question(self) -> bool:
        return self.questions_per_call == 1


def _builtin(name: str) -> str:
    return resources.files("embedtune.generate").joinpath(name).read_text(encoding="utf-8")


def load_template(prompt_file: str | Path | None, backend: str) -> PromptTemplate:
    """The template for ``backend`` ("openai" or "local"), or the user's file if given.

    A user's file holds ``{context}`` and either ``{num_questions}`` (one call per chunk asks
    for them all) or ``{kind}`` (one question per call, as the built-in local template: the
    call names the kind, "question starting with What", ..., and ``{start}`` its first word),
    and is used as such by either backend. A local template of one's own is the way to show
    the small writer a worked example from one's own documents.
    """
    if prompt_file is None:
        if backend == "local":
            return PromptTemplate(_builtin("prompt_local.txt"), "built-in local", 1)
        return PromptTemplate(_builtin("prompt_openai.txt"), "built-in openai", None)
    path = Path(prompt_file).expanduser()
    if not path.is_file():
        raise ConfigError(f"generate.prompt_file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"generate.prompt_file {path} cannot be read as UTF-8 text: {exc}"
        ) from None
    per_question = "{kind}" in text and "{num_questions}" not in text
    wanted = ("{context}",) if per_question else ("{context}", "{num_questions}")
    missing = [p for p in wanted if p not in text]
    if missing:
        raise ConfigError(
            f"prompt template {path} lacks the placeholder(s) {', '.join(missing)}; a template "
            "needs {context} (where the chunk goes) and {num_questions} (how many to write), "
            "or {kind} instead for one question per call (as the built-in local template)"
        )
    return PromptTemplate(text, str(path), 1 if per_question else None)


def render(template: PromptTemplate, context: str, num_questions: int, index: int = 0) -> str:
    """Fill in a template; ``index`` picks the question kind for one-question templates."""
    text = template.text.replace("{num_questions}", str(num_questions))
    kind, start = QUESTION_KINDS[index % len(QUESTION_KINDS)]
    text = text.replace("{kind}", kind).replace("{start}", start)
    # The context goes in last so that braces inside a chunk are never treated as placeholders.
    return text.replace("{context}", context.strip())


_ROLE = re.compile(r"^\[\[(system|user|assistant)\]\]\s*$", re.M)


def to_messages(prompt: str) -> list[dict[str, str]]:
    """Chat messages from a rendered prompt.

    Lines ``[[system]]``, ``[[user]]`` and ``[[assistant]]`` start a message with that role, so
    a template can hold few-shot turns; a last ``[[assistant]]`` message is the start of the
    reply the model continues (the local backend prefills it). A prompt without them is one
    user message.
    """
    parts = _ROLE.split(prompt)
    if len(parts) == 1:
        return [{"role": "user", "content": prompt.strip()}]
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": role, "content": content.strip()})
    return messages


def to_passages(messages: list[dict[str, str]]) -> str:
    """Chat messages as plain text for a base model, which has no chat template.

    A base model continues text rather than following turns, and asked in the chat's words it
    copies the worked example or writes vague questions; shown passages each followed by the
    question it answers, it writes one about the last passage. So: the system message opens,
    each user turn becomes ``Passage:`` and its text, without its last paragraph (the
    instruction, "Write one question ..."), and each assistant turn ``Question:`` and its text.
    The reply's prefix (a last assistant turn) ends the text, where the model goes on.
    """
    parts: list[str] = []
    for m in messages:
        content = m["content"].strip()
        if m["role"] == "system":
            parts.append(content + "\n\n")
        elif m["role"] == "user":
            passage, _, instruction = content.rpartition("\n\n")
            parts.append(f"Passage: {passage or instruction}\n")
        else:
            parts.append(f"Question: {content}\n\n")
    text = "".join(parts)
    return text.rstrip("\n") if messages[-1]["role"] == "assistant" else text + "Question: "


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def _from_json(obj: object) -> list[str] | None:
    if isinstance(obj, dict):
        for key in ("questions", "queries", "question", "query", "items", "results"):
            if key in obj:
                return _from_json(obj[key])
        values = list(obj.values())
        if len(values) == 1:
            return _from_json(values[0])
        return None
    if isinstance(obj, list):
        out = []
        for item in obj:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                inner = _from_json(item)
                out.extend(inner or [])
        return out
    if isinstance(obj, str):
        return [obj]
    return None


def _try_json(text: str) -> list[str] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        cand = cand.strip()
        for opener, closer in (("{", "}"), ("[", "]")):
            start, end = cand.find(opener), cand.rfind(closer)
            if start == -1 or end <= start:
                continue
            try:
                found = _from_json(json.loads(cand[start : end + 1]))
            except json.JSONDecodeError:
                continue
            if found is not None:
                return found
    return None


_QUOTED = re.compile(r'"((?:[^"\\]|\\.){3,})"')


def parse_questions(text: str) -> list[str]:
    """Candidate questions from a model's reply, whatever shape it took.

    JSON (an object with a ``questions`` list, a bare list, either inside code fences or amid
    prose) is read first; a JSON reply cut off mid-way yields the strings it completed; anything
    else is split into lines. Lines are returned as written, numbering and preambles included:
    `filters.clean_question` strips and counts those.
    """
    if not text or not text.strip():
        return []
    found = _try_json(text)
    if found is not None:
        return [q for q in found if q.strip()]
    stripped = text.strip()
    if stripped.startswith(("{", "[", "```")) and '"' in stripped:
        # Truncated or malformed JSON: keep the complete string literals, except the keys.
        out = []
        for m in _QUOTED.finditer(stripped):
            value = m.group(1)
            after = stripped[m.end() : m.end() + 3].lstrip()
            if after.startswith(":"):
                continue
            try:
                out.append(json.loads(f'"{value}"'))
            except json.JSONDecodeError:
                out.append(value)
        if out:
            return out
    lines = []
    for line in stripped.splitlines():
        line = line.strip().strip("`").strip()
        if line and line.lower() not in ("json", "```json"):
            lines.append(line)
    return lines


def example_questions(template: PromptTemplate) -> list[str]:
    """The questions a template's worked example turns answer with (its ``[[assistant]]``
    turns but a last one, the reply's prefix), so that copies of them can be dropped.

    >>> example_questions(load_template(None, "local"))[0]
    'How do I change the time the nightly backup runs?'
    """
    messages = to_messages(render(template, "", 1))
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return [q for m in messages if m["role"] == "assistant" for q in parse_questions(m["content"])]
