"""Model construction.

``build_model(cfg)`` returns a TransformerLens transformer (``HookedTransformer`` on TransformerLens
3.x, ``TransformerBridge`` on 4.x, through ``grokinterp.backend``; or, for ``arch="mlp"``, a
``GrokMLP`` built from HookPoints) with the seeds and frozen parameters of the recipe. Both kinds
expose the same interface to the analysis: ``model.cfg`` with ``n_layers``, ``d_model``, ``d_mlp``,
``d_vocab``, ``d_vocab_out``, ``normalization_type``, ``act_fn``; ``model.blocks[i].mlp`` with
``W_in`` and the hook ``blocks.{i}.mlp.hook_post``; ``model.W_E`` and ``model.W_U``.

The forward passes (the trainer's fused last-position forward and the analysis forward) live in
``grokinterp.forward``; ``last_position_logits`` and ``supports_fused`` are re-exported here for
users (code inside the package imports them from ``grokinterp.forward``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from grokinterp import backend
from grokinterp.backend import HookedRootModule, HookPoint
from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError
from grokinterp.forward import AttentionRate, last_position_logits, supports_fused

__all__ = [
    "AttentionRate",
    "GrokMLP",
    "MLPConfig",
    "build_model",
    "hooked_transformer_config",
    "last_position_logits",
    "load_weights",
    "model_from_state_dict",
    "supports_fused",
]


def hooked_transformer_config(cfg: RunConfig, device: str | torch.device = "cpu"):
    """The TransformerLens config of a transformer run (``HookedTransformerConfig`` on 3.x,
    ``TransformerBridgeConfig`` on 4.x): ``grokinterp.backend.transformer_config``."""
    return backend.transformer_config(cfg, device)


@dataclass(frozen=True)
class MLPConfig:
    """The GrokMLP's counterpart of ``HookedTransformerConfig``: the fields the analysis reads."""

    n_layers: int
    d_model: int
    d_mlp: int
    d_vocab: int
    d_vocab_out: int
    act_fn: str = "relu"
    normalization_type: None = None
    arch: str = "mlp"


class GrokMLP(HookedRootModule):
    """The MLP of a published grokking study, with TransformerLens hook points.

    One embedding ``W_E`` (p, d_model) looks up a and b; the two vectors are concatenated
    (2*d_model) and pass through ``n_layers`` Linear+ReLU blocks of width d_mlp, then the unembedding
    ``W_U`` (d_mlp, p). Hooks: ``hook_embed`` (batch, 2, d_model), ``blocks.{i}.mlp.hook_pre`` and
    ``blocks.{i}.mlp.hook_post`` (batch, d_mlp). The forward takes the same ``[a, b, =]`` (or
    ``[a, b]``) tokens as the transformer and returns logits of shape (batch, 1, p), so
    ``logits[:, -1]`` works for both.

    With ``cfg.mlp_embed == "separate"`` it is the MLP of Chughtai et al. 2023 ("A toy model of
    universality"): ``W_E`` embeds a and ``W_E_b`` embeds b, every matrix is drawn as
    ``randn / sqrt(fan-in)`` (theirs: ``randn(n, d) / sqrt(d)`` for the embeddings, ``randn(d_in,
    d_out) / sqrt(d_in)`` for the others), and the biases start at 0 (kept there by
    ``freeze_biases``, as in their bias-free model; trained, their ``OneLayerMLPwithBias``).
    """

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.run_cfg = cfg
        self.cfg = MLPConfig(cfg.n_layers, cfg.d_model, cfg.d_mlp, cfg.p, cfg.p)
        g = torch.Generator().manual_seed(cfg.model_seed)
        separate = cfg.mlp_embed == "separate"
        widths = [2 * cfg.d_model] + [cfg.d_mlp] * cfg.n_layers
        if separate:
            scale = cfg.d_model**-0.5
            self.W_E = nn.Parameter(torch.randn(cfg.p, cfg.d_model, generator=g) * scale)
            self.W_E_b = nn.Parameter(torch.randn(cfg.p, cfg.d_model, generator=g) * scale)
        else:
            self.W_E = nn.Parameter(torch.randn(cfg.p, cfg.d_model, generator=g))
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(
            [_MLPBlock(d_in, d_out, g, gaussian=separate) for d_in, d_out in itertools.pairwise(widths)]
        )
        bound = 1 / widths[-1] ** 0.5
        if separate:
            self.W_U = nn.Parameter(torch.randn(widths[-1], cfg.p, generator=g) * bound)
            self.b_U = nn.Parameter(torch.zeros(cfg.p))
        else:
            self.W_U = nn.Parameter(_uniform((widths[-1], cfg.p), bound, g))
            self.b_U = nn.Parameter(_uniform((cfg.p,), bound, g))
        self.setup()

    @property
    def separate_embeddings(self) -> bool:
        """Whether b has its own embedding ``W_E_b`` (Chughtai et al.'s MLP)."""
        return hasattr(self, "W_E_b")

    def forward(self, tokens: Int[Tensor, "batch ctx"]) -> Float[Tensor, "batch 1 p"]:
        """Logits (batch, 1, p) of ``[a, b, =]`` or ``[a, b]`` token rows (an "=" token is not read).

        With separate embeddings and no hook on ``hook_embed``, the first layer's pre-activation
        is gathered from the tables ``W_E @ W_in[:d]`` and ``W_E_b @ W_in[d:]`` (p, d_mlp): the same
        sum, computed once per token instead of once per row (30x less work for S5's 5,760 train
        rows; only the float32 rounding differs). The other hooks see what they always see."""
        blocks = self.blocks
        if self.separate_embeddings and not self.hook_embed._forward_hooks:
            first = self.blocks[0].mlp
            d = self.cfg.d_model
            pre = (self.W_E @ first.W_in[:d])[tokens[:, 0]] + (self.W_E_b @ first.W_in[d:])[tokens[:, 1]] + first.b_in
            x = first.hook_post(F.relu(first.hook_pre(pre)))
            blocks = self.blocks[1:]
        else:
            if self.separate_embeddings:
                x = torch.stack([self.W_E[tokens[:, 0]], self.W_E_b[tokens[:, 1]]], dim=1)
            else:
                x = self.W_E[tokens[:, :2]]
            x = self.hook_embed(x).flatten(1)  # (batch, 2, d_model) -> (batch, 2 d_model)
        for block in blocks:
            x = block(x)
        return (x @ self.W_U + self.b_U)[:, None, :]


