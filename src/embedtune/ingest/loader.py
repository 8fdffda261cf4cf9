"""Find documents under files and folders, read each with its format's loader, and account for
every file that could not be used.

A bad file never stops the run: it is logged as one line naming the file and the reason
("skipped docs/scan.pdf: no text layer in 3 page(s) (scanned or image-only?); run OCR first")
and counted in the summary. So is everything found that cannot be read at all: a file without
read permission, a symbolic link that points nowhere or at itself, a link to a folder (not
followed, so a loop cannot make the walk endless), a folder that cannot be listed. Only a
missing path, or inputs with nothing readable at all, raise InputError, because then there is
nothing to fine-tune on.

Folders embedtune wrote (a run directory, a model, an export, an evaluation report) are skipped
the same way, with a line saying so: a run kept inside the documents' folder (``--docs . --run
runs/first``) would otherwise read its own model card and reports as documents on the next
prepare, change the split, and train again on them.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.errors import InputError
from embedtune.ingest.html import load_html
from embedtune.ingest.pdf import load_pdf
from embedtune.ingest.text import SkipFile, load_text
from embedtune.layout import RunLayout
from embedtune.ownership import MARKER
from embedtune.records import Document, Page

__all__ = [
    "LOADERS",
    "Skipped",
    "LoadResult",
    "SourceFile",
    "find_files",
    "file_sha256",
    "load_documents",
]

log = logging.getLogger("embedtune.ingest")

LOADERS: dict[str, Callable[[Path], list[Page]]] = {
    ".pdf": load_pdf,
    ".txt": load_text,
    ".text": load_text,
    ".md": load_text,
    ".markdown": load_text,
    ".rst": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".xhtml": load_html,
}


@dataclass(frozen=True)
class SourceFile:
    """A file to read, and the name it goes by in ids and reports (relative to its input).

    ``problem`` is (kind, reason) for an entry found that cannot be read at all (a broken link,
    a folder that cannot be listed): it is reported as skipped, never silently left out.
    """

    path: Path
    rel: str
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class Skipped:
    path: str
    kind: str
    reason: str


@dataclass
class LoadResult:
    documents: list[Document]
    skipped: list[Skipped] = field(default_factory=list)
    ignored: int = 0  # files of other types met while walking folders

    @property
    def pages(self) -> int:
        return sum(len(d.pages) for d in self.documents)

    @property
    def chars(self) -> int:
        return sum(d.n_chars for d in self.documents)

    def summary(self) -> dict[str, Any]:
        return {
            "files_read": len(self.documents),
            "files_skipped": len(self.skipped),
            "skipped_by_reason": dict(Counter(s.kind for s in self.skipped)),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "files_ignored": self.ignored,
            "pages": self.pages,
            "chars": self.chars,
        }


def _exts(extensions: Iterable[str]) -> set[str]:
    return {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}


def _link_problem(path: Path) -> tuple[str, str] | None:
    """Why the symbolic link ``path`` cannot be followed; None when it can."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "broken link", "a symbolic link loop (it leads back to itself); fix or remove it"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            try:
                target = os.readlink(path)
            except OSError:
                target = "a path"
            return "broken link", (
                f"a symbolic link to {target}, which does not exist; fix or remove the link"
            )
        return "unreadable", f"cannot be followed ({exc.strerror or exc}); check its permissions"
    return None


def _walk(root: Path) -> Iterator[tuple[Path, tuple[str, str] | None]]:
    """Every regular file under ``root`` (hidden entries skipped, names sorted), with the
    entries that cannot be read and why: broken links, links to folders (not followed),
    folders that cannot be listed."""
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        here = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        for name in [n for n in dirnames if _written_by_embedtune(here / n)]:
            dirnames.remove(name)
            yield here / name, OWN
        for name in [n for n in dirnames if (here / n).is_symlink()]:
            dirnames.remove(name)  # os.walk does not follow it either; said, not silent
            yield (
                here / name,
                (
                    "link to folder",
                    f"a symbolic link to the folder {os.path.realpath(here / name)}, which is not "
                    "followed; pass that folder as an input to read it",
                ),
            )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            yield path, _link_problem(path) if path.is_symlink() else None
    for exc in errors:
        yield (
            Path(exc.filename or root),
            (
                "unreadable",
                f"folder cannot be read ({exc.strerror or exc}); check its permissions",
            ),
        )


#: A folder embedtune wrote, met among the documents: passed over, and said.
OWN = ("embedtune's own", "a folder embedtune wrote (a run, model or report), not documents")


def _written_by_embedtune(folder: Path) -> bool:
    """A run directory (its lock file) or a folder embedtune marked as its own."""
    return (folder / MARKER).is_file() or RunLayout(folder).lock.is_file()


