"""Import and export the ``.pth`` file of the TransformerLens Grokking demo.

The demo (``demos/Grokking_Demo.ipynb``) trains full batch and saves, with ``torch.save``, a dict::

    model              final state_dict
    config             the HookedTransformerConfig
    checkpoints        list of state_dicts
    checkpoint_epochs  list of ints: the 0-based loop index of the epoch *after whose optimizer
                       step* the checkpoint was taken (99, 199, ... for weights after 100, 200, ...
                       steps)
    train_losses       one float per epoch; train_losses[i] is computed *before* step i, i.e. it is
                       the loss of the model after i steps
    test_losses        one float per epoch; test_losses[i] is computed *after* step i, i.e. it is
                       the loss of the model after i + 1 steps
    train_indices      tensor: rows of the a-major (a, b) table in the train split
    test_indices       tensor: the other rows

In grokinterp an *epoch* counts completed optimizer steps (full batch: one per epoch), so a demo
checkpoint at ``checkpoint_epochs[k] = e`` becomes ``checkpoints/epoch_{e+1}``, the final ``model``
is epoch ``len(train_losses)``, and the metrics row at epoch E takes ``train_losses[E]`` and
``test_losses[E - 1]``. Rows are kept for every 10th epoch from 10 on (epoch 0 has no recorded
test loss) and for every checkpoint epoch; at checkpoint epochs the train/test accuracy (which the
demo does not record) is computed from the weights with ``forward.evaluate``, as is any loss the
lists do not cover (the final model's train loss). Settings the file does not hold (op, optimiser)
are the demo's; ``config.json`` notes them under ``imported_from``.

``export_tl_demo`` writes the same keys back, loadable by the demo's ``if not TRAIN_MODEL`` cell.
Since a grokinterp run records metrics every ``eval_every`` epochs rather than every epoch, the
exported file adds keys the demo ignores:

    loss_epochs        list of ints; train_losses[i], test_losses[i], train_accs[i] and
                       test_accs[i] are all measured on the model after loss_epochs[i] epochs
    train_accs         accuracies aligned with loss_epochs (NaN where the run has none)
    test_accs
    grokinterp_config  the run's RunConfig as a plain dict (task, op, optimiser, ...)
    grokinterp_format  "tl-demo+grokinterp/1"

``checkpoints`` holds every checkpoint of the run including the final one (as in the demo, whose
last checkpoint is its final model), and ``checkpoint_epochs`` keeps the demo's convention (epoch
minus one, so the initial checkpoint is -1). Importing an exported file uses these keys and
reproduces the run directory's weights, epochs, split, losses and config.

A ``.pth`` file is a pickle: loading one can run arbitrary code, so ``import_tl_demo`` refuses
without ``trust=True``. It first loads with ``weights_only=True``, allowing only the config class
and the numpy scalars it holds; it falls back to a full unpickle only if that is refused.

Loading and checking the file and mapping its config live in ``grokinterp.io.tl_demo``; this
module writes the run directory (through ``grokinterp.io.rundir``) and the exported file.

``import_pizza`` turns a checkpoint Zhong et al. 2023 released (``model_<id>.pt``, or
``.safetensors``, with ``config_<id>.json`` beside it; read and mapped by ``grokinterp.io.pizza``)
into a run directory with one checkpoint, at the epochs the authors trained, and a split drawn
with a documented seed (theirs is unknown: config.json's ``imported_from`` notes say so, and
``analyze`` warns).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from grokinterp import constants as C
from grokinterp.errors import RunDirError
from grokinterp.io import rundir
from grokinterp.io.checkpoints import read_checkpoint
from grokinterp.io.files import atomic_write
from grokinterp.io.tl_demo import METRICS_EVERY as METRICS_EVERY  # public here before tl_demo.py
from grokinterp.io.tl_demo import REQUIRED_KEYS as REQUIRED_KEYS
from grokinterp.io.tl_demo import (
    DemoFileError,
    check_file,
    config_from_file,
    fit_weights,
    load_pickle,
    one_line,
    parse_demo,
)

__all__ = [
    "EXPORT_FORMAT",
    "METRICS_EVERY",
    "REQUIRED_KEYS",
    "export_tl_demo",
    "import_pizza",
    "import_tl_demo",
    "import_warnings",
]

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "tl-demo+grokinterp/1"


# ----------------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------------


def _holds_something(out: Path) -> bool:
    """``out`` is a folder with entries besides the run lock's file."""
    return out.is_dir() and any(e.name != C.LOCK_FILE for e in out.iterdir())


