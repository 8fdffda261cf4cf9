"""Small question/passage sets about distinct topics, for the training tests."""

from __future__ import annotations

from embedtune.dataset import QADataset

FACTS: list[tuple[str, str]] = [
    (
        "Why do volcanoes erupt?",
        "Magma rises through cracks in the crust and escapes as lava, gas and ash when pressure builds.",
    ),
    (
        "How do plants make sugar from light?",
        "Chloroplasts turn sunlight, water and carbon dioxide into glucose, releasing oxygen.",
    ),
    (
        "What pulls the sea up and down twice a day?",
        "Tides follow the gravitational pull of the moon and, less strongly, the sun.",
    ),
    (
        "How does a vaccine protect you?",
        "A vaccine trains the immune system with a harmless antigen so antibodies are ready later.",
    ),
    (
        "Why is the sky blue?",
        "Air molecules scatter short blue wavelengths of sunlight more than red ones (Rayleigh scattering).",
    ),
    (
        "How do bees tell each other where flowers are?",
        "Honeybees perform a waggle dance whose angle and length encode direction and distance.",
    ),
    (
        "What makes bread rise?",
        "Yeast ferments sugars in the dough and the carbon dioxide it releases inflates the gluten network.",
    ),
    (
        "How does a refrigerator keep food cold?",
        "A compressor circulates refrigerant that absorbs heat inside and releases it through rear coils.",
    ),
    (
        "Why do leaves change colour in autumn?",
        "Chlorophyll breaks down in autumn, revealing yellow carotenoids and red anthocyanins.",
    ),
    (
        "How do noise-cancelling headphones work?",
        "Microphones pick up ambient sound and the speakers play an inverted wave that cancels it.",
    ),
    (
        "What is inflation in economics?",
        "Inflation is a sustained rise in the general price level, reducing what money can buy.",
    ),
    (
        "How do earthquakes happen?",
        "Stress along a fault is released suddenly as tectonic plates slip, sending seismic waves.",
    ),
    (
        "Why do cats purr?",
        "Cats purr by vibrating laryngeal muscles, both when content and to soothe themselves.",
    ),
    (
        "How does GPS know where I am?",
        "A receiver times signals from several satellites and trilaterates its position from the delays.",
    ),
    (
        "What causes rainbows?",
        "Sunlight refracts, reflects and disperses inside raindrops, splitting into a spectrum of colours.",
    ),
    (
        "How do antibiotics kill bacteria?",
        "Antibiotics block bacterial cell wall synthesis, protein production or DNA replication.",
    ),
    (
        "Why does ice float on water?",
        "Water expands as it freezes into a hexagonal lattice, so ice is less dense than liquid water.",
    ),
    (
        "How are diamonds formed?",
        "Carbon crystallises into diamond under very high pressure and temperature deep in the mantle.",
    ),
    (
        "What does a central bank do?",
        "A central bank sets interest rates, issues currency and supervises the banking system.",
    ),
    (
        "How do airplanes stay in the air?",
        "Wings deflect air downward and create lower pressure above them, producing lift.",
    ),
    (
        "Why do we dream?",
        "Dreams occur mostly in REM sleep and may help consolidate memories and process emotions.",
    ),
    (
        "How do solar panels make electricity?",
        "Photovoltaic cells of doped silicon free electrons when photons hit them, creating a current.",
    ),
    (
        "What is the function of the kidneys?",
        "Kidneys filter blood, remove waste as urine and balance salts and fluid volume.",
    ),
    (
        "How do chameleons change colour?",
        "Chameleons tune nanocrystals in their skin cells, changing how light is reflected.",
    ),
    (
        "Why is the ocean salty?",
        "Rivers carry dissolved minerals from weathered rock to the sea, where evaporation concentrates them.",
    ),
    (
        "How does a microwave oven heat food?",
        "Microwaves make water molecules in food rotate rapidly, and that friction produces heat.",
    ),
    (
        "What causes the seasons on Earth?",
        "Earth's axis is tilted 23.5 degrees, so each hemisphere gets more direct sunlight part of the year.",
    ),
    (
        "How do birds migrate so far without getting lost?",
        "Migrating birds navigate with the sun, the stars and the Earth's magnetic field.",
    ),
    (
        "Why do onions make you cry?",
        "Cutting onions releases a sulfur compound that irritates the eyes and triggers tears.",
    ),
    (
        "How is glass made?",
        "Sand, soda ash and limestone are melted at about 1700 degrees and cooled without crystallising.",
    ),
    (
        "What does DNA do?",
        "DNA stores the genetic instructions cells use to build proteins and pass traits to offspring.",
    ),
    (
        "How do electric cars store energy?",
        "Electric cars store energy in lithium-ion battery packs that power an electric motor.",
    ),
    (
        "Why do stars twinkle?",
        "Turbulence in the atmosphere bends starlight unevenly, so a star's apparent brightness flickers.",
    ),
    (
        "How does coffee keep people awake?",
        "Caffeine blocks adenosine receptors in the brain, masking the signal of tiredness.",
    ),
    (
        "What makes a hurricane form?",
        "Hurricanes form over warm ocean water where rising moist air feeds a rotating low-pressure system.",
    ),
    (
        "How do fish breathe underwater?",
        "Fish pass water over gills, where thin filaments absorb dissolved oxygen into the blood.",
    ),
]


