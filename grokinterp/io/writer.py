"""Where a trainer's output goes: a run directory or nowhere, behind one interface.

As SAELens hands its trainer a saver instead of a path to test, ``grokinterp.training.Trainer`` is
handed a ``RunWriter`` and calls it unconditionally: ``RunDirWriter`` writes the run directory
(through ``grokinterp.io.rundir``, the only code that writes its files, and holding its lock),
``MemoryWriter`` keeps an in-memory run's rows and summary and writes nothing (sweeps, notebooks,
tests). ``Trainer(cfg, run_dir)`` picks one of the two; ``Trainer(cfg, writer=...)`` takes any
object with these methods.

Order of calls: ``begin`` once, when the trainer is built; ``acquire`` when training starts and
``release`` when it stops; in between ``append_metrics_row`` per evaluation, ``save_checkpoint``
and ``save_state`` at checkpoint epochs, and ``write_summary`` at the end. A resume reopens the run
(``RunDirWriter.reopen``), rewrites its metrics up to the resume point (``write_metrics``) and
records a config change (``record_config_change``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from grokinterp.io import rundir
from grokinterp.io.lock import RunLock

if TYPE_CHECKING:
    from torch import Tensor, nn

    from grokinterp.config import RunConfig

__all__ = ["MemoryWriter", "RunDirWriter", "RunWriter", "StateFn"]

#: Builds the resume state ``(tensors, metadata)``; a writer calls it only if it keeps the state.
StateFn = Callable[[], "tuple[dict[str, Tensor], dict[str, Any]]"]


@runtime_checkable
class RunWriter(Protocol):
    """What a trainer writes, and where; see the module docstring for the order of calls."""

    @property
    def path(self) -> Path | None:
        """The run directory (None for a run kept in memory)."""
        ...

    @property
    def lock(self) -> RunLock | None:
        """The run directory's lock (None for a run kept in memory)."""
        ...

    def begin(self, cfg: RunConfig, train_indices: Tensor, test_indices: Tensor) -> None:
        """Start a new run: its config, its split and an empty metrics table."""
        ...

    def acquire(self) -> None:
        """Hold the run for writing (training starts)."""
        ...

    def release(self) -> None:
        """Let the run go (training stopped, or setting it up failed)."""
        ...

    def append_metrics_row(self, row: dict[str, Any]) -> None:
        """Record one evaluation's metrics row."""
        ...

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace the metrics table (a resume drops the rows after its resume point)."""
        ...

    def record_config_change(self, cfg: RunConfig, epoch: int, changes: dict[str, Any], note: str) -> None:
        """Record that a resume at ``epoch`` continues with ``cfg`` (``changes``: field -> [old, new])."""
        ...

    def save_checkpoint(self, epoch: int, model: nn.Module, cfg: RunConfig, metrics: dict[str, Any]) -> None:
        """Save the checkpoint of ``epoch`` with that evaluation's ``metrics``."""
        ...

    def has_checkpoint(self, epoch: int) -> bool:
        """Whether a checkpoint of ``epoch`` is saved."""
        ...

    def checkpoint_epochs(self) -> list[int]:
        """The saved checkpoints' epochs, ascending."""
        ...

    def save_state(self, state: StateFn) -> None:
        """Save the exact resume point (``state()`` builds it, only if the writer keeps it)."""
        ...

    def write_summary(self, summary: rundir.RunSummary) -> None:
        """Record what the run ended with."""
        ...


