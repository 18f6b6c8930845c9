"""Crash-safe file primitives: atomic writes, safetensors with JSON metadata, strict JSON.

Every file grokinterp writes goes through ``atomic_write``: a temporary file beside the target,
flushed and fsynced, then renamed over it, so a crash, Ctrl-C or kill -9 leaves the old file or the
new one, never a torn one. A kill can leave the temporary file itself behind; its name is
``.<target>.<random>.grokinterp-tmp`` (``constants.TMP_SUFFIX``, matched by ``constants.TMP_PATTERN``)
and the run directory's owner removes such leftovers, and only those, when it next takes the run's
lock (``grokinterp.io.rundir``).

These primitives know nothing of run directories: a file of a run is written by
``grokinterp.io.rundir``, which names it and calls them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from grokinterp.constants import TMP_SUFFIX
from grokinterp.errors import RunDirError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "json_safe",
    "load_tensors",
    "save_tensors",
    "strict_json",
]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-wide and not thread-safe


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
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
    """Replace ``path`` with ``data`` atomically (``atomic_write``)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically (``atomic_write``)."""
    atomic_write_bytes(path, text.encode())


def json_safe(obj: Any) -> Any:
    """NaN and infinities become None (JSON has no such numbers), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def strict_json(obj: Any, **kw: Any) -> str:
    """``json.dumps`` that never writes NaN/Infinity (they become null)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def save_tensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, Any]) -> None:
    """Save tensors with JSON-encoded metadata values, atomically."""
    from safetensors.torch import save as st_save

    meta = {k: v if isinstance(v, str) else strict_json(v) for k, v in metadata.items()}
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(cpu, metadata=meta))


def load_tensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Load a safetensors file and its raw string metadata; bad files raise RunDirError."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RunDirError(f"{path} is a folder, not a safetensors file") from None
    except (SafetensorError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunDirError(f"{path}: not a readable safetensors file ({reason}); it may be truncated") from None
    return tensors, header.get("__metadata__", {}) or {}
