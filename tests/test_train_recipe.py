"""The recipe's "auto" settings: what a user gets without naming a teacher, epochs or rate."""

from __future__ import annotations

import pytest

from embedtune.config import PipelineConfig, TrainConfig
from embedtune.train import recipe
from embedtune.train.recipe import AUTO_TEACHER, resolve_recipe, roundtrip_judge


@pytest.fixture()
def mpnet_installed(monkeypatch):
    monkeypatch.setattr(recipe, "packaged_models", lambda: {AUTO_TEACHER: "/somewhere/mpnet"})


@pytest.fixture()
def mpnet_missing(monkeypatch):
    monkeypatch.setattr(recipe, "packaged_models", lambda: {AUTO_TEACHER: None})


def test_default_minilm_gets_the_packaged_mpnet_teacher_two_epochs_at_5e5(mpnet_installed):
    r = resolve_recipe("sentence-transformers/all-MiniLM-L6-v2", TrainConfig())
    assert (r.config.teacher, r.config.epochs, r.config.learning_rate) == (AUTO_TEACHER, 2.0, 5e-5)
    assert r.config.rejects is True and r.config.keep == "last"


def test_without_mpnet_training_falls_back_and_says_how_to_install_it(mpnet_missing):
    r = resolve_recipe("all-MiniLM-L6-v2", TrainConfig())
    assert (r.config.teacher, r.config.epochs, r.config.learning_rate) == (None, 1.0, 2e-5)
    assert "make setup-mpnet" in r.notes[0]


def test_other_base_models_get_no_teacher_unless_named(mpnet_installed):
    assert resolve_recipe("BAAI/bge-base-en-v1.5", TrainConfig()).config.teacher is None
    named = resolve_recipe("BAAI/bge-base-en-v1.5", TrainConfig(teacher="BAAI/bge-large-en-v1.5"))
    assert named.config.teacher == "BAAI/bge-large-en-v1.5" and named.config.epochs == 2.0


def test_explicit_settings_win_over_auto(mpnet_installed):
    cfg = TrainConfig(teacher=None, epochs=3, learning_rate=1e-5)
    r = resolve_recipe("all-MiniLM-L6-v2", cfg)
    assert (r.config.teacher, r.config.epochs, r.config.learning_rate) == (None, 3.0, 1e-5)


def test_round_trip_judge_follows_the_teacher(mpnet_installed):
    cfg = PipelineConfig()
    assert roundtrip_judge(cfg) == AUTO_TEACHER
    cfg.train.teacher = None
    assert roundtrip_judge(cfg) == cfg.model
    cfg.generate.roundtrip_model = None  # None: the base, whatever the teacher
    cfg.train.teacher = "all-mpnet-base-v2"
    assert roundtrip_judge(cfg) == cfg.model
    cfg.generate.roundtrip_model = "my/judge"
    assert roundtrip_judge(cfg) == "my/judge"


def test_auto_teacher_steps_aside_for_cached_mnrl(mpnet_installed):
    r = resolve_recipe("all-MiniLM-L6-v2", TrainConfig(loss="cached_mnrl"))
    assert r.config.teacher is None and "cached_mnrl" in r.notes[0]


def test_round_trip_judge_is_the_base_when_the_loss_leaves_no_teacher(mpnet_installed):
    cfg = PipelineConfig()
    cfg.train.loss = "cached_mnrl"  # auto picks no teacher for it, so mpnet must not judge either
    assert roundtrip_judge(cfg) == cfg.model
