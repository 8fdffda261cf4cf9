"""The train stage on the packaged MiniLM: a few real steps on a tiny set of distinct topics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from test_train_data import make_sets
from transformers import TrainerCallback
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.config import PipelineConfig, TrainConfig
from embedtune.dataset import QADataset
from embedtune.errors import InputError, TrainingError
from embedtune.train import finetune, run_train

QUERY_PROMPT = "query: "
SETTINGS = dict(
    epochs=2,
    batch_size=7,
    max_seq_length=48,
    eval_steps=2,
    save_steps=2,
    learning_rate=5e-5,
    query_prompt=QUERY_PROMPT,
    matryoshka_dims=[128, 64],
    bf16="off",  # fp32 everywhere, so weight comparisons do not depend on the CPU's bf16 support
    teacher=None,  # "auto" would pick the packaged mpnet where it is installed
    merge_base=0,  # the weights as trained (without a teacher it would average half the base)
    keep="best",
)

#: A teacher (the packaged MiniLM, a fast stand-in) and one quick epoch, for the teacher's tests.
WITH_TEACHER = dict(
    teacher="all-MiniLM-L6-v2", matryoshka_dims=None, epochs=1, eval_steps=None, save_steps=None
)


def _run_dir(root: Path) -> Path:
    train, val = make_sets()
    (root / "data").mkdir(parents=True)
    train.to_json(root / "data" / "train.json")
    val.to_json(root / "data" / "val.json")
    return root


def _cfg(**over) -> PipelineConfig:
    return PipelineConfig(model="all-MiniLM-L6-v2", train=TrainConfig(**{**SETTINGS, **over}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = _run_dir(tmp_path_factory.mktemp("run"))
    summary = run_train(_cfg(), run)
    return run, summary


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_model_loads_and_its_embeddings_moved(trained, minilm):
    run, summary = trained
    model = SentenceTransformer(str(run / "model"), device="cpu")
    texts = ["Why do volcanoes erupt?", "Magma rises through cracks in the crust."]
    before = minilm.encode(texts, normalize_embeddings=True)
    after = model.encode(texts, normalize_embeddings=True)
    assert after.shape == before.shape
    assert np.abs(after - before).max() > 1e-3
    assert summary.steps == 8  # 28 pairs / batch 7 = 4 steps per epoch, 2 epochs


def test_the_saved_config_keeps_the_models_own_attention_dropout(trained):
    run, summary = trained
    assert summary.recipe.attention_dropout == 0.0  # trained without it (the default)
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.1


def test_best_checkpoint_is_the_one_saved(trained):
    run, summary = trained
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    evals = metrics["evaluations"]
    assert [e["step"] for e in evals] == [2, 4, 6, 8]
    best = max(evals, key=lambda e: e["ndcg@10"])
    assert metrics["best_step"] == best["step"]
    assert metrics["final"]["ndcg@10"] == best["ndcg@10"]
    # Scored afresh, the saved model matches the best evaluation during training, which
    # searched the validation set's own corpus.
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    train, val = make_sets()
    ev = InformationRetrievalEvaluator(
        val.queries,
        val.corpus,
        {q: set(c) for q, c in val.relevant_docs.items()},
        query_prompt_name="query",
        write_csv=False,
    )
    saved = SentenceTransformer(str(run / "model"), device="cpu")
    assert ev(saved)[ev.primary_metric] == pytest.approx(best["ndcg@10"], abs=1e-4)
    assert isinstance(metrics["beats_base"], bool)
    assert metrics["beats_base"] == (metrics["final"]["ndcg@10"] > metrics["base"]["ndcg@10"])
    assert metrics["data"] == {
        "train_queries": 28,
        "train_chunks": 28,
        "train_pairs": 28,
        "reject_rows": 0,
        "roundtrip_doubted": 0,
        "roundtrip_share": None,  # no teacher, no round trip
        "val_queries": 8,
        "eval_corpus": 8,
    }
    # Old checkpoints are pruned: at most save_total_limit (2) are kept.
    assert len(list((run / "train" / "checkpoints").glob("checkpoint-*"))) <= 2


def test_training_curves_are_kept_and_drawn_in_the_evaluation_report(trained):
    from embedtune.config import EvaluateConfig
    from embedtune.evaluate import run_evaluate

    run, summary = trained
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    losses = metrics["loss_curve"]
    assert [e["step"] for e in losses] == sorted(e["step"] for e in losses)
    assert losses[-1]["step"] == summary.steps and all(e["loss"] > 0 for e in losses)
    assert len(losses) >= 4  # logged every few steps, not once at the end

    cfg = PipelineConfig(model="all-MiniLM-L6-v2", evaluate=EvaluateConfig(bootstrap_samples=100))
    run_evaluate(cfg, run)
    markdown = (run / "eval" / "report.md").read_text()
    assert "## Training of the fine-tuned model" in markdown
    for e in metrics["evaluations"]:  # every validation during training, with its score
        assert f"| {int(e['step'])} | " in markdown and f"{e['ndcg@10']:.4f}" in markdown
    assert f"{summary.best_step} | " in markdown and "(kept)" in markdown
    page = (run / "eval" / "report.html").read_text()
    assert "training loss and validation NDCG@10 by step" in page
    assert page.count("<circle") >= len(metrics["evaluations"])


def test_model_card_names_base_model_recipe_and_both_scores(trained):
    run, summary = trained
    card = (run / "model" / "README.md").read_text()
    assert "all-MiniLM-L6-v2" in card
    assert f"| ndcg@10 | {summary.base['ndcg@10']:.4f} | {summary.final['ndcg@10']:.4f}" in card
    for needle in (
        "| loss | mnrl |",
        "| batch_size | 7 |",
        "| query_prompt | query:",
        "28 queries",
    ):
        assert needle in card


def test_prompt_saved_and_applied_by_encode_query(trained):
    run, _ = trained
    model = SentenceTransformer(str(run / "model"), device="cpu")
    assert model.prompts["query"] == QUERY_PROMPT
    q = ["How do bees share where flowers are?"]
    np.testing.assert_allclose(
        model.encode_query(q), model.encode(q, prompt=QUERY_PROMPT), rtol=1e-5, atol=1e-6
    )
    assert np.abs(model.encode_query(q) - model.encode(q)).max() > 1e-4


def test_matryoshka_embeddings_truncate_and_still_retrieve(trained):
    run, _ = trained
    train, val = make_sets()
    model = SentenceTransformer(str(run / "model"), device="cpu", truncate_dim=64)
    qids = list(train.queries)
    q = model.encode_query([train.queries[i] for i in qids], normalize_embeddings=True)
    d = model.encode_document([train.corpus[train.relevant_docs[i][0]] for i in qids])
    assert q.shape == (len(qids), 64)
    top1 = (q @ (d / np.linalg.norm(d, axis=1, keepdims=True)).T).argmax(axis=1)
    assert (top1 == np.arange(len(qids))).mean() >= 0.8


def test_rerun_with_same_inputs_is_skipped(trained):
    run, _ = trained
    again = run_train(_cfg(), run)
    assert again.skipped is True
    assert again.final == trained[1].final


class _Later(TrainConfig):
    """TrainConfig as a later embedtune might have it: a new setting, off by default."""

    future_setting: str | None = None


def test_a_setting_added_later_and_left_off_does_not_train_a_finished_run_again(trained):
    from embedtune.artifacts import stage_key

    run, first = trained
    later = PipelineConfig(model="all-MiniLM-L6-v2", train=_Later(**SETTINGS))
    again = run_train(later, run)
    assert again.skipped is True and again.final == first.final
    # set, the new setting is part of the key: the stage would run again
    on = _Later(**SETTINGS, future_setting="on")
    assert stage_key("train", config=on) != stage_key("train", config=_Later(**SETTINGS))


def test_a_run_the_previous_version_finished_is_not_trained_again(trained):
    """Session 27's embedtune keyed a stage with every setting, None included, and without the
    settings added since: its finished runs are adopted, not trained again after the upgrade."""
    from embedtune.artifacts import stage_key
    from embedtune.layout import RunLayout
    from embedtune.recipe import settle
    from embedtune.train.stage import _checked_once, _key_parts

    run, first = trained
    manifest = run / "train" / "manifest.json"
    saved = json.loads(manifest.read_text(encoding="utf-8"))
    data = RunLayout(run).data_file
    key = stage_key(
        "train", **_key_parts(_checked_once(settle(_cfg())), data("train"), data("val"), None)
    )
    assert saved["key"] == key and key.earlier != key
    manifest.write_text(json.dumps({**saved, "key": key.earlier}), encoding="utf-8")
    again = run_train(_cfg(), run)
    assert again.skipped is True and again.final == first.final
    assert json.loads(manifest.read_text(encoding="utf-8"))["key"] == saved["key"]


def test_a_saved_summary_this_version_cannot_read_stops_with_what_to_do(trained):
    """metrics.json without a field this version needs (an older embedtune's, or damaged):
    the rerun names the file and the way on, and neither trains again nor touches the model."""
    run, _ = trained
    metrics = run / "train" / "metrics.json"
    saved = metrics.read_text(encoding="utf-8")
    weights = (run / "model" / "model.safetensors").read_bytes()
    old = {k: v for k, v in json.loads(saved).items() if k != "verdict"}
    metrics.write_text(json.dumps(old), encoding="utf-8")
    try:
        with pytest.raises(InputError) as caught:
            run_train(_cfg(), run)
    finally:
        metrics.write_text(saved, encoding="utf-8")
    assert str(caught.value).startswith(
        f"{metrics}: the saved summary cannot be read (verdict: Field required); the model in "
        f"{run / 'model'} is complete: evaluate or serve it as it is, or train it again with --fresh"
    )
    assert (run / "model" / "model.safetensors").read_bytes() == weights
    assert run_train(_cfg(), run).skipped is True


class _Crash(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated kill")


class _Seen(TrainerCallback):
    """Records whether ``path`` exists when training begins."""

    def __init__(self, path: Path, seen: list[bool]) -> None:
        self.path, self.seen = path, seen

    def on_train_begin(self, args, state, control, **kwargs):
        self.seen.append(self.path.exists())


def test_own_files_resume_after_a_kill_and_a_finished_training_starts_over(trained, tmp_path):
    from embedtune.train import train_on_files

    ref_run, ref = trained
    train, val = make_sets()
    train.to_json(tmp_path / "train.json")
    val.to_json(tmp_path / "val.json")
    files = (tmp_path / "train.json", tmp_path / "val.json", tmp_path / "model")
    with pytest.raises(KeyboardInterrupt):
        train_on_files(_cfg(), *files, callbacks=[_Crash(5)])
    said: list[str] = []
    resumed = train_on_files(_cfg(), *files, echo=said.append)  # the same command, no --resume
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-4")
    assert any("stopped on the way: resuming" in line for line in said)
    assert resumed.steps == ref.steps
    mine, theirs = _weights(tmp_path / "model"), _weights(ref_run / "model")
    assert max(float((mine[k] - theirs[k]).abs().max()) for k in theirs) < 1e-4
    assert train_on_files(_cfg(), *files).resumed_from is None  # finished: trains from the start
    with pytest.raises(KeyboardInterrupt):
        train_on_files(_cfg(), *files, callbacks=[_Crash(5)])
    assert train_on_files(_cfg(), *files, fresh=True).resumed_from is None  # --fresh


TORCH_FULL_DISK = (
    "[enforce fail at inline_container.cc:672] . unexpected pos 177956416 vs 177956304"
)
SAFETENSORS_FULL_DISK = (
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left '
    'on device" })'
)


def _raise(exc: BaseException) -> None:
    raise exc


def test_a_full_disk_while_saving_a_checkpoint_says_so_and_the_same_command_finishes(
    tmp_path, monkeypatch
):
    """torch's zip writer reports a full disk in its own words, which ended training in a
    traceback (session 39's rows); the user is told the disk is full and where (one line, by
    the CLI), and the same command, run again once there is space, saves a model."""
    import errno

    from embedtune.train import train_on_files
    from embedtune.train import trainer as trainer_module

    train, val = make_sets()
    train.to_json(tmp_path / "train.json")
    val.to_json(tmp_path / "val.json")
    files = (tmp_path / "train.json", tmp_path / "val.json", tmp_path / "model")

    def full(*args, **kwargs):
        raise RuntimeError(TORCH_FULL_DISK)

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(trainer_module, "free_bytes", lambda folder: 4096)
    with pytest.raises(OSError) as err:
        train_on_files(_cfg(), *files)
    assert err.value.errno == errno.ENOSPC and err.value.filename.endswith("checkpoints")
    # safetensors writes a checkpoint's weights and names the OS's error in its own
    monkeypatch.setattr(torch, "save", lambda *a, **k: _raise(Exception(SAFETENSORS_FULL_DISK)))
    with pytest.raises(OSError) as err:
        train_on_files(_cfg(), *files)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.setattr(torch, "save", full)
    # with space left, torch's error is not a full disk: it is not dressed up as one
    monkeypatch.setattr(trainer_module, "free_bytes", lambda folder: 50 * 2**30)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        train_on_files(_cfg(), *files)

    monkeypatch.undo()
    train_on_files(_cfg(), *files)
    assert SentenceTransformer(str(tmp_path / "model")).encode(["lm"]).shape[1] == 384


def test_a_model_save_cut_by_a_full_disk_leaves_no_half_model(tmp_path):
    """safetensors names the OS's error inside its own; the half-written folder is removed,
    since it holds the space the user must free."""
    import errno

    from embedtune.train.trainer import save_model

    class Model:
        def save(self, path: str, **kwargs) -> None:
            Path(path).mkdir()
            (Path(path) / "model.safetensors").write_bytes(b"half")
            raise Exception(SAFETENSORS_FULL_DISK)  # SafetensorError is a bare Exception

    with pytest.raises(OSError) as err:
        save_model(Model(), tmp_path / "model")  # type: ignore[arg-type]
    assert err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_training_on_chunks_longer_than_the_model_reads_says_so_before_it_trains(tmp_path):
    """A user's own pairs whose chunks run past max_seq_length (48 tokens here; llama-index's
    10-K chunks past MiniLM's 256): the warning comes before the first step, naming the file."""
    from embedtune.train import train_on_files

    train, val = make_sets()
    train.corpus = {cid: " ".join([text] * 8) for cid, text in train.corpus.items()}
    train.to_json(tmp_path / "train.json")
    val.to_json(tmp_path / "val.json")
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train_on_files(
            _cfg(),
            tmp_path / "train.json",
            tmp_path / "val.json",
            tmp_path / "model",
            echo=said.append,
            callbacks=[_Crash(1)],
        )
    warned = [line for line in said if "run past the 48 tokens" in line]
    assert warned and f"{tmp_path / 'train.json'}: " in warned[0]
    # 48 is the window these tests set (train.max_seq_length): cut the chunks, or read more
    assert "cut them to 48 tokens" in warned[0] and "--max-seq-length up to 512" in warned[0]


def test_a_rerun_after_a_kill_resumes_and_ends_where_an_uninterrupted_run_does(trained, tmp_path):
    ref_run, ref = trained
    run = _run_dir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_train(_cfg(), run, callbacks=[_Crash(5)])
    checkpoints = run / "train" / "checkpoints"
    assert (checkpoints / "checkpoint-4").is_dir()
    assert not (run / "model").exists()
    # A later checkpoint cut short while saving (the trainer writes trainer_state.json last).
    (checkpoints / "checkpoint-6").mkdir()
    shutil.copy(checkpoints / "checkpoint-4" / "model.safetensors", checkpoints / "checkpoint-6")
    with pytest.raises(TrainingError, match="were made with other data or settings"):
        run_train(_cfg(learning_rate=1e-4), run, resume=True)  # --resume insists on the same
    torn_at_start: list[bool] = []
    resumed = run_train(  # run again as it was (embedtune run does): it resumes
        _cfg(), run, callbacks=[_Seen(checkpoints / "checkpoint-6", torn_at_start)]
    )
    assert resumed.resumed_from.endswith("checkpoint-4")
    assert f"checkpoint-6 in {checkpoints} stopped while being saved" in resumed.warnings[0]
    assert torn_at_start == [False]  # removed before training went on (its space freed)
    assert resumed.steps == ref.steps
    assert resumed.final["ndcg@10"] == pytest.approx(ref.final["ndcg@10"], abs=1e-3)
    a, b = _weights(run / "model"), _weights(ref_run / "model")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-4


# ------------------------------------------------------------------------- bad inputs
def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def _cli(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_empty_training_data_names_the_file(tmp_path):
    path = _write(tmp_path / "train.json", {"queries": {}, "corpus": {}, "relevant_docs": {}})
    out = _cli("--train-data", str(path), "--output", str(tmp_path / "m"))
    assert out.exit_code != 0
    assert f"{path} has no queries" in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.train").exists()


def test_malformed_training_data_names_the_file(tmp_path):
    path = _write(tmp_path / "train.json", '{"queries": {"q1": "x"}, "corpus": ')
    out = _cli("--train-data", str(path), "--output", str(tmp_path / "m"))
    assert out.exit_code != 0
    assert f"{path} is not valid JSON" in out.output


def test_query_without_relevant_document_is_named(tmp_path):
    train, _ = make_sets()
    train.relevant_docs["q3"] = []
    path = tmp_path / "train.json"
    train.to_json(path)
    out = _cli("--train-data", str(path), "--output", str(tmp_path / "m"))
    assert out.exit_code != 0
    assert f"{path}: query 'q3' has no relevant document" in out.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]  # no work folder left


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    train, val = make_sets()
    not_model = tmp_path / "not-a-model"
    _write(not_model / "notes.txt", "hello")
    with pytest.raises(InputError, match="is a folder but not a model"):
        finetune(str(not_model), train, val, TrainConfig(), tmp_path / "m")
    broken = tmp_path / "broken-model"
    _write(broken / "config.json", {"model_type": "no-such-architecture"})
    with pytest.raises(InputError, match="could not load the model in .*broken-model: ValueError: .*"
                       "model type `no-such-architecture`"):  # fmt: skip
        finetune(str(broken), train, val, TrainConfig(), tmp_path / "m")


def test_missing_run_data_says_which_stage_to_run(tmp_path):
    out = _cli("--run", str(tmp_path / "run"))
    assert out.exit_code != 0
    assert "data/train.json not found; run `embedtune generate" in out.output


def test_batch_larger_than_the_data_is_clamped_with_a_warning(tmp_path):
    train, val = make_sets(n_train=6, n_val=4)
    train.to_json(tmp_path / "train.json")
    val.to_json(tmp_path / "val.json")
    out = _cli(
        "--train-data", str(tmp_path / "train.json"),
        "--val-data", str(tmp_path / "val.json"),
        "--model", "all-MiniLM-L6-v2",
        "--output", str(tmp_path / "model"),
        "--batch-size", "64", "--epochs", "1", "--max-seq-length", "32",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "batch size 64 is larger than the 6 training pairs; using batch size 6" in out.output
    assert "ndcg@10" in out.output
    metrics = json.loads((tmp_path / "model.train" / "metrics.json").read_text())
    assert metrics["recipe"]["batch_size"] == 6 and metrics["steps"] == 1
    assert SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(["x"]).shape == (
        1,
        384,
    )


def test_save_steps_must_be_a_multiple_of_eval_steps(tmp_path):
    from embedtune.errors import ConfigError

    train, val = make_sets()
    cfg = TrainConfig(eval_steps=3, save_steps=4, max_seq_length=32)
    with pytest.raises(ConfigError, match=r"save_steps \(4\) must be a multiple"):
        finetune("all-MiniLM-L6-v2", train, val, cfg, tmp_path / "m")


def test_hard_negatives_are_mined_through_the_base_models_embedding_cache(tmp_path, monkeypatch):
    """Mining reads the base's embeddings from the cache the round trip and the evaluation
    share, and leaves there what it encoded: the training texts are never encoded twice."""
    from embedtune.embeddings import EmbeddingCache, model_fingerprint

    monkeypatch.setenv("EMBEDTUNE_CACHE", str(tmp_path / "cache"))
    run = _run_dir(tmp_path / "run")
    train, _ = make_sets()
    cfg = _cfg(
        hard_negatives=1, max_seq_length=None, query_prompt=None, matryoshka_dims=None, epochs=1
    )
    summary = run_train(cfg, run)
    assert summary.negatives["negatives_per_pair"] == 1

    def never(missing: list[str]) -> np.ndarray:
        raise AssertionError(f"{len(missing)} training texts were not in the cache")

    cache = EmbeddingCache(model_fingerprint("all-MiniLM-L6-v2"))
    assert cache.get_or_encode(list(train.corpus.values()), "document", never).shape[0] == 28
    assert cache.get_or_encode(list(train.queries.values()), "query", never).shape[0] == 28


def test_a_shortened_window_keeps_its_own_embedding_cache(tmp_path, monkeypatch):
    """At another max_seq_length the embeddings differ: mining encodes into a cache of that
    length (so a re-run at it encodes nothing again) and never into the model's own."""
    from embedtune.embeddings import EmbeddingCache, model_fingerprint

    monkeypatch.setenv("EMBEDTUNE_CACHE", str(tmp_path / "cache"))
    train, _ = make_sets()
    cfg = _cfg(hard_negatives=1, max_seq_length=48, query_prompt=None, matryoshka_dims=None,
               epochs=1)  # fmt: skip
    run_train(cfg, _run_dir(tmp_path / "run"))
    texts = list(train.corpus.values())

    def never(missing: list[str]) -> np.ndarray:
        raise AssertionError(f"{len(missing)} training texts were not in the cache")

    at_48 = EmbeddingCache(model_fingerprint("all-MiniLM-L6-v2", max_seq_length=48))
    assert at_48.get_or_encode(texts, "document", never).shape[0] == 28
    own = EmbeddingCache(model_fingerprint("all-MiniLM-L6-v2"))
    own.get_or_encode(texts, "document", lambda missing: np.zeros((len(missing), 384)))
    assert own.encoded == 28  # nothing at 48 tokens was stored as the full window's


def test_keep_last_saves_the_end_of_training_not_the_best_checkpoint(tmp_path):
    run = _run_dir(tmp_path / "run")
    summary = run_train(_cfg(keep="last", matryoshka_dims=None), run)
    last = summary.evaluations[-1]
    assert last["step"] == summary.steps == 8
    assert summary.final["ndcg@10"] == last["ndcg@10"]
    a = _weights(run / "model")
    b = _weights(run / "train" / "checkpoints" / "checkpoint-8")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_merge_base_saves_the_average_of_base_and_fine_tuned_weights(tmp_path, minilm_path):
    run = _run_dir(tmp_path / "run")
    summary = run_train(_cfg(keep="last", matryoshka_dims=None, merge_base=0.25), run)
    saved = _weights(run / "model")
    trained = _weights(run / "train" / "checkpoints" / "checkpoint-8")
    base = _weights(Path(minilm_path))
    moved = [k for k in saved if not torch.equal(trained[k], base[k])]
    assert moved  # training changed the weights, so the average differs from both
    for k in moved:
        torch.testing.assert_close(saved[k], 0.75 * trained[k] + 0.25 * base[k])
    assert summary.recipe.merge_base == 0.25
    assert "| merge_base | 0.2500 |" in (run / "model" / "README.md").read_text()


def test_merge_base_out_of_range_is_one_line_naming_the_option(tmp_path):
    result = _cli("--run", str(_run_dir(tmp_path / "run")), "--merge-base", "1.5")
    assert result.exit_code == 2
    assert "merge" in result.output and "Traceback" not in result.output


def _rejects(train) -> QADataset:
    """Questions a round trip could have dropped: reworded ones, about the training chunks."""
    ids = list(train.queries)[:12]
    return QADataset(
        queries={f"r{i}": f"Briefly, {train.queries[q].lower()}" for i, q in enumerate(ids)},
        corpus={c: train.corpus[c] for q in ids for c in train.relevant_docs[q]},
        relevant_docs={f"r{i}": train.relevant_docs[q] for i, q in enumerate(ids)},
    )


def test_rejected_questions_train_on_the_teachers_ranking_in_their_own_batches(tmp_path):
    run = _run_dir(tmp_path / "run")
    train, _ = make_sets()
    _rejects(train).to_json(run / "data" / "train_rejects.json")
    summary = run_train(_cfg(**WITH_TEACHER), run)
    assert summary.data.reject_rows == 12
    assert summary.recipe.rejects_kl_only is True
    # 28 pairs and 12 rejects in batches of 7, never mixed: 4 + 2 steps.
    assert summary.steps == 6
    card = (run / "model" / "README.md").read_text()
    assert "| teacher | all-MiniLM-L6-v2 (reads 48 tokens) |" in card
    assert "12 questions the round trip rejected" in card
    # Without a teacher there is nothing to learn from them: they are left out.
    plain = run_train(_cfg(matryoshka_dims=None, epochs=1, eval_steps=None, save_steps=None),
                      run, fresh=True)  # fmt: skip
    assert plain.data.reject_rows == 0 and plain.steps == 4


def test_the_teachers_mask_of_false_negatives_is_reported(tmp_path):
    run = _run_dir(tmp_path / "run")
    cfg = _cfg(**WITH_TEACHER, false_negative_margin=0.3)
    recipe = run_train(cfg, run).recipe
    assert recipe.false_negative_margin == 0.3
    # 28 pairs in batches of 7: 4 steps of 7 x 6 in-batch negatives; the test's chunks are
    # far apart, so the margin reaches down to some of them (at 0 the teacher masks none)
    assert recipe.false_negatives_masked is not None
    assert 0 < recipe.false_negatives_masked < 1
    card = (run / "model" / "README.md").read_text()
    assert "| false_negative_margin | 0.3000 |" in card
    assert f"| false_negatives_masked | {recipe.false_negatives_masked:.4f} |" in card


def test_a_torn_rejects_file_is_named_not_skipped(tmp_path):
    run = _run_dir(tmp_path / "run")
    (run / "data" / "train_rejects.json").write_text('{"queries": {"r1": "x"')
    cfg = _cfg(teacher="all-MiniLM-L6-v2", matryoshka_dims=None, epochs=1)
    with pytest.raises(
        InputError, match=r"train_rejects\.json is not a llama-index JSON.*--no-rejects"
    ):
        run_train(cfg, run)
    # without a teacher the rejects are not read at all
    assert run_train(_cfg(matryoshka_dims=None, epochs=1), run).data.reject_rows == 0


def test_a_missing_teacher_is_named_before_any_work(tmp_path):
    from embedtune.errors import ConfigError

    run = _run_dir(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train\.teacher: model path .*nope does not exist"):
        run_train(_cfg(teacher=str(tmp_path / "nope")), run)
    assert not (run / "train" / "base_metrics.json").exists()


def test_model_card_is_sentence_transformers_own_with_embedtunes_sections(trained):
    run, summary = trained
    card = (run / "model" / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: sentence-transformers" in front and "embedtune" in front
    # sentence-transformers' sections, as the Hub renders them, written offline
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in front
    for section in ("## Model Details", "## Usage", "## Training Details"):
        assert section in card, section
    assert "MultipleNegativesRankingLoss" in card or "MatryoshkaLoss" in card
    # embedtune's evaluation and recipe inside it, before the training details
    ours = card.index("## embedtune")
    assert ours < card.index("## Training Details")
    assert summary.verdict in card[ours:]
    SentenceTransformer(str(run / "model"), device="cpu")  # the card changes nothing else


def _mislabelled(wrong: int) -> tuple[QADataset, QADataset]:
    """The test pairs with the last ``wrong`` naming another question's chunk."""
    train, val = make_sets()
    qids = list(train.queries)
    start = len(qids) - wrong
    swapped = {q: train.relevant_docs[qids[(i + start - 2) % len(qids)]]
               for i, q in enumerate(qids[start:])}  # fmt: skip
    train.relevant_docs.update(swapped)
    return train, val


def test_pairs_the_teacher_doubts_learn_its_ranking_only(tmp_path):
    # the user's pairs: the last 6 name the wrong chunk (each question points at the chunk of
    # another question), as a careless writer's would
    run = _run_dir(tmp_path / "run")
    train, _ = _mislabelled(6)
    train.to_json(run / "data" / "train.json")
    summary = run_train(_cfg(**WITH_TEACHER, roundtrip_top_k=1), run)
    # the teacher ranks the true chunk first for the good pairs and not for the wrong ones
    assert summary.data.roundtrip_doubted == 6
    assert (summary.data.train_pairs, summary.data.reject_rows) == (22, 6)
    card = (run / "model" / "README.md").read_text()
    assert "6 whose chunk the teacher ranked outside its top k" in card
    assert "left the pairs, to train on its ranking only" in card
    # with train.rejects off they leave the pairs and nothing trains on them
    dropped = run_train(_cfg(**WITH_TEACHER, roundtrip_top_k=1, rejects=False), run, fresh=True)
    assert (dropped.data.roundtrip_doubted, dropped.data.reject_rows) == (6, 0)
    card = (run / "model" / "README.md").read_text()
    assert "left the pairs" in card and "to train on its ranking only" not in card
    # without a teacher there is no round trip
    plain = run_train(_cfg(matryoshka_dims=None, epochs=1, roundtrip_top_k=1), run, fresh=True)
    assert (plain.data.roundtrip_doubted, plain.data.train_pairs) == (0, 28)
    # by default (auto) a run's own pairs are not checked again: generate's round trip did
    auto = run_train(_cfg(**WITH_TEACHER), run, fresh=True)
    assert (auto.data.roundtrip_share, auto.data.train_pairs) == (None, 28)
    assert any(n.startswith("train.roundtrip_top_k auto -> unset") for n in auto.recipe.notes)


@pytest.mark.parametrize("wrong", [12, 6])
def test_a_users_pairs_leave_only_when_the_teacher_doubts_many(tmp_path, monkeypatch, wrong):
    # A user's pairs (--train-data) under train.roundtrip_top_k: auto. More than a third doubted
    # (12 of 28) reads as a weak writer's: those pairs learn the teacher's ranking only. A few
    # (6 of 28) read as a good writer's hard pairs, which cost people's questions when removed:
    # every pair trains, and the card says the share.
    from embedtune.train import roundtrip

    monkeypatch.setattr(roundtrip, "AUTO_TOP_K", 1)  # 28 chunks: a top 20 would doubt nothing
    train, val = _mislabelled(wrong)
    cfg = TrainConfig(**{**SETTINGS, **WITH_TEACHER})
    assert cfg.roundtrip_top_k == "auto"
    said: list[str] = []
    summary = finetune("all-MiniLM-L6-v2", train, val, cfg, tmp_path / "out", echo=said.append)
    assert summary.data.roundtrip_share == pytest.approx(wrong / 28, abs=1e-4)
    card = (tmp_path / "out" / "README.md").read_text()
    if wrong > 28 / 3:
        assert (summary.data.train_pairs, summary.data.roundtrip_doubted) == (28 - wrong, wrong)
        assert f"{wrong} whose chunk the teacher ranked outside its top k" in card
        assert any("more than a third" in line for line in said)
    else:
        assert (summary.data.train_pairs, summary.data.roundtrip_doubted) == (28, 0)
        assert "21% of the training pairs outside its top k" in card
        assert any("every pair trains as given" in line for line in said)


def test_without_a_teacher_a_users_pairs_are_said_to_be_unchecked(minilm):
    from embedtune.train.rows import training_rows

    train, _ = _mislabelled(12)
    cfg = TrainConfig(**{**SETTINGS, "matryoshka_dims": None})  # no teacher, roundtrip auto
    said: list[str] = []
    rows = training_rows(minilm, "all-MiniLM-L6-v2", train, cfg, said.append)
    assert rows.n_pairs == 28 and rows.roundtrip_share is None  # nothing was checked or dropped
    assert any("no teacher, so no round trip checks these pairs" in line for line in said)


def test_lora_adapters_start_from_the_runs_seed(tmp_path, monkeypatch):
    # peft draws the adapters' first weights when they are added, before the trainer seeds
    # itself: the same run twice trained two models. What is drawn at that point is recorded
    # (no peft needed); training stops there.
    import embedtune.train.trainer as trainer_module

    class Drawn(Exception):
        pass

    def add_lora(model, rank):
        raise Drawn(torch.rand(4).tolist())

    monkeypatch.setattr(trainer_module, "add_lora", add_lora)
    monkeypatch.setattr(trainer_module, "require_peft", lambda: None)  # where peft is missing
    train, val = make_sets()

    def first_draw(seed: int, name: str) -> list[float]:
        cfg = TrainConfig(**{**SETTINGS, "lora": True, "seed": seed, "matryoshka_dims": None})
        with pytest.raises(Drawn) as drawn:
            finetune("all-MiniLM-L6-v2", train, None, cfg, tmp_path / name)
        return drawn.value.args[0]

    assert first_draw(1, "a") == first_draw(1, "b") != first_draw(2, "c")
