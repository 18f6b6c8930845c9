"""The real Fourier basis on Z_p and the Fourier directions used by the progress measures.

Conventions (``/work/shared/docs/progress-measures.md``, Nanda et al. 2023, arXiv 2301.05217):

- ``F`` is p x p and orthonormal. Row 0 is the constant ``1/sqrt(p)``; for k = 1..(p-1)/2, row
  ``2k-1`` is ``cos(w_k x)`` and row ``2k`` is ``sin(w_k x)`` (``w_k = 2*pi*k/p``), each scaled to
  unit norm. This is the released paper code's order (cos first); the TransformerLens demo puts sin
  first.
- Grids over (a, b) are a-major: the flat index of (a, b) is ``a*p + b``, so a (p*p, ...) tensor
  reshapes to (p, p, ...) with a on the first axis.
- p must be odd, so every frequency k = 1..(p-1)/2 has a cos and a sin row.

Besides the plain transforms, ``apb_coefficients`` / ``amb_coefficients`` project a (p, p, ...)
grid onto the cos/sin(w_k(a+b)) and cos/sin(w_k(a-b)) directions for every k at once in O(p^2) per
trailing element (sums along the (anti-)diagonals, then a 1D transform), which is what makes the
per-checkpoint measures fast: the full 2D transform costs O(p^3) per element.
"""

from __future__ import annotations

import functools
import math

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = [
    "amb_coefficients",
    "apb_basis",
    "apb_coefficients",
    "cos_apb_minus_c",
    "cos_sin_apb_directions",
    "fft1d",
    "fft2d",
    "fourier_basis",
    "frequency_energy_2d",
    "frequency_norms",
    "n_freqs",
]


def n_freqs(p: int) -> int:
    """Number of non-constant frequencies, (p-1)/2; frequencies are k = 1..n_freqs(p)."""
    _check_p(p)
    return (p - 1) // 2


def _check_p(p: int) -> None:
    if p < 3 or p % 2 == 0:
        raise ValueError(f"the Fourier measures need an odd p >= 3 (got p={p})")


def _check_freq(p: int, k: int) -> None:
    if not 1 <= k <= (p - 1) // 2:
        raise ValueError(f"frequency k must be in 1..{(p - 1) // 2} for p={p} (got k={k})")


@functools.lru_cache(maxsize=16)
def _basis64(p: int) -> Tensor:
    """Cached float64 CPU basis (never hand this tensor out: callers could modify it)."""
    _check_p(p)
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), 1.0 / math.sqrt(p), dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * math.pi * k / p
        rows.append(torch.cos(w * x))
        rows.append(torch.sin(w * x))
    F = torch.stack(rows)
    return F / F.norm(dim=1, keepdim=True)


def _basis(p: int, like: Tensor) -> Tensor:
    """The basis in ``like``'s dtype and device (float64 for integer inputs); may be cached."""
    dtype = like.dtype if like.is_floating_point() else torch.float64
    return _basis64(p).to(device=like.device, dtype=dtype)


