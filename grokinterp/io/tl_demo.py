"""Reading a TransformerLens Grokking demo ``.pth``: loading the pickle safely, checking its
contents and mapping its ``HookedTransformerConfig`` to a ``RunConfig``.

``grokinterp.io.interop`` describes the file (its keys and epoch conventions) and turns what
``parse_demo`` returns into a run directory; this module only reads and validates. Every problem
is one line: ``DemoFileError`` for the file's contents (the caller prefixes the file name),
``ValueError`` naming the file for one that cannot be loaded at all.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import re
import typing
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from grokinterp.config import RunConfig, field_types

__all__ = [
    "METRICS_EVERY", "REQUIRED_KEYS", "DemoFileError", "check_file", "config_from_file", "fit_weights",
    "load_pickle", "one_line", "parse_demo", "safe_globals",
]  # fmt: skip

logger = logging.getLogger(__name__)

REQUIRED_KEYS = (
    "model", "config", "checkpoints", "checkpoint_epochs",
    "test_losses", "train_losses", "train_indices", "test_indices",
)  # fmt: skip
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


class DemoFileError(ValueError):
    """A problem with the file's contents (prefixed with the file name when raised)."""


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def one_line(e: BaseException) -> str:
    """``Type: first line of the message`` (colour codes removed, at most 160 characters)."""
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def safe_globals() -> list:
    """Globals a demo file needs beyond tensors: the config class (current and pre-3.0 module
    paths) and the numpy scalars it stores (``attn_scale``, ``initializer_range``)."""
    import numpy as np

    from grokinterp.backend import demo_config_class

    HookedTransformerConfig = demo_config_class()

    out: list = [
        HookedTransformerConfig,
        (HookedTransformerConfig, "transformer_lens.HookedTransformerConfig.HookedTransformerConfig"),
        # 3.x's path, named for 4.x, where the class is grokinterp.backend's stand-in.
        (HookedTransformerConfig, "transformer_lens.config.hooked_transformer_config.HookedTransformerConfig"),
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


def check_file(path: Path) -> None:
    """``ValueError`` (one line) unless ``path`` is a non-empty file whose zip archive, if any,
    passes its checksums."""
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
        raise ValueError(f"{path}: unreadable file ({one_line(e)})") from None


def load_pickle(path: Path) -> tuple[Any, str]:
    """``torch.load`` with weights_only first; a full unpickle only if a global was refused."""
    is_zip = zipfile.is_zipfile(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.serialization.safe_globals(safe_globals()):
                data = torch.load(path, map_location="cpu", weights_only=True)
            return data, "weights_only"
        except Exception as e:  # any failure of a foreign file becomes one line
            refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            if not is_zip:
                raise ValueError(
                    f"{path}: not a readable PyTorch .pth file (no zip archive inside: truncated, corrupt, "
                    "or another format)"
                ) from None
            blocked = re.search(r"unsupported GLOBAL (\S+) whose module (\S+) is blocked", str(e))
            call = re.search(r"Trying to call reduce for unrecognized function (.+)", str(e))
            if blocked is not None or call is not None:
                needs = blocked.group(1) if blocked else call.group(1).strip()
                why = f"module {blocked.group(2)} is blocked" if blocked else "a function call on load"
                raise ValueError(
                    f"{path}: refused: --trust allows only the TransformerLens demo's classes and plain data; "
                    f"the file needs {needs} ({why}: loading it could run code)"
                ) from None
            if refused is None:
                detail = re.search(r"WeightsUnpickler error: (.*)", str(e))
                reason = detail.group(1).strip() if detail else one_line(e)
                raise ValueError(f"{path}: not a readable PyTorch .pth file (corrupt? {reason[:160]})") from None
            logger.warning(
                "%s: weights-only loading refused %s; loading as a full pickle because --trust was given",
                path,
                refused.group(1),
            )
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"{path}: could not unpickle the file ({one_line(e)})") from None
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
        raise DemoFileError(f"{what} must be an integer (got {value!r})")
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    try:
        return operator.index(value)
    except TypeError:
        raise DemoFileError(f"{what} must be an integer (got {type(value).__name__})") from None


def _int_list(value: Any, what: str) -> list[int]:
    if isinstance(value, Tensor):
        if value.dim() != 1 or value.is_floating_point() or value.is_complex():
            raise DemoFileError(f"{what} must be a list of integers (got a tensor of shape {tuple(value.shape)})")
        return [int(x) for x in value.tolist()]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise DemoFileError(f"{what} must be a list of integers (got {type(value).__name__})")
    return [_as_int(x, f"{what}[{i}]") for i, x in enumerate(value)]


def _float_list(value: Any, what: str) -> list[float]:
    if isinstance(value, Tensor):
        if value.dim() != 1:
            raise DemoFileError(f"{what} must be a list of numbers (got a tensor of shape {tuple(value.shape)})")
        return [float(x) for x in value.double().tolist()]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise DemoFileError(f"{what} must be a list of numbers (got {type(value).__name__})")
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool):
            raise DemoFileError(f"{what}[{i}] must be a number (got {x!r})")
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            raise DemoFileError(f"{what}[{i}] must be a number (got {type(x).__name__})") from None
    return out


