"""One writer per run directory: a stage holds the run's lock while it writes there.

Two processes writing one run directory at once mixed their files (config.yaml from one
``prepare``, chunks from the other) or lost a temporary file under the other's feet. So a stage
that writes ``RUN`` first takes ``RUN/.embedtune.lock``, an OS-level lock (``flock`` through the
``filelock`` library) that the operating system releases when the process ends, however it ends:
a run killed with ``kill -9`` never blocks the next one. A second process gets, within a second,
one line instead of a wait with no end::

    runs/first is in use by another embedtune process (pid 4242, stage prepare); wait for it to
    finish or use another --run

Who holds it (pid, stage, since when) is written beside the lock, in ``.embedtune.lock.json``,
for that message. Within one thread the lock is re-entrant, so ``embedtune run`` holds it across
its stages; under ``torchrun`` the first process holds it for all of them::

    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> with lock_run(run, "prepare"):
    ...     with lock_run(run, "prepare"):   # the same process again: fine
    ...         pass
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from embedtune.errors import InputError
from embedtune.layout import RunLayout

__all__ = ["RunInUse", "WAIT_SECONDS", "lock_run", "holds_run"]

#: How long a second process waits for the lock before it is told the run is in use.
WAIT_SECONDS = 0.5

F = TypeVar("F", bound=Callable[..., Any])


class RunInUse(InputError):
    """Another process is writing the run directory."""


_local = threading.local()


def _held() -> dict[str, tuple[FileLock, int]]:
    """This thread's locks: path -> (lock, depth)."""
    if not hasattr(_local, "held"):
        _local.held = {}
    return _local.held


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def _holder(run: RunLayout) -> str:
    """'pid N, stage S' of the process holding the lock, as far as it said."""
    try:
        info = json.loads(run.lock_info.read_text(encoding="utf-8"))
        pid, stage = int(info["pid"]), str(info["stage"])
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"
    if not _alive(pid):  # a note left by a killed process, and the holder has not written yet
        return "pid unknown"
    since = info.get("since")
    return f"pid {pid}, stage {stage}" + (f", since {since}" if since else "")


def _write_holder(run: RunLayout, stage: str) -> None:
    info = {"pid": os.getpid(), "stage": stage, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = run.lock_info.with_name(f"{run.lock_info.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
        os.replace(tmp, run.lock_info)
    except OSError:
        pass  # only the message of a second process is poorer for it


@contextmanager
def lock_run(run_dir: str | Path, stage: str, *, create: bool = True) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; raise :class:`RunInUse` if another process does.

    ``create=False``: a run directory that does not exist is not created just to lock it (the
    stage will say what it misses).
    """
    run = RunLayout(run_dir)
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 holds it for the whole launch
        yield
        return
    if run.root.exists() and not run.root.is_dir():
        raise InputError(f"--run {run.root} is a file, not a folder; give a folder for the run")
    if not run.root.is_dir():
        if not create:
            yield
            return
        try:
            run.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the run folder {run.root} ({exc.strerror or exc}); give --run a "
                "folder that can be created"
            ) from None
    key = os.path.realpath(run.lock)
    held = _held()
    if key in held:
        lock, depth = held[key]
        held[key] = (lock, depth + 1)
    else:
        lock = FileLock(run.lock, timeout=WAIT_SECONDS)
        try:
            lock.acquire()
        except Timeout:
            raise RunInUse(
                f"{run.root} is in use by another embedtune process ({_holder(run)}); wait for "
                "it to finish or use another --run"
            ) from None
        held[key] = (lock, 1)
        _write_holder(run, stage)
    try:
        yield
    finally:
        lock, depth = held[key]
        if depth > 1:
            held[key] = (lock, depth - 1)
        else:
            del held[key]
            run.lock_info.unlink(missing_ok=True)
            lock.release()


def holds_run(stage: str, *, create: bool = False) -> Callable[[F], F]:
    """Make a stage function ``f(cfg, run_dir, ...)`` hold ``run_dir``'s lock while it runs."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(cfg: Any, run_dir: str | Path, *args: Any, **kwargs: Any) -> Any:
            with lock_run(run_dir, stage, create=create):
                return fn(cfg, run_dir, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
