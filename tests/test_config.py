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
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("model: café\n".encode("cp1252"))  # saved by an editor in Windows-1252
    with pytest.raises(ConfigError) as caught:
        load_config(latin)
    assert (
        str(caught.value) == f"{latin} is not UTF-8 text (byte 0xe9 at offset 10); save it as UTF-8"
    )


def test_default_config_round_trips(tmp_path):
    text = dump_default_config()
    assert "# Tokens per chunk" in text  # commented for the user
    path = tmp_path / "default.yaml"
    path.write_text(text)
    assert load_config(path, environ={}) == PipelineConfig()


def test_the_default_config_says_which_writer_settings_the_offline_writer_ignores():
    """The offline writer decodes greedily: a user tuning temperature for it changes nothing."""
    lines = dump_default_config().splitlines()
    for key in ("temperature", "top_p"):
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        assert "local backend" in lines[at - 1] and "not read" in lines[at - 1], lines[at - 1]


# --- errors name the source of the bad value: flag, environment variable or file -------------
def test_an_invalid_flag_is_blamed_on_the_flag(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batch_size: 8\n")
    with pytest.raises(ConfigError) as err:
        load_config(
            path,
            overrides={"train": {"epochs": -1}},
            environ={},
            flags={"train.epochs": "--epochs"},
        )
    assert str(err.value) == "'train.epochs': Input should be greater than 0 (got -1) from --epochs"


def test_an_invalid_environment_variable_is_blamed_on_the_variable(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={"EMBEDTUNE_TRAIN__EPOCHS": "-1"})
    assert "from the environment variable EMBEDTUNE_TRAIN__EPOCHS" in str(err.value)
    assert str(path) not in str(err.value)  # the file is fine


def test_an_invalid_file_value_is_blamed_on_the_file_even_with_env_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  warmup_ratio: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(
            path,
            overrides={"train": {"epochs": 2}},
            environ={"EMBEDTUNE_TRAIN__BATCH_SIZE": "16"},
            flags={"train.epochs": "--epochs"},
        )
    message = str(err.value)
    assert message.startswith("'train.warmup_ratio'") and message.endswith(f"in {path}")
    assert "--epochs" not in message and "EMBEDTUNE_" not in message


def test_a_check_across_keys_names_where_each_key_came_from(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("chunk:\n  chunk_size: 100\n")
    with pytest.raises(ConfigError) as err:
        load_config(
            path,
            overrides={"chunk": {"chunk_overlap": 150}},
            environ={},
            flags={"chunk.chunk_overlap": "--chunk-overlap"},
        )
    assert "must be smaller than chunk_size" in str(err.value)
    assert "--chunk-overlap" in str(err.value) and str(path) in str(err.value)


def test_a_misspelt_environment_variable_names_the_variable_and_the_key():
    with pytest.raises(ConfigError) as err:
        load_config(environ={"EMBEDTUNE_TRAIN__EPOHCS": "3"})
    assert "did you mean 'train.epochs'" in str(err.value)
    assert "EMBEDTUNE_TRAIN__EPOHCS" in str(err.value)


def test_cli_blames_the_flag_and_the_variable(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from embedtune.cli import app

    runner = CliRunner()
    run = str(tmp_path / "run")
    result = runner.invoke(app, ["train", "--run", run, "--epochs", "-1"])
    assert result.exit_code == 2
    assert "'train.epochs': Input should be greater than 0" in result.output
    assert "from --epochs" in result.output and "Traceback" not in result.output
    monkeypatch.setenv("EMBEDTUNE_CHUNK__CHUNK_SIZE", "lots")
    result = runner.invoke(app, ["prepare", "--run", run, str(tmp_path)])
    assert result.exit_code == 2
    assert "from the environment variable EMBEDTUNE_CHUNK__CHUNK_SIZE" in result.output


# --- environment values -----------------------------------------------------------------------
def test_environment_values_are_read_as_yaml():
    cfg = load_config(
        environ={
            "EMBEDTUNE_TRAIN__MATRYOSHKA_DIMS": "[384, 256]",
            "EMBEDTUNE_INGEST__EXTENSIONS": "[.pdf, .md]",  # YAML, not JSON
            "EMBEDTUNE_GENERATE__MAX_CHUNKS": "null",
            "EMBEDTUNE_TRAIN__LORA": "true",
            "EMBEDTUNE_TRAIN__LEARNING_RATE": "1e-5",
            "EMBEDTUNE_CACHE": "/tmp/x",  # not a config key: ignored
            "EMBEDTUNE_API_KEY": "secret",
        }
    )
    assert cfg.train.matryoshka_dims == [384, 256]
    assert cfg.ingest.extensions == [".pdf", ".md"]
    assert cfg.generate.max_chunks is None
    assert cfg.train.lora is True and cfg.train.learning_rate == 1e-5


def test_server_limits_come_from_yaml_and_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("serve:\n  max_body_bytes: 4096\n  max_queue_seconds: 2.5\n")
    cfg = load_config(path, environ={"EMBEDTUNE_SERVE__MAX_CONCURRENT_REQUESTS": "7"})
    assert cfg.serve.max_body_bytes == 4096
    assert cfg.serve.max_queue_seconds == 2.5
    assert cfg.serve.max_concurrent_requests == 7
    assert "max_batch_tokens" in dump_default_config()


def test_invalid_yaml_is_one_line_with_the_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "\n" not in str(err.value) and "line 3" in str(err.value)
