"""Request and response bodies of the two APIs the service speaks.

- OpenAI's ``POST /v1/embeddings``: ``{"input": str | [str], "model", "encoding_format",
  "dimensions"}`` -> ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
  "model", "usage": {"prompt_tokens", "total_tokens"}}``; errors ``{"error": {"message", "type",
  "param", "code"}}``.
- text-embeddings-inference's ``POST /embed``: ``{"inputs": str | [str], "normalize", "truncate",
  "prompt_name"}`` -> ``[[float, ...], ...]``; errors ``{"error", "error_type"}``.

``input``/``inputs`` are typed loosely here and checked by :mod:`embedtune.serve.inputs`, so that
a wrong type gets a message that says what to send instead of pydantic's list of union branches.
The other strings are refused when they hold a lone surrogate (``"\\ud800"``): valid JSON, but
not text, and ``model`` is echoed back in the answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic_core import PydanticCustomError

from embedtune.serve.inputs import surrogate_at

__all__ = [
    "EmbeddingRequest",
    "EmbeddingObject",
    "Usage",
    "EmbeddingResponse",
    "ModelObject",
    "ModelList",
    "EmbedRequest",
    "OpenAIError",
    "OpenAIErrorBody",
    "TEIError",
    "Info",
]


def _text(value: str) -> str:
    if surrogate_at(value) is not None:
        raise PydanticCustomError(
            "lone_surrogate",
            "holds a lone surrogate (\\ud800-\\udfff), which is not text; send UTF-8",
        )
    return value


Text = Annotated[str, AfterValidator(_text)]
"""A string that can be encoded as UTF-8 (no lone surrogates)."""


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; unknown fields are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    input: Any = Field(
        ...,
        description="A string or a list of strings (at most max_inputs). Token-id arrays are "
        "refused: they come from OpenAI's tokenizer, not this model's.",
        examples=["How do I install a package from CRAN?"],
    )
    model: Text | None = Field(None, description="Accepted and echoed back; one model is served.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'base64': little-endian float32 bytes, base64-encoded."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Keep the first N dimensions (Matryoshka) and re-normalise."
    )
    user: Text | None = None
    prompt_name: Text | None = Field(
        None, description="embedtune extension: a prompt saved in the model, e.g. 'query'."
    )


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "embedtune"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class EmbedRequest(BaseModel):
    """text-embeddings-inference's ``/embed`` request."""

    model_config = ConfigDict(extra="ignore")

    inputs: Any = Field(..., description="A string or a list of strings.")
    normalize: StrictBool = Field(True, description="Scale each embedding to unit length.")
    truncate: StrictBool = Field(
        False,
        description="Cut inputs longer than the model's max_seq_length; when false they are "
        "refused with 413, as text-embeddings-inference does.",
    )
    prompt_name: Text | None = Field(None, description="A prompt saved in the model.")
    dimensions: int | None = Field(None, ge=1, description="Keep the first N dimensions.")


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


class TEIError(BaseModel):
    error: str
    error_type: str


class Info(BaseModel):
    model_id: str = Field(..., description="The served name: never a path on the server.")
    model_type: Literal["embedding"] = "embedding"
    dimension: int
    max_seq_length: int | None
    max_input_length: int | None = Field(None, description="TEI's name for max_seq_length.")
    prompts: dict[str, str]
    default_prompt_name: str | None
    backend: str
    max_batch_size: int
    max_batch_tokens: int
    max_wait_ms: float
    max_inputs: int
    max_client_batch_size: int = Field(..., description="TEI's name for max_inputs.")
    max_chars: int
    max_queue_seconds: float
    max_concurrent_requests: int
    max_body_bytes: int
    auth: bool
    version: str
