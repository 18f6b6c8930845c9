"""The one home of the model forward passes: the trainer's fused last-position forward and the
analysis forward that also returns the intermediates the measures need.

``last_position_logits(model, tokens)`` computes exactly ``model(tokens)[:, -1]`` with far less work:

- the loss only reads the final position, so the last layer computes queries, attention output,
  MLP and unembedding at that position alone;
- the first layer's attention input depends only on (position, token), so its queries, keys and
  values are computed once per step as tables of shape (n_ctx, d_vocab, n_heads, d_head) and
  gathered, instead of being multiplied out for every example;
- evaluated without gradients, a 1-layer model without LayerNorm goes further: the MLP's input at
  the final position is linear in the attention pattern, so it is a pattern-weighted sum of rows
  of a (position, token, head) table already multiplied by W_O and W_in (``tables.tabulated_mlp_in``).

Zhong et al.'s attention rate (``AttentionRate``: attention = rate * softmax + (1 - rate)) is a
permanent forward hook on each block's ``attn.hook_pattern``; the fused path applies the same
formula itself, and bidirectional attention (no causal mask) on every layer.

``stacked_last_position_logits(model, params, tokens)`` runs the same fused forward on weights
stacked along a leading model axis (an ensemble's M members): the helpers dispatch on the weights'
rank (``addmm`` for one model, ``baddbmm`` for M; one gather from the members' tables
with offset indices), so a single model's ops stay exactly what they were.

Every fused path (``last_position_logits``, ``final_position_cache``, ``all_logits``,
``evaluate``) falls back to the hooked forward when the caller attached hooks (``has_hooks``,
which ignores the ``AttentionRate`` hooks), so a hook always changes what is measured.

``final_position_cache(model, tokens)`` runs the same fused forward (or ``run_with_cache`` where
the fused path does not apply: the hooked ``GrokMLP``, a model with hooks attached, or
``fast=False``) and returns a ``FinalCache``: the logits, the post-activation neurons of every MLP
layer at the final position, and the last layer's ``resid_mid`` / ``resid_post``.

``all_logits(model, dataset)`` is the plain forward over every row of a dataset (chunked
``last_position_logits`` on the p answer classes); ``evaluate`` / ``split_metrics`` are the one
evaluator of the trainer, the ensemble and the measures.

``grokinterp.models`` re-exports ``last_position_logits`` and ``supports_fused`` for users; code
inside the package imports them from here. Tests check both paths against the HookedTransformer
forward to float32 tolerance for every preset.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from grokinterp import backend
from grokinterp.losses import log_probs
from grokinterp.tables import gather, member_view, tabulated_mlp_in

if TYPE_CHECKING:
    from grokinterp.tasks import Dataset

__all__ = [
    "TABULATED_DEVICES",
    "AttentionRate",
    "FinalCache",
    "all_logits",
    "apply_norm",
    "attention_rate",
    "evaluate",
    "even_chunks",
    "final_position_cache",
    "has_hooks",
    "last_position_logits",
    "mlp_hook_names",
    "split_metrics",
    "stacked_last_position_logits",
    "supports_fused",
]

#: Off inside ``torch.func.vmap`` (``stacked_last_position_logits``): see ``_fused_forward``.
_TABULATE: contextvars.ContextVar[bool] = contextvars.ContextVar("grokinterp_tabulate", default=True)
#: Devices whose ``embedding_bag`` (sum with per-sample weights) the tabulated evaluation relies on;
#: elsewhere (MPS before torch 2.10 has no ``embedding_bag``) evaluation keeps the per-row matmuls.
TABULATED_DEVICES = ("cpu", "cuda")
_SCORE_TABLE_MAX = 8_000_000  # entries of the layer-0 score table (ctx * vocab^2 * heads)


class AttentionRate:
    """Zhong et al. 2023's attention rate as a forward hook of a ``HookPoint`` (``attn.hook_pattern``):
    the pattern becomes ``pattern * rate + (1 - rate)``, their train-main.py's
    ``normalized * attn_coeff + (1 - attn_coeff)``. Rate 1 is ordinary attention, 0 constant
    attention (every position weighted 1).

    ``grokinterp.models.build_model`` registers it with torch's ``register_forward_hook`` (not
    TransformerLens' ``add_hook``), so ``reset_hooks`` keeps it: it is part of the model.
    """

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"attention rate must be in [0, 1] (got {rate})")
        self.rate = float(rate)

    def apply(self, pattern: Tensor) -> Tensor:
        """``pattern * rate + (1 - rate)``."""
        return pattern * self.rate + (1 - self.rate)

    def __call__(self, module: nn.Module, inputs: object, output: Tensor) -> Tensor:
        """The forward hook: the transformed pattern replaces the HookPoint's output."""
        return self.apply(output)

    def __repr__(self) -> str:
        return f"AttentionRate({self.rate})"