def make_sets(
    n_train: int = 28, n_val: int | None = None, prefix: str = ""
) -> tuple[QADataset, QADataset]:
    """Train and validation sets: distinct topics, one question and one chunk each."""

    def build(items: list[tuple[str, str]], offset: int) -> QADataset:
        queries, corpus, rel = {}, {}, {}
        for i, (q, p) in enumerate(items, offset):
            queries[f"{prefix}q{i}"] = q
            corpus[f"{prefix}c{i}"] = p
            rel[f"{prefix}q{i}"] = [f"{prefix}c{i}"]
        return QADataset(queries=queries, corpus=corpus, relevant_docs=rel)

    end = None if n_val is None else n_train + n_val
    return build(FACTS[:n_train], 0), build(FACTS[n_train:end], n_train)


# ---------------------------------------------------------------------- tests of train/data.py
import pytest  # noqa: E402

from embedtune.dataset import leaked_questions  # noqa: E402
from embedtune.errors import InputError, TrainingError  # noqa: E402
from embedtune.train.data import merged_corpus, pairs_dataset  # noqa: E402
from embedtune.train.negatives import mine_hard_negatives  # noqa: E402


def test_validation_questions_also_trained_on_are_warned_of():
    """The same file given as --train-data and --val-data, or overlapping splits: the verdict
    would be judged on questions the model was trained on."""
    train, val = make_sets(n_train=12)
    assert leaked_questions(train, val) is None
    same = train.model_copy(deep=True)  # the same file read again
    same.metadata["source"] = "pairs.json"
    warning = leaked_questions(train, same)
    assert warning is not None and warning.startswith(
        "12 of the 12 validation questions in pairs.json are training questions too (e.g. "
    )

    def val_plus(question: str) -> QADataset:
        first = next(iter(val.corpus))
        return QADataset(
            queries={**val.queries, "x": question},
            corpus=val.corpus,
            relevant_docs={**val.relevant_docs, "x": [first]},
        )

    # One repeated question among many is not a leak (a generic "What is R?" can recur) ...
    assert len(val.queries) >= 20 and leaked_questions(train, val_plus(train.queries["q0"])) is None
    # ... and case and spacing do not hide repeats where they are many.
    shouted = train.model_copy(deep=True)
    shouted.queries = {k: "  " + q.upper() for k, q in shouted.queries.items()}
    assert leaked_questions(train, shouted) is not None


def test_pairs_one_row_per_query_and_relevant_chunk_without_duplicates():
    ds = QADataset(
        queries={"q1": "What is R?", "q2": "What is R?", "q3": "Who wrote S?"},
        corpus={"a": "R is a language.", "b": "S came from Bell Labs.", "c": "unrelated"},
        relevant_docs={"q1": ["a"], "q2": ["a"], "q3": ["b", "a"]},
    )
    rows = pairs_dataset(ds)
    assert rows.column_names == ["anchor", "positive"]
    assert list(zip(rows["anchor"], rows["positive"], strict=True)) == [
        ("What is R?", "R is a language."),
        ("Who wrote S?", "S came from Bell Labs."),
        ("Who wrote S?", "R is a language."),
    ]


def test_merged_corpus_refuses_one_id_with_two_texts():
    train, val = make_sets()
    assert len(merged_corpus(train, val)) == len(FACTS)
    clash = QADataset(queries={"x": "q"}, corpus={"c0": "other text"}, relevant_docs={"x": ["c0"]})
    with pytest.raises(InputError, match="corpus id 'c0' names two different texts"):
        merged_corpus(train, clash)


