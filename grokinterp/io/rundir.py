"""The run directory: its layout, its guarantees and the only code that writes its files.

Layout (names in ``grokinterp.constants``)::

    RUN/
      config.json                    {"config": RunConfig, "versions": {...}, "created": ..., "changes": [...]}
      split.safetensors              train_indices, test_indices (int64)
      metrics.jsonl                  one strict-JSON row per evaluation (NaN/inf written as null)
      checkpoints/epoch_000100.safetensors   weights; metadata: config, epoch, metrics
      state.safetensors              latest resume point: weights, optimizer, RNG, filter state
      summary.json                   written when training stops (``RunSummary``)
      measures.csv, analysis.json    written by ``grokinterp analyze``
      llc/epoch_000100.json, llc/config.json   written by ``grokinterp analyze --llc``
      .lock                          held by the one process writing the run

Every file above is written (and deleted) by a function of this module: the trainer through
``grokinterp.io.writer.RunDirWriter``, the analysis, the LLC and the TransformerLens import
directly. Other modules hand it their documents (a ``RunSummary``, an object with ``to_json``, a
table) and never name a file of the run themselves. The checkpoint file format (its metadata and
``load_checkpoint``) belongs to ``grokinterp.io.checkpoints``.

Guarantees:

- **Atomic**: every file is replaced whole (``grokinterp.io.files.atomic_write``); metrics rows are
  appended one line at a time and a torn last line is ignored on reading.
- **Locked**: a process that writes a run holds an exclusive ``flock`` on ``RUN/.lock``
  (``grokinterp.io.lock``); a second writer gets one line naming the run and the holder's pid. The
  kernel drops the lock when its holder dies, so a lock left by a killed process is taken over
  safely, and the new holder removes the temporary files the dead one left (``lock_run``), by
  their exact name pattern (``constants.TMP_PATTERN``), never a user's file that looks temporary.
- **Guarded**: a new run never writes into a folder that holds anything; ``force`` deletes only the
  files grokinterp writes (``constants.RUN_FILES``, ``checkpoints/epoch_*.safetensors``, the LLC
  estimates in ``llc/`` and its own temporary files, ``.<name>.<random>.grokinterp-tmp``:
  ``constants.TMP_PATTERN``) and refuses, naming it, when anything else is there.
- **Readable after damage**: a corrupt line of metrics.jsonl is reported and skipped, never the
  rows after it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from grokinterp import constants as C
from grokinterp.errors import RunDirError
from grokinterp.io import identity
from grokinterp.io.files import atomic_write_text, load_tensors, save_tensors, strict_json
from grokinterp.io.lock import RunLock

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor, nn

    from grokinterp.config import RunConfig

log = logging.getLogger(__name__)

_CKPT_RE = re.compile(C.CHECKPOINT_PATTERN)
_LLC_RE = re.compile(C.LLC_PATTERN)
_TMP_RE = re.compile(C.TMP_PATTERN)  # only the writer's own temporary names, never a user's ".x.tmp"


__all__ = [
    "JsonDocument", "RunSummary", "Status", "append_metrics_row", "check_belongs", "check_out_path", "checkpoint_epochs",
    "checkpoint_path", "create_run_dir", "discard_new_run_dir", "foreign_entries", "library_versions",
    "llc_config_path", "llc_epochs", "llc_path", "lock_run", "metrics_line", "not_an_analysis", "read_analysis",
    "read_config_doc", "read_llc_estimate", "read_measures", "read_metrics", "read_run_config", "read_split",
    "read_state", "read_summary", "record_config_change", "refuse_foreign", "refuse_occupied", "remove_llc_estimates",
    "remove_run_files", "remove_stale_tmp", "save_checkpoint", "write_analysis", "write_llc_config",
    "write_llc_estimate", "write_measures", "write_metrics", "write_run_config", "write_split", "write_state",
    "write_summary",
]  # fmt: skip


class JsonDocument(Protocol):
    """A document that serialises itself (``Analysis``, ``LLCConfig``, ``LLCEstimate``): the run
    directory stores ``to_json()`` as it is, so each document keeps its own JSON layout."""

    def to_json(self) -> str:
        """The document as JSON text."""
        ...


# ---- Paths -------------------------------------------------------------------------------------


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``RUN/checkpoints/epoch_000100.safetensors``: the checkpoint file of ``epoch``."""
    return Path(run_dir) / C.CHECKPOINT_DIR / f"epoch_{epoch:06d}.safetensors"


