"""The config a user writes: typos caught with a suggestion, env and flags override YAML."""

from __future__ import annotations

import pytest

from embedtune.config import PipelineConfig, dump_default_config, load_config
from embedtune.errors import ConfigError


def test_misspelt_key_names_the_key_and_the_closest_valid_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("chunk:\n  chunk_sise: 512\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "chunk.chunk_sise" in str(err.value)
    assert "did you mean 'chunk.chunk_size'" in str(err.value)
    assert str(path) in str(err.value)


def test_misspelt_section_is_caught():
    with pytest.raises(ConfigError, match="unknown key 'trian'.*did you mean 'train'"):
        load_config(overrides={"trian": {"epochs": 2}})


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(overrides={"train": {"epochs": -1}})


def test_overlap_must_be_smaller_than_chunk_size():
    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_config(overrides={"chunk": {"chunk_size": 100, "chunk_overlap": 100}})


def test_priority_flags_over_env_over_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 5\n  batch_size: 8\nmodel: from-yaml\n")
    env = {"EMBEDTUNE_TRAIN__EPOCHS": "3", "EMBEDTUNE_MODEL": "from-env", "EMBEDTUNE_API_KEY": "s"}
    cfg = load_config(path, overrides={"train": {"epochs": 2, "batch_size": None}}, environ=env)
    assert cfg.train.epochs == 2  # flag wins
    assert cfg.train.batch_size == 8  # unset flag (None) leaves YAML's value
    assert cfg.model == "from-env"  # env beats YAML


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="embedtune init"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_default_config_round_trips(tmp_path):
    text = dump_default_config()
    assert "# Tokens per chunk" in text  # commented for the user
    path = tmp_path / "default.yaml"
    path.write_text(text)
    assert load_config(path, environ={}) == PipelineConfig()
