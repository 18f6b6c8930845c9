"""The first layer's tables: what depends on (position, token) alone is computed once per step
or evaluation and gathered per example instead of multiplied out for every example.

``gather(idx, table)`` takes rows of a table (a single model's, or stacked members' each from its
own), with a backward fast on a CPU; ``tabulated_mlp_in`` is the evaluation of a 1-layer model
without LayerNorm, whose MLP input at the final position is linear in the attention pattern.
``member_view`` lets a stacked member axis broadcast. ``grokinterp.forward`` builds its fused
forward on these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

__all__ = ["gather", "member_view", "tabulated_mlp_in"]


def member_view(t: Tensor, ndim: int) -> Tensor:
    """A stacked (M, *shape) weight viewed as (M, 1, ..., 1, *shape) with ``ndim`` dims, so it
    broadcasts against (M, ..., *shape) activations, member against member."""
    return t.view(t.shape[0], *(1,) * (ndim - t.dim()), *t.shape[1:])


@torch.library.custom_op("grokinterp::gather_rows", mutates_args=())
def _gather_rows(table: Tensor, idx: Tensor) -> Tensor:
    """``table.index_select(0, idx)`` as an op Inductor calls rather than generates: the compiled
    CPU step's gathers (see ``gather``)."""
    return table.index_select(0, idx)


@_gather_rows.register_fake
def _(table: Tensor, idx: Tensor) -> Tensor:
    return table.new_empty((idx.shape[0], table.shape[1]))


@torch.library.custom_op("grokinterp::scatter_rows", mutates_args=())
def _scatter_rows(grad: Tensor, idx: Tensor, rows: int) -> Tensor:
    """The gradient of ``_gather_rows``: ``grad``'s rows added into a zero (rows, d) table in index
    order (``index_add_``, eager's backward of ``index_select``)."""
    return grad.new_zeros(rows, grad.shape[1]).index_add_(0, idx, grad)


@_scatter_rows.register_fake
def _(grad: Tensor, idx: Tensor, rows: int) -> Tensor:
    return grad.new_empty((rows, grad.shape[1]))


def _gather_rows_setup(ctx, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
    table, idx = inputs
    ctx.save_for_backward(idx)
    ctx.rows = table.shape[0]


def _gather_rows_backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
    (idx,) = ctx.saved_tensors
    return _scatter_rows(grad.contiguous(), idx, ctx.rows), None


_gather_rows.register_autograd(_gather_rows_backward, setup_context=_gather_rows_setup)


def _flatten_members(idx: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
    """Stacked members (``table`` (M, rows, d), ``idx`` (M, ...)): the flattened (M * rows, d)
    table and each member's indices offset by member * rows; a single model's unchanged."""
    if table.dim() == 2:
        return idx, table
    m, rows = table.shape[:2]
    offset = torch.arange(m, device=idx.device) * rows
    return idx + member_view(offset, idx.dim()), table.flatten(0, 1)


def gather(idx: Tensor, table: Tensor) -> Tensor:
    """Rows ``idx`` of ``table`` (rows, d), or with stacked members of each member's own table
    (M, rows, d) by its (M, ...) indices: one gather from the flattened (M * rows, d) table with
    each member's indices offset by member * rows.

    The gather is ``index_select`` on the flattened indices: its backward adds the gradient rows
    into a zero table in index order (``index_add_``), several times faster on a CPU than
    ``F.embedding``'s sort-based backward for a step's ~11,500 indices, and summing each row's
    gradients in the same order; both are far faster than advanced indexing's ``index_put_``.

    Compiled on a CPU, the gather and its backward are the opaque ops ``grokinterp::gather_rows``
    and ``grokinterp::scatter_rows`` (the same kernels): Inductor would generate the backward's
    scatter as a loop of atomic adds, several times slower than ``index_add_`` on this kind of
    CPU (``benchmarks/bench_train.py --profile-compiled`` lists the step's kernels)."""
    idx, table = _flatten_members(idx, table)
    flat = idx.reshape(-1)
    if torch.compiler.is_compiling() and table.device.type == "cpu":
        out = _gather_rows(table, flat)
    else:
        out = table.index_select(0, flat)
    return out.view(*idx.shape, table.shape[-1])


def tabulated_mlp_in(
    tokens: Int[Tensor, "*members batch ctx"],
    pattern: Float[Tensor, "*members batch ctx heads"],
    v_tab: Float[Tensor, "*members ctx vocab heads d_head"],
    embed_last: Float[Tensor, "*members vocab d_model"],
    attn: nn.Module,
    mlp: nn.Module,
) -> tuple[Float[Tensor, "*members batch d_mlp"], Float[Tensor, "*members batch d_model"]]:
    """The MLP's pre-activation and ``resid_mid`` at the final position of a 1-layer model without
    LayerNorm, from tables instead of per-row matmuls; with stacked members (a leading M axis on
    every argument) each member's own.

    ``resid_mid = E[last token] + b_O + sum_{pos, h} pattern[pos, h] * (v[pos, token, h] @ W_O[h])``
    is a weighted sum of ctx * heads + 1 rows of a (ctx * vocab * heads + vocab, d_model) table,
    and the pre-activation the same sum over that table times W_in (plus b_in): an
    ``embedding_bag`` over each table, about a tenth of the arithmetic of the per-row W_O and W_in
    matmuls. Members' tables are stacked and their indices offset, as in ``gather``. Equal to the
    per-row matmuls up to float32 rounding (the sums are associated differently)."""
    *_, n_ctx, d_vocab, n_heads, _ = v_tab.shape
    ov = torch.einsum("...tvhe,...hed->...tvhd", v_tab, attn.W_O)  # ([M,] ctx, vocab, heads, d_model)
    base_rows = embed_last + attn.b_O.unsqueeze(-2)  # ([M,] vocab, d_model)
    resid_tab = torch.cat([ov.flatten(-4, -2), base_rows], dim=-2)  # ([M,] rows, d_model)
    pre_tab = resid_tab @ mlp.W_in
    pre_tab[..., -d_vocab:, :] += mlp.b_in.unsqueeze(-2)
    heads = torch.arange(n_heads, device=tokens.device)
    pos = torch.arange(n_ctx, device=tokens.device)
    idx = ((pos * d_vocab + tokens)[..., None] * n_heads + heads).flatten(-2)  # ([M,] batch, ctx * heads)
    base = n_ctx * d_vocab * n_heads + tokens[..., -1:]
    idx = torch.cat([idx, base], dim=-1)
    weights = torch.cat([pattern.flatten(-2), pattern.new_ones(*pattern.shape[:-2], 1)], dim=-1)
    # Members: one bag over the stacked tables, each member's rows offset (as ``gather``).
    idx, pre_tab = _flatten_members(idx, pre_tab)
    resid_tab = resid_tab.flatten(0, -2)
    idx, weights = idx.flatten(0, -2), weights.flatten(0, -2)  # (rows of all members, bag)
    # Two bags, not one over the tables side by side: the pre-activation must come out contiguous
    # (strided, the ReLU and the W_out matmul after it run several times slower).
    pre = F.embedding_bag(idx, pre_tab, mode="sum", per_sample_weights=weights)
    resid = F.embedding_bag(idx, resid_tab, mode="sum", per_sample_weights=weights)
    shape = tokens.shape[:-1]
    return pre.view(*shape, -1), resid.view(*shape, -1)
