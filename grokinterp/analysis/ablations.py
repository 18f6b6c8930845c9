"""Restricted and excluded loss, logit level (Nanda et al. 2023, Sec. 5.1) and neuron level (the
TransformerLens Grokking demo), per frequency, and the cos(w_k(u+v-j)) structure of the logits
(paper Fig. 11); docs/measures.md.

Everything is computed on the task's grid (``grokinterp.analysis.bases.TaskGrid``): logits per cell of
Z_m x Z_m with their columns re-ordered by phi_c, so that the additive math applies unchanged
(directions cos/sin(w_k(u+v)) with u = phi_a(a), v = phi_b(b)). Consequences, stated plainly:

- The losses are computed on the rows of the grid: for ``mul`` the pairs with a = 0 or b = 0 are
  left out, for ``div`` those with a = 0 (its dataset has no b = 0 rows); losses and accuracies of
  the plain model (``loss_and_accuracy``) always use every row.
- Answer classes without a value in Z_m (0 for ``mul``/``div``) have no Fourier component: the
  excluded logits keep them as they are and the restricted logits get their mean over the grid.
- For the experimental sum-decomposable tasks a cell is the mean of its rows and weighs as many
  rows as it holds (``bases`` module docstring).

For addition all of this is exactly the paper's definition over the p*p pairs.

Every loss takes its input in one of three forms: a model (one forward pass over the dataset), its
dataset-row logits, or the logits already on the grid (``GridLogits``, from ``grid_logits``); the
neuron-level losses also take the last MLP layer already on the grid (``GridNeurons``). The
precomputed forms let ``measures.compute_all_measures`` run one forward pass per checkpoint and
give every measure from it (its ``GridNeurons`` reuse the neuron clustering's (u+v) coefficients,
which agree with those of ``GridNeurons.from_cache`` to float32 rounding).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from grokinterp.analysis.bases import TaskGrid, task_grid
from grokinterp.analysis.fourier import apb_coefficients, fourier_basis, freq_rows, n_freqs
from grokinterp.analysis.spectra import W_L
from grokinterp.forward import FinalCache, all_logits, apply_norm, final_position_cache
from grokinterp.tasks import Dataset

__all__ = [
    "GridLogits",
    "GridNeurons",
    "Split",
    "cos_apb_minus_c_amplitudes",
    "cos_apb_minus_c_coefficients",
    "cos_apb_minus_c_norm",
    "cosine_similarity_to_cos_apb_minus_c",
    "excluded_loss",
    "excluded_loss_neuron",
    "grid_logits",
    "per_frequency_excluded_loss",
    "restricted_loss",
    "restricted_loss_neuron",
    "restricted_losses",
]

#: Rows of the grid a loss is taken over: the train split, the test split, or all of them.
Split = Literal["train", "test", "all"]


# ----------------------------------------------------------------------------------------------
# The logits on the grid
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridLogits:
    """Float64 logits on the task grid: ``L`` (m*m, n_classes) with columns in the grid's class
    order and ``C`` (m, n_classes) their coefficients on the (u+v) directions (row 0 the constant,
    rows as in ``fourier_basis(m)``; zero in the columns without a phi_c). ``grid`` is None for
    bare (p*p, p) addition logits given without a dataset."""

    grid: TaskGrid | None
    m: int
    L: Float[Tensor, "mm n"]
    C: Float[Tensor, "m n"]

    @functools.cached_property
    def L_mean(self) -> Float[Tensor, " n"]:
        """Mean of ``L`` over the cells (every restricted loss's bias correction reads it)."""
        return self.L.mean(0)


def _coeffs(L: Tensor, m: int) -> Tensor:
    """The (u+v) coefficients ``GridLogits.C`` of grid logits L (m*m, n)."""
    C = L.new_zeros(m, L.shape[1])
    C[:, :m] = apb_coefficients(L[:, :m].reshape(m, m, m))
    return C


def grid_logits(logits: Float[Tensor, "n p"], dataset: Dataset) -> GridLogits:
    """``GridLogits`` of dataset-row logits (n, >= p); ``ValueError`` with the reason if the task
    has no basis."""
    grid = task_grid(dataset)
    L = grid.logits(logits.reshape(len(dataset.labels), -1)[:, : dataset.p].to(torch.float64))
    return GridLogits(grid, grid.m, L, _coeffs(L, grid.m))


def _as_grid_logits(source: nn.Module | Tensor | GridLogits, dataset: Dataset) -> GridLogits:
    """The grid logits of a model, of its dataset-row logits, or ``source`` itself."""
    if isinstance(source, GridLogits):
        return source
    if isinstance(source, nn.Module):
        source = all_logits(source, dataset)
    return grid_logits(source, dataset)


def _check_keys(m: int, keys: Sequence[int]) -> list[int]:
    """The distinct keys, sorted; ``ValueError`` if one is not a frequency of Z_m."""
    keys = sorted({int(k) for k in keys})
    for k in keys:
        if not 1 <= k <= n_freqs(m):
            raise ValueError(f"key frequency {k} is outside 1..{n_freqs(m)} for m={m}")
    return keys


def _rows(m: int, keys: Sequence[int]) -> list[int]:
    """Fourier rows (cos k, sin k) of the frequencies ``keys``."""
    return [r for k in keys for r in freq_rows(m, k)]


@functools.lru_cache(maxsize=8)
def _apb_table(m: int) -> Tensor:
    """(m, m*m) float64: row 2k-1 is u_cos(k), row 2k is u_sin(k): ``F[:, (u+v) % m] / sqrt(m)``."""
    u = torch.arange(m).repeat_interleave(m)
    v = torch.arange(m).repeat(m)
    F, _ = fourier_basis(m, dtype=torch.float64)
    return F[:, (u + v) % m] / math.sqrt(m)


@functools.lru_cache(maxsize=8)
def _cell_sums(m: int) -> Tensor:
    """s = (u+v) % m of every cell u*m + v of the grid: (m*m,) int64."""
    cells = torch.arange(m * m)
    return (cells // m + cells % m) % m


def _apb_by_sum(m: int, keys: Sequence[int], device, dtype) -> Tensor:
    """The unit (u+v) directions of ``keys`` as a function of s = (u+v) % m: (m, 2K). Row s is the
    row of every cell with that s in the (m*m, 2K) matrix of the directions (cells (0, s) are
    columns 0..m-1 of ``_apb_table``), so ``(T @ X)[_cell_sums(m)]`` is that matrix times X: a
    projection onto (u+v) directions takes one product per s instead of one per cell."""
    return _apb_table(m)[_rows(m, keys), :m].T.to(device=device, dtype=dtype)


def _by_cell(table: Tensor, m: int, idx: Tensor | None) -> Tensor:
    """Rows of a per-s ``table`` (m, ...) for the cells ``idx`` (all cells when None)."""
    s = _cell_sums(m).to(table.device)
    return table[s if idx is None else s[idx]]


def _split_cells(grid: TaskGrid, split: str, device) -> tuple[Tensor, Tensor]:
    """Cells holding rows of ``split`` and their weights (number of such rows)."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all' (got {split!r})")
    w = grid.weights[split]
    idx = w.nonzero().flatten()
    return idx.to(device), w[idx].to(device)


def _wce(logits: Tensor, labels: Tensor, weight: Tensor) -> float:
    """Weighted mean cross-entropy in float64."""
    nll = -logits.to(torch.float64).log_softmax(-1).gather(-1, labels[:, None])[:, 0]
    return float((nll * weight).sum() / weight.sum())


def _wce_by_sum(table: Tensor, grid: TaskGrid, idx: Tensor, weight: Tensor) -> float:
    """``_wce`` of logits that depend on the cell only through s = (u+v) % m, given per s
    (``table`` (m, n)), over the cells ``idx``: one log-softmax per s instead of one per cell
    (the same numbers: each row's log-softmax is computed alone)."""
    logp = table.to(torch.float64).log_softmax(-1)
    s = _cell_sums(grid.m).to(table.device)[idx]
    nll = -logp[s, grid.labels.to(table.device)[idx]]
    return float((nll * weight).sum() / weight.sum())


def _restricted_by_sum(G: GridLogits, keys: list[int]) -> Tensor:
    """The restricted logits (m, n) of the cells with (u+v) % m = s: the (u+v) part of the keys,
    bias-corrected (a function of s alone)."""
    T = _apb_by_sum(G.m, keys, G.L.device, G.L.dtype)
    # R += mean over cells of (L - R); every (u+v) direction sums to zero over the cells, so the
    # mean of R is 0 (computing it would only add rounding).
    return torch.addmm(G.L_mean, T, G.C[_rows(G.m, keys)])


# ----------------------------------------------------------------------------------------------
# Logit level (paper)
# ----------------------------------------------------------------------------------------------


def restricted_loss(
    logits: nn.Module | Float[Tensor, "n p"] | GridLogits,
    dataset: Dataset,
    key_freqs: Sequence[int],
    split: Split = "all",
) -> float:
    """Restricted loss (paper Sec. 5.1): ``R = P L`` with P the projector onto u_cos(k), u_sin(k)
    of the key frequencies, plus the bias correction ``R += mean over cells of (L - R)``; float64
    cross-entropy on ``split`` ("all" as in the paper's figure; "train" is the other variant), on
    the rows of the grid. ``logits``: a model, its dataset-row logits or ``GridLogits``."""
    return restricted_losses(logits, dataset, key_freqs, (split,))[split]


def restricted_losses(
    logits: nn.Module | Float[Tensor, "n p"] | GridLogits,
    dataset: Dataset,
    key_freqs: Sequence[int],
    splits: Sequence[Split] = ("all", "train"),
) -> dict[str, float]:
    """``restricted_loss`` on each of ``splits`` from one restricted-logit matrix and one pass of
    per-cell losses (each split weights the cells by its rows)."""
    G = _as_grid_logits(logits, dataset)
    keys = _check_keys(G.m, key_freqs)
    R = _restricted_by_sum(G, keys)  # (m, n): row s is the restricted logits of the cells with s
    s = _cell_sums(G.m).to(R.device)
    labels = G.grid.labels.to(R.device)
    nll = R.logsumexp(-1)[s] - R[s, labels]  # every cell; empty ones weigh 0
    out = {}
    for split in splits:
        _split_cells(G.grid, split, R.device)  # checks the name
        w = G.grid.weights[split].to(R.device)
        out[split] = float((nll * w).sum() / w.sum())
    return out


def excluded_loss(
    logits: nn.Module | Float[Tensor, "n p"] | GridLogits,
    dataset: Dataset,
    key_freqs: Sequence[int],
) -> float:
    """Excluded loss (paper Sec. 5.1): ``L - P L`` (no bias correction), float64 cross-entropy on
    the train rows of the grid. ``logits`` as in ``restricted_loss``."""
    G = _as_grid_logits(logits, dataset)
    return _excluded_from(G, _check_keys(G.m, key_freqs))


def _excluded_from(G: GridLogits, keys: list[int]) -> float:
    idx, w = _split_cells(G.grid, "train", G.L.device)
    T = _apb_by_sum(G.m, keys, G.L.device, G.L.dtype)
    E = G.L[idx] - _by_cell(T @ G.C[_rows(G.m, keys)], G.m, idx)
    return _wce(E, G.grid.labels.to(E.device)[idx], w)


def per_frequency_excluded_loss(
    logits: nn.Module | Float[Tensor, "n p"] | GridLogits,
    dataset: Dataset,
    freqs: Sequence[int] | None = None,
) -> Float[Tensor, " k"]:
    """Excluded loss (train) with P built from one frequency at a time, for every k = 1..m//2
    (default) or ``freqs``: float64, aligned with the frequencies (entry k-1 for the default).
    ``logits`` as in ``restricted_loss``."""
    G = _as_grid_logits(logits, dataset)
    freqs = list(range(1, n_freqs(G.m) + 1)) if freqs is None else [int(k) for k in freqs]
    _check_keys(G.m, freqs)
    return _per_frequency_excluded(G, freqs)


@functools.lru_cache(maxsize=8)
def _cells_by_sum(m: int, cells: tuple[int, ...], weights: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """Group the cells by s = (u+v) % m: an index (m, n_max) into the cells (padding points at cell
    0) and a (m, n_max) float64 weight (the cell's weight, 0 for padding)."""
    r = torch.tensor(cells, dtype=torch.int64)
    wt = torch.tensor(weights, dtype=torch.float64)
    s = (r // m + r % m) % m
    order = torch.argsort(s, stable=True)
    r, s, wt = r[order], s[order], wt[order]
    counts = torch.bincount(s, minlength=m)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(r)) - start[s]
    n_max = max(1, int(counts.max()))
    index = torch.zeros(m, n_max, dtype=torch.int64)
    weight = torch.zeros(m, n_max, dtype=torch.float64)
    index[s, slot] = r
    weight[s, slot] = wt
    return index, weight


@functools.lru_cache(maxsize=8)
def _freq_row_table(m: int, freqs: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """The rows of ``fourier_basis(m)`` of each frequency as a (K, 2) index (the Nyquist
    frequency's second slot points at row 0) and a (K, 2) mask of the slots in use."""
    rows = [freq_rows(m, k) for k in freqs]
    index = torch.tensor([r + [0] * (2 - len(r)) for r in rows], dtype=torch.int64).reshape(len(freqs), 2)
    on = torch.tensor([[True, len(r) == 2] for r in rows], dtype=torch.bool).reshape(len(freqs), 2)
    return index, on


@functools.lru_cache(maxsize=8)
def _freq_basis_rows(m: int, freqs: tuple[int, ...]) -> Tensor:
    """(K, 2, m) float64: the rows (cos k, sin k) of ``fourier_basis(m)`` of each frequency, zero
    in the unused slot of the Nyquist frequency."""
    index, on = _freq_row_table(m, freqs)
    F, _ = fourier_basis(m, dtype=torch.float64)
    return torch.where(on[..., None], F[index], 0.0)


def _train_cells_by_sum(grid: TaskGrid) -> tuple[Tensor, Tensor]:
    """``_cells_by_sum`` of the grid's train cells; the last grid's answer is kept (the analysis
    asks once per checkpoint, and the cache key of ``_cells_by_sum`` costs a pass over the cells)."""
    w = grid.weights["train"]
    last = _LAST_CELLS.get("entry")
    if last is not None and last[0] is w and last[1] == w._version:
        return last[2]
    cells = w.nonzero().flatten()
    out = _cells_by_sum(grid.m, tuple(cells.tolist()), tuple(w[cells].tolist()))
    _LAST_CELLS["entry"] = (w, w._version, out)
    return out


#: The last ``_train_cells_by_sum`` call's weights (held, so that their id stays theirs) and answer.
_LAST_CELLS: dict[str, tuple] = {}


def _per_frequency_excluded(G: GridLogits, freqs: list[int]) -> Tensor:
    """Train excluded loss for each single frequency in ``freqs`` (float64, on L's device).

    Removing frequency k changes the logit of cell (u, v) and column c by ``d_k[s, c]`` with
    s = (u+v) % m, so ``exp(excluded) = exp(L) * exp(-d_k)``: with the train cells grouped by s, the
    softmax denominators of every frequency are one batched matmul of exp(L - rowmax) with the
    (m, n) tables exp(-d_k - shift). Exact up to float64 rounding (tested against the direct
    formula); frequencies whose tables over- or underflow fall back to it.
    """
    m, L, C = G.m, G.L, G.C
    dev = L.device
    K = len(freqs)
    rows, on = _freq_row_table(m, tuple(freqs))
    Fk = _freq_basis_rows(m, tuple(freqs)).to(dev)  # (K, 2, m): the rows of F of each frequency
    Ck = torch.where(on.to(dev)[..., None], C[rows.to(dev)], 0.0)  # (K, 2, n), zero where F has none
    # d[k, s, c]: the (u+v) part of frequency k of the logits, as a function of s = (u+v) % m.
    d = torch.einsum("kjs,kjc->ksc", Fk, Ck) / math.sqrt(m)
    nd = -d
    shift = nd.amax(-1, keepdim=True)  # (K, m, 1)
    T = (nd - shift).exp_()  # (K, m, n), entries <= 1
    index, weight = _train_cells_by_sum(G.grid)
    index, weight = index.to(dev), weight.to(dev)
    Gm = L.index_select(0, index.flatten()).view(*index.shape, L.shape[1])  # (s, n, c), a copy
    Gm.sub_(Gm.amax(-1, keepdim=True))
    y = G.grid.labels.to(dev)[index]  # (s, n)
    log_num = Gm.gather(-1, y[..., None])  # (s, n, 1)
    S = torch.bmm(Gm.exp_(), T.permute(1, 2, 0))  # (s, n, K)
    dy = nd.permute(1, 2, 0).gather(1, y[..., None].expand(-1, -1, K)) - shift[..., 0].T[:, None]
    log_S = S.log()  # finite exactly where S is finite and > 0
    loss = log_S - (log_num + dy)
    out = torch.einsum("snk,sn->k", torch.where(weight[..., None] > 0, loss, 0.0), weight) / weight.sum()
    if bool(torch.isfinite(log_S).all()):
        return out
    bad = ~torch.isfinite(log_S).flatten(0, 1).all(0)
    for i in bad.nonzero().flatten().tolist():
        out[i] = _excluded_from(G, [freqs[i]])
    return out


# ----------------------------------------------------------------------------------------------
# Neuron level (TransformerLens demo), last MLP layer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridNeurons:
    """The last MLP layer on the task grid, what the neuron-level losses read: ``logits`` the
    model's ``GridLogits``, ``post_mean`` the float64 mean of each neuron over the grid, ``coef``
    the float64 coefficients of the neurons on the (u+v) directions (rows as in
    ``fourier_basis(m)``), ``resid_post`` the last block's residual stream on the grid (None for
    the GrokMLP, whose last hidden layer feeds the unembedding directly)."""

    logits: GridLogits
    post_mean: Float[Tensor, " d_mlp"]
    coef: Float[Tensor, "m d_mlp"]
    resid_post: Float[Tensor, "mm d_model"] | None

    @classmethod
    def from_cache(cls, cache: FinalCache, dataset: Dataset) -> GridNeurons:
        """The last MLP layer of a ``FinalCache`` of the model on ``dataset``, put on its grid in
        float64 (``ValueError`` with the reason if the task has no basis)."""
        G = grid_logits(cache.logits, dataset)
        post = G.grid.values(cache.post.to(torch.float64))
        m = G.m
        coef = apb_coefficients(post.reshape(m, m, -1))
        resid = None if cache.resid_post is None else G.grid.values(cache.resid_post)
        return cls(G, post.mean(0), coef, resid)


def _neuron_logit_map(model: nn.Module, grid: TaskGrid) -> Tensor:
    """W_L (d_mlp, n_classes) float64 with the columns in the grid's class order."""
    return W_L(model)[:, grid.class_order.to(model.W_U.device)].to(torch.float64)


def _restricted_neuron(model: nn.Module, neurons: GridNeurons, keys: list[int], split: str) -> float:
    """Neuron-level restricted loss of checked ``keys`` (``restricted_loss_neuron``)."""
    G, post_mean, coef = neurons.logits, neurons.post_mean, neurons.coef
    dev = G.L.device
    idx, w = _split_cells(G.grid, split, dev)
    WL = _neuron_logit_map(model, G.grid).to(dev)
    base = post_mean @ WL  # also the mean of R over the grid: every (u+v) direction sums to zero
    T = _apb_by_sum(G.m, keys, dev, torch.float64)
    R = base + T @ (coef[_rows(G.m, keys)] @ WL)  # (m, n): the cells with (u+v) % m = s
    R = R + (G.L_mean - base)  # demo: restricted_logits += logits.mean(0) - restricted.mean(0)
    return _wce_by_sum(R, G.grid, idx, w)


def _excluded_neuron(model: nn.Module, neurons: GridNeurons, keys: list[int], split: str) -> float:
    """Neuron-level excluded loss of checked ``keys`` (``excluded_loss_neuron``)."""
    G, resid_post, coef = neurons.logits, neurons.resid_post, neurons.coef
    dev = G.L.device
    idx, w = _split_cells(G.grid, split, dev)
    T = _apb_by_sum(G.m, keys, dev, torch.float64)
    Cn = coef[_rows(G.m, keys)]  # (2K, d_mlp)
    ln = getattr(model, "ln_final", None)
    if model.cfg.normalization_type is None or ln is None or resid_post is None:
        # Without a final norm the logits are linear in the neurons: subtracting the projection
        # from the neurons subtracts U (C @ W_L) from the logits (biases and resid_mid unchanged).
        E = G.L[idx] - _by_cell(T @ (Cn @ _neuron_logit_map(model, G.grid).to(dev)), G.m, idx)
    else:
        W_out = model.blocks[-1].mlp.W_out.detach().to(torch.float64)
        resid = resid_post[idx].to(torch.float64) - _by_cell(T @ (Cn @ W_out), G.m, idx)
        resid = apply_norm(resid.float(), ln, model.cfg.normalization_type, model.cfg.eps)
        E = (resid @ model.W_U + model.unembed.b_U)[:, G.grid.class_order.to(dev)]
    return _wce(E, G.grid.labels.to(dev)[idx], w)


def _as_grid_neurons(
    model: nn.Module, dataset: Dataset, cache: FinalCache | None, neurons: GridNeurons | None
) -> GridNeurons:
    """``neurons``, or the last MLP layer of ``cache`` (default: a forward pass) on the grid."""
    if neurons is not None:
        if cache is not None:
            raise ValueError("pass cache or neurons, not both")
        return neurons
    return GridNeurons.from_cache(cache or final_position_cache(model, dataset.tokens), dataset)


def restricted_loss_neuron(
    model: nn.Module,
    dataset: Dataset,
    key_freqs: Sequence[int],
    *,
    cache: FinalCache | None = None,
    split: Split = "test",
    neurons: GridNeurons | None = None,
) -> float:
    """Neuron-level restricted loss, as in the TransformerLens demo's ``get_restricted_loss``: the
    centred neurons of the last MLP layer projected onto cos/sin(w_k(u+v)) of the key frequencies,
    the means added back, mapped through W_L and bias-corrected; float64 cross-entropy on the test
    rows of the grid (the demo's choice). Layer norms are ignored, as in the demo's formula.
    ``cache``: the model's ``FinalCache`` on ``dataset`` (default: one forward pass); ``neurons``:
    the layer already on the grid, instead of ``cache``."""
    N = _as_grid_neurons(model, dataset, cache, neurons)
    return _restricted_neuron(model, N, _check_keys(N.logits.m, key_freqs), split)


def excluded_loss_neuron(
    model: nn.Module,
    dataset: Dataset,
    key_freqs: Sequence[int],
    *,
    cache: FinalCache | None = None,
    split: Split = "train",
    neurons: GridNeurons | None = None,
) -> float:
    """Neuron-level excluded loss, as in the demo's ``get_excluded_loss``: the projection of the
    last MLP layer's neurons onto cos/sin(w_k(u+v)) of the keys is removed (means kept), mapped
    through W_out and added to the rest of the residual stream, then unembedded (through
    ``ln_final`` if there is one); float64 cross-entropy on the train rows of the grid.
    ``cache`` and ``neurons`` as in ``restricted_loss_neuron``."""
    N = _as_grid_neurons(model, dataset, cache, neurons)
    return _excluded_neuron(model, N, _check_keys(N.logits.m, key_freqs), split)


# ----------------------------------------------------------------------------------------------
# cos(w_k(u+v-j)) structure of the logits (paper Fig. 11)
# ----------------------------------------------------------------------------------------------


def _cos_coeffs_from(C: Tensor, m: int, freqs: list[int]) -> Tensor:
    """Coefficient of the logits on the unit cos(w_k(u+v-j)) direction for each k."""
    F, _ = fourier_basis(m, C.device, C.dtype)
    out = []
    for k in freqs:
        rows = freq_rows(m, k)
        val = sum((C[r, :m] * F[r]).sum() for r in rows)
        out.append(val / math.sqrt(len(rows)))
    return torch.stack(out) if out else C.new_zeros(0)


def _grid_logits_of(logits: Tensor | GridLogits, p: int | Dataset) -> GridLogits:
    """``logits`` on the grid: of the dataset ``p``, or as (p*p, p) addition logits for an int."""
    if isinstance(logits, GridLogits):
        return logits
    if isinstance(p, Dataset):
        return grid_logits(logits, p)
    L = logits.reshape(p * p, -1)[:, :p].to(torch.float64)
    return GridLogits(None, p, L, _coeffs(L, p))


def cos_apb_minus_c_coefficients(
    logits: Float[Tensor, "pp p"] | Float[Tensor, "p p p"] | Float[Tensor, "n p"] | GridLogits,
    p: int | Dataset,
    keys: Sequence[int] | None = None,
) -> Float[Tensor, " k"]:
    """Coefficient of the logits on the unit-norm cos(w_k(u+v-j)) direction for each k in ``keys``
    (default all k), float64: paper Fig. 11, demo ``get_cos_coeffs``. ``p`` an int: (p*p, p)
    addition logits; a Dataset: dataset-row logits, put on the task's grid. ``logits`` may also be
    ``GridLogits`` (then ``p`` is not read)."""
    G = _grid_logits_of(logits, p)
    freqs = list(range(1, n_freqs(G.m) + 1)) if keys is None else [int(k) for k in keys]
    _check_keys(G.m, freqs)
    return _cos_coeffs_from(G.C, G.m, freqs)


def cos_apb_minus_c_norm(m: int, k: int) -> float:
    """The norm of the grid cos(w_k(u+v-j)) over all (u, v, j) in Z_m^3: sqrt(m^3 / 2), or
    sqrt(m^3) at the Nyquist frequency k = m/2 of an even m. A coefficient of
    ``cos_apb_minus_c_coefficients`` (a projection on the unit-norm grid, as in the demo's
    ``get_cos_coeffs``: 28,000 on the shipped run) divided by it is the amplitude A of
    A cos(w_k(u+v-j)) in the logits, in logits (17 on the shipped run)."""
    return math.sqrt(m**3 / len(freq_rows(m, int(k))))


def cos_apb_minus_c_amplitudes(
    logits: Tensor | GridLogits, p: int | Dataset, keys: Sequence[int] | None = None
) -> Tensor:
    """The amplitude A, in logits, of A cos(w_k(u+v-j)) in the logits for each k in ``keys``
    (default all k), float64: ``cos_apb_minus_c_coefficients`` / ``cos_apb_minus_c_norm``. Logits
    equal to A cos(w_k(u+v-j)) give exactly A. Arguments as in ``cos_apb_minus_c_coefficients``."""
    G = _grid_logits_of(logits, p)
    coef = cos_apb_minus_c_coefficients(G, p, keys)
    ks = range(1, len(coef) + 1) if keys is None else keys
    return coef / coef.new_tensor([cos_apb_minus_c_norm(G.m, k) for k in ks])


def cosine_similarity_to_cos_apb_minus_c(
    logits: Float[Tensor, "pp p"] | Float[Tensor, "p p p"] | Float[Tensor, "n p"] | GridLogits,
    p: int | Dataset,
    keys: Sequence[int],
) -> float:
    """Cosine similarity of the logits (the columns with a phi_c) with their projection onto the
    cos(w_k(u+v-j)) directions of the keys: ``||coefficients|| / ||L||`` (paper Fig. 11).
    ``logits`` and ``p`` as in ``cos_apb_minus_c_coefficients``."""
    G = _grid_logits_of(logits, p)
    coef = _cos_coeffs_from(G.C, G.m, _check_keys(G.m, keys))
    return float(coef.norm() / G.L[:, : G.m].norm())
