"""Model construction and the fast last-position forward used by the trainer.

``build_model(cfg)`` returns a TransformerLens ``HookedTransformer`` (or, for ``arch="mlp"``, a
``GrokMLP`` built from HookPoints) with the seeds and frozen parameters of the recipe.

``last_position_logits(model, tokens)`` computes exactly ``model(tokens)[:, -1]`` with far less work:

- the loss only reads the final position, so the last layer computes queries, attention output,
  MLP and unembedding at that position alone;
- the first layer's attention input depends only on (position, token), so its queries, keys and
  values are computed once per step as tables of shape (n_ctx, d_vocab, n_heads, d_head) and
  gathered, instead of being multiplied out for every example.

Tests check that it matches the HookedTransformer forward to float32 tolerance for every preset.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from grokinterp.config import RunConfig


def hooked_transformer_config(cfg: RunConfig, device: str | torch.device = "cpu"):
    """The ``HookedTransformerConfig`` of a transformer run."""
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp,
        d_vocab=cfg.d_vocab,
        d_vocab_out=cfg.p,
        n_ctx=cfg.n_ctx,
        act_fn=cfg.act_fn,
        normalization_type=None if cfg.normalization_type == "none" else cfg.normalization_type,
        seed=cfg.model_seed,
        device=str(device),
    )


class GrokMLP(HookedRootModule):
    """The MLP of a published grokking study, with TransformerLens hook points.

    One embedding ``W_E`` (p, d_model) looks up a and b; the two vectors are concatenated
    (2*d_model) and pass through ``n_layers`` Linear+ReLU blocks of width d_mlp, then the unembedding
    ``W_U`` (d_mlp, p). Hooks: ``hook_embed`` (batch, 2, d_model), ``blocks.{i}.mlp.hook_pre`` and
    ``blocks.{i}.mlp.hook_post`` (batch, d_mlp). The forward takes the same ``[a, b, =]`` tokens as
    the transformer and returns logits of shape (batch, 1, p), so ``logits[:, -1]`` works for both.
    """

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.run_cfg = cfg
        g = torch.Generator().manual_seed(cfg.model_seed)
        self.W_E = nn.Parameter(torch.randn(cfg.p, cfg.d_model, generator=g))
        self.hook_embed = HookPoint()
        widths = [2 * cfg.d_model] + [cfg.d_mlp] * cfg.n_layers
        self.blocks = nn.ModuleList([_MLPBlock(d_in, d_out, g) for d_in, d_out in itertools.pairwise(widths)])
        bound = 1 / widths[-1] ** 0.5
        self.W_U = nn.Parameter(_uniform((widths[-1], cfg.p), bound, g))
        self.b_U = nn.Parameter(_uniform((cfg.p,), bound, g))
        self.setup()

    def forward(self, tokens: Int[Tensor, "batch ctx"]) -> Float[Tensor, "batch 1 p"]:
        x = self.hook_embed(self.W_E[tokens[:, :2]])  # (batch, 2, d_model)
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return (x @ self.W_U + self.b_U)[:, None, :]


class _MLPBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, g: torch.Generator) -> None:
        super().__init__()
        self.mlp = _Linear(d_in, d_out, g)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class _Linear(nn.Module):
    """Linear + ReLU with nn.Linear's default init, drawn from an explicit generator."""

    def __init__(self, d_in: int, d_out: int, g: torch.Generator) -> None:
        super().__init__()
        bound = 1 / d_in**0.5
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
    TransformerLens Grokking demo does; with ``freeze_biases`` every ``b_*`` parameter is frozen.
    """
    if cfg.arch == "mlp":
        model = GrokMLP(cfg).to(device)
    else:
        from transformer_lens import HookedTransformer

        # HookedTransformer seeds the global RNG from cfg.seed; keep the caller's RNG untouched.
        with torch.random.fork_rng(devices=[]):
            model = HookedTransformer(hooked_transformer_config(cfg, device))
    if cfg.freeze_biases:
        for name, param in model.named_parameters():
            if "b_" in name:
                param.requires_grad_(False)
    return model


def model_from_state_dict(cfg: RunConfig, state: dict[str, Tensor], device="cpu") -> nn.Module:
    """Rebuild a model from its config and weights (the checkpoint format)."""
    model = build_model(cfg, device)
    model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True)
    return model


# --------------------------------------------------------------------------------------------
# Fast last-position forward
# --------------------------------------------------------------------------------------------


_SCORE_TABLE_MAX = 8_000_000  # entries of the layer-0 score table (ctx * vocab^2 * heads)


def supports_fused(model: nn.Module) -> bool:
    """Whether ``last_position_logits`` can use the fused path for this model."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return False
    return (
        cfg.positional_embedding_type == "standard"
        and not cfg.parallel_attn_mlp
        and not cfg.attn_only
        and cfg.normalization_type in (None, "LN", "LNPre")
        and cfg.n_key_value_heads is None
        and not getattr(cfg, "use_attn_in", False)
        and not getattr(cfg, "use_split_qkv_input", False)
        and cfg.original_architecture is None
        and cfg.act_fn in ("relu", "gelu", "gelu_new", "silu")
    )


