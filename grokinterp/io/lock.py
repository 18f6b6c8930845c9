"""The run directory's lock: one process writes a run at a time.

A process that writes a run holds an exclusive, non-blocking ``flock`` on ``RUN/.lock``, which
holds its pid; a second writer gets one line naming the run and the holder's pid. The kernel
drops the lock when its holder dies, so a lock left by a killed process is taken over safely.

This module only locks: ``grokinterp.io.rundir.lock_run`` takes the lock and then removes the
temporary files a killed holder left (the run directory's files are written and deleted only
there), and ``grokinterp.io.writer.RunDirWriter`` holds it while a trainer writes. ``hold`` and
``locks_run_when_writing`` hold it around other writers (``grokinterp analyze``'s measures, analysis
and LLC files, a report written into a run): re-entrant within one process, so a writer that calls
another (analyze -> LLC) takes the lock once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from grokinterp import constants as C
from grokinterp.errors import RunDirError

try:  # POSIX; elsewhere the lock is advisory-only (documented, never silently claimed)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["RunLock", "RunLockedError", "hold", "locks_run_when_writing"]

F = TypeVar("F", bound=Callable[..., Any])


class RunLockedError(RunDirError):
    """Another process holds the run's lock."""


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``RUN/.lock`` holding the writer's pid."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / C.LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock (a no-op when held); ``RunLockedError`` naming the holder's pid when
        another process has it."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunLockedError(
                    f"run directory {self.run_dir} is being written by another grokinterp process "
                    f"(pid {holder}); wait for it to finish or use another folder"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        # Only when held, and no contextlib: at interpreter exit module globals may already be None.
        if self._fd is not None:
            try:  # noqa: SIM105
                self.release()
            except Exception:
                pass


_HELD: dict[Path, RunLock] = {}  # run directories this process holds through ``hold``


@contextlib.contextmanager
def hold(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block (``RunLockedError`` naming the holder when another
    process has it). Re-entrant: a nested ``hold`` of a run this process holds through ``hold`` is a
    no-op. A folder that is not a run directory (no config.json) is not locked (and gets no
    ``.lock`` file): the reader that follows reports it."""
    key = Path(run_dir).resolve()
    if key in _HELD or not (key / C.CONFIG_FILE).is_file():
        yield
        return
    lock = RunLock(run_dir).acquire()
    _HELD[key] = lock
    try:
        yield
    finally:
        del _HELD[key]
        lock.release()


def locks_run_when_writing(func: F) -> F:
    """Decorator: ``func(run_dir, ..., write=...)`` runs holding ``run_dir``'s lock (``hold``)
    unless ``write`` is false."""
    sig = inspect.signature(func)
    first = next(iter(sig.parameters))

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind_partial(*args, **kwargs).arguments
        write = bound.get("write", sig.parameters["write"].default)
        if not write or bound.get(first) is None:
            return func(*args, **kwargs)
        with hold(bound[first]):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
