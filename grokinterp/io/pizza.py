"""Reading the checkpoints Zhong et al. 2023 released with "The Clock and the Pizza"
(github.com/fjzzq2002/pizza, ``code/save/model_<id>.pt`` with ``config_<id>.json`` beside it, or
that state dict as ``model_<id>.safetensors``) and mapping them to a ``RunConfig`` and a
TransformerLens state dict.

A ``model_<id>.pt`` is a plain state dict of the authors' ``Transformer`` (code/train-main.py), so
``torch.load(weights_only=True)`` reads it and no ``--trust`` is needed; the same state dict saved
as ``model_<id>.safetensors`` (how checkpoints/zhong2023/ ships three released ones) is read
too. Their model, per block::

    x      = W_E[:, tokens].T + W_pos                       W_E (d_model, vocab)
    q, k, v = W_{Q,K,V} x        (heads, d_head, d_model), no biases
    attn   = rate * softmax(q.k / sqrt(d_head)) + (1 - rate)    no mask (bidirectional)
    x     += W_O concat_heads(attn v)                        W_O (d_model, heads * d_head)
    x     += W_out relu(W_in x + b_in) + b_out               W_in (d_mlp, d_model), W_out (d_model, d_mlp)
    logits = x W_U                                           W_U (d_model, vocab), no bias

with ``rate`` their ``attn_coeff``, d_mlp = 4 d_model and d_head = d_model // n_heads. The mapping
to TransformerLens (``tl_state_dict``): W_E transposed; W_pos as is; W_Q/W_K/W_V (heads, d_head,
d_model) -> (heads, d_model, d_head); W_O (d_model, heads*d_head) -> (heads, d_head, d_model);
W_in and W_out transposed; b_in, b_out as they are; W_U's first p columns (the answers; with
``eqn_sign`` their vocabulary also holds "=", whose logit is dropped); the biases TransformerLens has
and they lack (b_Q, b_K, b_V, b_O, b_U) are zeros. The attention rate becomes ``attention_rate``
with ``attention_dir="bidirectional"``.

Config mapping (``config_from_pizza``): ``C`` -> p (the task must be their addition,
``funcs == "lambda x: (x[0]+x[1])%C"``; the string is compared, never evaluated); ``eqn_sign`` 1 ->
layout ``"a b ="`` (their "=" token is index C, as ours), else ``"a b"``; ``act_fn`` ReLU -> relu,
GeLU -> gelu; ``frac`` -> train_frac; ``lr``, ``weight_decay``, ``epoch``, ``batch_size`` (the full
table -> full batch) and their fixed betas (0.9, 0.98) and 10-step warm-up. n_layers, d_model,
n_heads, d_head and d_mlp come from the state's shapes (``n_layers`` from the config, every block
checked), so their odd widths (d_model 86: d_head 21, heads * d_head = 84) and deeper models (up to
4 layers released) map as they are; their GeLU is ``F.gelu`` (exact), TransformerLens' ``"gelu"``.
Refused with one line: Tanh (no such activation here), ``diff_vocab`` 1 (b has its own tokens:
one released checkpoint, 18c9ev5v5p), ``use_linear`` (train-main.py's ``Linearformer``, no
attention), the linear models of code/train-linear.py (configs with ``model_type``: four released
checkpoints), other tasks. docs/guide/clock-pizza.md tabulates every released checkpoint.

Their train/test split is an unseeded ``torch.utils.data.random_split``, so it cannot be recovered:
the import writes a split drawn with ``IMPORT_DATA_SEED`` and says so (``SPLIT_NOTE``) in
config.json's ``imported_from`` notes and in every analysis' warnings. Train and test accuracy of
an imported run are therefore *not* the authors' train/test numbers (a well-trained model scores
1 on both anyway).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError
from grokinterp.io.files import load_tensors
from grokinterp.io.tl_demo import check_file, one_line

__all__ = [
    "FORMAT",
    "IMPORT_DATA_SEED",
    "SPLIT_NOTE",
    "PizzaCheckpoint",
    "PizzaFileError",
    "config_from_pizza",
    "read_pizza",
    "tl_state_dict",
]

FORMAT = "pizza"
#: Seed of the split written for an imported checkpoint (the authors' split is unseeded, so unknown).
IMPORT_DATA_SEED = 0
SPLIT_NOTE = (
    "train/test are not the authors' split: theirs is an unseeded torch.utils.data.random_split (unknown); "
    f"this run's split is drawn with data_seed {IMPORT_DATA_SEED} at the authors' train fraction"
)
_NAME = re.compile(r"model_(?P<id>[A-Za-z0-9_-]+)\.(pt|safetensors)")
_ACT_FNS = {"ReLU": "relu", "GeLU": "gelu"}


class PizzaFileError(ValueError):
    """A problem with a checkpoint of Zhong et al. or its config (one line, naming the file)."""


@dataclass(frozen=True)
class PizzaCheckpoint:
    """One released checkpoint: its config (``RunConfig``), the TransformerLens state dict, the
    authors' config and state as read, the notes for config.json, and the files."""

    config: RunConfig
    state: dict[str, Tensor]
    authors_config: dict[str, Any]
    authors_state: dict[str, Tensor]
    notes: list[str]
    model_path: Path
    config_path: Path

    @property
    def final_epoch(self) -> int:
        """The epochs the authors trained (their config's ``epoch``)."""
        return self.config.epochs