def checkpoint_epochs(run_dir: str | Path) -> list[int]:
    """The epochs that have a checkpoint file, ascending ([] when there is none)."""
    folder = Path(run_dir) / C.CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for f in folder.iterdir() if (m := _CKPT_RE.match(f.name)))


def _is_tmp(name: str) -> bool:
    """Whether ``name`` is a temporary file of ``atomic_write`` (``C.TMP_PATTERN``)."""
    return bool(_TMP_RE.match(name))


def foreign_entries(run_dir: str | Path) -> list[str]:
    """Entries of ``run_dir`` that grokinterp did not write (relative names), sorted."""
    run_dir = Path(run_dir)
    out = []
    for entry in sorted(run_dir.iterdir()):
        if entry.name == C.CHECKPOINT_DIR and entry.is_dir() and not entry.is_symlink():
            out += [f"{C.CHECKPOINT_DIR}/{f.name}" for f in sorted(entry.iterdir()) if not _is_run_checkpoint(f)]
        elif entry.name == C.LLC_DIR and entry.is_dir() and not entry.is_symlink():
            out += [f"{C.LLC_DIR}/{f.name}" for f in sorted(entry.iterdir()) if not _is_llc_file(f)]
        elif not (entry.is_file() and (entry.name in C.RUN_FILES or _is_tmp(entry.name))):
            out.append(entry.name + ("/" if entry.is_dir() else ""))
    return out


def _is_llc_file(f: Path) -> bool:
    """A file that ``grokinterp.analysis.llc`` writes in ``RUN/llc/`` (through this module)."""
    name = f.name
    return (
        f.is_file() and not f.is_symlink() and (bool(_LLC_RE.match(name)) or name == C.LLC_CONFIG_FILE or _is_tmp(name))
    )


def _is_run_checkpoint(f: Path) -> bool:
    return f.is_file() and not f.is_symlink() and (bool(_CKPT_RE.match(f.name)) or _is_tmp(f.name))


def refuse_foreign(run_dir: str | Path) -> None:
    """Raise (one line naming them) when ``run_dir`` holds anything grokinterp did not write."""
    foreign = foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RunDirError(
            f"--force refuses to clear {run_dir}: it holds files grokinterp did not write ({shown}); "
            "move them away or choose another --out"
        )


def remove_run_files(run_dir: str | Path) -> None:
    """Delete what grokinterp wrote in ``run_dir``; refuse (nothing deleted) if anything else is there."""
    run_dir = Path(run_dir)
    refuse_foreign(run_dir)
    for folder in (run_dir / C.CHECKPOINT_DIR, run_dir / C.LLC_DIR):
        if folder.is_dir():
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()
    for f in run_dir.iterdir():
        if f.name != C.LOCK_FILE:  # keep the lock we hold
            f.unlink()


def remove_stale_tmp(run_dir: str | Path) -> list[Path]:
    """Remove temporary files left by a writer that was killed mid-write (call with the lock held):
    only names of grokinterp's own writer (``C.TMP_PATTERN``), so a user's file that merely looks
    temporary (``.notes.tmp``) stays."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / C.CHECKPOINT_DIR):
        if folder.is_dir():
            for f in folder.iterdir():
                if f.is_file() and _is_tmp(f.name):
                    f.unlink(missing_ok=True)
                    removed.append(f)
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted writer", run_dir, len(removed))
    return removed


def check_out_path(path: str | Path, flag: str = "--out") -> Path:
    """A folder we may create or write: one line when it is a file, under a file, or unwritable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file, not a folder; give {flag} a folder path")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"{flag} {path}: {parent} is a file, so no folder can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"{flag} {path}: no permission to write in {parent}; choose a folder you can write")
    return path


