"""The offline backend: SmolLM2-135M writes real questions on CPU (slow: loads the model)."""

from __future__ import annotations

import json
import re

import pytest

from embedtune.config import load_config
from embedtune.dataset import QADataset
from embedtune.generate import run_generate
from embedtune.records import Chunk, write_jsonl

PASSAGES = {
    "t0": "The function install.packages() downloads a package from a CRAN mirror and installs "
    "it into a library folder. Use library() to attach the installed package so that its "
    "functions can be called in the current session.",
    "t1": "A data frame is a list of vectors of equal length. read.csv() reads a comma separated "
    "file into a data frame, and write.csv() writes one back to disk.",
    "v0": "Factors store categorical data. The levels() function returns the categories, and "
    "table() counts how often each level occurs.",
}


@pytest.mark.slow
def test_local_model_writes_questions_about_the_passage(tmp_path):
    run = tmp_path / "run"
    for split, ids in (("train", ["t0", "t1"]), ("val", ["v0"])):
        write_jsonl(
            run / "chunks" / f"{split}.jsonl",
            [
                Chunk(id=i, doc_id=i, text=PASSAGES[i], n_tokens=60, page_start=1, page_end=1)
                for i in ids
            ],
        )
    cfg = load_config(environ={})  # backend auto, nothing configured: the offline model
    cfg.generate.roundtrip_top_k = 1  # keep only questions whose own chunk ranks first
    report = run_generate(cfg, run)
    assert report.backend == "local"
    assert report.timings["model_load_s"] > 0
    rows = [json.loads(x) for x in (run / "generate/cache/train.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["text"].strip() for r in rows)
    train = QADataset.from_json(run / "data" / "train.json")
    assert len(train.queries) >= 2
    stop = {"what", "does", "that", "with", "when", "which", "from", "this", "have", "there"}
    overlaps = 0
    for qid, question in train.queries.items():
        first = question.split()[0].split("'")[0]  # "What's" as "What"
        assert first in {"What", "How", "Which", "Why", "When"}, question
        assert question.endswith("?"), question
        passage = PASSAGES[train.relevant_docs[qid][0]].lower()
        words = {w for w in re.findall(r"[a-z]{4,}", question.lower())} - stop
        overlaps += any(w in passage for w in words)
    assert overlaps >= len(train.queries) / 2  # most ask about words the passage uses
    # A second run reuses every cached reply: nothing is generated again.
    again = run_generate(cfg, run)
    assert again.skipped is True
    # So does a run resumed after a crash (outputs not yet written): every reply is read back.
    (run / "data" / "train.json").unlink()
    resumed = run_generate(cfg, run)
    assert resumed.skipped is False and resumed.splits["train"].new_calls == 0
    assert resumed.splits["train"].cache_rows_set_aside == 0


# ---------------------------------------------------------------- shared prompt beginnings


def _tiny_backend():
    """A LocalBackend over a tiny random Llama and a byte-level BPE tokenizer with a chat
    template: the real code paths of batched generation, in a second, without SmolLM2."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from embedtune.generate.local import LocalBackend

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(list(PASSAGES.values()) * 3, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<|im_end|>")
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok.padding_side = "left"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.5,  # spread-out logits: greedy choices are never near-ties
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # make the end of turn and a newline likely, so replies end early
        for token in (tok.eos_token_id, tok.convert_tokens_to_ids("\u010a")):
            model.lm_head.weight[token] *= 2
    backend = LocalBackend(load_config(environ={}).generate)
    backend._model, backend._tok = model, tok
    return backend


def test_prompts_about_one_chunk_read_its_text_once_and_reply_as_transformers_generate_does():
    from embedtune.generate.prompts import load_template, render

    backend = _tiny_backend()
    template = load_template(None, "local")
    # Three chunks of different lengths, two or three kinds of question each, as the runner
    # batches them: reading a chunk once, and letting finished replies leave the batch, must
    # give every prompt the reply transformers' generate() gives the whole prompt.
    prompts = [render(template, PASSAGES[c], 1, i) for c, k in (("t0", 2), ("t1", 3), ("v0", 2)) for i in range(k)]  # fmt: skip
    forward = backend._model.forward
    read: list[int] = []

    def counting(*args, **kwargs):
        read.append(int(kwargs["input_ids"].shape[0] * kwargs["input_ids"].shape[1]))
        return forward(*args, **kwargs)

    backend._model.forward = counting
    backend.share_prefixes, backend.drop_finished = False, False
    reference = backend.complete_batch(prompts)
    whole_first_pass = read[0]
    lengths = [r.usage["completion_tokens"] for r in reference]
    # The replies differ and stop at different steps, so the comparison means something.
    assert len({r.text for r in reference}) > 1
    assert len(set(lengths)) > 1 and min(lengths) < backend.max_new_tokens
    for share, opening in ((True, True), (True, False), (False, False)):
        read.clear()
        backend.share_prefixes, backend.drop_finished = share, True
        backend.share_template = opening
        replies = backend.complete_batch(prompts)
        assert [r.text for r in replies] == [r.text for r in reference], (share, opening)
        counts = ("prompt_tokens", "completion_tokens")
        assert [[r.usage[k] for k in counts] for r in replies] == [
            [r.usage[k] for k in counts] for r in reference
        ], (share, opening)
        if share:  # the chunks' text went through the model once each, not once per question
            assert read[0] < 0.5 * whole_first_pass
        # The work the replies report is the work done: every position the model computed
        # (each reply's last token is written, never read back).
        reported = sum(r.usage["prompt_tokens_read"] + r.usage["completion_tokens"] - 1 for r in replies)  # fmt: skip
        assert abs(reported - sum(read)) < 0.5, (share, opening, reported, sum(read))
    # A template that asks for a list in one call must not stop at the first line's end.
    backend.per_question = False
    backend.share_prefixes, backend.drop_finished = False, False
    lists = backend.complete_batch(prompts)
    assert any("\n" in r.text for r in lists)
    backend.share_prefixes, backend.drop_finished = True, True
    assert [r.text for r in backend.complete_batch(prompts)] == [r.text for r in lists]


def test_the_local_writers_replies_read_back_from_the_reply_cache(tmp_path):
    # A resumed run reads the cache back through a check of each row's types; the local
    # writer's usage (prompt_tokens_read: a chunk's text read once, divided among its calls,
    # so a fraction) once failed it, and every reply was asked again.
    from embedtune.generate.cache import ResponseCache
    from embedtune.generate.prompts import load_template, render

    backend = _tiny_backend()
    template = load_template(None, "local")
    prompts = [render(template, PASSAGES[c], 1, i) for c, k in (("t0", 2), ("t1", 3)) for i in range(k)]  # fmt: skip
    replies = backend.complete_batch(prompts)
    rows = [{"key": f"k{i}", "text": r.text, "usage": r.usage} for i, r in enumerate(replies)]
    with ResponseCache(tmp_path / "train.jsonl") as cache:
        for row in rows:
            cache.append(row)
    again = ResponseCache(tmp_path / "train.jsonl")
    assert again.set_aside == 0 and [again.get(r["key"])["usage"] for r in rows] == [
        r["usage"] for r in rows
    ]


def test_shared_prefix_groups_join_only_prompts_that_share_most_of_their_tokens():
    from embedtune.generate.local import shared_prefix_groups

    template = list(range(100, 130))  # 30 tokens every prompt starts with
    a, b = template + list(range(200, 260)), template + list(range(300, 360))
    groups = shared_prefix_groups([a + [1], a + [2, 3], b + [1], b + [1]])
    assert groups == [(len(a), [0, 1]), (len(b), [2, 3])]  # identical prompts keep 1 own token
    assert shared_prefix_groups([a + [1]]) == [(len(a), [0])]


def test_local_batches_keep_a_chunks_calls_together():
    from embedtune.generate.runner import _Call, _local_batches

    chunks = [
        Chunk(
            id=f"c{i}",
            doc_id="d",
            text="x" * (50 + 7 * (i % 4)),
            n_tokens=10,
            page_start=1,
            page_end=1,
        )  # fmt: skip
        for i in range(9)
    ]
    calls = [_Call("train", c, k, f"{c.id}/{k}", f"{c.text} {k}") for c in chunks for k in range(3)]
    batches = _local_batches(calls, 8)
    assert sorted(c.key for b in batches for c in b) == sorted(c.key for c in calls)
    assert all(len(b) <= 8 for b in batches)
    for chunk in chunks:  # 3 calls per chunk, batches of 8: a chunk never straddles two batches
        assert sum(any(c.chunk.id == chunk.id for c in b) for b in batches) == 1
    assert len(batches) == 5  # 2 chunks (6 calls) per batch, not 4 when 8 calls are split


def test_a_question_stops_at_its_question_mark_and_keeps_what_the_filter_keeps():
    import torch

    from embedtune.generate.filters import QuestionFilter
    from embedtune.generate.prompts import load_template, render

    backend = _tiny_backend()
    with torch.no_grad():  # make "?" likely, so replies go on after it unless they stop there
        backend._model.lm_head.weight[backend._tok.convert_tokens_to_ids("?")] *= 3
    template = load_template(None, "local")
    prompts = [render(template, PASSAGES[c], 1, i) for c in ("t0", "t1", "v0") for i in range(2)]
    backend.stop_at_question_mark = False
    on = backend.complete_batch(prompts)
    assert any("?" in r.text[:-1] for r in on)  # some reply went on after its "?"
    backend.stop_at_question_mark = True
    stopped = backend.complete_batch(prompts)
    for full, short in zip(on, stopped, strict=True):
        if "?" in full.text:
            assert short.text == full.text[: full.text.index("?") + 1]
        else:
            assert short.text == full.text
    written = sum(r.usage["completion_tokens"] for r in stopped)
    assert written < sum(r.usage["completion_tokens"] for r in on)
    # The question filter, which cuts at the first "?", keeps the same questions either way.
    f = QuestionFilter()
    assert [f.clean(r.text)[0] for r in stopped] == [f.clean(r.text)[0] for r in on]


# ------------------------------------------------------------------- a base model as the writer
def test_a_base_model_reads_passages_each_followed_by_its_question():
    from embedtune.generate.prompts import load_template, render

    backend = _tiny_backend()
    template = load_template(None, "local")
    prompts = [render(template, PASSAGES["t0"], 1, i) for i in range(2)]
    chat_texts = [backend.chat(p)[0] for p in prompts]
    backend._tok.chat_template = None  # a base model ships none
    texts = [backend.chat(p) for p in prompts]
    assert [prefix for _, prefix in texts] == ["What", "How"]
    text = texts[1][0]
    # No chat markup, the worked example as a passage and its question, the instruction gone,
    # and the prompt ending where the question about the chunk begins.
    assert "<|im_start|>" not in text and "Write one" not in text
    assert "\nQuestion: How do I change the time the nightly backup runs?\n\nPassage: " in text
    assert text.endswith(PASSAGES["t0"] + "\nQuestion: How")
    assert text != chat_texts[1]
    # It generates through the same batched paths: shared prefixes give generate()'s replies.
    backend.share_prefixes, backend.drop_finished = False, False
    reference = [r.text for r in backend.complete_batch(prompts)]
    backend.share_prefixes, backend.drop_finished = True, True
    assert [r.text for r in backend.complete_batch(prompts)] == reference
    assert reference[0].startswith("What") and reference[1].startswith("How")


def test_each_writer_has_replies_cached_under_its_own_name(tmp_path):
    from embedtune.generate.local import LOCAL_MODEL_NAME, LocalBackend

    cfg = load_config(environ={}).generate
    assert LocalBackend(cfg).model == LOCAL_MODEL_NAME  # the default's cached replies stay valid
    cfg.local_model = "gemma3-270m"
    assert LocalBackend(cfg).model == "gemma-3-270m-q4_k_m.gguf"  # named without loading it
    gguf = tmp_path / "my-writer.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    cfg.local_model = str(gguf)
    first = LocalBackend(cfg).model
    gguf.write_bytes(b"GGUF" + bytes(90))  # another file saved under the same name
    assert first.startswith("my-writer.gguf") and LocalBackend(cfg).model != first


def test_the_writer_batch_follows_the_device_unless_set(monkeypatch):
    """16 prompts per call on a CPU, a large batch on a GPU (where a small one leaves it idle),
    and a configured size wins on either."""
    import torch

    from embedtune.generate import local

    g = load_config(environ={}).generate
    monkeypatch.setattr(local, "default_device", lambda: "cpu")
    assert local.LocalBackend(g).batch_size == 16
    monkeypatch.setattr(local, "default_device", lambda: "cuda")

    class Props:
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert local.LocalBackend(g).batch_size == 1024
    Props.total_memory = 16 * 2**30
    assert local.LocalBackend(g).batch_size == 256
    Props.total_memory = 8 * 2**30
    assert local.LocalBackend(g).batch_size == 64
    set_ = load_config(environ={"EMBEDTUNE_GENERATE__LOCAL_BATCH_SIZE": "32"}).generate
    assert local.LocalBackend(set_).batch_size == 32