def attention_rate(attn: nn.Module) -> AttentionRate | None:
    """The ``AttentionRate`` hook of an attention module's ``hook_pattern`` (None without one)."""
    hook_point = getattr(attn, "hook_pattern", None)
    hooks = getattr(hook_point, "_forward_hooks", {})
    return next((h for h in hooks.values() if isinstance(h, AttentionRate)), None)


def supports_fused(model: nn.Module) -> bool:
    """Whether ``last_position_logits`` can use the fused path for this model (a TransformerLens
    transformer of a supported architecture, 3.x or 4.x; never the GrokMLP)."""
    if not backend.is_transformer(model):
        return False
    cfg = model.cfg
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
    if ln.w.dim() == 1:
        return F.layer_norm(x, x.shape[-1:], ln.w, ln.b, eps=eps)
    # Stacked members: F.layer_norm takes one (d,) affine, so each member's is applied after.
    normed = F.layer_norm(x, x.shape[-1:], eps=eps)
    return torch.addcmul(member_view(ln.b, x.dim()), normed, member_view(ln.w, x.dim()))


def apply_norm(
    x: Float[Tensor, "... d_model"], ln: nn.Module | None, kind: str | None, eps: float
) -> Float[Tensor, "... d_model"]:
    """The model's layer norm of ``x`` (``kind``: None, "LN" or "LNPre"), as in its forward."""
    return _norm(x, ln, kind, eps)