class RunDirWriter:
    """Writes a run directory through ``grokinterp.io.rundir`` and holds its lock.

    ``RunDirWriter(path, force=...)`` checks that ``path`` can be written and creates nothing;
    ``begin`` creates the directory (``rundir.create_run_dir``: a new run never writes into a folder
    that holds anything; ``force`` replaces an earlier run and nothing else), takes its lock and
    writes config.json, split.safetensors and an empty metrics.jsonl, removing the directory again
    if that fails. ``RunDirWriter.reopen(path)`` takes the lock of an existing run (resume).
    """

    def __init__(self, path: str | Path, *, force: bool = False) -> None:
        self._path = rundir.check_out_path(path)
        self._force = force
        self._lock: RunLock | None = None

    @classmethod
    def reopen(cls, path: str | Path) -> RunDirWriter:
        """The writer of an existing run, its lock held (``RunLockedError`` if another process
        holds it); ``begin`` then keeps the run's files."""
        self = cls.__new__(cls)
        self._path, self._force = Path(path), False
        self._lock = rundir.lock_run(path)
        return self

    @property
    def path(self) -> Path:
        """The run directory."""
        return self._path

    @property
    def lock(self) -> RunLock | None:
        """The run directory's lock (None before ``begin`` of a new run)."""
        return self._lock

    def begin(self, cfg: RunConfig, train_indices: Tensor, test_indices: Tensor) -> None:
        """Create the run directory and write its config, split and empty metrics (a reopened
        run keeps its files: nothing is written)."""
        if self._lock is not None:
            return
        self._lock = rundir.create_run_dir(self._path, self._force)
        try:
            rundir.write_run_config(self._path, cfg)
            rundir.write_split(self._path, train_indices, test_indices)
            rundir.write_metrics(self._path, [])
        except BaseException:
            self._lock.release()
            rundir.discard_new_run_dir(self._path)
            raise

    def acquire(self) -> None:
        """Take the run's lock (``RunLockedError`` if another process holds it; a no-op when held)."""
        if self._lock is None or not self._lock.held:
            self._lock = rundir.lock_run(self._path)

    def release(self) -> None:
        """Drop the run's lock (a no-op when not held)."""
        if self._lock is not None:
            self._lock.release()

    def append_metrics_row(self, row: dict[str, Any]) -> None:
        """Append ``row`` to metrics.jsonl."""
        rundir.append_metrics_row(self._path, row)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl with ``rows``."""
        rundir.write_metrics(self._path, rows)

    def record_config_change(self, cfg: RunConfig, epoch: int, changes: dict[str, Any], note: str) -> None:
        """Write ``cfg`` to config.json with the change in its history."""
        rundir.record_config_change(self._path, cfg, epoch, changes, note)

    def save_checkpoint(self, epoch: int, model: nn.Module, cfg: RunConfig, metrics: dict[str, Any]) -> None:
        """Write ``checkpoints/epoch_XXXXXX.safetensors``."""
        rundir.save_checkpoint(self._path, epoch, model, cfg, metrics)

    def has_checkpoint(self, epoch: int) -> bool:
        """Whether the checkpoint file of ``epoch`` exists."""
        return rundir.checkpoint_path(self._path, epoch).exists()

    def checkpoint_epochs(self) -> list[int]:
        """The epochs with a checkpoint file."""
        return rundir.checkpoint_epochs(self._path)

    def save_state(self, state: StateFn) -> None:
        """Write state.safetensors."""
        rundir.write_state(self._path, *state())

    def write_summary(self, summary: rundir.RunSummary) -> None:
        """Write summary.json."""
        rundir.write_summary(self._path, summary)


class MemoryWriter:
    """The writer of a run kept in memory: it writes no file and keeps no weights.

    ``rows`` holds the metrics rows and ``summary`` the final ``RunSummary``. Checkpoints and the
    resume state are not kept (an in-memory run has nothing to go back to), so
    ``checkpoint_epochs`` is empty, and the lock methods do nothing.
    """

    path = None
    lock = None

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.summary: rundir.RunSummary | None = None

    def begin(self, cfg: RunConfig, train_indices: Tensor, test_indices: Tensor) -> None:
        """Nothing to create."""

    def acquire(self) -> None:
        """Nothing to lock."""

    def release(self) -> None:
        """Nothing to unlock."""

    def append_metrics_row(self, row: dict[str, Any]) -> None:
        """Keep ``row``."""
        self.rows.append(row)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Keep ``rows`` instead of the rows so far."""
        self.rows = list(rows)

    def record_config_change(self, cfg: RunConfig, epoch: int, changes: dict[str, Any], note: str) -> None:
        """Nothing to record."""

    def save_checkpoint(self, epoch: int, model: nn.Module, cfg: RunConfig, metrics: dict[str, Any]) -> None:
        """Weights are not kept."""

    def has_checkpoint(self, epoch: int) -> bool:
        """Never: weights are not kept."""
        return False

    def checkpoint_epochs(self) -> list[int]:
        """None: weights are not kept."""
        return []

    def save_state(self, state: StateFn) -> None:
        """The resume state is not kept (``state`` is not called)."""

    def write_summary(self, summary: rundir.RunSummary) -> None:
        """Keep ``summary``."""
        self.summary = summary
