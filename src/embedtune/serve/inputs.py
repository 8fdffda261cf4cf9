"""Check what a request asks to embed, with a message that says what to send instead.

``input`` (OpenAI) and ``inputs`` (text-embeddings-inference) are typed loosely in the schemas
and checked here, so that a wrong type gets one clear sentence rather than pydantic's list of
union branches::

    >>> texts_from(["What is R?"], "input", max_inputs=2048, max_chars=32768)
    ['What is R?']
    >>> texts_from("\\ud800", "input", max_inputs=2048, max_chars=32768)
    Traceback (most recent call last):
    embedtune.serve.errors.ApiError: 'input'[0] holds a lone surrogate ...
"""

from __future__ import annotations

import re
from typing import Any

from embedtune.serve.errors import ApiError

__all__ = ["texts_from", "surrogate_at", "json_type"]

# JSON may spell any UTF-16 code unit as \uXXXX, so "\ud800" alone is valid JSON, but it is half
# of a character: Python keeps it in the str, and the tokenizer (and UTF-8) cannot take it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_at(text: str) -> int | None:
    """Where ``text`` holds a lone UTF-16 surrogate (``\\ud800``-``\\udfff``), if anywhere."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    return None if found is None else found.start()


def surrogate_message(where: str, position: int, text: str) -> str:
    return (
        f"{where} holds a lone surrogate ({ascii(text[position])[1:-1]} at character "
        f"{position}), half of a UTF-16 pair and not a character; JSON \\u escapes from "
        "\\ud800 to \\udfff must come in high-low pairs. Send the text as UTF-8"
    )


def texts_from(value: Any, field: str, *, max_inputs: int, max_chars: int) -> list[str]:
    """``value`` as a non-empty list of texts within the limits, or ApiError (413 or 422)."""
    texts = _as_list_of_str(value, field)
    if not texts:
        raise ApiError(
            422,
            f"'{field}' is an empty list; send at least one text",
            param=field,
            code="empty_input",
            tei_type="Empty",
        )
    if len(texts) > max_inputs:
        raise ApiError(
            413,
            f"'{field}' has {len(texts)} texts, more than max_inputs={max_inputs} per request; "
            "split it, or raise serve.max_inputs",
            param=field,
            code="max_inputs_exceeded",
        )
    for i, text in enumerate(texts):
        _check_text(text, f"'{field}'[{i}]", field, max_chars)
    return texts


def _as_list_of_str(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value and all(_is_token_ids(v) for v in value):
        raise ApiError(
            422,
            f"'{field}' holds token ids; this server takes text only, because token ids from "
            "another tokenizer (e.g. tiktoken) mean nothing to this model. Send strings "
            "(LangChain's OpenAIEmbeddings: set check_embedding_ctx_length=False)",
            param=field,
            code="token_ids_not_supported",
        )
    raise ApiError(
        422,
        f"'{field}' must be a string or a list of strings, not {json_type(value)}",
        param=field,
        code="invalid_type",
    )


def _is_token_ids(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(text: str, where: str, field: str, max_chars: int) -> None:
    if not text.strip():
        raise ApiError(
            422,
            f"{where} is empty; every input needs some text",
            param=field,
            code="empty_input",
            tei_type="Empty",
        )
    if len(text) > max_chars:
        raise ApiError(
            413,
            f"{where} has {len(text)} characters, more than max_chars={max_chars}; shorten it, "
            "or raise serve.max_chars",
            param=field,
            code="max_chars_exceeded",
        )
    position = surrogate_at(text)
    if position is not None:
        raise ApiError(
            422,
            surrogate_message(where, position, text),
            param=field,
            code="invalid_text",
        )


def json_type(value: Any) -> str:
    """How JSON would name ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list with non-string items"
    return type(value).__name__