def _config_path(model_path: Path) -> Path:
    match = _NAME.fullmatch(model_path.name)
    if match is None:
        raise PizzaFileError(
            f"{model_path}: expected a file named model_<id>.pt (as in the authors' code/save/) or "
            "model_<id>.safetensors, with config_<id>.json beside it"
        )
    return model_path.with_name(f"config_{match['id']}.json")


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PizzaFileError(
            f"{path}: missing; the authors' config_<id>.json must lie beside model_<id>.pt (or .safetensors)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PizzaFileError(f"{path}: not a readable JSON config ({one_line(e)})") from None
    if not isinstance(data, dict):
        raise PizzaFileError(f"{path}: a config is a JSON object (got {type(data).__name__})")
    return data


def _load_state(path: Path) -> dict[str, Tensor]:
    try:
        check_file(path)
    except ValueError as e:
        raise PizzaFileError(str(e)) from None
    if path.suffix == ".safetensors":
        try:
            return load_tensors(path)[0]
        except RunDirError as e:
            raise PizzaFileError(str(e)) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any failure of a foreign file becomes one line
            raise PizzaFileError(
                f"{path}: not a plain PyTorch state dict (torch.load(weights_only=True) refused: {one_line(e)})"
            ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise PizzaFileError(f"{path}: not a state dict of tensors (got {type(state).__name__})")
    return dict(state)


def _get(cfg: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    value = cfg.get(key)
    if value is None or (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise PizzaFileError(f"{where}: {key!r} missing or not a {getattr(kind, '__name__', 'number')}")
    return value


def config_from_pizza(cfg: dict[str, Any], state: dict[str, Tensor], where: Path) -> tuple[RunConfig, list[str]]:
    """The ``RunConfig`` of an authors' config and state (module docstring) and the notes on what
    the import sets or cannot know. ``PizzaFileError`` (one line) for what grokinterp cannot
    represent."""
    if "model_type" in cfg:
        raise PizzaFileError(
            f"{where}: a linear model (model_type {cfg['model_type']!r}, code/train-linear.py); only the "
            "transformers of code/train-main.py can be imported"
        )
    if cfg.get("use_linear"):
        raise PizzaFileError(
            f"{where}: use_linear 1 (train-main.py's Linearformer: concatenated embeddings and MLP blocks, no "
            "attention) is not a transformer; only their Transformer can be imported"
        )
    p = _get(cfg, "C", int, where)
    if cfg.get("funcs") != f"lambda x: (x[0]+x[1])%{p}":
        raise PizzaFileError(
            f"{where}: task {cfg.get('funcs')!r} is not the authors' addition mod C; only that task can be imported"
        )
    if cfg.get("diff_vocab"):
        raise PizzaFileError(f"{where}: diff_vocab 1 (b has its own tokens C..2C-1) is not a grokinterp layout")
    act = cfg.get("act_fn", "ReLU")
    if act not in _ACT_FNS:
        raise PizzaFileError(f"{where}: activation {act!r} has no grokinterp counterpart (ReLU, GeLU)")
    rate = _get(cfg, "attn_coeff", (int, float), where)
    n_layers = int(cfg.get("n_layers", 1))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        n_heads, d_head, d_model = shapes["blocks.0.attn.W_Q"]
        d_mlp = shapes["blocks.0.mlp.W_in"][0]
    except (KeyError, ValueError):
        raise PizzaFileError(f"{where}: no blocks.0.attn.W_Q (heads, d_head, d_model) or blocks.0.mlp.W_in") from None
    frac = _get(cfg, "frac", (int, float), where)
    n = p * p
    batch = cfg.get("batch_size", n)
    try:
        run_cfg = RunConfig(
            p=p, op="add", layout="a b =" if cfg.get("eqn_sign") else "a b", train_frac=float(frac),
            data_seed=IMPORT_DATA_SEED,
            n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, act_fn=_ACT_FNS[act],
            normalization_type="none", attention_dir="bidirectional", attention_rate=float(rate),
            freeze_biases=False, model_seed=0,
            lr=float(cfg.get("lr", 1e-3)), wd=float(cfg.get("weight_decay", 1e-4)), beta1=0.9, beta2=0.98,
            warmup_steps=10, epochs=int(cfg.get("epoch", 10_000)),
            batch_size=None if batch is None or batch >= n else int(batch),
        )  # fmt: skip
    except ValueError as e:
        raise PizzaFileError(f"{where}: {one_line(e)}") from None
    notes = [
        SPLIT_NOTE,
        "model: Zhong et al.'s Transformer (code/train-main.py) mapped to a HookedTransformer; the biases it lacks "
        "(b_Q, b_K, b_V, b_O, b_U) are 0; no attention mask (bidirectional); attention rate = attn_coeff "
        f"{float(rate):g}",
        "the optimiser settings (AdamW betas 0.9, 0.98, 10-step warm-up) are those of train-main.py; model_seed "
        "is unknown (0 here)",
    ]
    if cfg.get("eqn_sign"):
        notes.append("eqn_sign 1: layout 'a b ='; the logit of their '=' class (index C) is dropped")
    return run_cfg, notes


def tl_state_dict(state: dict[str, Tensor], cfg: RunConfig, where: Path) -> dict[str, Tensor]:
    """The TransformerLens state dict of the authors' ``state`` for ``cfg`` (module docstring),
    float32; every other entry of the built model's state dict (biases they lack, buffers) as
    ``build_model`` makes it (biases 0). ``PizzaFileError`` names a missing or misshapen weight."""
    from grokinterp.backend import state_dict_3x
    from grokinterp.models import build_model

    own = state_dict_3x(build_model(cfg))
    out = {k: torch.zeros_like(v) if k.rsplit(".", 1)[-1].startswith("b_") else v for k, v in own.items()}
    p, heads, d_head, d_model = cfg.p, cfg.n_heads, cfg.d_head, cfg.d_model

    def take(name: str) -> Tensor:
        if name not in state:
            raise PizzaFileError(f"{where}: lacks {name}")
        return state[name].detach().float()

    out["embed.W_E"] = take("embed.W_E").T
    out["pos_embed.W_pos"] = take("pos_embed.W_pos")
    out["unembed.W_U"] = take("unembed.W_U")[:, :p]
    for i in range(cfg.n_layers):
        b = f"blocks.{i}"
        for w in ("W_Q", "W_K", "W_V"):
            out[f"{b}.attn.{w}"] = take(f"{b}.attn.{w}").transpose(1, 2)
        out[f"{b}.attn.W_O"] = take(f"{b}.attn.W_O").T.reshape(heads, d_head, d_model)
        out[f"{b}.mlp.W_in"] = take(f"{b}.mlp.W_in").T
        out[f"{b}.mlp.b_in"] = take(f"{b}.mlp.b_in")
        out[f"{b}.mlp.W_out"] = take(f"{b}.mlp.W_out").T
        out[f"{b}.mlp.b_out"] = take(f"{b}.mlp.b_out")
    for name, tensor in out.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise PizzaFileError(
                f"{where}: {name} maps to shape {tuple(tensor.shape)}, the config needs {tuple(own[name].shape)}"
            )
        if tensor.is_floating_point() and name.rsplit(".", 1)[-1] != "IGNORE" and not torch.isfinite(tensor).all():
            raise PizzaFileError(f"{where}: {name} is not finite")
    return {k: v.contiguous() for k, v in out.items()}


def read_pizza(model_path: str | Path) -> PizzaCheckpoint:
    """Read ``model_<id>.pt`` and the ``config_<id>.json`` beside it (module docstring); every
    problem is one ``PizzaFileError`` line naming the file."""
    model_path = Path(model_path)
    config_path = _config_path(model_path)
    state = _load_state(model_path)
    authors = _load_json(config_path)
    cfg, notes = config_from_pizza(authors, state, config_path)
    extra = sorted(k for k in state if not k.endswith(".mask") and not _known(k, cfg.n_layers))
    if extra:
        raise PizzaFileError(f"{model_path}: unexpected entry {extra[0]!r} for the config in {config_path.name}")
    return PizzaCheckpoint(cfg, tl_state_dict(state, cfg, model_path), authors, state, notes, model_path, config_path)


def _known(name: str, n_layers: int) -> bool:
    if name in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U"):
        return True
    block = re.fullmatch(r"blocks\.(\d+)\.(attn\.W_[QKVO]|mlp\.(W_in|b_in|W_out|b_out))", name)
    return block is not None and int(block[1]) < n_layers