def _norm(x: Tensor, ln: nn.Module, kind: str | None, eps: float) -> Tensor:
    if kind is None:
        return x
    if kind == "LNPre":
        return F.layer_norm(x, x.shape[-1:], eps=eps)
    return F.layer_norm(x, x.shape[-1:], ln.w, ln.b, eps=eps)


def _dropout(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    if p == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    return x * keep / (1 - p)


def _qkv(x: Tensor, attn: nn.Module, which: str) -> Tensor:
    """x (..., d_model) -> (..., n_heads, d_head) for W_Q/W_K/W_V."""
    W = getattr(attn, f"W_{which}")  # (n_heads, d_model, d_head)
    b = getattr(attn, f"b_{which}")  # (n_heads, d_head)
    n_heads, d_model, d_head = W.shape
    out = x @ W.permute(1, 0, 2).reshape(d_model, n_heads * d_head)
    return out.unflatten(-1, (n_heads, d_head)) + b


def _linear(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """x @ W + b as one addmm: the bias is added inside the matmul instead of in a second pass."""
    if x.dim() == 2:
        return torch.addmm(b, x, W)
    return torch.addmm(b, x.flatten(0, -2), W).unflatten(0, x.shape[:-1])


def _attn_out(z: Tensor, attn: nn.Module) -> Tensor:
    """z (..., n_heads, d_head) -> (..., d_model)."""
    W_O = attn.W_O  # (n_heads, d_head, d_model)
    return _linear(z.flatten(-2), W_O.reshape(-1, W_O.shape[-1]), attn.b_O)


def _mlp(x: Tensor, mlp: nn.Module, act) -> Tensor:
    pre = _linear(x, mlp.W_in, mlp.b_in)
    # addmm's backward needs only its inputs, so ReLU may overwrite its output in place.
    post = F.relu_(pre) if act is F.relu else act(pre)
    return _linear(post, mlp.W_out, mlp.b_out)


def last_position_logits(
    model: nn.Module,
    tokens: Int[Tensor, "batch ctx"],
    *,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch d_vocab_out"]:
    """Logits at the final position: equal to ``model(tokens)[:, -1]`` to float32 tolerance.

    ``dropout`` > 0 applies residual dropout (after each attention and MLP output) for training;
    TransformerLens has no dropout, so with ``dropout=0`` this is exactly the model's function.
    """
    if not supports_fused(model):
        return model(tokens)[:, -1]
    from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

    cfg = model.cfg
    act = SUPPORTED_ACTIVATIONS[cfg.act_fn]
    norm = cfg.normalization_type
    eps = cfg.eps
    n_ctx = tokens.shape[1]
    pos = torch.arange(n_ctx, device=tokens.device)
    scale = model.blocks[0].attn.attn_scale

    # Layer 0: its input is a function of (position, token) alone, so tabulate Q, K, V and
    # gather rows. F.embedding's backward is much faster than advanced indexing's index_put.
    embed_table = model.embed.W_E[None] + model.pos_embed.W_pos[:n_ctx, None]  # (ctx, vocab, d)
    d_vocab = embed_table.shape[1]
    n_heads, d_head = cfg.n_heads, cfg.d_head
    flat_idx = pos * d_vocab + tokens  # (batch, ctx) rows of the flattened (ctx*vocab) tables
    block = model.blocks[0]
    x_tab = _norm(embed_table, block.ln1, norm, eps)
    k_tab = _qkv(x_tab, block.attn, "K")  # (ctx, vocab, heads, d_head)
    v = F.embedding(flat_idx, _qkv(x_tab, block.attn, "V").flatten(0, 1).flatten(-2))
    v = v.unflatten(-1, (n_heads, d_head))  # (batch, ctx, heads, d_head)
    last_only = cfg.n_layers == 1
    scores = None
    if last_only:
        q_tab = _qkv(x_tab[-1], block.attn, "Q")  # (vocab, heads, d_head)
        resid = F.embedding(tokens[:, -1], embed_table[-1])  # (batch, d)
        if n_ctx * d_vocab * d_vocab * n_heads <= _SCORE_TABLE_MAX:
            # Scores of the final query against each key depend on (pos, last token, key token):
            # tabulate them too, and gather n_heads numbers per key instead of whole key vectors.
            s_tab = torch.einsum("uhe,tvhe->tuvh", q_tab, k_tab) / scale  # (ctx, vocab, vocab, heads)
            s_idx = (pos * d_vocab + tokens[:, -1:]) * d_vocab + tokens
            scores = F.embedding(s_idx, s_tab.reshape(-1, n_heads)).transpose(1, 2)  # (batch, heads, ctx)
        else:
            q = F.embedding(tokens[:, -1], q_tab.flatten(-2)).unflatten(-1, (n_heads, d_head))
            k = F.embedding(flat_idx, k_tab.flatten(0, 1).flatten(-2)).unflatten(-1, (n_heads, d_head))
    else:
        k = F.embedding(flat_idx, k_tab.flatten(0, 1).flatten(-2)).unflatten(-1, (n_heads, d_head))
        q_tab = _qkv(x_tab, block.attn, "Q").flatten(0, 1).flatten(-2)
        q = F.embedding(flat_idx, q_tab).unflatten(-1, (n_heads, d_head))
        resid = F.embedding(flat_idx, embed_table.flatten(0, 1))  # (batch, ctx, d)

    for layer in range(cfg.n_layers):
        block = model.blocks[layer]
        if layer > 0:
            last_only = layer == cfg.n_layers - 1
            x = _norm(resid, block.ln1, norm, eps)
            k = _qkv(x, block.attn, "K")
            v = _qkv(x, block.attn, "V")
            q = _qkv(x[:, -1] if last_only else x, block.attn, "Q")
            scores = None
            if last_only:
                resid = resid[:, -1]
        if last_only:
            # One query (the final position) attends to every position: no mask needed. With so
            # few positions, multiply-and-sum beats einsum's batched matmul of 1 x ctx matrices.
            if scores is None:
                scores = (q[:, None] * k).sum(-1).transpose(1, 2) / scale  # (batch, heads, ctx)
            z = (scores.softmax(-1).transpose(1, 2)[..., None] * v).sum(1)  # (batch, heads, d_head)
        else:
            scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / scale
            causal = torch.ones(n_ctx, n_ctx, dtype=torch.bool, device=tokens.device).triu(1)
            pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
            z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        resid = resid + _dropout(_attn_out(z, block.attn), dropout, generator)
        mlp_in = _norm(resid, block.ln2, norm, eps)
        resid = resid + _dropout(_mlp(mlp_in, block.mlp, act), dropout, generator)

    resid = _norm(resid, getattr(model, "ln_final", None), norm, eps)
    return _linear(resid, model.unembed.W_U, model.unembed.b_U)
