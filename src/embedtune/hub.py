"""Push a fine-tuned model folder to the Hugging Face Hub, model card included.

The folder is uploaded as it is (sentence-transformers loads it back with
``SentenceTransformer("USER/NAME")``), in one commit, with ``huggingface_hub``'s own client. The
files are listed first, and the same list is what a dry run shows and what the upload sends::

    plan = plan_push("runs/first/model", "me/r-manuals-minilm")
    [f.path for f in plan.files]      # ['README.md', 'config.json', 'model.safetensors', ...]
    push(plan)                        # 'https://huggingface.co/me/r-manuals-minilm/commit/...'

The token comes from ``token``, else ``HF_TOKEN``, else the login saved by ``hf auth login``.
``HF_ENDPOINT`` points the client at another Hub (a mirror, or a test server).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from embedtune.errors import HubError, InputError

__all__ = ["PushFile", "PushPlan", "plan_push", "push", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Names never uploaded, at any depth: hidden files (embedtune's ``.embedtune`` ownership marker,
#: editor and OS files) and Python caches. Checkpoints live in RUN/train, not in the model folder.
IGNORED = (".*", "__pycache__")
TOKENS_URL = "https://huggingface.co/settings/tokens"


@dataclass(frozen=True)
class PushFile:
    """One file to upload: its path in the repository and its size in bytes."""

    path: str
    size: int


@dataclass
class PushPlan:
    """What a push uploads, where to, and with which token (the token itself is not shown)."""

    folder: Path
    repo_id: str
    private: bool
    endpoint: str
    files: list[PushFile]
    token: str | None = field(default=None, repr=False)
    token_source: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def url(self) -> str:
        return f"{self.endpoint}/{self.repo_id}"


def _ignored(rel: str) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in rel.split("/") for pattern in IGNORED)


def _files(folder: Path) -> list[PushFile]:
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not _ignored(rel):
            out.append(PushFile(rel, path.stat().st_size))
    return out


def _token(token: str | None) -> tuple[str | None, str | None]:
    """The token and where it came from: the flag, HF_TOKEN, or huggingface_hub's saved login."""
    if token:
        return token, "--token"
    env = os.environ.get("HF_TOKEN", "").strip()
    if env:
        return env, "HF_TOKEN"
    from huggingface_hub import get_token

    saved = get_token()
    return (saved, "the saved login (hf auth login)") if saved else (None, None)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InputError(
            f"REPO_ID {repo_id!r} is not a Hub repository id ({exc}); give NAME or USER/NAME, "
            "e.g. me/r-manuals-minilm"
        ) from None


def plan_push(
    folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None
) -> PushPlan:
    """Check the folder and the repository id, and list what a push of ``folder`` uploads."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder: give the model folder, e.g. runs/first/model")
    if not ((folder / "modules.json").is_file() or (folder / "config.json").is_file()):
        hint = (
            f"; {folder / 'model'} is one, did you mean it?"
            if (folder / "model" / "modules.json").is_file()
            else ": give the folder `embedtune train` wrote, e.g. runs/first/model"
        )
        raise InputError(
            f"{folder} is not a model folder (it has neither modules.json nor config.json){hint}"
        )
    _check_repo_id(repo_id)
    files = _files(folder)
    warnings = []
    if not any(f.path == "README.md" for f in files):
        warnings.append(
            f"{folder} has no README.md (model card): the Hub page will show no description"
        )
    resolved, source = _token(token)
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    return PushPlan(folder, repo_id, private, endpoint, files, resolved, source, warnings)


def push(plan: PushPlan, *, commit_message: str | None = None) -> str:
    """Create the repository if needed and upload ``plan.files`` in one commit; returns the
    commit's URL. Raises HubError with the Hub's reason when it refuses or cannot be reached."""
    if not plan.token:
        raise HubError(
            f"no Hugging Face token to push to {plan.repo_id}: pass --token, set HF_TOKEN, or run "
            f"`hf auth login` (create a token with write access at {TOKENS_URL})"
        )
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=plan.endpoint, token=plan.token)
    operations = [
        CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(plan.folder / f.path))
        for f in plan.files
    ]
    try:
        # private=None leaves a new repository's visibility to the Hub (an organisation's default)
        repo = api.create_repo(plan.repo_id, private=True if plan.private else None, exist_ok=True)
        info = api.create_commit(
            repo_id=repo.repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {plan.folder.name} with embedtune push",
        )
    except Exception as exc:  # noqa: BLE001 - turned into one line below, or re-raised
        raise _explain(exc, plan) from None
    return str(info.commit_url)


def _explain(exc: Exception, plan: PushPlan) -> Exception:
    """One line for what went wrong between us and the Hub; anything else is re-raised as is."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    where = f"{plan.endpoint} ({plan.repo_id})"
    if isinstance(exc, OfflineModeIsEnabled):
        return HubError(
            "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, which blocks every call to the "
            "Hub: unset it to push"
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        said = (getattr(exc, "server_message", None) or str(exc)).strip().splitlines()[0]
        if status == 401:
            return HubError(
                f"the Hub at {where} rejected the token from {plan.token_source} (401): give a "
                f"valid token with write access (--token or HF_TOKEN; see {TOKENS_URL})"
            )
        if status == 403:
            return HubError(
                f"the token from {plan.token_source} may not write to {where} (403): use a token "
                "with write access to that user or organisation, or push to your own namespace. "
                f"Hub said: {said}"
            )
        return HubError(f"the Hub at {where} answered {status}: {said}")
    module = type(exc).__module__
    if isinstance(exc, OSError) or module.startswith(("httpx", "httpcore", "requests")):
        return HubError(
            f"could not reach the Hub at {plan.endpoint} ({exc}); check the network, or "
            "HF_ENDPOINT if you set it"
        )
    return exc