# ---- The lock (``grokinterp.io.lock``) and creating a run --------------------------------------


def lock_run(run_dir: str | Path) -> RunLock:
    """Take the run's lock and return it held (``RunLockedError`` naming the holder's pid when
    another process has it), then remove the temporary files a killed writer left: no one else
    writes here now."""
    lock = RunLock(run_dir).acquire()
    remove_stale_tmp(run_dir)
    return lock


def refuse_occupied(path: Path, force: bool, resume: str) -> bool:
    """Whether ``path`` holds anything but its lock; without ``force`` that is one line, with the
    ``resume`` hint when it holds a run."""
    if not path.is_dir() or not any(e.name != C.LOCK_FILE for e in path.iterdir()):
        return False
    if force:
        return True
    run = (path / C.CONFIG_FILE).is_file()
    raise RunDirError(
        f"{path} already exists and is not empty; "
        + (f"{resume} or --force to replace it" if run else "choose an empty or new folder")
    )


def create_run_dir(path: str | Path, force: bool = False) -> RunLock:
    """Make ``path`` a fresh, locked run directory and return the held lock.

    An existing folder must be empty; with ``force`` it may hold a previous run, whose files are
    deleted, and nothing else (``remove_run_files``).
    """
    path = check_out_path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = lock_run(path)
    try:
        if refuse_occupied(path, force, f"use --resume {path} to continue it"):
            remove_run_files(path)
    except BaseException:
        lock.release()
        if created:
            discard_new_run_dir(path)
        raise
    return lock


def discard_new_run_dir(path: str | Path) -> None:
    """Remove a run directory this process just created (used when setting it up fails)."""
    path = Path(path)
    if path.is_dir() and not foreign_entries(path):
        shutil.rmtree(path, ignore_errors=True)


# ---- config.json -------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    """Installed versions of grokinterp and the libraries a run depends on ("unknown" if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("grokinterp", "torch", "transformer-lens", "numpy", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_run_config(run_dir: str | Path, cfg: RunConfig, extra: dict | None = None) -> None:
    """Write config.json: ``cfg``, a new ``run_id`` and the config's hash (``grokinterp.io.identity``),
    the library versions, the creation time and ``extra`` keys (an import records ``imported_from``)."""
    doc = {"config": cfg.to_dict(), "versions": library_versions(), "created": _now(), **(extra or {})}
    doc.update(run_id=identity.new_run_id(), config_hash=identity.config_hash(cfg))
    atomic_write_text(Path(run_dir) / C.CONFIG_FILE, strict_json(doc, indent=2, sort_keys=True))


def read_config_doc(run_dir: str | Path) -> dict[str, Any]:
    """config.json as a dict; ``RunDirError`` (one line) when it is missing or not a grokinterp
    config."""
    path = Path(run_dir) / C.CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {C.CONFIG_FILE})")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise RunDirError(f'{path}: no "config" object; this is not a grokinterp config.json')
    return doc


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The run's ``RunConfig`` from config.json; ``RunDirError`` when it is missing or invalid."""
    from grokinterp.config import RunConfig

    doc = read_config_doc(run_dir)
    try:
        return RunConfig.from_dict(doc["config"])
    except (ValueError, TypeError) as e:
        raise RunDirError(f"{Path(run_dir) / C.CONFIG_FILE}: invalid config ({e})") from None


def record_config_change(run_dir: str | Path, cfg: RunConfig, epoch: int, changes: dict[str, Any], note: str) -> None:
    """Write ``cfg`` as the run's config and append ``{"epoch", "at", "changes", "note"}`` to the
    history of changes made on resume, so config.json says what the run was trained with."""
    doc = read_config_doc(run_dir)
    history = [*doc.get("changes", []), {"epoch": epoch, "at": _now(), "changes": changes, "note": note}]
    doc.update(config=cfg.to_dict(), changes=history, config_hash=identity.config_hash(cfg))
    atomic_write_text(Path(run_dir) / C.CONFIG_FILE, strict_json(doc, indent=2, sort_keys=True))