def _check_out(out: Path, force: bool) -> None:
    rundir.check_out_path(out)
    if _holds_something(out):
        if not force:
            raise RunDirError(f"run directory {out} already exists; use --force to replace it")
        rundir.refuse_foreign(out)  # --force replaces a run, never anything else


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_tl_demo(path: str | Path, out: str | Path, *, trust: bool = False, force: bool = False) -> Path:
    """Turn a TransformerLens Grokking demo ``.pth`` into a run directory at ``out``.

    ``trust=True`` is required: the file is a pickle. The run directory is built in a temporary
    sibling folder and renamed into place at the end, so a failure leaves nothing behind; an
    existing run directory at ``out`` is replaced only with ``force=True``, and only while no other
    process writes it: its lock is taken first and held until it is replaced (``RunLockedError``,
    nothing changed, when another process holds it).
    """
    path, out = Path(path), Path(out)
    if not trust:
        raise ValueError(
            f"{path}: .pth files are Python pickles and loading one can run arbitrary code; "
            "pass --trust (trust=True) only for files whose source you trust"
        )
    check_file(path)
    _check_out(out, force)
    lock = rundir.lock_run(out) if _holds_something(out) else None  # before any work: fail fast
    try:
        return _import(path, out, force)
    finally:
        if lock is not None:
            lock.release()


