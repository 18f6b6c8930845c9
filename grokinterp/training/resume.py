"""Reopening a run directory to continue it: what ``Trainer.resume`` (``grokinterp train --resume``)
reads, checks and rewrites.

Why a module of its own: training and reopening are two jobs. Reopening has its own rules (which
config fields ``--resume`` may change, what a run whose resume state was lost falls back to, which
metrics rows outlive a crash), its own one-line errors, and it is the only place where training
reads a run directory back. Kept in ``trainer.py`` it would push that module past its size and mix
file recovery into the training loop. What ``state.safetensors`` holds stays with the ``Trainer``
(``state_tensors`` / ``load_state``), next to the attributes it captures, so the writing and the
reading of the state cannot drift apart.

This module does not import the trainer (the trainer calls it, and a circle is not allowed):
``open_run`` finds the resume point and takes the run's lock, the trainer is built from the
``ResumePoint``, and ``ResumePoint.restore`` puts the new trainer at that point.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokinterp import constants as C
from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError
from grokinterp.io import rundir
from grokinterp.io.checkpoints import read_checkpoint
from grokinterp.io.writer import RunDirWriter
from grokinterp.tasks import Dataset, make_dataset

__all__ = ["RESUMABLE_FIELDS", "ResumePoint", "apply_resume_overrides", "open_run"]

logger = logging.getLogger(__name__)

#: Config fields ``--resume`` may change (their home is ``grokinterp.constants``).
RESUMABLE_FIELDS = C.RESUMABLE_FIELDS


@dataclass
class ResumePoint:
    """Where a reopened run continues: its config (after the ``--resume`` changes), its dataset
    with the saved split, its writer (lock held), and either the exact resume state
    (``state``: tensors and metadata of state.safetensors) or the checkpoint epoch to fall back to."""

    run_dir: Path
    config: RunConfig
    changes: dict[str, list[Any]]
    dataset: Dataset
    writer: RunDirWriter
    state: tuple[dict[str, Any], dict[str, str]] | None
    checkpoint_epoch: int | None

    def restore(self, trainer: Any) -> None:
        """Put ``trainer`` (a ``Trainer`` built from this point) at the resume point, drop the
        metrics rows written after it, and record any config change in config.json."""
        rows = rundir.read_metrics(self.run_dir)
        if self.state is not None:
            trainer.load_state(*self.state)
        else:
            c = read_checkpoint(self.run_dir, self.checkpoint_epoch)
            trainer.load_checkpoint_state(c, self.checkpoint_epoch, rows)
            note = (
                f"resumed from checkpoint epoch {self.checkpoint_epoch} without a resume state: optimizer "
                "moments, gradient-filter state and RNG restarted (not bit-identical to an uninterrupted run)"
            )
            self.writer.record_config_change(self.config, trainer.epoch, self.changes, note)
            logger.warning("%s: %s", self.run_dir, note)
        # Rows after the resume point were written after the state (a crash in between): drop them.
        trainer.metrics = [r for r in rows if r["epoch"] <= trainer.epoch]
        self.writer.write_metrics(trainer.metrics)
        if self.changes and self.state is not None:
            self.writer.record_config_change(self.config, trainer.epoch, self.changes, "changed on --resume")


def open_run(run_dir: str | Path, *, from_checkpoint: bool = False, overrides: dict[str, Any]) -> ResumePoint:
    """Reopen ``run_dir`` to continue it: take its lock and find the resume point.

    ``overrides`` may change only ``RESUMABLE_FIELDS``. ``from_checkpoint`` continues from the last
    checkpoint (for a run whose state file was lost). Every problem is one ``RunDirError`` line
    with what to do; the lock is released again when one is raised.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise RunDirError(f"{run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    cfg = rundir.read_run_config(run_dir)
    writer = RunDirWriter.reopen(run_dir)
    try:
        return _find_resume_point(run_dir, cfg, writer, from_checkpoint, overrides)
    except BaseException:
        writer.release()
        raise


def _find_resume_point(
    run_dir: Path, cfg: RunConfig, writer: RunDirWriter, from_checkpoint: bool, overrides: dict[str, Any]
) -> ResumePoint:
    epochs = rundir.checkpoint_epochs(run_dir)
    hint = (
        f"continue from its last checkpoint (epoch {epochs[-1]}) with a fresh optimizer: "
        f"grokinterp train --resume {run_dir} --from-checkpoint"
        if epochs
        else "it has no checkpoint either; start a new run"
    )
    state = None
    if not from_checkpoint:
        try:
            state = rundir.read_state(run_dir)
        except RunDirError as e:
            raise RunDirError(f"{e}; {hint}") from None
    elif not epochs:
        raise RunDirError(f"{run_dir} has no checkpoint to continue from; start a new run")
    at_epoch = int(json.loads(state[1]["trainer"])["epoch"]) if state is not None else epochs[-1]
    new_cfg, changes = apply_resume_overrides(cfg, at_epoch, overrides)
    train_idx, test_idx = rundir.read_split(run_dir)
    dataset = make_dataset(
        new_cfg.p, new_cfg.op, new_cfg.layout, new_cfg.train_frac, new_cfg.data_seed, split=(train_idx, test_idx)
    )
    return ResumePoint(run_dir, new_cfg, changes, dataset, writer, state, None if state is not None else epochs[-1])


def apply_resume_overrides(cfg: RunConfig, epoch: int, overrides: dict[str, Any]) -> tuple[RunConfig, dict]:
    """The config after ``--resume`` changes, and ``{field: [old, new]}`` for each real change;
    ``RunDirError`` for a field outside ``RESUMABLE_FIELDS`` or fewer epochs than ``epoch``."""
    changes = {k: [getattr(cfg, k), v] for k, v in overrides.items() if getattr(cfg, k, object()) != v}
    refused = sorted(set(changes) - set(RESUMABLE_FIELDS))
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_FIELDS)
        raise RunDirError(
            f"--resume continues the run with its own config; {flags} cannot change it "
            f"(allowed on --resume: {allowed}); start a new run with --out to change it"
        )
    if "epochs" in changes and changes["epochs"][1] < epoch:
        raise RunDirError(
            f"--epochs {changes['epochs'][1]} is below the run's current epoch {epoch}; a resumed run cannot go back"
        )
    return (cfg.replace(**{k: v for k, (_, v) in changes.items()}) if changes else cfg), changes
