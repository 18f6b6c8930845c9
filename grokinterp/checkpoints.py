"""Run directories and self-describing checkpoints (safetensors + JSON, no pickle).

Layout of a run directory::

    runs/NAME/
      config.json                    {"config": RunConfig, "versions": {...}, "created": ...}
      split.safetensors              train_indices, test_indices (int64)
      metrics.jsonl                  one JSON row per evaluation
      checkpoints/epoch_000100.safetensors   weights; metadata: config, epoch, metrics
      state.safetensors              latest resume point: weights, optimizer, RNG, filter state
      summary.json                   written when training ends (grokking epoch, wall-clock)

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so an
interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from grokinterp.config import RunConfig

CHECKPOINT_FORMAT = "grokinterp-checkpoint/1"
STATE_FORMAT = "grokinterp-state/1"
_CKPT_RE = re.compile(r"^epoch_(\d+)\.safetensors$")


class RunDirError(ValueError):
    """A run directory or checkpoint that cannot be used, with a one-line explanation."""


# ----------------------------------------------------------------------------------------------
# Atomic file helpers
# ----------------------------------------------------------------------------------------------


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-wide and not thread-safe


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash or Ctrl-C leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_tensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, Any]) -> None:
    """Save tensors with JSON-encoded metadata values, atomically."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(cpu, metadata=meta))


def load_tensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Load a safetensors file and its raw string metadata; bad files raise RunDirError."""
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such file") from None
    except (SafetensorError, ValueError, OSError) as e:
        raise RunDirError(f"{path}: not a readable safetensors file ({e})") from None
    return tensors, header.get("__metadata__", {}) or {}


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:06d}.safetensors"


def save_checkpoint(
    run_dir: str | Path, epoch: int, model: nn.Module, cfg: RunConfig, metrics: dict | None = None
) -> Path:
    path = checkpoint_path(run_dir, epoch)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "config": cfg.to_dict(),
        "metrics": metrics or {},
    }
    save_tensors(path, model.state_dict(), meta)
    return path


@dataclass(frozen=True)
class Checkpoint:
    config: RunConfig
    epoch: int
    state_dict: dict[str, Tensor]
    metrics: dict[str, Any]

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        from grokinterp.models import model_from_state_dict

        model = model_from_state_dict(self.config, self.state_dict, device)
        model.eval()
        return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read one checkpoint file; its metadata alone rebuilds the model."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{path}: not a grokinterp checkpoint (format={meta.get('format')!r})")
    cfg = RunConfig.from_json(meta["config"])
    return Checkpoint(cfg, int(json.loads(meta["epoch"])), tensors, json.loads(meta["metrics"]))


def checkpoint_epochs(run_dir: str | Path) -> list[int]:
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    epochs = [int(m.group(1)) for f in folder.iterdir() if (m := _CKPT_RE.match(f.name))]
    return sorted(epochs)


# ----------------------------------------------------------------------------------------------
# Run directory files
# ----------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("grokinterp", "torch", "transformer-lens", "numpy", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def write_run_config(run_dir: str | Path, cfg: RunConfig, extra: dict | None = None) -> None:
    import datetime

    doc = {
        "config": cfg.to_dict(),
        "versions": library_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    atomic_write_text(Path(run_dir) / "config.json", json.dumps(doc, indent=2, sort_keys=True))


def read_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no config.json)")
    try:
        return RunConfig.from_dict(json.loads(path.read_text())["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RunDirError(f"{path}: unreadable run config ({e})") from None


def write_split(run_dir: str | Path, train_indices: Tensor, test_indices: Tensor) -> None:
    save_tensors(
        Path(run_dir) / "split.safetensors",
        {
            "train_indices": train_indices.to(torch.int64),
            "test_indices": test_indices.to(torch.int64),
        },
        {"format": "grokinterp-split/1"},
    )


def read_split(run_dir: str | Path) -> tuple[Tensor, Tensor]:
    tensors, _ = load_tensors(Path(run_dir) / "split.safetensors")
    return tensors["train_indices"], tensors["test_indices"]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl; a torn final line (hard kill mid-write) is ignored."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def write_metrics(run_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write_text(Path(run_dir) / "metrics.jsonl", text)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}
