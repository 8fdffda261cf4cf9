"""Typed configuration: one section per pipeline stage, composed into one pipeline config.

Values come from, highest priority first: CLI flags, environment variables
(``EMBEDTUNE_<SECTION>__<KEY>``, e.g. ``EMBEDTUNE_TRAIN__EPOCHS=3``), a YAML file, the defaults
below. A misspelt key fails at once, naming the key and the closest valid one::

    >>> from embedtune.config import load_config
    >>> load_config(overrides={"chunk": {"chunk_sise": 512}})
    Traceback (most recent call last):
    ...
    embedtune.errors.ConfigError: unknown key 'chunk.chunk_sise' (did you mean 'chunk.chunk_size'?) in the configuration

Some settings are left to embedtune ("auto", or unset); :func:`embedtune.recipe.settle` resolves
them once and records each in ``resolved``. :func:`dump_config` writes a settled configuration
(``RUN/config.yaml``); read back, it stays settled unless environment variables or flags change
a value, and then every resolved setting returns to what it was given as, to be settled again.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embedtune.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "Resolved",
    "IngestConfig",
    "ChunkConfig",
    "GenerateConfig",
    "TrainConfig",
    "EvaluateConfig",
    "ServeConfig",
    "PipelineConfig",
    "load_config",
    "dump_config",
    "dump_default_config",
    "ENV_PREFIX",
]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
ENV_PREFIX = "EMBEDTUNE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Section):
    """Loading documents and splitting them by document into train and validation sets."""

    paths: list[str] = Field(default_factory=list, description="Files or folders to read.")
    extensions: list[str] = Field(
        default_factory=lambda: [".pdf", ".txt", ".md", ".markdown", ".html", ".htm"],
        description="File types read when walking a folder.",
    )
    val_ratio: float = Field(0.2, gt=0, lt=1, description="Share of documents held out.")
    seed: int = Field(42, description="Seed of the train/validation split.")
    near_duplicate_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Jaccard similarity of word 5-grams above which a validation chunk counts as "
        "a near-duplicate of a training chunk and is dropped.",
    )


class ChunkConfig(_Section):
    """Token-aware chunking with the target model's own tokenizer."""

    chunk_size: int = Field(1024, gt=8, description="Tokens per chunk (llama-index default).")
    chunk_overlap: int = Field(200, ge=0, description="Tokens shared by neighbouring chunks.")
    allow_longer_than_model: bool = Field(
        False,
        description="Keep chunk_size even when it exceeds the model's max_seq_length (the model "
        "then sees only the start of each chunk).",
    )
    min_chunk_tokens: int = Field(
        32, ge=1, description="Drop chunks shorter than this (page numbers, stray headers)."
    )

    @model_validator(mode="after")
    def _overlap_smaller(self) -> ChunkConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size "
                f"({self.chunk_size})"
            )
        return self


class GenerateConfig(_Section):
    """Question generation with an OpenAI-compatible server or the offline local model."""

    backend: Literal["auto", "openai", "local"] = Field(
        "auto", description="'auto' uses openai when base_url or model is set, else local."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. vLLM/Ollama.")
    model: str | None = Field(None, description="Model name on that server, e.g. gpt-4o-mini.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key."
    )
    questions_per_chunk: int = Field(2, ge=1, le=20)
    max_chunks: int | None = Field(
        None,
        ge=1,
        description="Write questions for at most this many chunks of each split (a seeded "
        "random sample; a larger budget keeps a smaller one's chunks); None = all.",
    )
    val_max_chunks: int | None = Field(
        None,
        ge=1,
        description="The validation split's budget, when it should differ from max_chunks; "
        "None = max_chunks.",
    )
    prompt_file: str | None = Field(None, description="Replace the built-in prompt template.")
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(256, ge=16)
    concurrency: int = Field(8, ge=1, le=512)
    timeout: float = Field(60.0, gt=0, description="Seconds per request.")
    max_retries: int = Field(6, ge=0)
    roundtrip_top_k: int | None = Field(
        20,
        ge=1,
        description="Keep a question only if the round-trip model (roundtrip_model) ranks its "
        "chunk in the top k of its split; None disables the round-trip filter.",
    )
    roundtrip_model: str | None = Field(
        "auto",
        description="Model that judges the round trip (hub id, path or alias, e.g. a stronger "
        "model than the base); 'auto' = the training teacher when train.teacher gives one, "
        "else the base model; None = the base model.",
    )
    min_question_chars: int = Field(12, ge=1)
    max_question_chars: int = Field(300, ge=10)
    seed: int = 42
    local_batch_size: int = Field(
        16, ge=1, description="local backend: prompts generated together per model call."
    )
    local_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="local backend: weights dtype; 'auto' = bfloat16 where the CPU has "
        "AVX512-BF16 or AMX (faster there: see BENCHMARKS.md, generate), else float32.",
    )


