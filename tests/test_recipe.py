"""Settling the configuration: what "auto" becomes, why, and how RUN/config.yaml keeps it."""

from __future__ import annotations

import pytest

from embedtune import recipe
from embedtune.config import PipelineConfig, TrainConfig, dump_config, load_config
from embedtune.errors import ConfigError
from embedtune.recipe import AUTO_TEACHER, cpu_supports_bf16, resolve_train, settle


@pytest.fixture()
def mpnet_installed(monkeypatch):
    monkeypatch.setattr(recipe, "is_installed", lambda which: True)


@pytest.fixture()
def mpnet_missing(monkeypatch):
    monkeypatch.setattr(recipe, "is_installed", lambda which: which != "mpnet")


def _train(cfg: TrainConfig, base: str = "all-MiniLM-L6-v2") -> TrainConfig:
    return resolve_train(base, cfg)[0]


def test_default_minilm_gets_the_packaged_mpnet_teacher_two_epochs_at_5e5(mpnet_installed):
    t = _train(TrainConfig(), "sentence-transformers/all-MiniLM-L6-v2")
    assert (t.teacher, t.epochs, t.learning_rate) == (AUTO_TEACHER, 2.0, 5e-5)
    assert t.rejects is True and t.keep == "last" and t.bf16 in ("on", "off")


def test_without_mpnet_training_falls_back_and_says_how_to_install_it(mpnet_missing):
    t, resolved = resolve_train("all-MiniLM-L6-v2", TrainConfig())
    assert (t.teacher, t.epochs, t.learning_rate) == (None, 1.0, 2e-5)
    assert "make setup-mpnet" in resolved["train.teacher"].why


def test_other_base_models_get_no_teacher_unless_named(mpnet_installed):
    assert _train(TrainConfig(), "BAAI/bge-base-en-v1.5").teacher is None
    named = _train(TrainConfig(teacher="BAAI/bge-large-en-v1.5"), "BAAI/bge-base-en-v1.5")
    assert named.teacher == "BAAI/bge-large-en-v1.5" and named.epochs == 2.0


def test_a_base_without_teacher_keeps_half_its_own_weights_one_with_a_teacher_none(
    mpnet_installed,
):
    alone, resolved = resolve_train("BAAI/bge-base-en-v1.5", TrainConfig())
    assert alone.merge_base == 0.5
    assert resolved["train.merge_base"].why.startswith("without a teacher")
    assert _train(TrainConfig(), "all-MiniLM-L6-v2").merge_base == 0.0
    named = TrainConfig(teacher="BAAI/bge-large-en-v1.5")
    assert _train(named, "BAAI/bge-base-en-v1.5").merge_base == 0.0
    assert _train(TrainConfig(lora=True), "BAAI/bge-base-en-v1.5").merge_base == 0.0


def test_lora_trains_at_a_rate_that_moves_the_adapters(mpnet_installed):
    # LoRA's update starts at zero; at full fine-tuning's rates it left the model nearly as it
    # was: 2e-5 on mpnet without a teacher, 5e-5 on MiniLM with mpnet teaching.
    t, resolved = resolve_train("BAAI/bge-base-en-v1.5", TrainConfig(lora=True))
    assert (t.learning_rate, t.merge_base) == (1e-3, 0.0)
    assert resolved["train.learning_rate"].why.startswith("with LoRA: 0.001")
    assert _train(TrainConfig(), "BAAI/bge-base-en-v1.5").learning_rate == 2e-5
    taught, resolved = resolve_train("all-MiniLM-L6-v2", TrainConfig(lora=True))
    assert (taught.teacher, taught.learning_rate) == (AUTO_TEACHER, 1e-3)
    assert _train(TrainConfig()).learning_rate == 5e-5  # full fine-tuning with the teacher
    given = TrainConfig(lora=True, learning_rate=2e-4)
    assert _train(given, "BAAI/bge-base-en-v1.5").learning_rate == 2e-4


def test_explicit_settings_win_over_auto(mpnet_installed):
    t, resolved = resolve_train(
        "all-MiniLM-L6-v2",
        TrainConfig(teacher=None, epochs=3, learning_rate=1e-5, merge_base=0, bf16="on"),
    )
    assert (t.teacher, t.epochs, t.learning_rate, t.bf16) == (None, 3.0, 1e-5, "on")
    assert t.merge_base == 0
    assert resolved == {}