def import_pizza(path: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """Turn a checkpoint of Zhong et al. 2023 (``model_<id>.pt`` or ``.safetensors``,
    ``config_<id>.json`` beside it) into a run directory at ``out``: config.json (with
    ``imported_from``: file, sha256, the authors' config and the notes of ``grokinterp.io.pizza``),
    one checkpoint at the authors' final epoch with its train/test metrics, the split (seeded, not
    the authors'), metrics and summary. The file is a plain state dict, read with
    ``torch.load(weights_only=True)`` or safetensors, so no trust flag is needed. Built in a
    temporary sibling folder and moved into place, as ``import_tl_demo``."""
    from grokinterp.io.pizza import PizzaFileError, read_pizza

    path, out = Path(path), Path(out)
    try:
        ckpt = read_pizza(path)
    except PizzaFileError as e:
        raise ValueError(str(e)) from None
    _check_out(out, force)
    lock = rundir.lock_run(out) if _holds_something(out) else None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.importing-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            try:
                _write_pizza_run(tmp, ckpt)
                _move_into_place(tmp, out, force)
            except OSError as e:
                raise RunDirError(f"{out}: could not write the run directory ({one_line(e)})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        if lock is not None:
            lock.release()
    return out


def import_warnings(run_dir: str | Path) -> list[str]:
    """The warnings an imported run's config.json carries under ``imported_from.warnings`` (e.g. a
    Zhong et al. checkpoint's split is not the authors'), for ``analyze`` to repeat; [] for a run
    made here."""
    imported = rundir.read_config_doc(run_dir).get("imported_from")
    found = imported.get("warnings") if isinstance(imported, dict) else None
    return [w for w in found if isinstance(w, str)] if isinstance(found, list) else []


def _write_pizza_run(run_dir: Path, ckpt: Any) -> None:
    from grokinterp.forward import evaluate
    from grokinterp.io.pizza import FORMAT, SPLIT_NOTE
    from grokinterp.models import model_from_state_dict
    from grokinterp.tasks import make_dataset

    cfg = ckpt.config
    source = ckpt.model_path
    imported = {
        "path": str(source.resolve()),
        "format": FORMAT,
        "sha256": _sha256(source),
        "config_path": str(ckpt.config_path.resolve()),
        "authors_config": ckpt.authors_config,
        "loaded_with": "torch.load(weights_only=True)",
        "epoch_convention": "the authors' config 'epoch' (full-batch optimizer steps); one checkpoint",
        "notes": ckpt.notes,
        "warnings": [SPLIT_NOTE],  # repeated by every analysis (import_warnings)
    }
    rundir.write_run_config(run_dir, cfg, {"imported_from": imported})  # first: the files carry its identity
    dataset = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)
    model = model_from_state_dict(cfg, ckpt.state, source=source)
    model.eval()
    epoch = ckpt.final_epoch
    row = _ordered({"epoch": epoch, **evaluate(model, dataset)})
    rundir.save_checkpoint(run_dir, epoch, model, cfg, row)
    rundir.write_split(run_dir, dataset.train_indices, dataset.test_indices)
    rundir.write_metrics(run_dir, [row])
    grok = epoch if row["test_acc"] >= C.GROKKING_THRESHOLD else None
    summary = rundir.RunSummary(
        final_epoch=epoch,
        status="finished",
        grokking_epoch=grok,  # at most this: only the final checkpoint was released
        grokking_step=None,
        grokking_threshold=C.GROKKING_THRESHOLD,
        wall_clock_s=None,
        final=row,
        imported_from=imported["path"],
    )
    rundir.write_summary(run_dir, summary)


def _import(path: Path, out: Path, force: bool) -> Path:
    data, loader = load_pickle(path)
    logger.info(
        "%s: loaded with %s", path, "torch.load(weights_only=True)" if loader == "weights_only" else "a full unpickle"
    )
    try:
        contents = parse_demo(data)
    except DemoFileError as e:
        raise ValueError(f"{path}: {e}") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{secrets.token_hex(4)}"
    tmp.mkdir()  # not mkdtemp: the run directory gets the usual permissions
    try:
        try:
            _write_run(tmp, contents, path, loader)
            _move_into_place(tmp, out, force)
        except DemoFileError as e:
            raise ValueError(f"{path}: {e}") from None
        except OSError as e:
            raise RunDirError(f"{out}: could not write the run directory ({one_line(e)})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_run(run_dir: Path, c: dict[str, Any], source: Path, loader: str) -> None:
    from grokinterp.backend import state_dict_3x
    from grokinterp.forward import evaluate
    from grokinterp.models import build_model
    from grokinterp.tasks import make_dataset

    train_idx, test_idx = c["train_idx"], c["test_idx"]
    weights: dict[int, dict[str, Tensor]] = c["weights"]
    cfg, notes = config_from_file(
        c["tl_cfg"], c["grokinterp_config"], len(train_idx), len(test_idx), list(weights), c["final_epoch"]
    )
    dataset = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed, split=(train_idx, test_idx))
    n = len(dataset.labels)
    both = torch.cat([train_idx, test_idx])
    if len(both) != n or not torch.equal(both.sort().values, torch.arange(n)):
        raise DemoFileError(
            f"train_indices and test_indices must together be a permutation of 0..{n - 1} "
            "(disjoint, covering every (a, b) pair)"
        )

    extra = {
        "imported_from": {
            "path": str(source.resolve()),
            "format": EXPORT_FORMAT if c["exported"] else "tl-demo",
            "sha256": _sha256(source),
            "loaded_with": "torch.load(weights_only=True)" if loader == "weights_only" else "full pickle (trusted)",
            "epoch_convention": "epoch = optimizer steps completed; demo checkpoint_epochs[k] + 1",
            "notes": notes,
        }
    }
    rundir.write_run_config(run_dir, cfg, extra)  # first: the files below carry its run identity
    model = build_model(cfg)
    model.eval()
    recorded: dict[int, dict[str, float]] = c["recorded"]
    rows: dict[int, dict[str, Any]] = {}
    final_epoch = c["final_epoch"]
    for epoch, state in weights.items():
        fit_weights(model, state, "model" if state is c["final_state"] else f"checkpoint at epoch {epoch}")
        row = {"epoch": epoch, **evaluate(model, dataset), **recorded.get(epoch, {})}
        rows[epoch] = row
        rundir.save_checkpoint(run_dir, epoch, model, cfg, row)
    if weights[final_epoch] is not c["final_state"]:  # the final model is also the last checkpoint
        last = {k: v.clone() for k, v in state_dict_3x(model).items()}  # weights[final_epoch] is the last
        fit_weights(model, c["final_state"], "model")
        if not all(torch.equal(v, last[k]) for k, v in state_dict_3x(model).items()):
            logger.warning(
                "%s: 'model' differs from the checkpoint at its epoch %d; the run keeps the checkpoint",
                source,
                final_epoch,
            )
    for epoch in sorted(c["keep"]):
        if epoch not in rows and {"train_loss", "test_loss"} <= set(recorded.get(epoch, {})):
            rows[epoch] = {"epoch": epoch, **recorded[epoch]}
    metrics = [_ordered(rows[e]) for e in sorted(rows)]
    rundir.write_split(run_dir, train_idx, test_idx)
    rundir.write_metrics(run_dir, metrics)
    with_acc = [r for r in metrics if "test_acc" in r]
    grok = next((r["epoch"] for r in with_acc if r["test_acc"] >= C.GROKKING_THRESHOLD), None)
    summary = rundir.RunSummary(
        final_epoch=final_epoch,
        status="finished",
        grokking_epoch=grok,
        grokking_step=None,  # the file counts epochs, not optimizer steps
        grokking_threshold=C.GROKKING_THRESHOLD,
        wall_clock_s=None,  # not recorded in the file
        final=metrics[-1] if metrics else {},
        imported_from=extra["imported_from"]["path"],
    )
    rundir.write_summary(run_dir, summary)


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    order = ["epoch", "train_loss", "test_loss", "train_acc", "test_acc"]
    return {k: row[k] for k in order if k in row} | {k: v for k, v in row.items() if k not in order}


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    _check_out(out, force)  # again: something may have appeared while importing
    old = None
    if out.is_dir():
        if _holds_something(out):
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.replaced-"))
            os.replace(out, old / out.name)
        else:
            (out / C.LOCK_FILE).unlink(missing_ok=True)
            out.rmdir()
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


def export_tl_demo(run_dir: str | Path, out_file: str | Path, *, force: bool = False) -> Path:
    """Write a run directory as a TransformerLens Grokking demo ``.pth`` (see the module docstring
    for the keys, the epoch convention and the extra keys), atomically. An existing file is only
    replaced with ``force=True``."""
    from grokinterp.io.runs import Run
    from grokinterp.models import hooked_transformer_config

    run = Run(run_dir)
    out_file = Path(out_file)
    cfg = run.config
    if cfg.arch != "transformer":
        raise ValueError(
            f"{run.path}: only transformer runs can be exported to the TransformerLens demo layout "
            f"(this run has arch {cfg.arch!r})"
        )
    if cfg.attention_rate != 1.0:
        raise ValueError(
            f"{run.path}: the TransformerLens demo layout has no attention rate (this run has attention_rate "
            f"{cfg.attention_rate:g}); only runs with ordinary attention (rate 1) can be exported"
        )
    from grokinterp.backend import TL_MAJOR, TL_VERSION

    if TL_MAJOR >= 4:
        raise ValueError(
            f"exporting to the TransformerLens demo layout needs TransformerLens 3.x (the file pickles its "
            f"HookedTransformerConfig, which 4.x removed); this environment has {TL_VERSION}"
        )
    epochs = run.checkpoint_epochs
    if not epochs:
        raise RunDirError(f"{run.path}: no checkpoints to export")
    if out_file.is_dir():
        raise ValueError(f"{out_file} is a directory; give a file name such as {out_file / 'grokking_demo.pth'}")
    if out_file.exists() and not force:
        raise ValueError(f"{out_file} exists; pass --force to overwrite it or choose another --out")
    states = []
    for epoch in epochs:
        states.append(read_checkpoint(run.path, epoch).state_dict)
    train_idx, test_idx = rundir.read_split(run.path)

    by_epoch: dict[int, dict[str, Any]] = {}
    for row in run.metrics_rows:
        losses = (row.get("train_loss"), row.get("test_loss")) if isinstance(row, dict) else (None, None)
        if all(isinstance(x, int | float) for x in losses) and "epoch" in row:  # a diverged row has nulls
            by_epoch[int(row["epoch"])] = row  # a repeated epoch keeps its latest row
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    nan = float("nan")
    data = {
        "model": states[-1],
        "config": hooked_transformer_config(cfg, "cpu"),
        "checkpoints": states,
        "checkpoint_epochs": [e - 1 for e in epochs],
        "test_losses": [float(r["test_loss"]) for r in rows],
        "train_losses": [float(r["train_loss"]) for r in rows],
        "train_indices": train_idx,
        "test_indices": test_idx,
        "loss_epochs": [int(r["epoch"]) for r in rows],
        "train_accs": [float(r.get("train_acc", nan)) for r in rows],
        "test_accs": [float(r.get("test_acc", nan)) for r in rows],
        "grokinterp_config": cfg.to_dict(),
        "grokinterp_format": EXPORT_FORMAT,
    }
    atomic_write(out_file, lambda f: torch.save(data, f))
    return out_file