class _MLPBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, g: torch.Generator, gaussian: bool = False) -> None:
        super().__init__()
        self.mlp = _Linear(d_in, d_out, g, gaussian)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class _Linear(nn.Module):
    """Linear + ReLU with nn.Linear's default init (or, ``gaussian``, randn / sqrt(d_in) and a zero
    bias), drawn from an explicit generator."""

    def __init__(self, d_in: int, d_out: int, g: torch.Generator, gaussian: bool = False) -> None:
        super().__init__()
        bound = 1 / d_in**0.5
        if gaussian:
            self.W_in = nn.Parameter(torch.randn(d_in, d_out, generator=g) * bound)
            self.b_in = nn.Parameter(torch.zeros(d_out))
        else:
            self.W_in = nn.Parameter(_uniform((d_in, d_out), bound, g))
            self.b_in = nn.Parameter(_uniform((d_out,), bound, g))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_post(F.relu(self.hook_pre(x @ self.W_in + self.b_in)))


def _uniform(shape: tuple[int, ...], bound: float, g: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


def build_model(cfg: RunConfig, device: str | torch.device = "cpu") -> nn.Module:
    """A freshly initialised model for ``cfg`` (deterministic in ``cfg.model_seed``).

    For transformers the HookedTransformer seeds itself from ``cfg.model_seed`` exactly as the
    TransformerLens Grokking demo does (on TransformerLens 4.x the bridge gets the same weights from
    ``backend.init_state_3x``); with ``freeze_biases`` every ``b_*`` parameter (3.x names) is frozen.
    An ``attention_rate`` below 1 is installed as an ``AttentionRate`` forward hook on every block's
    ``attn.hook_pattern`` (torch's ``register_forward_hook``, so TransformerLens' ``reset_hooks``
    keeps it): ``model(tokens)`` and ``run_with_cache`` then compute Zhong et al.'s
    ``rate * softmax(scores) + (1 - rate)``, and ``hook_pattern`` caches that attention.
    """
    if cfg.arch == "mlp":
        model = GrokMLP(cfg).to(device)
    else:
        model = backend.build_transformer(cfg, device)
        if cfg.attention_rate != 1.0:
            for block in model.blocks:
                block.attn.hook_pattern.register_forward_hook(AttentionRate(cfg.attention_rate))
    if cfg.dtype == "float64":
        # Cast after the float32 initialisation, so both precisions start from the same values.
        # nn.Module.to, not HookedTransformer.to, which prints; cfg.dtype follows for TL's own code.
        nn.Module.to(model, torch.float64)
        if hasattr(model.cfg, "dtype"):
            model.cfg.dtype = torch.float64
    if cfg.freeze_biases:
        for name, param in backend.named_parameters_3x(model):
            if "b_" in name:
                param.requires_grad_(False)
    return model


def model_from_state_dict(
    cfg: RunConfig, state: dict[str, Tensor], device: str | torch.device = "cpu", source: str | Path | None = None
) -> nn.Module:
    """Rebuild a model from its config and weights (the checkpoint format). Weights that do not
    fit the config (an edited config.json, a checkpoint of another run) raise ``RunDirError``."""
    model = build_model(cfg, device)
    load_weights(model, state, source)
    return model


def load_weights(model: nn.Module, state: dict[str, Tensor], source: str | Path | None = None) -> None:
    """``model.load_state_dict(state)`` of the 3.x-format weights ``state`` (``backend.load_state_3x``),
    with one line naming the first mismatch instead of PyTorch's multi-line error (``RunDirError``,
    prefixed with ``source``, the file the weights came from)."""
    own = backend.state_dict_3x(model)
    where = f"{source}: " if source is not None else ""
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise RunDirError(
            f"{where}weights do not fit the config ({what}); the config or checkpoint is from another run"
        )
    for name, tensor in own.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise RunDirError(
                f"{where}weights do not fit the config ({name} has shape {tuple(state[name].shape)}, "
                f"the config needs {tuple(tensor.shape)}); the config or checkpoint is from another run"
            )
    backend.load_state_3x(model, {k: state[k].to(t.device) for k, t in own.items()})
