"""Self-describing checkpoint files (safetensors + JSON metadata, no pickle).

A checkpoint ``RUN/checkpoints/epoch_000100.safetensors`` holds the model's weights and, in its
metadata, the run's config, the epoch and that evaluation's metrics, so the file alone rebuilds its
model (``load_checkpoint(path).model()``).

The run directory itself (layout, lock, guard, metrics, summary) belongs to ``grokinterp.rundir``;
its functions and the file primitives of ``grokinterp.files`` are re-exported here so code written
against earlier versions (``from grokinterp import checkpoints as ckpt``) keeps working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grokinterp.config import RunConfig
from grokinterp.constants import CHECKPOINT_FORMAT, STATE_FORMAT
from grokinterp.io.files import (
    RunDirError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    load_tensors,
    save_tensors,
)
from grokinterp.io.rundir import (
    checkpoint_epochs,
    checkpoint_path,
    library_versions,
    read_metrics,
    read_run_config,
    read_split,
    read_summary,
    write_metrics,
    write_run_config,
    write_split,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "STATE_FORMAT",
    "Checkpoint",
    "RunDirError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_epochs",
    "checkpoint_path",
    "library_versions",
    "load_checkpoint",
    "load_tensors",
    "read_metrics",
    "read_run_config",
    "read_split",
    "read_summary",
    "save_checkpoint",
    "save_tensors",
    "write_metrics",
    "write_run_config",
    "write_split",
]


def save_checkpoint(
    run_dir: str | Path, epoch: int, model: nn.Module, cfg: RunConfig, metrics: dict | None = None
) -> Path:
    path = checkpoint_path(run_dir, epoch)
    meta = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "config": cfg.to_dict(), "metrics": metrics or {}}
    save_tensors(path, model.state_dict(), meta)
    return path


@dataclass(frozen=True)
class Checkpoint:
    config: RunConfig
    epoch: int
    state_dict: dict[str, Tensor]
    metrics: dict[str, Any]
    path: Path | None = None

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        from grokinterp.models import model_from_state_dict

        model = model_from_state_dict(self.config, self.state_dict, device, source=self.path)
        model.eval()
        return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read one checkpoint file; its metadata alone rebuilds the model."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{path}: not a grokinterp checkpoint (format={meta.get('format')!r})")
    try:
        cfg = RunConfig.from_json(meta["config"])
        epoch = int(json.loads(meta["epoch"]))
        metrics = json.loads(meta.get("metrics", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise RunDirError(f"{path}: unreadable checkpoint metadata ({e})") from None
    return Checkpoint(cfg, epoch, tensors, metrics, Path(path))