def test_round_trip_judge_follows_the_teacher(mpnet_installed):
    assert settle(PipelineConfig()).generate.roundtrip_model == AUTO_TEACHER
    no_teacher = PipelineConfig(train=TrainConfig(teacher=None))
    assert settle(no_teacher).generate.roundtrip_model == no_teacher.model
    base = PipelineConfig(generate={"roundtrip_model": None}, train={"teacher": AUTO_TEACHER})
    assert settle(base).generate.roundtrip_model is None  # None: the base, whatever the teacher
    named = PipelineConfig(generate={"roundtrip_model": "my/judge"})
    assert settle(named).generate.roundtrip_model == "my/judge"


@pytest.mark.parametrize("native", [True, False])
def test_the_judge_encodes_in_bf16_where_training_does(mpnet_installed, monkeypatch, native):
    """roundtrip_dtype: auto follows the same hardware check as train.bf16: auto, so the round
    trip's embeddings are the ones the teacher's labels read back; a given dtype stays."""
    monkeypatch.setattr(recipe, "bf16_support", lambda: (native, "checked"))
    cfg = settle(PipelineConfig())
    assert cfg.generate.roundtrip_dtype == ("bfloat16" if native else "float32")
    assert cfg.train.bf16 == ("on" if native else "off")
    assert cfg.resolved["generate.roundtrip_dtype"].why.startswith("checked")
    given = settle(PipelineConfig(generate={"roundtrip_dtype": "float32"}))
    assert given.generate.roundtrip_dtype == "float32"
    assert "generate.roundtrip_dtype" not in given.resolved


def test_the_teacher_and_its_judge_read_what_the_student_reads(mpnet_installed, monkeypatch):
    """MiniLM reads 256 tokens, mpnet 384: under 'auto' the teacher labels, and as the judge
    ranks, only the 256 the student sees, so both share one embedding cache."""
    cfg = settle(PipelineConfig())
    assert cfg.train.teacher_max_seq_length == cfg.generate.roundtrip_max_seq_length == 256
    assert "student reads 256 tokens and the teacher 384" in (
        cfg.resolved["train.teacher_max_seq_length"].why
    )
    shorter = settle(PipelineConfig(train={"max_seq_length": 128}))
    assert shorter.train.teacher_max_seq_length == shorter.generate.roundtrip_max_seq_length == 128
    # A teacher that reads no more than the student reads its own window.
    own = settle(PipelineConfig(model="mpnet", train={"teacher": "minilm"}))
    assert own.train.teacher_max_seq_length is None
    # Another judge than the teacher reads its own; so does every judge with no teacher.
    other = settle(PipelineConfig(generate={"roundtrip_model": "minilm"}))
    assert other.generate.roundtrip_max_seq_length is None
    alone = settle(PipelineConfig(train={"teacher": None}))
    assert "train.teacher_max_seq_length" not in alone.resolved
    assert alone.generate.roundtrip_max_seq_length is None
    given = settle(PipelineConfig(train={"teacher_max_seq_length": "none"}))
    assert (
        given.train.teacher_max_seq_length is None
        and given.generate.roundtrip_max_seq_length is None
    )
    # A window that cannot be read (a hub id offline) leaves the teacher its own, and says so.
    monkeypatch.setattr(recipe, "model_max_seq_length", lambda path: None)
    unknown = settle(PipelineConfig())
    assert unknown.train.teacher_max_seq_length is None
    assert "unknown" in unknown.resolved["train.teacher_max_seq_length"].why


def test_a_run_settled_before_the_teachers_window_existed_reads_as_it_did(mpnet_installed):
    """Its config.yaml reads back settled with both lengths "auto": the teacher reads
    train.max_seq_length and the judge its own window, as they did, so its caches still serve."""
    old = settle(PipelineConfig(train={"max_seq_length": 200})).model_copy(deep=True)
    old.train.teacher_max_seq_length = "auto"
    old.generate.roundtrip_max_seq_length = "auto"
    assert recipe.teacher_length(old.train) == 200 and recipe.judge_length(old.generate) is None


def test_auto_teacher_steps_aside_for_cached_mnrl(mpnet_installed):
    t, resolved = resolve_train("all-MiniLM-L6-v2", TrainConfig(loss="cached_mnrl"))
    assert t.teacher is None and "cached_mnrl" in resolved["train.teacher"].why


def test_round_trip_judge_is_the_base_when_the_loss_leaves_no_teacher(mpnet_installed):
    cfg = settle(PipelineConfig(train=TrainConfig(loss="cached_mnrl")))
    assert cfg.generate.roundtrip_model == cfg.model  # mpnet must not judge either