def _dropout(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    if p == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    return x * keep / (1 - p)


def _qkv(x: Tensor, attn: nn.Module, which: str) -> Tensor:
    """x ([M,] ..., d_model) -> ([M,] ..., n_heads, d_head) for W_Q/W_K/W_V."""
    W = getattr(attn, f"W_{which}")  # ([M,] n_heads, d_model, d_head)
    b = getattr(attn, f"b_{which}")  # ([M,] n_heads, d_head)
    n_heads, d_model, d_head = W.shape[-3:]
    if W.dim() == 4:  # stacked members: one batched matmul per member, the bias inside it
        W = W.transpose(1, 2).reshape(-1, d_model, n_heads * d_head)
        return _linear(x, W, b.flatten(-2)).unflatten(-1, (n_heads, d_head))
    # contiguous: on TransformerLens 4.x W is a transposed view of an nn.Linear weight; the same
    # contiguous operand as 3.x's copy gives the same bits.
    out = x @ W.permute(1, 0, 2).reshape(d_model, n_heads * d_head).contiguous()
    return out.unflatten(-1, (n_heads, d_head)) + b


def _linear(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """x @ W + b as one addmm: the bias is added inside the matmul instead of in a second pass.
    ``W`` is made contiguous (a no-op for 3.x's parameters; 4.x's are transposed views).
    Stacked members (W (M, d, d'), b (M, d'), x (M, ..., d)): one baddbmm, member by member."""
    W = W.contiguous()
    if W.dim() == 3:
        out = torch.baddbmm(b.unsqueeze(-2), x.reshape(x.shape[0], -1, x.shape[-1]), W)
        # Not a view where none is needed: ReLU in place on a view would make autograd copy the
        # whole gradient through CopySlices.
        return out if x.dim() == 3 else out.view(*x.shape[:-1], W.shape[-1])
    if x.dim() == 2:
        return torch.addmm(b, x, W)
    return torch.addmm(b, x.flatten(0, -2), W).unflatten(0, x.shape[:-1])


def _attn_out(z: Tensor, attn: nn.Module) -> Tensor:
    """z ([M,] ..., n_heads, d_head) -> ([M,] ..., d_model)."""
    W_O = attn.W_O  # ([M,] n_heads, d_head, d_model)
    return _linear(z.flatten(-2), W_O.reshape(*W_O.shape[:-3], -1, W_O.shape[-1]), attn.b_O)


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
    A model with hooks attached (``has_hooks``) runs the hooked forward, ``model(tokens)[:, -1]``
    (no dropout there).
    """
    if not supports_fused(model) or has_hooks(model):
        return model(tokens)[:, -1]
    return _fused_forward(model, tokens, dropout, generator, None)


class _LastPosition(nn.Module):
    """``last_position_logits`` as a module, so ``torch.func.functional_call`` can swap its weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> Tensor:
        return last_position_logits(self.model, tokens)


def stacked_last_position_logits(
    model: nn.Module, params: Mapping[str, Tensor], tokens: Int[Tensor, "M batch ctx"]
) -> Float[Tensor, "M batch d_vocab_out"]:
    """Every member's ``last_position_logits`` at once: member ``j`` has the weights ``params[name][j]``
    (stacked (M, ...) tensors under the names of ``backend.functional_state``: every parameter
    and buffer) and the tokens ``tokens[j]``; ``model`` gives the shape, the configuration and
    the attention-rate hooks.

    Where the fused forward applies (``supports_fused``, no hooks attached) it runs once on the
    stacked weights in batched kernels (``baddbmm`` per member, gathers from the members' tables
    as one gather); the GrokMLP, a model with hooks, and TransformerLens 4.x's bridge
    (whose weight properties reshape 2-D ``nn.Linear`` weights) run ``torch.func.vmap`` of the
    single-model forward instead. Both equal the members' separate forwards to rounding.
    """
    wrapper = _LastPosition(model)
    named = {f"model.{k}": v for k, v in params.items()}
    if supports_fused(model) and not has_hooks(model) and backend.TL_MAJOR < 4:
        return torch.func.functional_call(wrapper, named, (tokens,))

    def one(p: dict[str, Tensor], t: Tensor) -> Tensor:
        return torch.func.functional_call(wrapper, p, (t,))

    # Not the tabulated evaluation under vmap: embedding_bag has no batching rule there.
    reset = _TABULATE.set(False)
    try:
        return torch.func.vmap(one)(named, tokens)
    finally:
        _TABULATE.reset(reset)


def _fused_forward(
    model: nn.Module,
    tokens: Tensor,
    dropout: float,
    generator: torch.Generator | None,
    record: dict[str, list[Tensor]] | None,
) -> Tensor:
    """The fused forward; with ``record`` (a dict) it also stores ``posts`` (every MLP layer's
    final-position post-activations), ``patterns`` (every layer's attention from the final
    position, (batch, heads, ctx)), ``resid_mid`` and ``resid_post`` (last layer, final
    position). The ops with and without ``record`` are the same (bitwise results); under
    ``torch.no_grad`` a large batch of a 1-layer model without LayerNorm takes the tabulated MLP
    input, equal to the train step's per-row matmuls up to float32 rounding.

    The weights may carry a leading model axis (``stacked_last_position_logits``: every weight
    (M, ...), ``tokens`` (M, batch, ctx)); the helpers then use batched kernels, and a single
    model's ops are unchanged."""
    cfg = model.cfg
    act = backend.activation(cfg.act_fn)
    norm = cfg.normalization_type
    eps = cfg.eps
    n_ctx = tokens.shape[-1]
    pos = torch.arange(n_ctx, device=tokens.device)
    scale = backend.attn_scale(model, 0)
    causal_mask = cfg.attention_dir == "causal"
    rates = [attention_rate(b.attn) for b in model.blocks]

    # Layer 0: its input is a function of (position, token) alone, so tabulate Q, K, V and
    # gather rows (``tables.gather``).
    W_pos = model.pos_embed.W_pos[..., :n_ctx, :]
    embed_table = model.embed.W_E.unsqueeze(-3) + W_pos.unsqueeze(-2)  # ([M,] ctx, vocab, d)
    d_vocab = embed_table.shape[-2]
    n_heads, d_head = cfg.n_heads, cfg.d_head
    flat_idx = pos * d_vocab + tokens  # (batch, ctx) rows of the flattened (ctx*vocab) tables
    block = model.blocks[0]
    x_tab = _norm(embed_table, block.ln1, norm, eps)
    k_tab = _qkv(x_tab, block.attn, "K")  # (ctx, vocab, heads, d_head)
    v_tab = _qkv(x_tab, block.attn, "V")  # ([M,] ctx, vocab, heads, d_head)
    last_only = cfg.n_layers == 1
    # Evaluation (no gradient) of a 1-layer model without LayerNorm on more rows than its tables
    # have: the MLP's input is linear in the pattern (``tables.tabulated_mlp_in``), so no per-row
    # V, W_O or W_in matmul is needed. A single model's no-grad callers (the trainer's evaluation,
    # ``evaluate``, ``all_logits``, ``final_position_cache``) all take this path, so their numbers
    # agree bit for bit; stacked members (an ensemble's evaluation) take it too.
    tabulated = (
        not torch.is_grad_enabled()
        and _TABULATE.get()
        and tokens.device.type in TABULATED_DEVICES
        and last_only
        and norm is None
        and dropout == 0.0
        and tokens.shape[-2] > n_ctx * d_vocab * n_heads + d_vocab
    )
    if not tabulated:
        v = gather(flat_idx, v_tab.flatten(-4, -3).flatten(-2))
        v = v.unflatten(-1, (n_heads, d_head))  # ([M,] batch, ctx, heads, d_head)
    scores = None
    if last_only:
        q_tab = _qkv(x_tab[..., -1, :, :], block.attn, "Q")  # ([M,] vocab, heads, d_head)
        if not tabulated:
            resid = gather(tokens[..., -1], embed_table[..., -1, :, :])  # ([M,] batch, d)
        if n_ctx * d_vocab * d_vocab * n_heads <= _SCORE_TABLE_MAX:
            # Scores of the final query against each key depend on (pos, last token, key token):
            # tabulate them too, and gather n_heads numbers per key instead of whole key vectors.
            s_tab = torch.einsum("...uhe,...tvhe->...tuvh", q_tab, k_tab) / scale  # ([M,] ctx, vocab, vocab, heads)
            s_idx = (pos * d_vocab + tokens[..., -1:]) * d_vocab + tokens
            scores = gather(s_idx, s_tab.flatten(-4, -2))  # ([M,] batch, ctx, heads)
        else:
            q = gather(tokens[..., -1], q_tab.flatten(-2)).unflatten(-1, (n_heads, d_head))
            k = gather(flat_idx, k_tab.flatten(-4, -3).flatten(-2)).unflatten(-1, (n_heads, d_head))
    else:
        k = gather(flat_idx, k_tab.flatten(-4, -3).flatten(-2)).unflatten(-1, (n_heads, d_head))
        q_tab = _qkv(x_tab, block.attn, "Q").flatten(-4, -3).flatten(-2)
        q = gather(flat_idx, q_tab).unflatten(-1, (n_heads, d_head))
        resid = gather(flat_idx, embed_table.flatten(-3, -2))  # ([M,] batch, ctx, d)

    for layer in range(cfg.n_layers):
        block = model.blocks[layer]
        if layer > 0:
            last_only = layer == cfg.n_layers - 1
            x = _norm(resid, block.ln1, norm, eps)
            k = _qkv(x, block.attn, "K")
            v = _qkv(x, block.attn, "V")
            q = _qkv(x[..., -1, :] if last_only else x, block.attn, "Q")
            scores = None
            if last_only:
                resid = resid[..., -1, :]
        if last_only:
            # One query (the final position) attends to every position: no mask needed. With so
            # few positions, multiply-and-sum beats einsum's batched matmul of 1 x ctx matrices.
            # Scores stay (batch, ctx, heads), as gathered: softmax over the ctx axis there is about
            # 3x faster, forward and backward, than over a last axis of 3 positions.
            if scores is None:
                scores = (q.unsqueeze(-3) * k).sum(-1) / scale  # ([M,] batch, ctx, heads)
            pattern = scores.softmax(-2)
            if rates[layer] is not None:
                pattern = rates[layer].apply(pattern)
            if record is not None:
                record["patterns"].append(pattern.transpose(-2, -1))  # (batch, heads, ctx)
            if not tabulated:
                z = (pattern[..., None] * v).sum(-3)  # ([M,] batch, heads, d_head)
        else:
            scores = torch.einsum("...qhe,...khe->...hqk", q, k) / scale
            if causal_mask:
                causal = torch.ones(n_ctx, n_ctx, dtype=torch.bool, device=tokens.device).triu(1)
                scores = scores.masked_fill(causal, float("-inf"))
            pattern = scores.softmax(-1)
            if rates[layer] is not None:
                pattern = rates[layer].apply(pattern)
            if record is not None:
                record["patterns"].append(pattern[..., -1, :])
            z = torch.einsum("...hqk,...khe->...qhe", pattern, v)
        if tabulated:  # resid_mid and the MLP's input from the tables (dropout is 0 here)
            embed_last = embed_table[..., -1, :, :]
            pre, resid = tabulated_mlp_in(tokens, pattern, v_tab, embed_last, block.attn, block.mlp)
        else:
            resid = resid + _dropout(_attn_out(z, block.attn), dropout, generator)
            pre = _linear(_norm(resid, block.ln2, norm, eps), block.mlp.W_in, block.mlp.b_in)
        # addmm's backward needs only its inputs, so ReLU may overwrite its output in place.
        post = F.relu_(pre) if act is F.relu else act(pre)
        if record is not None:
            record["posts"].append(post if post.dim() == 2 else post[:, -1])
            record["resid_mid"] = [resid if resid.dim() == 2 else resid[:, -1]]
        resid = resid + _dropout(_linear(post, block.mlp.W_out, block.mlp.b_out), dropout, generator)
        if record is not None:
            record["resid_post"] = [resid if resid.dim() == 2 else resid[:, -1]]

    resid = _norm(resid, getattr(model, "ln_final", None), norm, eps)
    return _linear(resid, model.unembed.W_U, model.unembed.b_U)


# --------------------------------------------------------------------------------------------
# Forward with the intermediates the analysis needs
# --------------------------------------------------------------------------------------------

_CHUNK = 16_384


@dataclass(frozen=True)
class FinalCache:
    """What the measures need from one forward pass, at the final position only.

    ``logits`` (n, d_vocab_out); ``posts`` one (n, d_mlp) tensor per MLP layer
    (``blocks.{i}.mlp.hook_post``; for the GrokMLP each hidden layer); ``resid_mid`` /
    ``resid_post`` (n, d_model) the last block's residual stream (None for the GrokMLP, whose last
    hidden layer feeds the unembedding directly); ``patterns`` one (n, n_heads, n_ctx) tensor per
    layer: the attention paid by the final position (``blocks.{i}.attn.hook_pattern[:, :, -1]``;
    empty for the GrokMLP).
    """

    logits: Float[Tensor, "n d_vocab_out"]
    posts: tuple[Float[Tensor, "n d_mlp"], ...]
    resid_mid: Float[Tensor, "n d_model"] | None
    resid_post: Float[Tensor, "n d_model"] | None
    patterns: tuple[Float[Tensor, "n heads ctx"], ...] = ()

    @property
    def post(self) -> Float[Tensor, "n d_mlp"]:
        """The last MLP layer's neurons."""
        return self.posts[-1]


def mlp_hook_names(model: nn.Module) -> list[str]:
    """``blocks.{i}.mlp.hook_post`` for every MLP layer (transformer blocks or GrokMLP layers)."""
    return [f"blocks.{i}.mlp.hook_post" for i in range(len(model.blocks))]


def has_hooks(model: nn.Module) -> bool:
    """Whether the caller attached hooks (forward, pre-forward or backward; then only the hooked
    forward honours them). The model's own ``AttentionRate`` hooks do not count: the fused
    forward applies the rate itself; nor do TransformerLens 4.x's own capture hooks
    (``backend.is_internal_hook``)."""
    for m in model.modules():
        if m._backward_hooks or getattr(m, "_backward_pre_hooks", None):
            return True
        if any(not backend.is_internal_hook(h) for h in m._forward_pre_hooks.values()):
            return True
        if any(not isinstance(h, AttentionRate) and not backend.is_internal_hook(h) for h in m._forward_hooks.values()):
            return True
    return False


def _hooked_cache(model: nn.Module, tokens: Tensor) -> tuple:
    posts = mlp_hook_names(model)
    L = len(model.blocks) - 1
    is_tf = backend.is_transformer(model)
    extra = [f"blocks.{L}.hook_resid_mid", f"blocks.{L}.hook_resid_post"] if is_tf else []
    pattern_names = [f"blocks.{i}.attn.hook_pattern" for i in range(L + 1)] if is_tf else []
    names = set(posts + extra + pattern_names)
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)

    def last(x: Tensor) -> Tensor:
        return x[:, -1] if x.ndim == 3 else x

    acts = [last(cache[n]) for n in posts]
    if not is_tf:
        return logits[:, -1], acts, None, None, []
    patterns = [cache[n][:, :, -1] for n in pattern_names]
    return logits[:, -1], acts, last(cache[extra[0]]), last(cache[extra[1]]), patterns


def even_chunks(tokens: Tensor, chunk: int, dim: int = 0) -> tuple[Tensor, ...]:
    """``tokens`` in the fewest chunks of at most ``chunk`` rows (along ``dim``), of nearly equal
    sizes: no small last chunk, so every chunk of a large evaluation takes the same path through
    the forward (the tabulated evaluation needs more rows than its tables have) whatever ``chunk``
    a caller uses, and the callers' numbers agree bit for bit."""
    return tokens.tensor_split(max(1, -(-tokens.shape[dim] // chunk)), dim=dim)


@torch.no_grad()
def final_position_cache(
    model: nn.Module, tokens: Int[Tensor, "n ctx"] | Dataset, *, fast: bool = True, chunk: int = _CHUNK
) -> FinalCache:
    """One forward pass over ``tokens`` returning the logits and the final-position intermediates.

    With ``fast=True`` a HookedTransformer without attached hooks runs the trainer's fused
    forward (``_fused_forward``), equal to ``run_with_cache`` to float32 tolerance (tested);
    otherwise ``run_with_cache`` with a ``names_filter``.
    """
    tokens = getattr(tokens, "tokens", tokens)  # a Dataset: all its rows
    tokens = tokens.to(next(model.parameters()).device)
    fused = fast and supports_fused(model) and not has_hooks(model)
    parts = []
    for t in even_chunks(tokens, chunk):
        if fused:
            rec: dict[str, list[Tensor]] = {"posts": [], "resid_mid": [], "resid_post": [], "patterns": []}
            logits = _fused_forward(model, t, 0.0, None, rec)
            parts.append((logits, rec["posts"], rec["resid_mid"][0], rec["resid_post"][0], rec["patterns"]))
        else:
            parts.append(_hooked_cache(model, t))

    def cat(xs: list[Tensor | None]) -> Tensor | None:
        return None if xs[0] is None else (xs[0] if len(xs) == 1 else torch.cat(xs))

    n_layers = len(parts[0][1])
    logits = cat([q[0] for q in parts])
    n_out = getattr(getattr(model, "cfg", None), "d_vocab_out", logits.shape[-1])
    return FinalCache(
        logits=logits[:, :n_out],
        posts=tuple(cat([q[1][i] for q in parts]) for i in range(n_layers)),
        resid_mid=cat([q[2] for q in parts]),
        resid_post=cat([q[3] for q in parts]),
        patterns=tuple(cat([q[4][i] for q in parts]) for i in range(len(parts[0][4]))),
    )


@torch.no_grad()
def all_logits(model: nn.Module, dataset: Dataset, chunk: int = _CHUNK) -> Float[Tensor, "n p"]:
    """Final-position logits for every row of ``dataset`` on the p answer classes (the demo's
    ``model(dataset)[:, -1]``), from ``last_position_logits`` in chunks of ``chunk`` rows."""
    tokens = dataset.tokens.to(next(model.parameters()).device)
    out = torch.cat([last_position_logits(model, t) for t in even_chunks(tokens, chunk)])
    return out[:, : dataset.p]


# ---------------------------------------------------------------------------- the one evaluator
@torch.no_grad()
def split_metrics(
    logits: Float[Tensor, "n classes"],
    labels: Int[Tensor, " n"],
    splits: dict[str, Int[Tensor, " k"] | None],
    loss_fn: str = "cross_entropy",
) -> dict[str, float]:
    """Loss (float64) and accuracy of ``logits`` on each named split of the rows: keys
    ``{split}_loss`` and ``{split}_acc``; a split of ``None`` is every row.

    The per-example loss and correctness are computed once and then indexed per split (indexing the
    (n, classes) logits per split would copy them). The trainer, the ensemble and the measures all
    evaluate through this function, so their numbers agree bit for bit.
    """
    nll = -log_probs(logits.double(), loss_fn).gather(-1, labels[:, None])[:, 0]
    correct = (logits.argmax(-1) == labels).double()
    out = {}
    for split, idx in splits.items():
        sel = slice(None) if idx is None else idx.to(logits.device)
        out[f"{split}_loss"] = nll[sel].mean().item()
        out[f"{split}_acc"] = correct[sel].mean().item()
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: str = "cross_entropy",
    chunk: int = 32_768,
    tokens: Int[Tensor, "n ctx"] | None = None,
    labels: Int[Tensor, " n"] | None = None,
    forward: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """Loss (float64) and accuracy on the train and test splits, from one pass over all inputs
    (``tokens``/``labels`` default to the dataset's, and may be copies already on the model's device).
    ``forward``: the final-position logits of a chunk of tokens (default ``last_position_logits``
    of ``model``; the trainer passes its compiled one)."""
    tokens = dataset.tokens if tokens is None else tokens
    labels = dataset.labels if labels is None else labels
    forward = forward or (lambda t: last_position_logits(model, t))
    logits = torch.cat([forward(t) for t in even_chunks(tokens, chunk)])
    return split_metrics(logits, labels, {"train": dataset.train_indices, "test": dataset.test_indices}, loss_fn)
