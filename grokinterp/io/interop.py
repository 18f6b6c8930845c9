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
demo does not record) is computed from the weights with ``training.evaluate``, as is any loss the
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
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import operator
import os
import re
import secrets
import shutil
import tempfile
import typing
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from grokinterp import constants as C
from grokinterp.config import RunConfig, field_types
from grokinterp.io import checkpoints as ckpt
from grokinterp.io.files import strict_json

logger = logging.getLogger(__name__)

REQUIRED_KEYS = (
    "model", "config", "checkpoints", "checkpoint_epochs",
    "test_losses", "train_losses", "train_indices", "test_indices",
)  # fmt: skip
EXPORT_FORMAT = "tl-demo+grokinterp/1"
METRICS_EVERY = 10  # rows kept from the demo's per-epoch losses (plus every checkpoint epoch)

# HookedTransformerConfig fields that change the function a model computes: a file whose config
# differs from the one grokinterp builds on any of these cannot be represented as a run.
_BEHAVIOUR_FIELDS = (
    "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx",
    "act_fn", "normalization_type", "positional_embedding_type", "attn_only", "parallel_attn_mlp",
    "gated_mlp", "n_key_value_heads", "original_architecture", "use_attn_scale", "attn_scale",
    "scale_attn_by_inverse_layer_idx", "use_local_attn", "attention_dir", "final_rms",
    "use_normalization_before_and_after", "use_attn_in", "use_split_qkv_input", "eps",
)  # fmt: skip


class _Bad(ValueError):
    """A problem with the file's contents (prefixed with the file name when raised)."""


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _one_line(e: BaseException) -> str:
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _safe_globals() -> list:
    """Globals a demo file needs beyond tensors: the config class (current and pre-3.0 module
    paths) and the numpy scalars it stores (``attn_scale``, ``initializer_range``)."""
    import numpy as np
    from transformer_lens import HookedTransformerConfig

    out: list = [
        HookedTransformerConfig,
        (HookedTransformerConfig, "transformer_lens.HookedTransformerConfig.HookedTransformerConfig"),
        np.dtype,
    ]
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    out += [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        if dtypes is not None and hasattr(dtypes, name):
            out.append(getattr(dtypes, name))
    return out


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        if size == 0:
            raise ValueError(f"{path}: empty file")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"{path}: corrupt PyTorch file (checksum mismatch in {bad})")
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: unreadable file ({_one_line(e)})") from None


def _load_pickle(path: Path) -> tuple[Any, str]:
    """``torch.load`` with weights_only first; a full unpickle only if a global was refused."""
    is_zip = zipfile.is_zipfile(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.serialization.safe_globals(_safe_globals()):
                data = torch.load(path, map_location="cpu", weights_only=True)
            return data, "weights_only"
        except Exception as e:  # any failure of a foreign file becomes one line
            refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            if not is_zip:
                raise ValueError(
                    f"{path}: not a readable PyTorch .pth file (no zip archive inside: truncated, corrupt, "
                    "or another format)"
                ) from None
            if refused is None:
                detail = re.search(r"WeightsUnpickler error: (.*)", str(e))
                reason = detail.group(1).strip() if detail else _one_line(e)
                raise ValueError(f"{path}: not a readable PyTorch .pth file (corrupt? {reason[:160]})") from None
            logger.warning(
                "%s: weights-only loading refused %s; loading as a full pickle because --trust was given",
                path,
                refused.group(1),
            )
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"{path}: could not unpickle the file ({_one_line(e)})") from None
    return data, "full pickle"


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------


def _cfg_get(cfg: Any, name: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise _Bad(f"{what} must be an integer (got {value!r})")
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    try:
        return operator.index(value)
    except TypeError:
        raise _Bad(f"{what} must be an integer (got {type(value).__name__})") from None


def _int_list(value: Any, what: str) -> list[int]:
    if isinstance(value, Tensor):
        if value.dim() != 1 or value.is_floating_point() or value.is_complex():
            raise _Bad(f"{what} must be a list of integers (got a tensor of shape {tuple(value.shape)})")
        return [int(x) for x in value.tolist()]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise _Bad(f"{what} must be a list of integers (got {type(value).__name__})")
    return [_as_int(x, f"{what}[{i}]") for i, x in enumerate(value)]


def _float_list(value: Any, what: str) -> list[float]:
    if isinstance(value, Tensor):
        if value.dim() != 1:
            raise _Bad(f"{what} must be a list of numbers (got a tensor of shape {tuple(value.shape)})")
        return [float(x) for x in value.double().tolist()]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise _Bad(f"{what} must be a list of numbers (got {type(value).__name__})")
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool):
            raise _Bad(f"{what}[{i}] must be a number (got {x!r})")
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            raise _Bad(f"{what}[{i}] must be a number (got {type(x).__name__})") from None
    return out