def test_chunks_are_capped_to_what_the_model_reads(mpnet_installed):
    cfg = settle(PipelineConfig())
    assert (cfg.chunk.chunk_size, cfg.chunk.chunk_overlap) == (254, 50)
    assert "sees at most 256 tokens" in cfg.resolved["chunk.chunk_size"].why
    kept = settle(PipelineConfig(chunk={"chunk_size": 1024, "allow_longer_than_model": True}))
    assert kept.chunk.chunk_size == 1024 and "chunk.chunk_size" not in kept.resolved


def test_settled_config_yaml_reads_back_settled_and_flags_unsettle_it(mpnet_installed, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(settle(PipelineConfig())))
    text = path.read_text()
    assert "teacher: sentence-transformers/all-mpnet-base-v2" in text
    assert "chunk_size: 254" in text and "resolved:" in text

    again = load_config(path, environ={})
    assert again.settled and again.train.teacher == AUTO_TEACHER
    assert settle(again) is again  # read, not resolved again

    # A flag that changes a value sends every resolved setting back to what it was given as.
    other = load_config(path, overrides={"model": "BAAI/bge-base-en-v1.5"}, environ={})
    assert not other.settled
    assert (other.train.teacher, other.train.epochs, other.chunk.chunk_size) == ("auto", None, 1024)
    # ...but a value set on top is kept
    three = load_config(path, overrides={"train": {"epochs": 3}}, environ={})
    assert (three.train.epochs, three.train.teacher) == (3, "auto")


def test_settling_afresh_resolves_again(monkeypatch):
    monkeypatch.setattr(recipe, "is_installed", lambda which: which != "mpnet")
    before = settle(PipelineConfig())
    assert before.train.teacher is None
    monkeypatch.setattr(recipe, "is_installed", lambda which: True)  # `make setup-mpnet`
    assert settle(before).train.teacher is None  # settled: read as it is
    assert settle(before, afresh=True).train.teacher == AUTO_TEACHER


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni", True),
        ("fpu avx2 amx_bf16 amx_tile", True),
        ("fpu sse2 avx2 fma f16c", False),  # AMD EPYC of sessions 5-12: float32
        ("fpu avx512f avx512_fp16", False),  # fp16 is not bf16
    ],
)
def test_bf16_is_native_only_where_the_cpu_says_so(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_supports_bf16(cpuinfo) is native
    assert cpu_supports_bf16(tmp_path / "missing") is False  # no /proc: float32, no error


def test_a_window_past_what_the_model_can_read_is_refused_before_any_work(mpnet_installed):
    """MiniLM's position embeddings reach 512 tokens: --max-seq-length 1024 failed on the first
    long chunk, after the teacher's labels and the base's validation, with a traceback."""
    with pytest.raises(ConfigError, match=r"train.max_seq_length 1024: .*at most 512 tokens"):
        settle(PipelineConfig(train={"max_seq_length": 1024}))
    with pytest.raises(ConfigError, match=r"train.teacher_max_seq_length 600: .*at most 512"):
        settle(PipelineConfig(train={"teacher_max_seq_length": 600}))
    with pytest.raises(ConfigError, match=r"generate.roundtrip_max_seq_length 513"):
        settle(PipelineConfig(generate={"roundtrip_max_seq_length": 513}))
    # What the model can read is allowed, longer than its own 256.
    assert settle(PipelineConfig(train={"max_seq_length": 512})).train.max_seq_length == 512


def test_chunks_are_cut_to_the_length_the_user_trains_at(mpnet_installed):
    cfg = settle(PipelineConfig(train={"max_seq_length": 512}))
    assert (cfg.chunk.chunk_size, cfg.chunk.chunk_overlap) == (510, 100)
    assert "reads 512 tokens (train.max_seq_length)" in cfg.resolved["chunk.chunk_size"].why
    assert settle(PipelineConfig(train={"max_seq_length": 128})).chunk.chunk_size == 126


def test_what_lora_costs_reads_the_same_in_train_help_and_the_config():
    # The measured cost is written twice (the CLI's help is built without importing the config):
    # a new measurement must change both.
    from typer.testing import CliRunner

    from embedtune.cli import app

    described = TrainConfig.model_fields["lora"].description or ""
    measured = described[described.index("On people's questions") :]
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=400)
    assert measured in " ".join(result.output.replace("│", " ").split())
