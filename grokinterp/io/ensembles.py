"""The ensemble folder of ``grokinterp train --seeds``: its members and its study file.

Layout (names in ``grokinterp.constants``)::

    ENS/
      seed=0/, seed=1/, ...    member run directories (each a standard run, ``grokinterp.io.rundir``)
      study.json               written by ``grokinterp analyze ENS`` (``grokinterp.analysis.study``)
      .lock                    held while the study file is written

This module finds the members and owns the study file; the members' own files are written only
through ``grokinterp.io.rundir``. The study file follows the run directory's rules: it is replaced
whole (``grokinterp.io.files.atomic_write_text``) while its writer holds ``ENS/.lock``
(``grokinterp.io.lock.RunLock``), so a second writer gets one line naming the holder's pid.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from grokinterp import constants as C
from grokinterp.errors import RunDirError
from grokinterp.io.files import atomic_write_text
from grokinterp.io.lock import RunLock
from grokinterp.io.rundir import JsonDocument, checkpoint_epochs, remove_stale_tmp

__all__ = [
    "ENSEMBLE_FILES",
    "MEMBER_NAME",
    "is_ensemble_dir",
    "member_problem",
    "member_seed",
    "read_study",
    "remove_study",
    "seed_folders",
    "study_path",
    "write_study",
]

#: The member folders of an ensemble: exactly ``seed=N`` (N as ``train --seeds`` writes it).
MEMBER_NAME = re.compile(r"seed=(0|[1-9][0-9]*)")

#: Files directly in an ensemble folder that grokinterp writes besides the members.
ENSEMBLE_FILES = (C.STUDY_FILE, C.LOCK_FILE)


def member_seed(path: str | Path) -> int | None:
    """The seed of a member folder named ``seed=N`` (None for any other name)."""
    m = MEMBER_NAME.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def seed_folders(folder: str | Path) -> list[Path]:
    """The ``seed=N`` entries of ``folder`` in seed order (whatever they hold)."""
    folder = Path(folder)
    found = [d for d in folder.iterdir() if member_seed(d) is not None]
    return sorted(found, key=lambda d: member_seed(d) or 0)


def is_ensemble_dir(folder: str | Path) -> bool:
    """Whether ``folder`` is an ensemble folder: a folder that is not a run (no config.json) and
    holds at least one ``seed=N`` entry."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / C.CONFIG_FILE).is_file():
        return False
    return bool(seed_folders(folder))


def member_problem(member: str | Path) -> str | None:
    """Why the ``seed=N`` folder ``member`` cannot be studied (None when it can): not a folder, no
    config.json (missing or never started), no split, no checkpoints, or training not ended (no
    summary.json: interrupted, or still running)."""
    d = Path(member)
    if not d.is_dir() or d.is_symlink():
        return "not a folder"
    if not (d / C.CONFIG_FILE).is_file():
        return f"no {C.CONFIG_FILE}: not a grokinterp run (missing or never started)"
    if not (d / C.SPLIT_FILE).is_file():
        return f"no {C.SPLIT_FILE}: half-written"
    if not checkpoint_epochs(d):
        return "no checkpoints: half-written (training never reached its first checkpoint)"
    if not (d / C.SUMMARY_FILE).is_file():
        return f"no {C.SUMMARY_FILE}: its training has not ended (interrupted or still running)"
    return None


def study_path(folder: str | Path) -> Path:
    """The study file of ensemble folder ``folder``."""
    return Path(folder) / C.STUDY_FILE


def write_study(folder: str | Path, doc: JsonDocument) -> Path:
    """Write ``doc.to_json()`` (a ``grokinterp.analysis.study.Study``) to ``folder/study.json``,
    atomically, holding ``folder/.lock``; returns the path."""
    path = study_path(folder)
    with RunLock(folder):
        remove_stale_tmp(folder)
        atomic_write_text(path, doc.to_json())
    return path


def remove_study(folder: str | Path) -> bool:
    """Delete ``folder/study.json`` (holding ``folder/.lock``) when there is one; returns whether
    there was (``train --seeds --force`` replaced the ensemble it described)."""
    path = study_path(folder)
    if not path.is_file():
        return False
    with RunLock(folder):
        path.unlink(missing_ok=True)
    return True


def read_study(folder: str | Path) -> dict[str, Any] | None:
    """``folder/study.json`` as a dict (None when there is none); ``RunDirError`` naming the file
    and the command that rewrites it when it is not a JSON object."""
    path = study_path(folder)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} is unreadable ({e}); run grokinterp analyze {folder} again") from None
    if not isinstance(doc, dict):
        raise RunDirError(f"{path} is not a grokinterp study; run grokinterp analyze {folder} again")
    return doc