def _index_tensor(value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            return torch.tensor(_int_list(value, what), dtype=torch.int64)
        raise _Bad(f"{what} must be a 1-D integer tensor (got {type(value).__name__})")
    if value.dim() != 1 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise _Bad(f"{what} must be a 1-D integer tensor (got {value.dtype} of shape {tuple(value.shape)})")
    return value.to(torch.int64).cpu()


def _state_dict(value: Any, what: str) -> dict[str, Tensor]:
    if not isinstance(value, Mapping):
        raise _Bad(f"{what} must be a state_dict (got {type(value).__name__})")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise _Bad(f"{what} must map parameter names to tensors (entry {k!r} is {type(v).__name__})")
    return dict(value)


def _fit_weights(model: torch.nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Copy a state_dict's parameters into ``model``, checking every name and shape."""
    expected = model.state_dict()
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(params - set(state))
    if missing:
        raise _Bad(
            f"{what} lacks parameter {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    for name, tensor in state.items():
        if name not in expected:
            # Older TransformerLens versions stored attention masks as buffers; nothing else may differ.
            if name.rsplit(".", 1)[-1] in ("mask", "IGNORE", "rotary_sin", "rotary_cos"):
                continue
            raise _Bad(f"{what} has unexpected entry {name!r} for this config")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise _Bad(
                f"{what}: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)} for the config"
            )
        if name in params and not (tensor.is_floating_point() and torch.isfinite(tensor).all()):
            raise _Bad(f"{what}: {name} is not a finite floating-point tensor")
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(state[name].to(param.dtype))


# ----------------------------------------------------------------------------------------------
# Config mapping
# ----------------------------------------------------------------------------------------------


def _layout(tl_cfg: Any) -> tuple[int, str]:
    p = _as_int(_cfg_get(tl_cfg, "d_vocab_out"), "config.d_vocab_out")
    d_vocab = _as_int(_cfg_get(tl_cfg, "d_vocab"), "config.d_vocab")
    n_ctx = _as_int(_cfg_get(tl_cfg, "n_ctx"), "config.n_ctx")
    if n_ctx == 3 and d_vocab == p + 1:
        return p, "a b ="
    if n_ctx == 4 and d_vocab == p + 2:
        return p, "a op b ="
    raise _Bad(
        f"unsupported config: n_ctx={n_ctx}, d_vocab={d_vocab}, d_vocab_out={p} is neither the "
        "'a b =' layout (n_ctx 3, d_vocab p+1) nor 'a op b =' (n_ctx 4, d_vocab p+2)"
    )


def _train_frac(n_train: int, n_total: int) -> float:
    """A fraction whose ``int(n_total * frac)`` is exactly ``n_train`` (as RunConfig.n_train computes)."""
    frac = n_train / n_total
    while int(n_total * frac) < n_train:
        frac = math.nextafter(frac, 1.0)
    return frac


def _config_from_file(
    tl_cfg: Any, extra_cfg: Any, n_train: int, n_test: int, ckpt_epochs: list[int], final_epoch: int
) -> tuple[RunConfig, list[str]]:
    """The RunConfig of the file, and notes on what had to be assumed."""
    notes: list[str] = []
    p, layout = _layout(tl_cfg)
    if isinstance(extra_cfg, Mapping):
        try:
            cfg = RunConfig.from_dict(dict(extra_cfg))
        except (TypeError, ValueError) as e:
            logger.warning("ignoring the file's grokinterp_config (%s)", _one_line(e))
            notes.append("grokinterp_config present but unusable; settings derived from the TransformerLens config")
        else:
            if cfg.arch != "transformer":
                raise _Bad(f"grokinterp_config has arch {cfg.arch!r}; only transformer runs can be imported")
            _check_behaviour(tl_cfg, cfg)
            return cfg, notes

    act_fn = _cfg_get(tl_cfg, "act_fn")
    if act_fn not in typing.get_args(field_types()["act_fn"]):
        raise _Bad(
            f"unsupported config: act_fn={act_fn!r} (grokinterp supports {', '.join(typing.get_args(field_types()['act_fn']))})"
        )
    norm = _cfg_get(tl_cfg, "normalization_type")
    if norm not in (None, "LN", "LNPre"):
        raise _Bad(f"unsupported config: normalization_type={norm!r} (grokinterp supports None, 'LN', 'LNPre')")
    seed = _cfg_get(tl_cfg, "seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        model_seed = seed
    else:
        model_seed = RunConfig.model_seed
        notes.append(f"config.seed is {seed!r}; model_seed set to {model_seed}")
    n_total = n_train + n_test
    if n_total != p * p:
        raise _Bad(f"train_indices and test_indices hold {n_total} rows together; the (a, b) table has p*p = {p * p}")
    if n_train == 0 or n_test == 0:
        raise _Bad("train_indices and test_indices must both be non-empty")
    positive = [e for e in ckpt_epochs if e > 0]
    every = math.gcd(*positive) if positive else RunConfig.checkpoint_every
    notes.append("op assumed 'add' (the demo's task); optimiser settings are the demo's (not stored in the file)")
    try:
        cfg = RunConfig(
            p=p,
            op="add",
            layout=layout,
            train_frac=_train_frac(n_train, n_total),
            n_layers=_as_int(_cfg_get(tl_cfg, "n_layers"), "config.n_layers"),
            d_model=_as_int(_cfg_get(tl_cfg, "d_model"), "config.d_model"),
            n_heads=_as_int(_cfg_get(tl_cfg, "n_heads"), "config.n_heads"),
            d_head=_as_int(_cfg_get(tl_cfg, "d_head"), "config.d_head"),
            d_mlp=_as_int(_cfg_get(tl_cfg, "d_mlp"), "config.d_mlp"),
            act_fn=act_fn,
            normalization_type="none" if norm is None else norm,
            model_seed=model_seed,
            epochs=max(final_epoch, 1),
            eval_every=METRICS_EVERY,
            checkpoint_every=every,
        )
    except ValueError as e:
        raise _Bad(f"unsupported config ({e})") from None
    _check_behaviour(tl_cfg, cfg)
    return cfg, notes


_MISSING = object()


def _check_behaviour(tl_cfg: Any, cfg: RunConfig) -> None:
    from grokinterp.models import hooked_transformer_config

    ours = hooked_transformer_config(cfg)
    for name in _BEHAVIOUR_FIELDS:
        theirs = _cfg_get(tl_cfg, name, _MISSING)
        if theirs is _MISSING or not hasattr(ours, name):
            continue
        mine = getattr(ours, name)
        if isinstance(mine, float) or isinstance(theirs, float):
            try:
                same = math.isclose(float(theirs), float(mine), rel_tol=1e-6)
            except (TypeError, ValueError):
                same = False
        else:
            same = theirs == mine
        if not same:
            raise _Bad(f"unsupported config: {name}={theirs!r} (grokinterp builds {name}={mine!r})")


# ----------------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------------


def _check_out(out: Path, force: bool) -> None:
    from grokinterp.io import rundir

    rundir.check_out_path(out)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ckpt.RunDirError(f"run directory {out} already exists; use --force to replace it")
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
    existing run directory at ``out`` is replaced only with ``force=True``.
    """
    path, out = Path(path), Path(out)
    if not trust:
        raise ValueError(
            f"{path}: .pth files are Python pickles and loading one can run arbitrary code; "
            "pass --trust (trust=True) only for files whose source you trust"
        )
    _check_file(path)
    _check_out(out, force)
    data, loader = _load_pickle(path)
    logger.info(
        "%s: loaded with %s", path, "torch.load(weights_only=True)" if loader == "weights_only" else "a full unpickle"
    )
    try:
        contents = _parse(data)
    except _Bad as e:
        raise ValueError(f"{path}: {e}") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{secrets.token_hex(4)}"
    tmp.mkdir()  # not mkdtemp: the run directory gets the usual permissions
    try:
        try:
            _write_run(tmp, contents, path, loader)
            _move_into_place(tmp, out, force)
        except _Bad as e:
            raise ValueError(f"{path}: {e}") from None
        except OSError as e:
            raise ckpt.RunDirError(f"{out}: could not write the run directory ({_one_line(e)})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _parse(data: Any) -> dict[str, Any]:
    """Validate the loaded object; return everything the run directory needs."""
    if not isinstance(data, Mapping):
        raise _Bad(f"not a TransformerLens Grokking demo file (expected a dict, got {type(data).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        found = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise _Bad(f"not a TransformerLens Grokking demo file (missing key(s) {', '.join(missing)}; found {found})")
    tl_cfg = data["config"]
    if isinstance(tl_cfg, str | bytes | int | float) or tl_cfg is None:
        raise _Bad(f"config must be a HookedTransformerConfig (got {type(tl_cfg).__name__})")

    final_state = _state_dict(data["model"], "model")
    raw_ckpts = data["checkpoints"]
    if not isinstance(raw_ckpts, Sequence) or isinstance(raw_ckpts, str | bytes):
        raise _Bad(f"checkpoints must be a list of state_dicts (got {type(raw_ckpts).__name__})")
    states = [_state_dict(s, f"checkpoints[{i}]") for i, s in enumerate(raw_ckpts)]
    demo_epochs = _int_list(data["checkpoint_epochs"], "checkpoint_epochs")
    if len(demo_epochs) != len(states):
        raise _Bad(f"{len(states)} checkpoints but {len(demo_epochs)} checkpoint_epochs")
    epochs = [e + 1 for e in demo_epochs]  # demo: loop index of the step just taken
    if any(b <= a for a, b in itertools.pairwise(epochs)):
        raise _Bad("checkpoint_epochs must be strictly increasing")
    if epochs and epochs[0] < 0:
        raise _Bad(f"checkpoint_epochs must be at least -1 (got {demo_epochs[0]})")

    train_losses = _float_list(data["train_losses"], "train_losses")
    test_losses = _float_list(data["test_losses"], "test_losses")
    if len(train_losses) != len(test_losses):
        raise _Bad(f"train_losses has {len(train_losses)} entries but test_losses has {len(test_losses)}")
    train_idx = _index_tensor(data["train_indices"], "train_indices")
    test_idx = _index_tensor(data["test_indices"], "test_indices")

    recorded: dict[int, dict[str, float]] = {}  # epoch -> losses (and accuracies) the file records
    if "loss_epochs" in data:  # a grokinterp export: every list aligned with loss_epochs
        loss_epochs = _int_list(data["loss_epochs"], "loss_epochs")
        if len(loss_epochs) != len(train_losses):
            raise _Bad(f"loss_epochs has {len(loss_epochs)} entries but train_losses has {len(train_losses)}")
        if any(b <= a for a, b in itertools.pairwise(loss_epochs)) or (loss_epochs and loss_epochs[0] < 0):
            raise _Bad("loss_epochs must be non-negative and strictly increasing")
        accs = {}
        for key in ("train_accs", "test_accs"):
            if key in data:
                accs[key] = _float_list(data[key], key)
                if len(accs[key]) != len(loss_epochs):
                    raise _Bad(f"{key} has {len(accs[key])} entries but loss_epochs has {len(loss_epochs)}")
        for i, e in enumerate(loss_epochs):
            row = {"train_loss": train_losses[i], "test_loss": test_losses[i]}
            for key, split in (("train_accs", "train_acc"), ("test_accs", "test_acc")):
                if key in accs and math.isfinite(accs[key][i]):
                    row[split] = accs[key][i]
            recorded[e] = row
        final_epoch = max([*loss_epochs[-1:], *epochs[-1:], 0])
        keep = set(loss_epochs)
    else:  # the demo: train_losses[i] after i steps, test_losses[i] after i + 1 steps
        if not train_losses:
            raise _Bad("train_losses is empty: the file records no training")
        final_epoch = len(train_losses)
        for e in range(final_epoch + 1):
            row = {}
            if e < final_epoch:
                row["train_loss"] = train_losses[e]
            if e >= 1:
                row["test_loss"] = test_losses[e - 1]
            recorded[e] = row
        keep = {e for e in range(final_epoch + 1) if e % METRICS_EVERY == 0 and e >= 1}
    if epochs and epochs[-1] > final_epoch:
        raise _Bad(f"checkpoint at epoch {epochs[-1]} lies beyond the last recorded epoch {final_epoch}")

    weights = dict(zip(epochs, states, strict=True))
    if final_epoch not in weights:
        weights[final_epoch] = final_state
    return {
        "tl_cfg": tl_cfg,
        "grokinterp_config": data.get("grokinterp_config"),
        "weights": dict(sorted(weights.items())),
        "final_state": final_state,
        "recorded": recorded,
        "keep": keep,
        "final_epoch": final_epoch,
        "train_idx": train_idx,
        "test_idx": test_idx,
        "exported": "loss_epochs" in data,
    }


def _write_run(run_dir: Path, c: dict[str, Any], source: Path, loader: str) -> None:
    from grokinterp.forward import evaluate
    from grokinterp.models import build_model
    from grokinterp.tasks import make_dataset

    train_idx, test_idx = c["train_idx"], c["test_idx"]
    weights: dict[int, dict[str, Tensor]] = c["weights"]
    cfg, notes = _config_from_file(
        c["tl_cfg"], c["grokinterp_config"], len(train_idx), len(test_idx), list(weights), c["final_epoch"]
    )
    dataset = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed, split=(train_idx, test_idx))
    n = len(dataset.labels)
    both = torch.cat([train_idx, test_idx])
    if len(both) != n or not torch.equal(both.sort().values, torch.arange(n)):
        raise _Bad(
            f"train_indices and test_indices must together be a permutation of 0..{n - 1} "
            "(disjoint, covering every (a, b) pair)"
        )

    model = build_model(cfg)
    model.eval()
    recorded: dict[int, dict[str, float]] = c["recorded"]
    rows: dict[int, dict[str, Any]] = {}
    final_epoch = c["final_epoch"]
    for epoch, state in weights.items():
        _fit_weights(model, state, "model" if state is c["final_state"] else f"checkpoint at epoch {epoch}")
        row = {"epoch": epoch, **evaluate(model, dataset), **recorded.get(epoch, {})}
        rows[epoch] = row
        ckpt.save_checkpoint(run_dir, epoch, model, cfg, row)
    if weights[final_epoch] is not c["final_state"]:  # the final model is also the last checkpoint
        last = {k: v.clone() for k, v in model.state_dict().items()}  # weights[final_epoch] is the last
        _fit_weights(model, c["final_state"], "model")
        if not all(torch.equal(v, last[k]) for k, v in model.state_dict().items()):
            logger.warning(
                "%s: 'model' differs from the checkpoint at its epoch %d; the run keeps the checkpoint",
                source,
                final_epoch,
            )
    for epoch in sorted(c["keep"]):
        if epoch not in rows and {"train_loss", "test_loss"} <= set(recorded.get(epoch, {})):
            rows[epoch] = {"epoch": epoch, **recorded[epoch]}
    metrics = [_ordered(rows[e]) for e in sorted(rows)]

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
    ckpt.write_run_config(run_dir, cfg, extra)
    ckpt.write_split(run_dir, train_idx, test_idx)
    ckpt.write_metrics(run_dir, metrics)
    with_acc = [r for r in metrics if "test_acc" in r]
    grok = next((r["epoch"] for r in with_acc if r["test_acc"] >= C.GROKKING_THRESHOLD), None)
    summary = {
        "final_epoch": final_epoch,
        "finished": True,
        "grokking_epoch": grok,
        "grokking_threshold": C.GROKKING_THRESHOLD,
        "stopped_early": False,
        "wall_clock_s": None,
        "final": metrics[-1] if metrics else {},
        "imported_from": extra["imported_from"]["path"],
    }
    ckpt.atomic_write_text(run_dir / C.SUMMARY_FILE, strict_json(summary, indent=2))


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    order = ["epoch", "train_loss", "test_loss", "train_acc", "test_acc"]
    return {k: row[k] for k in order if k in row} | {k: v for k, v in row.items() if k not in order}


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    _check_out(out, force)  # again: something may have appeared while importing
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.replaced-"))
            os.replace(out, old / out.name)
        else:
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
    epochs = run.checkpoint_epochs
    if not epochs:
        raise ckpt.RunDirError(f"{run.path}: no checkpoints to export")
    if out_file.is_dir():
        raise ValueError(f"{out_file} is a directory; give a file name such as {out_file / 'grokking_demo.pth'}")
    if out_file.exists() and not force:
        raise ValueError(f"{out_file} exists; pass --force to overwrite it or choose another --out")
    states = []
    for epoch in epochs:
        c = ckpt.load_checkpoint(ckpt.checkpoint_path(run.path, epoch))
        if c.epoch != epoch:
            raise ckpt.RunDirError(f"{run.path}: checkpoint file for epoch {epoch} says epoch {c.epoch}")
        states.append(c.state_dict)
    train_idx, test_idx = ckpt.read_split(run.path)

    by_epoch: dict[int, dict[str, Any]] = {}
    for row in run.metrics_rows:
        if isinstance(row, dict) and "epoch" in row and "train_loss" in row and "test_loss" in row:
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
    ckpt.atomic_write(out_file, lambda f: torch.save(data, f))
    return out_file
