"""Run identity: which run a file of a run directory belongs to.

config.json holds the run's ``run_id`` (random, made with the run) and its ``config_hash``: a
hash of the config fields that define the experiment (all but ``constants.RESUMABLE_FIELDS``,
which ``--resume`` may change). split.safetensors, state.safetensors and every checkpoint carry
both in their metadata (``identity_meta``). A reader checks a file against config.json
(``check_file``): another ``run_id``, or a config hash that is not the hash of config.json's
config (a file of another run, or a config.json edited by hand), is one ``RunDirError`` naming
both files.

Runs written before run identity (no ``run_id`` in config.json, e.g. ``checkpoints/nanda-p113``)
keep loading: their files are checked by the config they store in their metadata, where they
store one (checkpoints and state do, the split does not).

This module holds the rules only; ``grokinterp.io.rundir`` writes and reads the files.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

from grokinterp import constants as C
from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError

__all__ = ["check_file", "config_hash", "identity_meta", "new_run_id"]

#: The metadata keys of run identity (config.json, split, state and checkpoints).
RUN_ID_KEY = "run_id"
CONFIG_HASH_KEY = "config_hash"


def new_run_id() -> str:
    """A fresh random run id (made once, when the run is created)."""
    return secrets.token_hex(8)


#: Fields added to RunConfig after runs were made, with their defaults: at the default they are left
#: out of the hash, so a run made before the field existed keeps its hash.
LATER_FIELDS = {"attention_dir": "causal", "attention_rate": 1.0}


def _core(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    d = RunConfig.from_dict(cfg).to_dict() if isinstance(cfg, dict) else cfg.to_dict()
    return {
        k: v for k, v in d.items() if k not in C.RESUMABLE_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])
    }


def config_hash(cfg: RunConfig | dict[str, Any]) -> str:
    """The hash of the fields of ``cfg`` that define the experiment (not ``RESUMABLE_FIELDS``)."""
    text = json.dumps(_core(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_meta(config_doc: dict[str, Any], cfg: RunConfig | None = None) -> dict[str, str]:
    """The identity a file of the run described by ``config_doc`` (config.json) carries:
    ``run_id`` (absent for a run made before run identity) and the hash of ``cfg`` (default:
    config.json's config)."""
    meta = {CONFIG_HASH_KEY: config_hash(cfg if cfg is not None else config_doc["config"])}
    if isinstance(config_doc.get(RUN_ID_KEY), str):
        meta[RUN_ID_KEY] = config_doc[RUN_ID_KEY]
    return meta


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> str:
    diff = [
        f"{k}={stored.get(k)!r} there, {current.get(k)!r} in config.json"
        for k in current
        if stored.get(k) != current.get(k)
    ]
    return "; ".join(diff[:3]) + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")


def check_file(path: str | Path, meta: dict[str, str], config_doc: dict[str, Any], config_path: str | Path) -> None:
    """Refuse (one ``RunDirError`` line naming both files) a file whose metadata ``meta`` says it
    belongs to another run than config.json (``config_doc``, read from ``config_path``)."""
    run_id, file_id = config_doc.get(RUN_ID_KEY), meta.get(RUN_ID_KEY)
    if run_id != file_id and (run_id is not None or file_id is not None):
        raise RunDirError(
            f"{path} belongs to another run (run_id {file_id or 'none'}) than {config_path} (run_id "
            f"{run_id or 'none'}); a file copied from another run is not used: restore this run's own file"
        )
    stored: dict[str, Any] | None = None
    if "config" in meta:
        try:
            stored = RunConfig.from_json(meta["config"]).to_dict()
        except (ValueError, TypeError) as e:
            raise RunDirError(f"{path}: unreadable config in its metadata ({e})") from None
    expected = config_hash(config_doc["config"])
    found = meta.get(CONFIG_HASH_KEY) or (config_hash(stored) if stored is not None else None)
    if found is not None and found != expected:
        detail = ""
        if stored is not None:
            current = _core(config_doc["config"])
            detail = ": " + _differences({k: stored.get(k) for k in current}, current)
        raise RunDirError(
            f"{path} and {config_path} do not fit the config together (config hash {found} there, "
            f"{expected} in config.json{detail}); restore the config.json the run was trained with"
        )