def find_files(
    paths: Sequence[str | Path], extensions: Iterable[str]
) -> tuple[list[SourceFile], int]:
    """Every file to read under ``paths`` (folders walked recursively, hidden entries skipped),
    sorted by name so the order never depends on the file system; and the count of files of
    other types that were passed over. A file named directly is read whatever its extension,
    if a loader exists for it. Entries that cannot be read at all come with their ``problem``."""
    if not paths:
        raise InputError(
            "no input documents given: pass files or folders, e.g. 'embedtune prepare ./docs "
            "--run runs/first', or set ingest.paths in the config"
        )
    wanted = _exts(extensions)
    found: dict[str, SourceFile] = {}
    ignored = 0
    for raw in paths:
        root = Path(raw).expanduser()
        problem = _link_problem(root) if root.is_symlink() else None
        if problem:
            found.setdefault(str(root.absolute()), SourceFile(root, root.name, problem))
            continue
        if not root.exists():
            raise InputError(f"{raw} does not exist; check the path (relative to {Path.cwd()})")
        if not root.is_dir():
            if not root.is_file():
                problem = ("unsupported", "not a regular file or folder (a pipe, socket or device)")
            found.setdefault(os.path.realpath(root), SourceFile(root, root.name, problem))
            continue
        matched = own = 0
        for path, problem in _walk(root):
            rel = path.relative_to(root).as_posix() if path != root else root.name
            if problem:
                found.setdefault(str(path.absolute()), SourceFile(path, rel, problem))
                own += problem is OWN
                matched += problem is not OWN
            elif not path.is_file():
                ignored += 1  # a pipe, socket or device: never opened
            elif path.suffix.lower() in wanted and path.suffix.lower() in LOADERS:
                found.setdefault(os.path.realpath(path), SourceFile(path, rel))
                matched += 1
            else:
                ignored += 1
        if matched == 0:
            kinds = ", ".join(sorted(wanted))
            raise InputError(
                f"no documents in {raw}: it holds no {kinds} files"
                + (
                    f" ({ignored} file(s) of other types)"
                    if ignored
                    else f" (only {own} folder(s) embedtune wrote)"
                    if own
                    else " (it is empty)"
                )
                + "; add documents there, or pass other files or folders"
            )
    return sorted(found.values(), key=lambda s: (s.rel, str(s.path))), ignored


_SLUG = re.compile(r"[^a-z0-9]+")


def _slug(rel: str) -> str:
    return _SLUG.sub("-", rel.lower()).strip("-") or "doc"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_documents(
    paths: Sequence[str | Path],
    extensions: Iterable[str] = tuple(LOADERS),
    *,
    hashes: dict[str, str] | None = None,
) -> LoadResult:
    """Read every document under ``paths``.

    ``hashes`` maps a file path (as given by find_files) to its SHA-256 when the caller already
    knows it. Document ids are slugs of the path relative to its input ("guides/Setup.md" ->
    "guides-setup-md"), with a short content hash appended where two slugs collide; a file
    whose bytes equal an earlier file's is skipped as a duplicate.
    """
    files, ignored = find_files(paths, extensions)
    result = LoadResult(documents=[], ignored=ignored)
    seen_hash: dict[str, str] = {}
    used_ids: set[str] = set()
    for src in files:
        shown = str(src.path)
        loader = LOADERS.get(src.path.suffix.lower())
        try:
            if src.problem is not None:
                raise SkipFile(*src.problem)
            if loader is None:
                raise SkipFile(
                    "unsupported",
                    f"unsupported file type '{src.path.suffix or '(none)'}'; "
                    f"readable types: {', '.join(sorted(LOADERS))}",
                )
            digest = (hashes or {}).get(str(src.path)) or file_sha256(src.path)
            if digest in seen_hash:
                raise SkipFile("duplicate", f"same content as {seen_hash[digest]}")
            if src.path.stat().st_size == 0:
                raise SkipFile("empty", "empty file")
            pages = loader(src.path)
        except SkipFile as exc:
            result.skipped.append(Skipped(shown, exc.kind, str(exc)))
            log.warning("skipped %s: %s", shown, exc)
            continue
        except OSError as exc:
            reason = f"cannot be read ({exc.strerror or exc}); check its permissions"
            result.skipped.append(Skipped(shown, "unreadable", reason))
            log.warning("skipped %s: %s", shown, reason)
            continue
        except Exception as exc:  # a loader's library failing on one odd file: not the run
            reason = f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
            result.skipped.append(Skipped(shown, "failed", reason))
            log.warning("skipped %s: %s", shown, reason)
            continue
        seen_hash[digest] = shown
        doc_id = _slug(src.rel)
        if doc_id in used_ids:
            doc_id = f"{doc_id}-{digest[:8]}"
        used_ids.add(doc_id)
        result.documents.append(Document(id=doc_id, path=shown, content_hash=digest, pages=pages))
    if not result.documents:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in result.skipped[:5])
        more = f" (and {len(result.skipped) - 5} more)" if len(result.skipped) > 5 else ""
        raise InputError(
            f"none of the {len(files)} input file(s) could be read: {reasons}{more}. "
            "Fix or replace these files and run again"
        )
    return result