def test_hard_negatives_never_a_relevant_chunk_or_its_copy_and_respect_the_margin(minilm):
    train, _ = make_sets()
    # q0 has two relevant chunks; c_copy repeats c1's text and must be excluded for q1 too.
    train.relevant_docs["q0"] = ["c0", "c1"]
    train.corpus["c_copy"] = train.corpus["c1"]
    stats: dict = {}
    rows = mine_hard_negatives(minilm, train, num_negatives=2, margin=0.05, stats=stats)
    assert rows.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert len(rows) == len(pairs_dataset(train))  # no pair dropped
    relevant_text = {
        train.queries[q]: {train.corpus[c] for c in cids} for q, cids in train.relevant_docs.items()
    }
    q_emb = minilm.encode(rows["anchor"], normalize_embeddings=True, convert_to_tensor=True)
    for i, row in enumerate(rows):
        for k in (1, 2):
            neg = row[f"negative_{k}"]
            assert neg not in relevant_text[row["anchor"]]
        pos = minilm.encode(
            [train.corpus[c] for c in train.relevant_docs[_qid(train, row["anchor"])]],
            normalize_embeddings=True,
            convert_to_tensor=True,
        )
        negs = minilm.encode(
            [row["negative_1"], row["negative_2"]],
            normalize_embeddings=True,
            convert_to_tensor=True,
        )
        weakest_positive = float((pos @ q_emb[i]).min())
        assert float((negs @ q_emb[i]).max()) <= weakest_positive - 0.05 + 1e-4
    assert stats["negatives_per_pair"] == 2


def test_hard_negatives_mined_through_the_cache_match_and_encode_nothing_twice(minilm, tmp_path):
    from embedtune.embeddings import EmbeddingCache

    train, _ = make_sets()
    direct = mine_hard_negatives(minilm, train, num_negatives=2, margin=0.05)
    first = EmbeddingCache("test-miner", root=tmp_path)
    cached = mine_hard_negatives(minilm, train, num_negatives=2, margin=0.05, cache=first)
    assert first.encoded == len(train.queries) + len(train.corpus)
    assert cached.to_dict() == direct.to_dict()
    again = EmbeddingCache("test-miner", root=tmp_path)  # e.g. a teacher the round trip used
    assert mine_hard_negatives(minilm, train, 2, 0.05, cache=again).to_dict() == direct.to_dict()
    assert again.encoded == 0


def test_hard_negatives_need_enough_chunks(minilm):
    ds = QADataset(queries={"q": "What is R?"}, corpus={"a": "R."}, relevant_docs={"q": ["a"]})
    with pytest.raises(TrainingError, match="hard_negatives=3 needs at least 4 training chunks"):
        mine_hard_negatives(minilm, ds, num_negatives=3)


def _qid(ds: QADataset, text: str) -> str:
    return next(q for q, t in ds.queries.items() if t == text)


def test_chunks_longer_than_the_model_reads_are_warned_of_with_what_it_can_read(minilm):
    """A user's own pairs (llama-index's 10-K chunks run to 500-900 tokens) against MiniLM's 256:
    the model would learn from each chunk's start alone, and nothing said so."""
    from embedtune.train.data import chunks_past_window

    long_text = " ".join(["word"] * 400)  # 402 tokens: past 256, under 512
    ds = QADataset(
        queries={f"q{i}": f"question {i}?" for i in range(10)},
        corpus={f"c{i}": (long_text if i < 3 else f"a short chunk {i}.") for i in range(10)},
        relevant_docs={f"q{i}": [f"c{i}"] for i in range(10)},
    )
    warning = chunks_past_window(ds, minilm.tokenizer, 256, 512, "minilm", "pairs.json")
    assert warning is not None and warning.startswith(
        "pairs.json: 3 of 10 chunks (30%) run past the 256 tokens minilm reads (up to 402)"
    )
    assert "--max-seq-length 512" in warning
    # Reading 512 tokens, none is past the window; where 256 is all it can read, no such advice.
    assert chunks_past_window(ds, minilm.tokenizer, 512, 512, "minilm", "pairs.json") is None
    capped = chunks_past_window(ds, minilm.tokenizer, 256, 256, "minilm", "pairs.json")
    assert capped is not None and "--max-seq-length" not in capped
    # A window the user chose (train.max_seq_length 128): cut the chunks to it, before reading more.
    chosen = chunks_past_window(ds, minilm.tokenizer, 128, 512, "minilm", "pairs.json", given=True)
    assert (
        chosen is not None
        and "run past the 128 tokens train.max_seq_length lets minilm read (up to 402)" in chosen
    )
    assert "cut them to 128 tokens" in chosen
    assert not chosen.split("; ", 1)[1].startswith("--max-seq-length 512")
    # One long chunk in ten is usual and not warned of.
    ds.corpus.update({"c1": "short.", "c2": "short."})
    assert chunks_past_window(ds, minilm.tokenizer, 256, 512, "minilm", "pairs.json") is None
