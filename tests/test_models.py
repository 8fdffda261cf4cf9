"""Model names resolve to packaged copies offline; bad paths get a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.errors import InputError
from embedtune.models import load_model, resolve_model, smollm2_gguf_path


@pytest.mark.parametrize(
    "name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"]
)
def test_minilm_aliases_resolve_to_the_packaged_copy(name):
    path = Path(resolve_model(name))
    assert (path / "modules.json").is_file()


def test_hub_ids_pass_through_unchanged():
    assert resolve_model("BAAI/bge-base-en-v1.5") == "BAAI/bge-base-en-v1.5"


def test_missing_local_path_is_an_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-model"))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a model"):
        load_model(str(tmp_path))


def test_packaged_minilm_embeds(minilm):
    emb = minilm.encode(["What is R?"])
    assert emb.shape == (1, 384)


def test_smollm2_gguf_is_found_without_importing_its_package():
    path = smollm2_gguf_path()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_each_test_embeds_into_a_cache_of_its_own(embedtune_cache):
    from embedtune.embeddings import EmbeddingCache, model_fingerprint
    from embedtune.models import cache_dir

    assert cache_dir() == embedtune_cache
    assert not (embedtune_cache / "embeddings").exists()  # nothing an earlier run left
    cache = EmbeddingCache(model_fingerprint("all-MiniLM-L6-v2"))
    assert cache.folder is not None and cache.folder.is_relative_to(embedtune_cache)
    # unpacked models stay shared: mpnet is not unpacked again for every test
    assert (embedtune_cache / "models").is_symlink()
