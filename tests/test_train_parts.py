"""The steps of fine-tuning, each on its own: the schedule, the arguments, the base's score."""

from __future__ import annotations

import pytest
from test_evaluate import small_dataset

from embedtune import recipe
from embedtune.config import PipelineConfig, TrainConfig
from embedtune.errors import ConfigError, TrainingError
from embedtune.recipe import AUTO_TEACHER, settle
from embedtune.train.arguments import schedule, training_arguments
from embedtune.train.validation import Validation


def test_a_batch_larger_than_the_pairs_is_lowered_with_a_warning():
    plan = schedule(TrainConfig(batch_size=32), [6], world=1)
    assert (plan.batch_size, plan.steps_per_epoch) == (6, 1)
    assert plan.warning == "batch size 32 is larger than the 6 training pairs; using batch size 6"
    assert schedule(TrainConfig(batch_size=4), [28, 12], world=1).steps_per_epoch == 7 + 3
    with pytest.raises(TrainingError, match="needs at least 2 per device"):
        schedule(TrainConfig(), [1], world=1)
    with pytest.raises(ConfigError, match="train.save_steps .3. must be a multiple"):
        schedule(TrainConfig(eval_steps=2, save_steps=3), [40], world=1)


def test_the_default_recipe_reaches_the_trainer_as_settled(monkeypatch, tmp_path):
    monkeypatch.setattr(recipe, "is_installed", lambda which: True)
    cfg = settle(PipelineConfig(train={"batch_size": 16}))
    plan = schedule(cfg.train, [100], world=1)
    args = training_arguments(
        cfg.train, plan, tmp_path, prompts={}, best_metric="val_cosine_ndcg@10", progress_bars=False
    )
    assert cfg.train.teacher == AUTO_TEACHER
    assert (args.num_train_epochs, args.learning_rate) == (2.0, 5e-5)
    assert args.per_device_train_batch_size == 16
    assert args.bf16 == (cfg.train.bf16 == "on")
    assert (args.eval_steps, args.save_steps) == (7, 7)  # once per epoch: 100 pairs / 16
    assert args.load_best_model_at_end is False  # keep: last


def test_the_base_scored_through_the_cache_matches_the_evaluator(minilm):
    val = small_dataset()  # several relevant chunks per query: not every score is 1
    cached = Validation(val, val.corpus, batch_size=16).score_base(
        minilm, "all-MiniLM-L6-v2", own_settings=True
    )
    direct = Validation(val, val.corpus, batch_size=16).score(minilm)
    assert 0 < direct["ndcg@10"] < 1 and direct.keys() <= cached.keys()
    for name, value in direct.items():
        assert cached[name] == pytest.approx(value, abs=1e-4), name


def test_training_stays_on_the_cpu_when_told_to_on_a_machine_with_a_gpu(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    plan = schedule(TrainConfig(), [100], world=1)

    def args() -> object:
        return training_arguments(
            TrainConfig(), plan, tmp_path, prompts={}, best_metric=None, progress_bars=False
        )

    monkeypatch.setenv("EMBEDTUNE_DEVICE", "cpu")
    assert args().use_cpu is True  # else the trainer moves the model to the GPU


def test_training_drops_no_attention_weights_but_keeps_the_models_own_config():
    """train.attention_dropout: 0 builds the attention layers without dropout (torch's fused
    attention then runs), leaves the hidden layers' dropout as it was, and the config the
    fine-tuned model is saved with still says the model's own rate."""
    from embedtune.train.rows import load_for_training

    def rates(model, layer: str) -> set[float]:
        return {m.dropout.p for m in model.modules() if type(m).__name__ == layer}

    model = load_for_training("all-MiniLM-L6-v2", attention_dropout=0.0)
    assert rates(model, "BertSelfAttention") == {0.0}
    assert rates(model, "BertSelfOutput") == {0.1}
    assert model.transformers_model.config.attention_probs_dropout_prob == 0.1
    own = load_for_training("all-MiniLM-L6-v2", attention_dropout=None)
    assert rates(own, "BertSelfAttention") == {0.1}


def test_a_training_below_the_base_says_why_the_runs_verdict_may_differ():
    """`embedtune run` prints the training's verdict, then evaluate's, which may call the same
    model better (every chunk searched, the headings asked too): the first says so."""
    from pathlib import Path

    from embedtune.train.validation import verdict

    said = verdict(0.496, 0.478, Path("runs/demo/model"))
    assert (
        "not above the base here, where each question searches the validation chunks alone" in said
    )
    assert "its verdict decides which model a run gives (beats_base: false)" in said
    assert "validation chunks alone" not in verdict(0.5, 0.4, Path("m"), own_chunks=False)
    assert verdict(0.5, 0.6, Path("m")).endswith("(+0.100)")
