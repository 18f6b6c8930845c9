"""Self-describing checkpoint files (safetensors + JSON metadata, no pickle): reading them.

A checkpoint ``RUN/checkpoints/epoch_000100.safetensors`` holds the model's weights and, in its
metadata, the run's config, the epoch and that evaluation's metrics, so the file alone rebuilds its
model (``load_checkpoint(path).model()``).

Checkpoints are written, like every file of a run, by ``grokinterp.io.rundir``
(``rundir.save_checkpoint``), which also names them (``rundir.checkpoint_path``,
``rundir.checkpoint_epochs``). ``read_checkpoint(run_dir, epoch)`` reads the checkpoint of a run and
checks that it is that run's (its run identity, ``grokinterp.io.identity``) and that epoch's. The
file primitives live in ``grokinterp.io.files`` and
``RunDirError`` in ``grokinterp.errors``; this module no longer re-exports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grokinterp.config import RunConfig
from grokinterp.constants import CHECKPOINT_FORMAT
from grokinterp.errors import RunDirError
from grokinterp.io import rundir
from grokinterp.io.files import load_tensors

__all__ = ["Checkpoint", "load_checkpoint", "read_checkpoint"]


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file: the run's config, the epoch, the weights and that evaluation's metrics."""

    config: RunConfig
    epoch: int
    state_dict: dict[str, Tensor]
    metrics: dict[str, Any]
    path: Path | None = None

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model with these weights, in eval mode."""
        from grokinterp.models import model_from_state_dict

        model = model_from_state_dict(self.config, self.state_dict, device, source=self.path)
        model.eval()
        return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read one checkpoint file; its metadata alone rebuilds the model."""
    return _load(path)[0]


def read_checkpoint(run_dir: str | Path, epoch: int) -> Checkpoint:
    """The checkpoint of ``epoch`` in ``run_dir``, checked: it must say that epoch and belong to the
    run (``rundir.check_belongs``); ``RunDirError`` (one line naming the file) otherwise."""
    path = rundir.checkpoint_path(run_dir, epoch)
    c, meta = _load(path)
    if c.epoch != epoch:
        raise RunDirError(f"{path} holds the weights of epoch {c.epoch}, not {epoch}; it was copied or renamed")
    rundir.check_belongs(run_dir, path, meta)
    return c


def _load(path: str | Path) -> tuple[Checkpoint, dict[str, str]]:
    tensors, meta = load_tensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{path}: not a grokinterp checkpoint (format={meta.get('format')!r})")
    try:
        cfg = RunConfig.from_json(meta["config"])
        epoch = int(json.loads(meta["epoch"]))
        metrics = json.loads(meta.get("metrics", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise RunDirError(f"{path}: unreadable checkpoint metadata ({e})") from None
    return Checkpoint(cfg, epoch, tensors, metrics, Path(path)), meta