class TrainConfig(_Section):
    """Fine-tuning on sentence-transformers' trainer."""

    epochs: float | None = Field(
        None, gt=0, description="None = 2 with a teacher, 1 without (as measured)."
    )
    batch_size: int = Field(32, ge=2)
    learning_rate: float | None = Field(
        None, gt=0, description="None = 5e-5 with a teacher, 2e-5 without (as measured)."
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_seq_length: int | None = Field(None, ge=8, description="None keeps the model's own.")
    seed: int = 42
    loss: Literal["mnrl", "cached_mnrl"] = "mnrl"
    mini_batch_size: int = Field(16, ge=1, description="cached_mnrl: sub-batch held in memory.")
    hard_negatives: int = Field(0, ge=0, description="Hard negatives mined per query; 0 = off.")
    hard_negative_margin: float = Field(
        0.1, ge=0, description="Skip candidates scoring within this margin of the positive."
    )
    matryoshka_dims: list[int] | None = Field(None, description="e.g. [384, 256, 128, 64].")
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    query_prompt: str | None = Field(None, description="Saved into the model as prompt 'query'.")
    document_prompt: str | None = Field(None, description="Saved as prompt 'document'.")
    eval_steps: int | None = Field(None, ge=1, description="None = evaluate once per epoch.")
    save_steps: int | None = Field(None, ge=1, description="None = save once per epoch.")
    teacher: str | None = Field(
        "auto",
        description="A stronger embedding model (hub id, path or alias such as "
        "all-mpnet-base-v2) whose in-batch ranking the student learns too; 'auto' = the "
        "packaged all-mpnet-base-v2 when the base is all-MiniLM-L6-v2 and mpnet is installed, "
        "else none; None = off.",
    )
    distill_weight: float = Field(1.0, ge=0, description="Weight of the teacher's KL term.")
    rejects: bool = Field(
        True,
        description="With a teacher, also train on the questions the round trip rejected "
        "(RUN/data/train_rejects.json), in batches of their own that learn only the teacher's "
        "in-batch ranking: their own chunk, which the round trip doubted, is never asserted as "
        "the answer.",
    )
    keep: Literal["last", "best"] = Field(
        "last",
        description="Which weights become RUN/model: 'last' (the end of training, as every "
        "benchmark measured) or 'best' (the checkpoint with the best NDCG@10 on the generated "
        "validation questions, which the benchmarks found a poor judge with a small generator).",
    )
    save_total_limit: int = Field(
        2, ge=1, description="Checkpoints kept in RUN/train/checkpoints (the best is always kept)."
    )
    bf16: Literal["auto", "on", "off"] = Field(
        "auto",
        description="bf16 autocast; 'auto' = on where the GPU or CPU (AVX512-BF16/AMX) has bf16.",
    )

    @field_validator("teacher")
    @classmethod
    def _teacher_off(cls, value: str | None) -> str | None:
        # `--teacher none` on the command line, where an empty flag cannot say None
        return None if value is not None and value.strip().lower() in ("", "none", "off") else value


class EvaluateConfig(_Section):
    """Retrieval evaluation of base vs fine-tuned models."""

    k_values: list[int] = Field(default_factory=lambda: [1, 3, 5, 10])
    corpus: Literal["full", "split"] = Field(
        "full",
        description="'full' searches validation queries against train+validation chunks, as a "
        "deployed retriever would; 'split' uses the validation chunks only (llama-index).",
    )
    baselines: list[str] = Field(default_factory=list, description="Extra models to compare.")
    data: list[str] = Field(
        default_factory=list, description="Extra evaluation sets: BEIR folders or llama-index JSON."
    )
    headings: bool = Field(
        True,
        description="Also score the validation documents' headings as queries (each against its "
        "section's body; written by prepare as RUN/chunks/val_headings.json): queries written "
        "by people, where the validation split's are written by the generator.",
    )
    bootstrap_samples: int = Field(
        2000, ge=100, description="Resamples of the queries for the 95% confidence intervals."
    )
    seed: int = Field(42, description="Seed of the bootstrap resampling.")
    batch_size: int = Field(64, ge=1)


class ServeConfig(_Section):
    """The embeddings HTTP service."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    api_key_env: str = "EMBEDTUNE_API_KEY"
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"
    max_batch_size: int = Field(64, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    max_inputs: int = Field(2048, ge=1)
    max_chars: int = Field(32768, ge=1)


class Resolved(_Section):
    """One setting embedtune resolved: what it was given as, what it became, and why."""

    given: Any = None
    value: Any = None
    why: str


class PipelineConfig(_Section):
    """Everything `embedtune run` needs, one section per stage."""

    model: str = Field(DEFAULT_MODEL, description="Base model: hub id or local path.")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    resolved: dict[str, Resolved] | None = Field(
        None,
        description="Written by embedtune when it settles the configuration: each setting it "
        "resolved ('section.key'), what it was given as and why; None until settled.",
    )

    @property
    def settled(self) -> bool:
        return self.resolved is not None

    def unsettled(self) -> PipelineConfig:
        """This configuration as given: each resolved setting back to what it was given as
        (one changed since, by hand or by a flag, keeps its new value)."""
        data = self.model_dump(mode="json", exclude={"resolved"})
        _restore_given(data, self.resolved or {})
        return PipelineConfig.model_validate(data)


def _restore_given(data: dict[str, Any], resolved: dict[str, Resolved]) -> None:
    for dotted, r in resolved.items():
        *sections, key = dotted.split(".")
        node = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] == r.value:
            node[key] = r.given


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """``EMBEDTUNE_TRAIN__EPOCHS=3`` -> ``{"train": {"epochs": 3}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name and name != f"{ENV_PREFIX}MODEL":
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] not in PipelineConfig.model_fields:
            continue  # EMBEDTUNE_API_KEY and friends are not config keys
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = PipelineConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return []
        if not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return list(model.model_fields)


def _explain(err: ValidationError, source: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            prefix = ".".join(str(p) for p in loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1, cutoff=0.5)
            hint = ""
            if close:
                hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
            else:
                valid = ", ".join(_fields_at(loc))
                hint = f" (valid keys here: {valid})"
            lines.append(f"unknown key '{dotted}'{hint}")
        else:
            lines.append(f"'{dotted}': {e['msg']} (got {e.get('input')!r})")
    where = f" in {source}" if source else ""
    return ConfigError("; ".join(lines) + (where if len(lines) == 1 else f" [{source}]"))


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> PipelineConfig:
    """Build the pipeline config from a YAML file, environment variables and CLI overrides.

    ``overrides`` is a nested dict (``{"train": {"epochs": 2}}``) whose ``None`` values are
    ignored, so CLI code can pass every flag and only those given take effect. A settled file
    (one with ``resolved``, see :func:`dump_config`) comes back settled when environment and
    flags change none of its values, else as given, to be settled again.
    """
    data: dict[str, Any] = {}
    source = ""
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; create one with 'embedtune init'")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path} must hold a mapping of sections, not {type(loaded).__name__}"
            )
        data = loaded
    env = _env_overrides(dict(os.environ if environ is None else environ))
    merged = _deep_merge(_deep_merge(data, env), _drop_none(overrides or {}))
    try:
        cfg = PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        raise _explain(exc, source or "the configuration") from None
    if cfg.settled and merged != data:
        # A settled file with a value changed on top: what was resolved may depend on it.
        cfg = cfg.unsettled()
    return cfg


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            inner = _drop_none(v)
            if inner:
                out[k] = inner
        elif v is not None:
            out[k] = v
    return out


def dump_default_config() -> str:
    """The default config as commented YAML, for `embedtune init`."""
    lines = [
        "# embedtune configuration. Every key is optional; these are the defaults.",
        "# Override any key with a CLI flag or an environment variable such as",
        "# EMBEDTUNE_TRAIN__EPOCHS=3 (section and key joined by a double underscore).",
        "",
    ]
    default = PipelineConfig()
    for name, field in PipelineConfig.model_fields.items():
        if name == "resolved":
            continue  # written by embedtune, never by a user
        value = getattr(default, name)
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            lines.append(f"# {doc}")
            lines.append(f"{name}:")
            for sub, subfield in type(value).model_fields.items():
                if subfield.description:
                    lines.append(f"  # {subfield.description}")
                dumped = yaml.safe_dump({sub: getattr(value, sub)}, default_flow_style=True)
                lines.append("  " + dumped.strip().strip("{}"))
            lines.append("")
        else:
            if field.description:
                lines.append(f"# {field.description}")
            lines.append(yaml.safe_dump({name: value}, default_flow_style=False).strip())
            lines.append("")
    return "\n".join(lines) + "\n"


def dump_config(cfg: PipelineConfig, writer: str = "embedtune") -> str:
    """A configuration as YAML, for ``RUN/config.yaml``: settled, it ends with ``resolved``, the
    settings embedtune chose and why; read back with :func:`load_config`."""
    header = (
        f"# The settled configuration of this run, written by {writer}: every setting left to\n"
        "# embedtune is resolved, and `resolved` says what it was given as and why.\n"
        if cfg.settled
        else f"# The configuration of this run, written by {writer}.\n"
    )
    data = cfg.model_dump(mode="json", exclude_none=False)
    if not cfg.settled:
        data.pop("resolved")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
