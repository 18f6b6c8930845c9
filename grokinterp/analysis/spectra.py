"""Weights in the task's Fourier basis: the W_E and W_L spectra, their Gini coefficients, and the
sum of squared weights (Nanda et al. 2023, Sec. 4.2 and 5.1; docs/measures.md).

Spectra are computed in the basis of the task (``grokinterp.analysis.bases``): the rows of W_E are the
tokens re-indexed by phi_a (a token's value in Z_m; tokens with the same value are averaged,
tokens without one, such as 0 under the discrete log, are left out), the columns of W_L the
answer classes re-indexed by phi_c. Passing an int p means the additive basis of Z_p (the
paper's addition). For a task without a basis there is no spectrum: ``ValueError`` with the
reason.

W_L = W_out @ W_U of the last MLP layer (the GrokMLP: W_U of its last hidden layer). Layer norms
are ignored: with LayerNorm before the unembedding W_L is only an approximation of the neuron-logit
map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from grokinterp.analysis.bases import TaskBasis, task_basis
from grokinterp.analysis.fourier import fourier_basis, frequency_norms
from grokinterp.backend import named_parameters_3x, to_3x_layout

__all__ = [
    "W_L",
    "embedding_freq_norms",
    "embedding_spectrum",
    "gini",
    "gini_W_E",
    "gini_W_L",
    "sum_squared_weights",
    "wl_freq_norms",
    "wl_spectrum",
]

BasisArg = int | TaskBasis


def _basis(basis: BasisArg) -> TaskBasis:
    """The basis of ``basis`` (an int p: the additive Z_p); ``ValueError`` if it has none."""
    b = task_basis("add", basis) if isinstance(basis, int) else basis
    if not b.defined:
        raise ValueError(f"no Fourier spectrum for op {b.op!r} at p={b.p}: {b.reason}")
    return b


def _reindex(x: Tensor, phi: Tensor, m: int) -> Tensor:
    """Rows of ``x`` (p, ...) averaged by their value phi in Z_m (undefined rows left out); values
    no row maps to get the mean of the others."""
    phi = phi.to(x.device)
    on = phi >= 0
    out = x.new_zeros(m, *x.shape[1:])
    out.index_add_(0, phi[on], x[on])
    cnt = torch.bincount(phi[on], minlength=m).to(x.dtype)
    hit = cnt > 0
    out[hit] /= cnt[hit].reshape(-1, *([1] * (x.dim() - 1)))
    if not hit.all():
        out[~hit] = out[hit].mean(0)
    return out


def _W_E_task(model: nn.Module, basis: TaskBasis) -> Tensor:
    """W_E's token rows re-indexed by phi_a: (m, d_model)."""
    E = model.W_E[: basis.p].detach()
    return _reindex(E, basis.phi_a, basis.m)


def embedding_spectrum(model: nn.Module, basis: BasisArg) -> Float[Tensor, " m"]:
    """Norms of the rows of ``F @ W_E`` (m,) in the task's basis, one per Fourier component
    (paper Fig. 3, W_E panel; demo "Fourier components of the embedding")."""
    b = _basis(basis)
    E = _W_E_task(model, b)
    F, _ = fourier_basis(b.m, E.device, E.dtype)
    return (F @ E).norm(dim=1)


def embedding_freq_norms(model: nn.Module, basis: BasisArg) -> Float[Tensor, " k"]:
    """Strength of each frequency k = 1..m//2 in W_E (rows of cos k and sin k of F @ W_E)."""
    b = _basis(basis)
    E = _W_E_task(model, b)
    F, _ = fourier_basis(b.m, E.device, E.dtype)
    return frequency_norms(F @ E)


def W_L(model: nn.Module, basis: BasisArg | None = None) -> Float[Tensor, "d_mlp n"]:
    """The neuron-logit map (d_mlp, p): ``W_out @ W_U`` of the last block for a transformer, ``W_U``
    (last hidden layer) for the GrokMLP (paper Sec. 4.2, demo ``W_logit``); layer norms ignored.
    With ``basis``: the columns re-indexed by phi_c, shape (d_mlp, m)."""
    n = model.cfg.d_vocab_out
    if model.cfg.n_layers and not hasattr(model.blocks[-1].mlp, "W_out"):  # GrokMLP
        WL = model.W_U.detach()[:, :n]
    else:
        WL = (model.blocks[-1].mlp.W_out @ model.W_U).detach()[:, :n]
    if basis is None:
        return WL
    b = _basis(basis)
    return _reindex(WL.T, b.phi_c, b.m).T


def wl_spectrum(model: nn.Module, basis: BasisArg | None = None) -> Float[Tensor, " m"]:
    """Norms of the rows of ``F @ W_L^T`` (m,) (paper Fig. 3, W_L panel). ``basis`` None: the
    additive basis of the answer classes."""
    WL = W_L(model, basis if basis is not None else model.cfg.d_vocab_out)
    F, _ = fourier_basis(WL.shape[1], WL.device, WL.dtype)
    return (F @ WL.T).norm(dim=1)


def wl_freq_norms(model: nn.Module, basis: BasisArg | None = None) -> Float[Tensor, " k"]:
    """Strength of each frequency k = 1..m//2 in W_L."""
    WL = W_L(model, basis if basis is not None else model.cfg.d_vocab_out)
    F, _ = fourier_basis(WL.shape[1], WL.device, WL.dtype)
    return frequency_norms(F @ WL.T)


def gini(x: Float[Tensor, " n"] | Sequence[float]) -> float:
    """Gini coefficient (Hurley and Rickard) of a non-negative vector, sorted ascending:
    ``G = 1 - 2 * sum_i (x_(i) / ||x||_1) * (n - i + 1/2) / n`` (i = 1..n). 0 for a uniform vector,
    1 - 1/n for a one-hot one; NaN for an all-zero vector (paper Sec. 5.1, Gini coefficients of
    W_E and W_L)."""
    x = torch.as_tensor(x, dtype=torch.float64).detach().flatten().cpu()
    if (x < 0).any():
        raise ValueError("gini needs a non-negative vector")
    n = x.numel()
    total = x.sum()
    if n == 0 or total == 0:
        return float("nan")
    xs = x.sort().values
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(1 - 2 * ((xs / total) * (n - i + 0.5) / n).sum())


def gini_W_E(model: nn.Module, basis: BasisArg) -> float:
    """Gini coefficient of the per-frequency norms of W_E (paper Sec. 5.1, Gini panel)."""
    return gini(embedding_freq_norms(model, basis))


def gini_W_L(model: nn.Module, basis: BasisArg | None = None) -> float:
    """Gini coefficient of the per-frequency norms of W_L (paper Sec. 5.1, Gini panel)."""
    return gini(wl_freq_norms(model, basis))


def sum_squared_weights(model: nn.Module) -> tuple[float, dict[str, float]]:
    """Sum of ``param.pow(2).sum()`` over trainable parameters: (total, per parameter name, 3.x
    names and layout on either TransformerLens version) (paper Sec. 5.1, "total sum of squared
    weights" panel)."""
    per = {
        name: float(to_3x_layout(model, name, param.detach()).double().pow(2).sum())
        for name, param in named_parameters_3x(model)
        if param.requires_grad
    }
    return sum(per.values()), per