# ---- split.safetensors -------------------------------------------------------------------------


def write_split(run_dir: str | Path, train_indices: Tensor, test_indices: Tensor) -> None:
    """Write split.safetensors: the train and test rows of the task's table (int64)."""
    import torch

    save_tensors(
        Path(run_dir) / C.SPLIT_FILE,
        {"train_indices": train_indices.to(torch.int64), "test_indices": test_indices.to(torch.int64)},
        {"format": C.SPLIT_FORMAT, **identity.identity_meta(read_config_doc(run_dir))},
    )


def read_split(run_dir: str | Path) -> tuple[Tensor, Tensor]:
    """``(train_indices, test_indices)`` from split.safetensors; ``RunDirError`` when it is missing
    (never regenerated: the run was trained on it), unreadable or from another run."""
    path = Path(run_dir) / C.SPLIT_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {C.SPLIT_FILE} (the train/test split it was trained on); restore it")
    tensors, meta = load_tensors(path)
    check_belongs(run_dir, path, meta)
    try:
        return tensors["train_indices"], tensors["test_indices"]
    except KeyError:
        raise RunDirError(f"{Path(run_dir) / C.SPLIT_FILE}: no train_indices/test_indices") from None


# ---- metrics.jsonl -----------------------------------------------------------------------------


def metrics_line(row: dict[str, Any]) -> str:
    """One strict-JSON line (non-finite numbers become null)."""
    return strict_json(row) + "\n"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl. A corrupt line is reported (a warning naming it) and skipped; the rows
    after it are kept. A torn last line (a writer killed mid-line) is skipped quietly."""
    path = Path(run_dir) / C.METRICS_FILE
    if not path.is_file():
        return []
    text = path.read_bytes().decode(errors="replace")
    lines = text.split("\n")
    torn = lines.pop() if lines else ""  # after the last "\n": empty unless the last line is torn
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise ValueError("not a row with an integer epoch")
        except ValueError as e:
            log.warning("%s line %d is corrupt (%s); skipped", path, i, str(e).splitlines()[0][:80])
            continue
        rows.append(row)
    if torn.strip():
        log.info("%s: ignored a torn last line (a writer was killed mid-line)", path)
    return rows


def write_metrics(run_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl with ``rows`` (atomically; ``[]`` leaves an empty file)."""
    atomic_write_text(Path(run_dir) / C.METRICS_FILE, "".join(metrics_line(r) for r in rows))


def append_metrics_row(run_dir: str | Path, row: dict[str, Any]) -> None:
    """Append one row to metrics.jsonl as one line (a kill mid-line leaves a torn last line,
    which ``read_metrics`` ignores)."""
    with open(Path(run_dir) / C.METRICS_FILE, "a") as f:
        f.write(metrics_line(row))


# ---- checkpoints/ and state.safetensors --------------------------------------------------------


def save_checkpoint(
    run_dir: str | Path, epoch: int, model: nn.Module, cfg: RunConfig, metrics: dict | None = None
) -> Path:
    """Write the checkpoint of ``epoch``: ``model``'s weights with the config, the epoch and that
    evaluation's ``metrics`` as metadata (``grokinterp.io.checkpoints`` reads it back)."""
    path = checkpoint_path(run_dir, epoch)
    meta = {"format": C.CHECKPOINT_FORMAT, "epoch": epoch, "config": cfg.to_dict(), "metrics": metrics or {}}
    meta.update(identity.identity_meta(read_config_doc(run_dir), cfg))
    from grokinterp.backend import state_dict_3x  # TransformerLens: only with a model to save

    save_tensors(path, state_dict_3x(model), meta)
    return path