def _index_tensor(value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            return torch.tensor(_int_list(value, what), dtype=torch.int64)
        raise DemoFileError(f"{what} must be a 1-D integer tensor (got {type(value).__name__})")
    if value.dim() != 1 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise DemoFileError(f"{what} must be a 1-D integer tensor (got {value.dtype} of shape {tuple(value.shape)})")
    return value.to(torch.int64).cpu()


def _state_dict(value: Any, what: str) -> dict[str, Tensor]:
    if not isinstance(value, Mapping):
        raise DemoFileError(f"{what} must be a state_dict (got {type(value).__name__})")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise DemoFileError(f"{what} must map parameter names to tensors (entry {k!r} is {type(v).__name__})")
    return dict(value)


def fit_weights(model: torch.nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Copy a state_dict's parameters into ``model``, checking every name and shape."""
    from grokinterp.backend import load_state_3x, named_parameters_3x, state_dict_3x

    expected = state_dict_3x(model)
    params = {name for name, _ in named_parameters_3x(model)}
    missing = sorted(params - set(state))
    if missing:
        raise DemoFileError(
            f"{what} lacks parameter {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    for name, tensor in state.items():
        if name not in expected:
            # Older TransformerLens versions stored attention masks as buffers; nothing else may differ.
            if name.rsplit(".", 1)[-1] in ("mask", "IGNORE", "rotary_sin", "rotary_cos"):
                continue
            raise DemoFileError(f"{what} has unexpected entry {name!r} for this config")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise DemoFileError(
                f"{what}: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)} for the config"
            )
        if name in params and not (tensor.is_floating_point() and torch.isfinite(tensor).all()):
            raise DemoFileError(f"{what}: {name} is not a finite floating-point tensor")
    dtype = {name: p.dtype for name, p in named_parameters_3x(model)}
    load_state_3x(model, {name: state[name].to(dtype[name]) for name in params})


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
    if n_ctx == 2 and d_vocab == p:
        return p, "a b"
    raise DemoFileError(
        f"unsupported config: n_ctx={n_ctx}, d_vocab={d_vocab}, d_vocab_out={p} is none of the "
        "'a b =' layout (n_ctx 3, d_vocab p+1), 'a op b =' (n_ctx 4, d_vocab p+2) and 'a b' (n_ctx 2, d_vocab p)"
    )


def _train_frac(n_train: int, n_total: int) -> float:
    """A fraction whose ``int(n_total * frac)`` is exactly ``n_train`` (as RunConfig.n_train computes)."""
    frac = n_train / n_total
    while int(n_total * frac) < n_train:
        frac = math.nextafter(frac, 1.0)
    return frac


def config_from_file(
    tl_cfg: Any, extra_cfg: Any, n_train: int, n_test: int, ckpt_epochs: list[int], final_epoch: int
) -> tuple[RunConfig, list[str]]:
    """The RunConfig of the file, and notes on what had to be assumed."""
    notes: list[str] = []
    p, layout = _layout(tl_cfg)
    if isinstance(extra_cfg, Mapping):
        try:
            cfg = RunConfig.from_dict(dict(extra_cfg))
        except (TypeError, ValueError) as e:
            logger.warning("ignoring the file's grokinterp_config (%s)", one_line(e))
            notes.append("grokinterp_config present but unusable; settings derived from the TransformerLens config")
        else:
            if cfg.arch != "transformer":
                raise DemoFileError(f"grokinterp_config has arch {cfg.arch!r}; only transformer runs can be imported")
            _check_behaviour(tl_cfg, cfg)
            return cfg, notes

    act_fn = _cfg_get(tl_cfg, "act_fn")
    if act_fn not in typing.get_args(field_types()["act_fn"]):
        raise DemoFileError(
            f"unsupported config: act_fn={act_fn!r} (grokinterp supports {', '.join(typing.get_args(field_types()['act_fn']))})"
        )
    norm = _cfg_get(tl_cfg, "normalization_type")
    if norm not in (None, "LN", "LNPre"):
        raise DemoFileError(
            f"unsupported config: normalization_type={norm!r} (grokinterp supports None, 'LN', 'LNPre')"
        )
    seed = _cfg_get(tl_cfg, "seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        model_seed = seed
    else:
        model_seed = RunConfig.model_seed
        notes.append(f"config.seed is {seed!r}; model_seed set to {model_seed}")
    n_total = n_train + n_test
    if n_total != p * p:
        raise DemoFileError(
            f"train_indices and test_indices hold {n_total} rows together; the (a, b) table has p*p = {p * p}"
        )
    if n_train == 0 or n_test == 0:
        raise DemoFileError("train_indices and test_indices must both be non-empty")
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
            attention_dir="bidirectional" if _cfg_get(tl_cfg, "attention_dir") == "bidirectional" else "causal",
            model_seed=model_seed,
            epochs=max(final_epoch, 1),
            eval_every=METRICS_EVERY,
            checkpoint_every=every,
        )
    except ValueError as e:
        raise DemoFileError(f"unsupported config ({e})") from None
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
        if name == "attn_scale" and mine == -1.0:  # 4.x's config leaves the default sqrt(d_head) unresolved
            mine = math.sqrt(cfg.d_head)
        if isinstance(mine, float) or isinstance(theirs, float):
            try:
                same = math.isclose(float(theirs), float(mine), rel_tol=1e-6)
            except (TypeError, ValueError):
                same = False
        else:
            same = theirs == mine
        if not same:
            raise DemoFileError(f"unsupported config: {name}={theirs!r} (grokinterp builds {name}={mine!r})")


def parse_demo(data: Any) -> dict[str, Any]:
    """Validate the loaded object; return everything the run directory needs."""
    if not isinstance(data, Mapping):
        raise DemoFileError(f"not a TransformerLens Grokking demo file (expected a dict, got {type(data).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        found = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise DemoFileError(
            f"not a TransformerLens Grokking demo file (missing key(s) {', '.join(missing)}; found {found})"
        )
    tl_cfg = data["config"]
    if isinstance(tl_cfg, str | bytes | int | float) or tl_cfg is None:
        raise DemoFileError(f"config must be a HookedTransformerConfig (got {type(tl_cfg).__name__})")

    final_state = _state_dict(data["model"], "model")
    raw_ckpts = data["checkpoints"]
    if not isinstance(raw_ckpts, Sequence) or isinstance(raw_ckpts, str | bytes):
        raise DemoFileError(f"checkpoints must be a list of state_dicts (got {type(raw_ckpts).__name__})")
    states = [_state_dict(s, f"checkpoints[{i}]") for i, s in enumerate(raw_ckpts)]
    demo_epochs = _int_list(data["checkpoint_epochs"], "checkpoint_epochs")
    if len(demo_epochs) != len(states):
        raise DemoFileError(f"{len(states)} checkpoints but {len(demo_epochs)} checkpoint_epochs")
    epochs = [e + 1 for e in demo_epochs]  # demo: loop index of the step just taken
    if any(b <= a for a, b in itertools.pairwise(epochs)):
        raise DemoFileError("checkpoint_epochs must be strictly increasing")
    if epochs and epochs[0] < 0:
        raise DemoFileError(f"checkpoint_epochs must be at least -1 (got {demo_epochs[0]})")

    train_losses = _float_list(data["train_losses"], "train_losses")
    test_losses = _float_list(data["test_losses"], "test_losses")
    if len(train_losses) != len(test_losses):
        raise DemoFileError(f"train_losses has {len(train_losses)} entries but test_losses has {len(test_losses)}")
    train_idx = _index_tensor(data["train_indices"], "train_indices")
    test_idx = _index_tensor(data["test_indices"], "test_indices")

    recorded: dict[int, dict[str, float]] = {}  # epoch -> losses (and accuracies) the file records
    if "loss_epochs" in data:  # a grokinterp export: every list aligned with loss_epochs
        loss_epochs = _int_list(data["loss_epochs"], "loss_epochs")
        if len(loss_epochs) != len(train_losses):
            raise DemoFileError(f"loss_epochs has {len(loss_epochs)} entries but train_losses has {len(train_losses)}")
        if any(b <= a for a, b in itertools.pairwise(loss_epochs)) or (loss_epochs and loss_epochs[0] < 0):
            raise DemoFileError("loss_epochs must be non-negative and strictly increasing")
        accs = {}
        for key in ("train_accs", "test_accs"):
            if key in data:
                accs[key] = _float_list(data[key], key)
                if len(accs[key]) != len(loss_epochs):
                    raise DemoFileError(f"{key} has {len(accs[key])} entries but loss_epochs has {len(loss_epochs)}")
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
            raise DemoFileError("train_losses is empty: the file records no training")
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
        raise DemoFileError(f"checkpoint at epoch {epochs[-1]} lies beyond the last recorded epoch {final_epoch}")

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
