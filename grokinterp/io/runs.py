"""The Python API to a run directory: ``load_run(path)``.

>>> run = grokinterp.load_run("checkpoints/nanda-p113")
>>> run.config.p, run.checkpoint_epochs[-1]
>>> model = run.model()                      # HookedTransformer with the final weights
>>> logits, cache = model.run_with_cache(run.dataset.tokens)
>>> run.metrics.tail()                       # pandas DataFrame of metrics.jsonl
"""

from __future__ import annotations

import operator
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grokinterp import constants as C
from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError
from grokinterp.io import rundir
from grokinterp.io.checkpoints import Checkpoint, read_checkpoint
from grokinterp.tasks import Dataset, make_dataset

__all__ = ["Run", "load_run"]


class Run:
    """A run directory: config, split, metrics, checkpoints and (after ``analyze``) measures."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_file():
            raise RunDirError(f"{self.path} is a file, not a run directory")
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: no such run directory")
        self.config: RunConfig = rundir.read_run_config(self.path)

    def __repr__(self) -> str:
        epochs = self.checkpoint_epochs
        span = f"{epochs[0]}..{epochs[-1]}" if epochs else "none"
        cfg = self.config
        return f"Run({str(self.path)!r}, preset={cfg.preset!r}, p={cfg.p}, checkpoints={len(epochs)} [{span}])"

    @property
    def checkpoint_epochs(self) -> list[int]:
        """The epochs that have a checkpoint, ascending."""
        return rundir.checkpoint_epochs(self.path)

    @cached_property
    def dataset(self) -> Dataset:
        """The task with this run's saved train/test split (``RunDirError`` when split.safetensors is
        missing or from another run: a split is never regenerated)."""
        cfg = self.config
        split = rundir.read_split(self.path)
        return make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed, split=split)

    @property
    def metrics_rows(self) -> list[dict[str, Any]]:
        """metrics.jsonl as a list of dicts (one per evaluation)."""
        return rundir.read_metrics(self.path)

    @property
    def metrics(self):
        """metrics.jsonl as a pandas DataFrame (one row per evaluation)."""
        import pandas as pd

        if not (self.path / C.METRICS_FILE).is_file():
            raise RunDirError(f"{self.path}: no {C.METRICS_FILE}; this run directory is incomplete")
        return pd.DataFrame(self.metrics_rows)

    @property
    def stale_reason(self) -> str | None:
        """Why measures.csv does not describe the run's checkpoints now (None when it does): the
        run went on (or was replaced) after the last ``grokinterp analyze``."""
        table = self.measures
        if table is None:
            return f"no {C.MEASURES_FILE} yet"
        analysed, now = sorted(int(e) for e in table["epoch"]), self.checkpoint_epochs
        if analysed != now:
            return (
                f"{C.MEASURES_FILE} covers checkpoints up to epoch {analysed[-1] if analysed else None}, "
                f"the run now has {len(now)} up to epoch {now[-1] if now else None}"
            )
        return None

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json as a dict ({} while the run has none)."""
        return rundir.read_summary(self.path)

    @property
    def measures(self):
        """measures.csv from ``grokinterp analyze`` as a DataFrame (None if not analysed yet)."""
        return rundir.read_measures(self.path)

    @property
    def analysis(self) -> dict[str, Any] | None:
        """analysis.json from ``grokinterp analyze`` as a dict (None if not analysed yet)."""
        return rundir.read_analysis(self.path)

    def resolve_epoch(self, epoch: int | None) -> int:
        """The checkpoint epoch ``epoch`` names: the last one for None; ``RunDirError`` (naming
        the nearest) when there is no checkpoint at ``epoch``; ``TypeError`` (naming the epochs there
        are) when ``epoch`` is not an integer."""
        epochs = self.checkpoint_epochs
        if epoch is not None and (isinstance(epoch, bool) or not hasattr(type(epoch), "__index__")):
            raise TypeError(f"epoch must be an integer, one of {_shown(epochs)} (got {epoch!r})")
        if not epochs:
            raise RunDirError(f"{self.path}: no checkpoints")
        if epoch is None:
            return epochs[-1]
        epoch = operator.index(epoch)
        if epoch not in epochs:
            nearest = min(epochs, key=lambda e: abs(e - epoch))
            raise RunDirError(f"{self.path}: no checkpoint at epoch {epoch} (nearest: {nearest})")
        return epoch

    def checkpoint(self, epoch: int | None = None) -> Checkpoint:
        """The checkpoint at ``epoch`` (default: the last), checked against the run: its stored epoch
        and its run identity (``grokinterp.io.checkpoints.read_checkpoint``)."""
        return read_checkpoint(self.path, self.resolve_epoch(epoch))

    def state_dict(self, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """The weights at ``epoch`` (default: the last checkpoint)."""
        return self.checkpoint(epoch).state_dict

    def model(self, epoch: int | None = None, device: str | torch.device = "cpu") -> nn.Module:
        """The model at ``epoch`` (default: the last checkpoint), in eval mode, ready for
        ``run_with_cache``."""
        return self.checkpoint(epoch).model(device)


def _shown(epochs: list[int]) -> str:
    if not epochs:
        return "none (the run has no checkpoints)"
    return ", ".join(map(str, epochs)) if len(epochs) <= 8 else f"{epochs[0]}, {epochs[1]}, ..., {epochs[-1]}"


def load_run(path: str | Path) -> Run:
    """Open a run directory written by ``grokinterp train`` or ``grokinterp import``."""
    return Run(path)