def fourier_basis(
    p: int, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Float[Tensor, "p p"], list[str]]:
    """The orthonormal real Fourier basis ``F`` (p, p) and its row names.

    Row 0 is ``'const'``, row 2k-1 ``'cos k'``, row 2k ``'sin k'``. ``F @ F.T`` is the identity.
    """
    F = _basis64(p).to(device=device, dtype=dtype, copy=True)
    names = ["const"]
    for k in range(1, (p - 1) // 2 + 1):
        names += [f"cos {k}", f"sin {k}"]
    return F, names


def fft1d(x: Float[Tensor, "p ..."]) -> Float[Tensor, "p ..."]:
    """1D Fourier transform along the leading axis: ``F @ x`` (x: (p, ...) -> (p, ...))."""
    p = x.shape[0]
    F = _basis(p, x)
    return (F @ x.reshape(p, -1)).reshape(x.shape)


def fft2d(x: Float[Tensor, "p p ..."]) -> Float[Tensor, "p p ..."]:
    """2D Fourier transform of the two leading axes: ``einsum("xy...,fx,gy->fg...", x, F, F)``."""
    p = x.shape[0]
    if x.shape[1] != p:
        raise ValueError(f"fft2d needs a (p, p, ...) tensor (got shape {tuple(x.shape)})")
    F = _basis(p, x)
    return torch.einsum("xy...,fx,gy->fg...", x, F, F)


def cos_sin_apb_directions(
    p: int, k: int, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Float[Tensor, " p*p"], Float[Tensor, " p*p"]]:
    """The unit vectors ``u_cos(k)``, ``u_sin(k)`` in R^(p*p) (a-major).

    ``u_cos(k) = vec(c c^T - s s^T) / sqrt(2)`` is cos(w_k(a+b)) normalised and
    ``u_sin(k) = vec(s c^T + c s^T) / sqrt(2)`` is sin(w_k(a+b)) normalised, with c = F[2k-1],
    s = F[2k] and ``vec(x y^T)[a*p + b] = x_a y_b``.
    """
    _check_freq(p, k)
    F = _basis64(p)
    c, s = F[2 * k - 1], F[2 * k]
    u_cos = (torch.outer(c, c) - torch.outer(s, s)).flatten() / math.sqrt(2)
    u_sin = (torch.outer(s, c) + torch.outer(c, s)).flatten() / math.sqrt(2)
    return u_cos.to(device=device, dtype=dtype), u_sin.to(device=device, dtype=dtype)


def apb_basis(
    p: int,
    freqs: list[int] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> Float[Tensor, "p*p two_k"]:
    """Columns ``[u_cos(k1), u_sin(k1), u_cos(k2), ...]`` (p*p, 2K) for ``freqs`` (default: all).

    Uses ``u_cos(k)[a*p+b] = F[2k-1, (a+b) % p] / sqrt(p)`` (and F[2k] for u_sin), which equals the
    outer-product definition of ``cos_sin_apb_directions``.
    """
    freqs = list(range(1, n_freqs(p) + 1)) if freqs is None else list(freqs)
    for k in freqs:
        _check_freq(p, k)
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    s = _apb_index(p)
    U = _basis64(p)[rows][:, s].T / math.sqrt(p)
    return U.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=16)
def _apb_index(p: int) -> Tensor:
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return (a + b) % p


def cos_apb_minus_c(
    p: int,
    k: int,
    flat: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, "p*p p"] | Float[Tensor, "p p p"]:
    """cos(w_k(a+b-c)) over all (a, b, c), normalised to unit Frobenius norm.

    Shape (p*p, p) (a-major rows, answer c on the last axis) or (p, p, p) with ``flat=False``.
    Equals ``(u_cos(k) c^T + u_sin(k) s^T) / sqrt(2)`` with c = F[2k-1], s = F[2k] over c.
    """
    _check_freq(p, k)
    F = _basis64(p)
    u_cos, u_sin = cos_sin_apb_directions(p, k, dtype=torch.float64)
    d = (torch.outer(u_cos, F[2 * k - 1]) + torch.outer(u_sin, F[2 * k])) / math.sqrt(2)
    if not flat:
        d = d.reshape(p, p, p)
    return d.to(device=device, dtype=dtype)


def frequency_norms(coeffs: Float[Tensor, "p ..."]) -> Float[Tensor, " k"]:
    """Strength of each frequency k = 1..(p-1)/2 of Fourier coefficients ``coeffs`` (p, ...).

    The norm of rows 2k-1 and 2k together (over all trailing axes): shape ((p-1)/2,).
    """
    p = coeffs.shape[0]
    _check_p(p)
    sq = coeffs.reshape(p, -1).pow(2).sum(-1)
    return (sq[1::2] + sq[2::2]).sqrt()


@functools.lru_cache(maxsize=16)
def _diagonal_index(p: int) -> tuple[Tensor, Tensor]:
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return (a + b) % p, (a - b) % p


def _diagonal_sum(x: Tensor, minus: bool = False) -> Tensor:
    """For x (p, p, m): ``D+[s] = sum_{a+b=s} x[a, b]`` (or ``D-[s] = sum_{a-b=s} x[a, b]`` with
    ``minus``), mod p, shape (p, m): one ``index_add_`` over the flattened rows (no copy of x)."""
    p, _, m = x.shape
    idx = _diagonal_index(p)[1 if minus else 0].to(x.device)
    return x.new_zeros(p, m).index_add_(0, idx, x.reshape(p * p, m))


def _grid(x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    p = x.shape[0]
    if x.ndim < 2 or x.shape[1] != p:
        raise ValueError(f"expected a (p, p, ...) grid (got shape {tuple(x.shape)})")
    return x.reshape(p, p, -1), tuple(x.shape[2:])


def apb_coefficients(x: Float[Tensor, "p p ..."]) -> Float[Tensor, "p ..."]:
    """Coefficients of a (p, p, ...) grid on the unit (a+b) directions, for every frequency.

    Row 0 is the coefficient on the constant grid ``1/p``, row 2k-1 on ``u_cos(k)`` and row 2k on
    ``u_sin(k)``: the same as ``apb_basis(p).T @ x.reshape(p*p, -1)`` (plus the constant row) but
    O(p^2) per trailing element. The projection of x onto the (a+b) directions of frequency k is
    ``u_cos(k) * row[2k-1] + u_sin(k) * row[2k]``.
    """
    g, rest = _grid(x)
    plus = _diagonal_sum(g)
    p = g.shape[0]
    return (_basis(p, g) @ plus / math.sqrt(p)).reshape(p, *rest)


def amb_coefficients(x: Float[Tensor, "p p ..."]) -> Float[Tensor, "p ..."]:
    """As ``apb_coefficients`` for the unit cos(w_k(a-b)) (row 2k-1) and sin(w_k(a-b)) (row 2k)."""
    g, rest = _grid(x)
    minus = _diagonal_sum(g, minus=True)
    p = g.shape[0]
    return (_basis(p, g) @ minus / math.sqrt(p)).reshape(p, *rest)


def frequency_energy_2d(x: Float[Tensor, "p p ..."]) -> Float[Tensor, "k ..."]:
    """Per-frequency energy of a (p, p, ...) grid: for k = 1..(p-1)/2 the sum of squares of the 8
    2D Fourier coefficients (0,cos k), (0,sin k), (cos k,0), (sin k,0), (cos k,cos k),
    (cos k,sin k), (sin k,cos k), (sin k,sin k) of ``fft2d(x)``. Shape ((p-1)/2, ...).

    Computed without the O(p^3) 2D transform: the linear terms come from the row and column sums,
    and the 2x2 quadratic block of frequency k spans the same plane as cos/sin(w_k(a+b)) and
    cos/sin(w_k(a-b)) (an orthonormal rotation of it), whose coefficients come from sums along the
    diagonals.
    """
    g, rest = _grid(x)
    energy, _ = _energy_and_apb(g)
    return energy.reshape(n_freqs(g.shape[0]), *rest)


def _energy_and_apb(g: Tensor) -> tuple[Tensor, Tensor]:
    """For g (p, p, m): ``frequency_energy_2d(g)`` (K, m) and ``apb_coefficients(g)`` (p, m) from
    one pass of diagonal sums (the neuron measures need both)."""
    p, _, m = g.shape
    F = _basis(p, g)
    plus, minus = _diagonal_sum(g), _diagonal_sum(g, minus=True)
    # F[0] is constant 1/sqrt(p), so the (0, g) coefficients are F @ (column sums) / sqrt(p).
    lin = torch.cat([g.sum(0), g.sum(1), plus, minus], dim=1) / math.sqrt(p)  # (p, 4m)
    coeffs = F @ lin  # (p, 4m)
    sq = coeffs.pow(2)
    per_row = sq[:, :m] + sq[:, m : 2 * m] + sq[:, 2 * m : 3 * m] + sq[:, 3 * m :]
    return per_row[1::2] + per_row[2::2], coeffs[:, 2 * m : 3 * m]
