"""Longer training checks: LoRA, GradCache with hard negatives, and 2-process DDP on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from test_train_data import make_sets

from embedtune.config import TrainConfig
from embedtune.train import finetune

pytestmark = pytest.mark.slow


def test_lora_adapters_are_merged_into_a_plain_model(tmp_path, minilm):
    pytest.importorskip("peft", reason="the lora extra: pip install -e '.[lora]'")
    train, val = make_sets()
    cfg = TrainConfig(
        epochs=2,
        batch_size=7,
        max_seq_length=32,
        lora=True,
        lora_r=8,
        learning_rate=1e-3,
        teacher=None,
        keep="best",
    )
    summary = finetune("all-MiniLM-L6-v2", train, val, cfg, tmp_path / "model")
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert "adapter_config.json" not in files and "adapter_model.safetensors" not in files
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora_" in k or "base_layer" in k]
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    texts = list(val.queries.values())
    after = model.encode(texts)
    assert np.abs(after - minilm.encode(texts)).max() > 1e-3
    # The merged model scores what the evaluation during training said it would.
    assert summary.final["ndcg@10"] == pytest.approx(
        max(e["ndcg@10"] for e in summary.evaluations), abs=1e-3
    )
    assert summary.recipe.lora == {"r": 8, "alpha": 16}


def test_cached_mnrl_with_hard_negatives(tmp_path):
    train, val = make_sets()
    cfg = TrainConfig(
        epochs=1,
        batch_size=14,
        max_seq_length=32,
        loss="cached_mnrl",
        mini_batch_size=4,
        hard_negatives=2,
        hard_negative_margin=0.05,
    )
    summary = finetune("all-MiniLM-L6-v2", train, val, cfg, tmp_path / "model")
    assert summary.recipe.loss == "cached_mnrl"
    assert summary.negatives["negatives_per_pair"] == 2
    assert summary.steps == 2
    assert "| hard_negatives | 2 |" in (tmp_path / "model" / "README.md").read_text()


def test_two_process_ddp_saves_once_from_rank_zero(tmp_path):
    train, val = make_sets()
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    train.to_json(run / "data" / "train.json")
    val.to_json(run / "data" / "val.json")
    embedtune = shutil.which("embedtune") or str(Path(sys.executable).parent / "embedtune")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        embedtune, "train", "--run-dir", str(run), "--model", "all-MiniLM-L6-v2",
        "--epochs", "1", "--batch-size", "7", "--max-seq-length", "32", "--teacher", "none",
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    assert metrics["recipe"]["world_size"] == 2
    assert metrics["saved_by_rank"] == 0
    assert metrics["steps"] == 2  # 28 pairs / (7 per device x 2 devices)
    # only rank 0 reports
    assert [line for line in out.stdout.splitlines() if line.startswith("model: ")] == [
        f"model: {run / 'model'}"
    ]
    # nothing hidden but the run's lock file, which stays (runlock: the OS releases the lock)
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == [".embedtune.lock"]
    model = SentenceTransformer(str(run / "model"), device="cpu")
    assert model.encode(["a question"]).shape == (1, 384)
