"""The one place grokinterp meets TransformerLens: 3.x (``HookedTransformer``) or 4.x (``TransformerBridge``).

TransformerLens 4.0 removed ``HookedTransformer``; its ``TransformerBridge.boot_native`` builds the
same transformer, with other parameter names and layouts (``nn.Linear`` weights, ``(out, in)``) and
an unembedding bias kept as a buffer. This module detects the installed major version (``TL_MAJOR``)
and gives the rest of the package one interface, always in the 3.x vocabulary:

- ``build_transformer(cfg)``: a freshly initialised model of a transformer ``RunConfig``. On 3.x the
  ``HookedTransformer`` initialises itself from ``cfg.model_seed``; on 4.x the bridge is filled with
  ``init_state_3x(cfg)``, the same 3.x scheme in pure torch (normal(0, 0.8/sqrt(d_model)) for every
  ``W_*`` in parameter order from one generator seeded with the model seed, zero biases, unit
  LayerNorm weights), so one seed gives bit-identical weights on either version. On 4.x ``b_U`` is
  made a trainable parameter again, as it is in 3.x.
- ``state_dict_3x(model)`` / ``load_state_3x(model, state)``: weights in the on-disk format, the
  3.x keys and shapes (``blocks.0.attn.W_Q`` of shape (n_heads, d_model, d_head), with the
  ``mask``/``IGNORE`` buffers of 3.9), so every checkpoint reads and writes the same both ways.
- ``named_parameters_3x(model)``: the trainable leaves under their 3.x names and in 3.x order
  (freezing biases by ``b_*``, the optimizer's parameter list, sums of squared weights);
  ``to_3x_layout`` / ``from_3x_layout`` turn a tensor shaped like a leaf (an optimizer moment) into
  the 3.x shape and back.
- ``hook_points(model)``: the hook points by name; the 3.x names (``hook_embed``,
  ``blocks.{i}.mlp.hook_post``, ``blocks.{i}.hook_resid_mid``, ...) are there on both versions
  (4.x keeps them as aliases of its own names, which ``normalise_hook_name`` maps back).
- ``is_transformer``, ``attn_scale``, ``activation``, ``HookPoint``, ``HookedRootModule`` and
  ``demo_config_class`` (the class a TL-demo ``.pth`` file pickles its config as).

No other module of the package imports ``transformer_lens`` (a test checks it).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint
from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

if TYPE_CHECKING:
    from grokinterp.config import RunConfig

__all__ = [
    "TL_MAJOR",
    "TL_VERSION",
    "HookPoint",
    "HookedRootModule",
    "activation",
    "attn_scale",
    "build_transformer",
    "demo_config_class",
    "from_3x_layout",
    "functional_state",
    "hook_points",
    "init_state_3x",
    "is_internal_hook",
    "is_transformer",
    "load_state_3x",
    "named_parameters_3x",
    "normalise_hook_name",
    "param_names_3x",
    "parameters_3x",
    "state_dict_3x",
    "to_3x_layout",
    "transformer_config",
]


def _version() -> str:
    try:
        return importlib.metadata.version("transformer-lens")
    except importlib.metadata.PackageNotFoundError:  # a source checkout on sys.path
        try:
            from transformer_lens import HookedTransformer  # noqa: F401
        except ImportError:
            return "4"
        return "3"


#: The installed TransformerLens version and its major number (3 or 4).
TL_VERSION: str = _version()
TL_MAJOR: int = int(TL_VERSION.split(".")[0])

# The model class, imported with the package on both versions (4.x would import the bridge, and
# transformers with it, lazily on the first model: seconds into a run instead of at import).
if TL_MAJOR < 4:
    from transformer_lens import HookedTransformer as _Model
else:
    from transformer_lens import TransformerBridge as _Model

_BUFFERS = ("mask", "IGNORE")  # the 3.x attention buffers checkpoints carry (constants)


# ------------------------------------------------------------------------------ construction
def transformer_config(cfg: RunConfig, device: str | torch.device = "cpu") -> Any:
    """The TransformerLens config of a transformer run: a ``HookedTransformerConfig`` on 3.x, a
    ``TransformerBridgeConfig`` on 4.x (the same fields; 4.x's weights come from ``init_state_3x``)."""
    fields = dict(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp,
        d_vocab=cfg.d_vocab,
        d_vocab_out=cfg.p,
        n_ctx=cfg.n_ctx,
        act_fn=cfg.act_fn,
        attention_dir=cfg.attention_dir,
        normalization_type=None if cfg.normalization_type == "none" else cfg.normalization_type,
        device=str(device),
    )
    if TL_MAJOR < 4:
        from transformer_lens import HookedTransformerConfig

        return HookedTransformerConfig(**fields, seed=cfg.model_seed)
    from transformer_lens import TransformerBridgeConfig

    return TransformerBridgeConfig(**fields, init_weights=False)


def build_transformer(cfg: RunConfig, device: str | torch.device = "cpu") -> nn.Module:
    """A freshly initialised transformer for ``cfg``, the same weights on 3.x and 4.x for one
    ``cfg.model_seed``; the caller's RNG state is left untouched."""
    # HookedTransformer seeds the global RNG from cfg.seed; keep the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        if TL_MAJOR < 4:
            return _Model(transformer_config(cfg, device))
        model = _Model.boot_native(transformer_config(cfg, "cpu"))
    unembed = model.unembed._original_component
    if "bias" in unembed._buffers:  # 4.x keeps b_U as a buffer; 3.x trains it
        bias = unembed._buffers.pop("bias")
        unembed.bias = nn.Parameter(bias.detach().clone())
    load_state_3x(model, init_state_3x(cfg))
    if str(device) != "cpu":
        nn.Module.to(model, device)
    return model


def param_names_3x(n_layers: int, normalization_type: str | None) -> list[str]:
    """The 3.x ``HookedTransformer``'s parameter names, in its ``named_parameters`` order."""
    ln = normalization_type == "LN"
    names = ["embed.W_E", "pos_embed.W_pos"]
    for i in range(n_layers):
        b = f"blocks.{i}"
        if ln:
            names += [f"{b}.ln1.w", f"{b}.ln1.b", f"{b}.ln2.w", f"{b}.ln2.b"]
        names += [f"{b}.attn.{n}" for n in ("W_Q", "W_O", "b_Q", "b_O", "W_K", "W_V", "b_K", "b_V")]
        names += [f"{b}.mlp.{n}" for n in ("W_in", "b_in", "W_out", "b_out")]
    if ln:
        names += ["ln_final.w", "ln_final.b"]
    return [*names, "unembed.W_U", "unembed.b_U"]


def _shapes_3x(cfg: Any) -> dict[str, tuple[int, ...]]:
    h, d, e, m = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
    last = {
        "W_E": (cfg.d_vocab, d), "W_pos": (cfg.n_ctx, d), "w": (d,), "b": (d,),
        "W_Q": (h, d, e), "W_K": (h, d, e), "W_V": (h, d, e), "W_O": (h, e, d),
        "b_Q": (h, e), "b_K": (h, e), "b_V": (h, e), "b_O": (d,),
        "W_in": (d, m), "b_in": (m,), "W_out": (m, d), "b_out": (d,), "W_U": (d, cfg.d_vocab_out), "b_U": (cfg.d_vocab_out,),
    }  # fmt: skip
    names = param_names_3x(cfg.n_layers, cfg.normalization_type)
    return {n: last[n.rsplit(".", 1)[1]] for n in names}


def init_state_3x(cfg: RunConfig) -> dict[str, Tensor]:
    """The 3.x ``HookedTransformer``'s initial weights for ``cfg`` in pure torch (float32, CPU):
    its "gpt2" scheme, every ``W_*`` drawn in parameter order from normal(0, 0.8/sqrt(d_model)) by
    one generator seeded with ``cfg.model_seed``; biases 0, LayerNorm weights 1."""
    tl_cfg = _Shape(cfg)
    std = float(0.8 / np.sqrt(cfg.d_model))
    g = torch.Generator().manual_seed(cfg.model_seed)
    out = {}
    for name, shape in _shapes_3x(tl_cfg).items():
        last = name.rsplit(".", 1)[1]
        if last.startswith("W_"):
            out[name] = torch.empty(shape).normal_(0.0, std, generator=g)
        else:
            out[name] = torch.ones(shape) if last == "w" else torch.zeros(shape)
    return out


class _Shape:
    """The shape fields of a RunConfig under the TransformerLens names."""

    def __init__(self, cfg: RunConfig) -> None:
        self.n_layers, self.d_model, self.d_head, self.n_heads = cfg.n_layers, cfg.d_model, cfg.d_head, cfg.n_heads
        self.d_mlp, self.d_vocab, self.d_vocab_out, self.n_ctx = cfg.d_mlp, cfg.d_vocab, cfg.p, cfg.n_ctx
        self.normalization_type = None if cfg.normalization_type == "none" else cfg.normalization_type


# ------------------------------------------------------------------------------ 3.x names on 4.x
def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` is a TransformerLens transformer (``HookedTransformer`` / ``TransformerBridge``)."""
    return isinstance(model, _Model)


def _is_bridge(model: nn.Module) -> bool:
    return TL_MAJOR >= 4 and is_transformer(model)


_BRIDGE_SUFFIX = {
    "W_E": "weight", "W_pos": "weight", "w": "weight", "b": "bias",
    "W_Q": "q.weight", "W_K": "k.weight", "W_V": "v.weight", "W_O": "o.weight",
    "b_Q": "q.bias", "b_K": "k.bias", "b_V": "v.bias", "b_O": "o.bias",
    "W_in": "in.weight", "b_in": "in.bias", "W_out": "out.weight", "b_out": "out.bias", "W_U": "weight", "b_U": "bias",
}  # fmt: skip


def _bridge_key(name: str) -> str:
    """``blocks.0.attn.W_Q`` -> ``blocks.0.attn.q.weight`` (the 4.x bridge's state_dict key)."""
    head, last = name.rsplit(".", 1)
    return f"{head}.{_BRIDGE_SUFFIX[last]}"


def to_3x_layout(model: nn.Module, name: str, t: Tensor) -> Tensor:
    """A tensor shaped like the parameter ``name`` (3.x name) of ``model`` in the 3.x shape;
    unchanged on 3.x, for a GrokMLP and for scalars. Differentiable (a view, then a copy)."""
    if t.dim() == 0 or not _is_bridge(model):
        return t
    last = name.rsplit(".", 1)[1]
    h, e = model.cfg.n_heads, model.cfg.d_head
    if last in ("W_Q", "W_K", "W_V"):  # (h*e, d) -> (h, d, e)
        t = t.reshape(h, e, -1).transpose(1, 2)
    elif last == "W_O":  # (d, h*e) -> (h, e, d)
        t = t.T.reshape(h, e, -1)
    elif last in ("b_Q", "b_K", "b_V"):
        t = t.reshape(h, e)
    elif last in ("W_in", "W_out", "W_U"):
        t = t.T
    return t.contiguous()


def from_3x_layout(model: nn.Module, name: str, t: Tensor) -> Tensor:
    """The inverse of ``to_3x_layout``: a 3.x-shaped tensor in the shape of ``model``'s leaf."""
    if t.dim() == 0 or not _is_bridge(model):
        return t
    last = name.rsplit(".", 1)[1]
    if last in ("W_Q", "W_K", "W_V"):  # (h, d, e) -> (h*e, d)
        t = t.transpose(1, 2).reshape(-1, t.shape[1])
    elif last == "W_O":  # (h, e, d) -> (d, h*e)
        t = t.reshape(-1, t.shape[-1]).T
    elif last in ("b_Q", "b_K", "b_V"):
        t = t.reshape(-1)
    elif last in ("W_in", "W_out", "W_U"):
        t = t.T
    return t.contiguous()


def _leaves(model: nn.Module) -> dict[str, Tensor]:
    """The bridge's parameters and buffers by state_dict key (the tensors themselves)."""
    return model.state_dict(keep_vars=True)


def named_parameters_3x(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(3.x name, parameter)`` for every parameter, in the 3.x order: ``model.named_parameters()``
    on 3.x and for a GrokMLP; on 4.x the bridge's leaf parameters (in its own layout) by 3.x name."""
    if not _is_bridge(model):
        return list(model.named_parameters())
    leaves = _leaves(model)
    return [(n, leaves[_bridge_key(n)]) for n in param_names_3x(model.cfg.n_layers, model.cfg.normalization_type)]


def parameters_3x(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter by 3.x name in the 3.x shape (the parameters themselves on 3.x; on 4.x
    differentiable copies in the 3.x layout)."""
    return {n: to_3x_layout(model, n, p) for n, p in named_parameters_3x(model)}


def state_dict_3x(model: nn.Module) -> dict[str, Tensor]:
    """The weights in the checkpoint format (3.x keys and shapes): ``model.state_dict()`` on 3.x and
    for a GrokMLP; on 4.x the same keys, shapes and ``mask``/``IGNORE`` buffers as 3.9 writes."""
    if not _is_bridge(model):
        return model.state_dict()
    out = {}
    dtype = model.W_E.dtype
    for name, param in named_parameters_3x(model):
        out[name] = to_3x_layout(model, name, param.detach())
        if name.endswith(".attn.b_V"):  # 3.x: the attention's buffers follow its parameters
            block = name[: -len(".b_V")]
            out[f"{block}.mask"] = torch.empty((0, 0), dtype=torch.bool, device=param.device)
            out[f"{block}.IGNORE"] = torch.tensor(-torch.inf, dtype=dtype, device=param.device)
    return out


def load_state_3x(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Load 3.x-format weights (``state_dict_3x``'s keys; ``mask``/``IGNORE`` buffers are
    constants and may be left out) with strict key checking."""
    if not _is_bridge(model):
        own = {k: v for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in _BUFFERS}
        model.load_state_dict(own | dict(state), strict=True)
        return
    params = dict(named_parameters_3x(model))
    extra = [k for k in state if k not in params and k.rsplit(".", 1)[-1] not in _BUFFERS]
    missing = [k for k in params if k not in state]
    if extra or missing:
        raise RuntimeError(f"state does not fit the model (missing {missing[:3]}, unexpected {extra[:3]})")
    with torch.no_grad():
        for name, leaf in params.items():
            leaf.copy_(from_3x_layout(model, name, state[name]))


# ------------------------------------------------------------------------------ hooks and the rest
_HOOK_ALIASES_4X = {
    r"embed\.hook_out": "hook_embed",
    r"pos_embed\.hook_out": "hook_pos_embed",
    r"unembed\.hook_out": "hook_unembed",
    r"blocks\.(\d+)\.hook_in": r"blocks.\1.hook_resid_pre",
    r"blocks\.(\d+)\.hook_out": r"blocks.\1.hook_resid_post",
    r"blocks\.(\d+)\.mlp\.in\.hook_out": r"blocks.\1.mlp.hook_pre",
    r"blocks\.(\d+)\.mlp\.out\.hook_in": r"blocks.\1.mlp.hook_post",
    r"blocks\.(\d+)\.mlp\.hook_out": r"blocks.\1.hook_mlp_out",
    r"blocks\.(\d+)\.ln2\.hook_in": r"blocks.\1.hook_resid_mid",
    r"blocks\.(\d+)\.attn\.hook_(attn_in|q_input|k_input|v_input)": r"blocks.\1.hook_\2",
    r"blocks\.(\d+)\.attn\.hook_out": r"blocks.\1.hook_attn_out",
    r"blocks\.(\d+)\.attn\.q\.hook_out": r"blocks.\1.attn.hook_q",
    r"blocks\.(\d+)\.attn\.k\.hook_out": r"blocks.\1.attn.hook_k",
    r"blocks\.(\d+)\.attn\.v\.hook_out": r"blocks.\1.attn.hook_v",
    r"blocks\.(\d+)\.attn\.o\.hook_in": r"blocks.\1.attn.hook_z",
}


def normalise_hook_name(name: str) -> str:
    """The 3.x name of a hook point given by its 3.x or 4.x name (what ``hook.name`` reports
    inside a 4.x hook, e.g. ``blocks.0.mlp.out.hook_in`` -> ``blocks.0.mlp.hook_post``)."""
    for pattern, repl in _HOOK_ALIASES_4X.items():
        if re.fullmatch(pattern, name):
            return re.sub(pattern, repl, name)
    return name


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """The model's hook points by name, the 3.x names included on 4.x (``model.hook_dict``)."""
    return dict(model.hook_dict)


def is_internal_hook(fn: object) -> bool:
    """Whether a torch hook belongs to TransformerLens itself rather than to a caller: 4.x's bridge
    wires permanent capture hooks into its blocks on the first forward (``BlockBridge``). Hooks a
    caller adds through TransformerLens (``add_hook``, ``hooks()``) are not internal."""
    fn = getattr(fn, "func", fn)  # functools.partial
    return getattr(fn, "__module__", "").startswith("transformer_lens.model_bridge")


def functional_state(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer under the names ``torch.func.functional_call`` resolves on this
    model: ``named_parameters() | named_buffers()``; on 4.x both from the wrapped native model
    (the bridge reports its parameters by those names but its buffers by its own, and a buffer
    swapped under the bridge's name escapes a vmapped call)."""
    source = model.original_model if _is_bridge(model) else model
    return dict(source.named_parameters()) | dict(source.named_buffers())


@torch.compiler.assume_constant_result
def attn_scale(model: nn.Module, layer: int) -> float:
    """What the attention scores of block ``layer`` are divided by: 3.x's ``attn.attn_scale``
    (sqrt(d_head); on 4.x computed by the same rule), as a Python float.

    3.x stores it as a numpy float64, which ``torch.compile`` lifts into a 0-dim float64 tensor
    on the CPU, a graph input even when the model is on CUDA (a host-to-device copy that splits
    the CUDA graph). Marked ``assume_constant_result``, the scale is a constant of the graph; the
    arithmetic is the same (numpy's float64 is a Python float)."""
    attn = model.blocks[layer].attn
    if hasattr(attn, "attn_scale") and getattr(attn, "attn_scale", None) is not None:
        return float(attn.attn_scale)
    cfg = model.cfg
    scale = (cfg.attn_scale if cfg.attn_scale != -1.0 else np.sqrt(cfg.d_head)) if cfg.use_attn_scale else 1.0
    if cfg.scale_attn_by_inverse_layer_idx:
        scale *= layer + 1
    return float(scale)


def activation(act_fn: str) -> Callable[[Tensor], Tensor]:
    """TransformerLens' MLP activation function of that name."""
    return SUPPORTED_ACTIVATIONS[act_fn]


def demo_config_class() -> type:
    """The class a TransformerLens Grokking-demo ``.pth`` file pickles its config as: 3.x's
    ``HookedTransformerConfig``; on 4.x, which removed it, a stand-in that keeps the fields."""
    if TL_MAJOR < 4:
        from transformer_lens import HookedTransformerConfig

        return HookedTransformerConfig
    return HookedTransformerConfig4


class HookedTransformerConfig4:
    """Stand-in for 3.x's ``HookedTransformerConfig`` when unpickling a demo file on 4.x: an
    attribute bag of the pickled fields (grokinterp only reads them)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Keep the pickled fields as attributes."""
        self.__dict__.update(state)