def write_state(run_dir: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Replace state.safetensors, the exact resume point (the trainer's weights, optimizer, RNG
    and filter state, laid out by ``Trainer.state_tensors``)."""
    save_tensors(Path(run_dir) / C.STATE_FILE, tensors, {**meta, **identity.identity_meta(read_config_doc(run_dir))})


def read_state(run_dir: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of state.safetensors; ``RunDirError`` when there is none or it is
    not a grokinterp resume state."""
    path = Path(run_dir) / C.STATE_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {C.STATE_FILE} (the exact resume point)")
    tensors, meta = load_tensors(path)
    if meta.get("format") != C.STATE_FORMAT:
        raise RunDirError(f"{path} is not a grokinterp resume state")
    check_belongs(run_dir, path, meta)
    return tensors, meta


def check_belongs(run_dir: str | Path, path: str | Path, meta: dict[str, str]) -> None:
    """Refuse (one line naming both files) a file of ``run_dir`` whose metadata ``meta`` says it
    belongs to another run, or to another config, than config.json (``identity.check_file``)."""
    identity.check_file(path, meta, read_config_doc(run_dir), Path(run_dir) / C.CONFIG_FILE)


# ---- summary.json ------------------------------------------------------------------------------

Status = Literal["finished", "stopped_early", "interrupted", "diverged"]


@dataclass(frozen=True)
class RunSummary:
    """What summary.json records when training stops.

    ``status``: ``finished`` (all epochs), ``stopped_early`` (the early-stopping rule), ``interrupted``
    (Ctrl-C or a ``max_epochs`` pause; resume continues it) or ``diverged`` (a non-finite loss; the
    last good checkpoint is ``last_good_epoch``). ``finished`` is true for the first two.
    ``wall_clock_s`` is None for an imported run (the file does not record it), and
    ``imported_from`` names the file an imported run came from (absent from summary.json otherwise).
    ``instabilities``: the train-loss spikes seen (``grokinterp.analysis.instabilities``: ``start``,
    ``end``, ``peak_epoch``, ``peak_loss``, ``baseline``, ``recovered`` per spike; the trainer
    writes the list, empty when there was none); None (absent from summary.json) when not looked for.
    """

    final_epoch: int
    status: Status
    grokking_epoch: int | None
    grokking_step: int | None
    grokking_threshold: float
    wall_clock_s: float | None
    final: dict[str, Any] = field(default_factory=dict)
    last_good_epoch: int | None = None
    message: str | None = None
    imported_from: str | None = None
    instabilities: list[dict[str, Any]] | None = None

    @property
    def finished(self) -> bool:
        """Training reached its end: all its epochs or the early-stopping rule."""
        return self.status in ("finished", "stopped_early")

    @property
    def stopped_early(self) -> bool:
        """The early-stopping rule ended the run."""
        return self.status == "stopped_early"

    def to_dict(self) -> dict[str, Any]:
        """summary.json as a dict (``imported_from`` only for an imported run)."""
        doc = asdict(self)
        for key in ("imported_from", "instabilities"):
            if doc[key] is None:
                del doc[key]
        # finished / stopped_early are stored too: sweeps and older readers look them up.
        return {**doc, "finished": self.finished, "stopped_early": self.stopped_early}


def write_summary(run_dir: str | Path, summary: RunSummary) -> None:
    """Write summary.json (atomically)."""
    atomic_write_text(Path(run_dir) / C.SUMMARY_FILE, strict_json(summary.to_dict(), indent=2))


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """summary.json as a dict ({} when there is none or it is unreadable, with a warning)."""
    path = Path(run_dir) / C.SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        log.warning("%s is unreadable (%s); ignored", path, e)
        return {}
    return doc if isinstance(doc, dict) else {}


# ---- measures.csv and analysis.json (``grokinterp analyze``) -----------------------------------


def write_measures(run_dir: str | Path, table: pd.DataFrame) -> None:
    """Write measures.csv: one row per analysed checkpoint (atomically)."""
    atomic_write_text(Path(run_dir) / C.MEASURES_FILE, table.to_csv(index=False))


def read_measures(run_dir: str | Path) -> pd.DataFrame | None:
    """measures.csv as a DataFrame (None when the run is not analysed yet); ``RunDirError`` when
    it cannot be parsed."""
    import pandas as pd

    path = Path(run_dir) / C.MEASURES_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as e:
        raise RunDirError(f"{path}: unreadable ({e}); run grokinterp analyze {run_dir} again") from None
    if "n_key_freqs" in table and table["n_key_freqs"].notna().all():  # a count: int (older files wrote 4.0)
        table["n_key_freqs"] = table["n_key_freqs"].astype("int64")
    return table


def write_analysis(run_dir: str | Path, doc: JsonDocument) -> None:
    """Write analysis.json: ``doc.to_json()`` (the ``Analysis`` of ``analyze_run``), atomically."""
    atomic_write_text(Path(run_dir) / C.ANALYSIS_FILE, doc.to_json())


def read_analysis(run_dir: str | Path) -> dict[str, Any] | None:
    """analysis.json as a dict (None when the run is not analysed yet); ``RunDirError`` naming
    the file when it is not JSON or not a JSON object."""
    path = Path(run_dir) / C.ANALYSIS_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise not_an_analysis(run_dir, f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise not_an_analysis(run_dir, f"a JSON {type(doc).__name__}, not an object")
    return doc


def not_an_analysis(run_dir: str | Path, why: str) -> RunDirError:
    """The one-line error of an analysis.json that cannot be used, naming the file and the fix."""
    path = Path(run_dir) / C.ANALYSIS_FILE
    return RunDirError(f"{path} is not a grokinterp analysis ({why}); run grokinterp analyze {run_dir} again")


# ---- llc/ (``grokinterp analyze --llc``) -------------------------------------------------------


def llc_path(run_dir: str | Path, epoch: int) -> Path:
    """``RUN/llc/epoch_000100.json``: the LLC estimate of the checkpoint at ``epoch``."""
    return Path(run_dir) / C.LLC_DIR / f"epoch_{epoch:06d}.json"


def llc_config_path(run_dir: str | Path) -> Path:
    """``RUN/llc/config.json``: the ``LLCConfig`` of the estimates in ``RUN/llc/``."""
    return Path(run_dir) / C.LLC_DIR / C.LLC_CONFIG_FILE


def llc_epochs(run_dir: str | Path) -> list[int]:
    """The epochs that have an LLC estimate file, ascending ([] when there is none)."""
    folder = Path(run_dir) / C.LLC_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for f in folder.iterdir() if (m := _LLC_RE.match(f.name)))


def write_llc_config(run_dir: str | Path, cfg: JsonDocument) -> None:
    """Write ``RUN/llc/config.json`` (``cfg.to_json()``), atomically."""
    atomic_write_text(llc_config_path(run_dir), cfg.to_json())


def write_llc_estimate(run_dir: str | Path, epoch: int, estimate: JsonDocument) -> None:
    """Write the LLC estimate of ``epoch`` with its diagnostics (``estimate.to_json()``) and the run
    identity, atomically."""
    doc = {**json.loads(estimate.to_json()), **identity.identity_meta(read_config_doc(run_dir))}
    atomic_write_text(llc_path(run_dir, epoch), strict_json(doc))


def read_llc_estimate(run_dir: str | Path, epoch: int) -> dict[str, Any] | None:
    """The LLC estimate file of ``epoch`` as a dict (None when there is none); ``RunDirError`` when
    it holds another epoch's estimate or another run's."""
    path = llc_path(run_dir, epoch)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    if doc.get("epoch") not in (None, epoch):
        raise RunDirError(
            f"{path} holds the LLC estimate of epoch {doc['epoch']}, not {epoch}; it was copied or renamed"
        )
    check_belongs(run_dir, path, {k: doc[k] for k in ("run_id", "config_hash") if isinstance(doc.get(k), str)})
    return doc


def remove_llc_estimates(run_dir: str | Path) -> int:
    """Delete every LLC estimate file (not the config); returns how many there were."""
    epochs = llc_epochs(run_dir)
    for epoch in epochs:
        llc_path(run_dir, epoch).unlink()
    return len(epochs)
