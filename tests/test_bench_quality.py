"""benchmarks/bench_quality.py measures product code: a tiny recipe run trains with
embedtune.train.finetune, scores with the evaluator, and its row summarises."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from test_train_data import make_sets

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_quality", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_quality", None)


def test_recipes_are_overrides_of_the_product_config(bench):
    args = bench.parser().parse_args(["--recipes", "distill2", "--lr", "5e-5", "--set", "epochs=3"])
    cfg = bench.train_config("distill2", 7, args)
    assert (cfg.teacher, cfg.distill_weight, cfg.rejects) == ("all-mpnet-base-v2", 2.0, False)
    assert (cfg.learning_rate, cfg.epochs, cfg.seed) == (5e-5, 3, 7)
    assert bench.train_config("mnrl", 1, args).teacher is None
    with pytest.raises(SystemExit, match="TrainConfig field"):
        bench.parse_settings(["epoch=2"])


def test_a_recipe_trains_with_the_product_and_its_row_summarises(bench, tmp_path, capsys):
    train, val = make_sets(n_train=14, n_val=4)
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    train.to_json(run / "data" / "train.json")
    val.to_json(run / "data" / "val.json")
    out = tmp_path / "quality.jsonl"
    bench.main(
        ["--run", str(run), "--recipes", "mnrl", "--seeds", "1", "--epochs", "1",
         "--batch-size", "7", "--set", "bf16=off", "--set", "max_seq_length=48",
         "--rfaq", "", "--pyfaq", "", "--work", str(tmp_path / "work"), "--out", str(out),
         "--label", "tiny"]
    )  # fmt: skip
    row = json.loads(out.read_text())
    assert row["trainer"] == "embedtune.train.finetune"
    assert (row["recipe"], row["seed"], row["steps"], row["pairs"]) == ("mnrl", 1, 2, 14)
    assert row["bf16"] is False and "cpu" in row  # --set bf16=off; the machine is recorded
    assert (tmp_path / "work" / "mnrl-s1" / "modules.json").is_file()
    assert len(row["val"]["per_query_diff"]) == 4
    lo, hi = row["val"]["ci"]
    assert lo <= row["val"]["diff"] <= hi

    capsys.readouterr()
    bench.main(["--summary", "--out", str(out)])
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("tiny | None | mnrl") and f"val {row['val']['diff']:+.4f}" in line

    # A folder trained elsewhere (RUN/model of `embedtune run`) is recorded under the recipe it
    # was trained with, so that the summary can count it with the seeds trained here.
    bench.main(
        ["--run", str(run), "--zero-shot", str(tmp_path / "work" / "mnrl-s1"),
         "--as-recipe", "mnrl", "--rfaq", "", "--pyfaq", "", "--out", str(out),
         "--label", "tiny"]
    )  # fmt: skip
    folder_row = json.loads(out.read_text().splitlines()[-1])
    keys = ("recipe", "trainer", "seed", "epochs", "batch_size", "data")
    assert [folder_row[k] for k in keys] == [row[k] for k in keys]
    assert folder_row["val"]["per_query_diff"] == row["val"]["per_query_diff"]


def test_the_summary_says_how_often_the_runs_verdict_matches_peoples(bench, tmp_path, capsys):
    def row(seed: int, val: list[float], headings: list[float], sentences: list[float],
            rfaq: float) -> dict:  # fmt: skip
        sets = {"val": val, "headings": headings, "sentences": sentences,
                "rfaq": [rfaq - 0.01, rfaq + 0.01]}  # fmt: skip
        return {"recipe": "default", "seed": seed, "data": "x"} | {
            name: {"diff": sum(ci) / 2, "ci": ci} for name, ci in sets.items()
        }

    none = [-0.01, 0.01]
    rows = [
        # run: better (sentences; the writer's val does not judge); people: better
        row(1, [-0.03, -0.01], none, [0.01, 0.03], 0.02),
        row(2, none, [0.01, 0.02], none, -0.005),  # run: better (headings); people: worse sign
        row(3, [0.01, 0.03], none, none, 0.0),  # no clear difference where people's words judge
    ]
    out = tmp_path / "quality.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench.main(["--summary", "--out", str(out)])
    text = capsys.readouterr().out
    assert "against rfaq, 3 trained rows: same verdict 2/3; where the run decided, the sign " \
        "agrees 1/2" in text  # fmt: skip
    assert "against headings, 3 trained rows: same verdict 1/3" in text  # sentences alone there
    # what following the verdict keeps of people's gains: rows 1 and 2 used, row 3 kept
    assert "where the run says use the fine-tuned model: +0.0075 (2 rows); where it keeps the " \
        "base: +0.0000 (1 rows); people's change kept by following it: +0.0150 of +0.0150 " \
        "(every row fine-tuned), +0.0200 (knowing people's answers)" in text  # fmt: skip


def test_another_human_set_is_scored_and_summarised_under_its_name(bench, tmp_path, capsys):
    train, val = make_sets(n_train=14, n_val=4)
    val.to_json(tmp_path / "val.json")
    train.to_json(tmp_path / "train.json")
    out = tmp_path / "quality.jsonl"
    bench.main(
        ["--train-data", str(tmp_path / "train.json"), "--val-data", str(tmp_path / "val.json"),
         "--eval", f"cvs={tmp_path / 'val.json'}", "--rfaq", "", "--pyfaq", "",
         "--zero-shot", "all-MiniLM-L6-v2", "--out", str(out)]
    )  # fmt: skip
    assert "cvs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--train-data", str(tmp_path / "train.json"), "--val-data",
                    str(tmp_path / "val.json"), "--eval", "val=x.json", "--zero-shot"])  # fmt: skip


def test_compare_sets_two_writers_side_by_side_on_the_same_questions(bench, tmp_path, capsys):
    def row(data: str, seed: int, cvs: list[float], val: list[float]) -> dict:
        sets = {"cvs": cvs, "val": val}
        return {"recipe": "default", "seed": seed, "data": data, "epochs": 2.0} | {
            name: {"diff": sum(d) / len(d), "ci": [-1, 1], "per_query_diff": d}
            for name, d in sets.items()
        }

    rows = [
        row("gemma", 1, [0.2, 0.1, 0.0, 0.1], [0.5]),
        row("gemma", 2, [0.2, 0.1, 0.2, 0.1], [0.5]),
        row("smol", 1, [0.0, 0.0, -0.1, 0.0], [0.1, 0.2]),
    ]
    out = tmp_path / "quality.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench.main(["--compare", "gemma", "smol", "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("gemma (2 seeds) against smol (1 seeds)")
    cvs = next(line for line in lines if line.strip().startswith("cvs"))
    assert "+0.1250" in cvs and "-0.0250" in cvs and "+0.1500 (" in cvs
    assert not any(line.strip().startswith("val") for line in lines)  # each run's own questions
    # one run folder (or one hold-out) for both: the same generated questions, compared too
    smol = [row("smol", 1, [0.0, 0.0, -0.1, 0.0], [0.1])]
    shared = tmp_path / "shared.jsonl"
    shared.write_text("".join(json.dumps(r) + "\n" for r in rows[:2] + smol))
    bench.main(["--compare", "gemma", "smol", "--out", str(shared), "--same-val"])
    val = next(
        line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("val")
    )
    assert "+0.5000" in val and "+0.4000 (" in val

    out.write_text(
        out.read_text() + json.dumps(row("smol", 2, [0, 0, 0, 0], [0]) | {"epochs": 1.0})
    )
    with pytest.raises(SystemExit, match="smol: 2 rows in 2 groups"):
        bench.main(["--compare", "gemma", "smol", "--out", str(out)])


def test_merge_base_scores_a_folder_halfway_back_to_its_base(bench, tmp_path, minilm_path):
    import torch
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "work" / "default-s2"
    moved = SentenceTransformer(minilm_path, device="cpu")
    layer = moved[0].auto_model.encoder.layer[0].attention.self.query.weight
    with torch.no_grad():
        layer.mul_(3.0)  # a "fine-tuned" folder whose one tensor moved
    moved.save(str(folder))
    (tmp_path / "work" / "default-s2.train").mkdir()
    (tmp_path / "work" / "default-s2.train" / "metrics.json").write_text(
        json.dumps({"recipe": {"seed": 2, "epochs": 1.0}})
    )
    out = Path(bench.merged(str(folder), "all-MiniLM-L6-v2", 0.5, tmp_path / "merged"))
    key = "encoder.layer.0.attention.self.query.weight"
    base = load_file(str(Path(minilm_path) / "model.safetensors"))[key]
    torch.testing.assert_close(load_file(str(out / "model.safetensors"))[key], 2.0 * base)
    row = bench._folder_row(str(out), 1, "mix")
    assert (row["seed"], row["alpha"]) == (2, 0.5)


def test_hold_out_chooses_on_chunks_the_model_never_trains_on(bench):
    from embedtune.dataset import QADataset

    ds = QADataset(
        queries={f"q{i}": f"question {i}?" for i in range(5)},
        corpus={f"c{i}": f"chunk {i}" for i in range(4)},
        relevant_docs={
            "q0": ["c0"],
            "q1": ["c1"],
            "q2": ["c3"],
            "q3": ["c2", "c3"],
            "q4": ["c1", "c3"],
        },
    )
    train, held = bench.hold_out(ds, 0.5)
    assert list(train.corpus) == ["c0", "c1"] and list(held.corpus) == ["c2", "c3"]
    assert list(train.queries) == ["q0", "q1"] and list(held.queries) == ["q2", "q3"]
    # q4 answers from both sides: in neither, so no training question is chosen on


def test_a_row_records_the_teachers_weight(bench, tmp_path, capsys):
    # train.distill_weight's default moved from 1.0 to 0.5 (session 22): rows trained with a
    # teacher say which weight they used, so rows from before and after are never averaged
    # together under one label; rows without a teacher do not claim any.
    folder = tmp_path / "default-s1"
    summary = folder.with_name(folder.name + ".train")
    summary.mkdir()
    recipe = {"seed": 1, "teacher": {"model": "all-mpnet-base-v2"}, "distill_weight": 0.5}
    (summary / "metrics.json").write_text(json.dumps({"recipe": recipe}))
    assert bench._folder_row(str(folder), 1, "x")["distill_weight"] == 0.5
    recipe.pop("teacher")
    (summary / "metrics.json").write_text(json.dumps({"recipe": recipe}))
    assert "distill_weight" not in bench._folder_row(str(folder), 1, "x")

    def row(seed: int, weight: float) -> dict:
        cvs = {"diff": 0.01, "ci": [-1, 1], "per_query_diff": [0.01, 0.01]}
        return {"recipe": "default", "seed": seed, "data": "kl", "distill_weight": weight} | {
            "cvs": cvs
        }

    out = tmp_path / "quality.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in (row(1, 0.5), row(2, 1.0), row(1, 0.5))))
    bench.main(["--summary", "--out", str(out)])
    groups = [line for line in capsys.readouterr().out.splitlines() if line.startswith("kl |")]
    assert len(groups) == 2 and " | 0.5 | " in groups[0] and "| 2 |" in groups[0]
    with pytest.raises(SystemExit, match="kl: 3 rows in 2 groups"):
        bench.main(["--compare", "kl", "kl", "--out", str(out)])
    # a row from before the weight had its own key, trained with --set, is the same recipe
    older = {k: v for k, v in row(3, 0.5).items() if k != "distill_weight"}
    older["settings"] = "alpha=1.0 distill_weight=0.5"
    assert bench.group_key(older) == bench.group_key(row(1, 0.5) | {"settings": older["settings"]})


def test_a_missing_unrelated_domain_set_is_named_not_skipped_in_silence(
    bench, tmp_path, capsys, monkeypatch
):
    # A row scored without python-faq reads like one that passed its guard (session 35 lost it
    # running from a worktree without .embedtune-data); a path given by hand must exist.
    train, val = make_sets(n_train=14, n_val=4)
    val.to_json(tmp_path / "val.json")
    train.to_json(tmp_path / "train.json")
    given = ["--train-data", str(tmp_path / "train.json"), "--val-data", str(tmp_path / "val.json"),
             "--rfaq", ""]  # fmt: skip
    ap = bench.parser()
    monkeypatch.setattr(ap, "get_default", lambda name: str(tmp_path / "nowhere"))
    _, sets = bench.load_sets(ap.parse_args([*given, "--pyfaq", str(tmp_path / "nowhere")]), ap)
    assert "pyfaq" not in sets
    assert "build_python_faq.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main([*given, "--pyfaq", str(tmp_path / "typo"), "--zero-shot", "x"])
    assert "--pyfaq" in capsys.readouterr().err


def test_a_set_rate_that_a_row_records_groups_with_rows_that_resolved_it(bench):
    # Session 34's seed 1 resolved LoRA's 5e-5; its seeds 2-3 named it with --set: one recipe.
    resolved = {"data": "x", "lr": 5e-5, "epochs": 2.0, "settings": "lora=true"}
    named = {**resolved, "settings": "learning_rate=5e-5 lora=true"}
    assert bench.group_key(named) == bench.group_key(resolved)
    other = {**named, "lr": 1e-3, "settings": "learning_rate=1e-3 lora=true"}
    assert bench.group_key(other) != bench.group_key(resolved)
    assert bench.group_key({**resolved, "settings": "lora=false"}) != bench.group_key(resolved)


def test_pairs_from_train_data_meet_trainings_round_trip_even_with_a_run(bench):
    # Session 36's first ICT rows trained every pair unchecked: --run turned the round trip off
    # for pairs that never passed generate's, which `embedtune train --train-data` checks.
    run_only = bench.parser().parse_args(["--run", "R"])
    assert bench.train_config("default", 1, run_only).roundtrip_top_k is None
    brought = bench.parser().parse_args(["--run", "R", "--train-data", "pairs.json"])
    assert bench.train_config("default", 1, brought).roundtrip_top_k == "auto"
    off = bench.parser().parse_args(
        ["--run", "R", "--train-data", "pairs.json", "--set", "roundtrip_top_k=null"]
    )
    assert bench.train_config("default", 1, off).roundtrip_top_k is None
