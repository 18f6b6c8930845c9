"""The real Fourier basis on Z_m and the Fourier directions used by the progress measures.

Conventions (docs/measures.md, Nanda et al. 2023, arXiv 2301.05217). The group is Z_m; for
addition m = p, for the other cyclic-group tasks see ``grokinterp.analysis.bases`` (e.g. m = p - 1 for
multiplication through the discrete log). Below "p" names the size of the group, whatever it is.

- ``F`` is m x m and orthonormal. Row 0 is the constant ``1/sqrt(m)``; for k = 1..floor((m-1)/2),
  row ``2k-1`` is ``cos(w_k x)`` and row ``2k`` is ``sin(w_k x)`` (``w_k = 2*pi*k/m``), each scaled
  to unit norm. This is the released paper code's order (cos first); the TransformerLens demo puts
  sin first.
- For even m the last row, ``m-1``, is the Nyquist frequency k = m/2: ``cos(pi x)`` only (its sine
  is zero). So frequencies run over k = 1..m//2 and row ``2k-1`` is always ``cos k``; row ``2k``
  (``sin k``) exists for k < m/2.
- Grids over (a, b) are a-major: the flat index of (a, b) is ``a*m + b``, so a (m*m, ...) tensor
  reshapes to (m, m, ...) with a on the first axis.

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
    "basis_names",
    "cos_apb_minus_c",
    "cos_sin_apb_directions",
    "fft1d",
    "fft2d",
    "fourier_basis",
    "freq_rows",
    "frequency_energy_2d",
    "frequency_energy_and_apb",
    "frequency_norms",
    "n_freqs",
]


def n_freqs(p: int) -> int:
    """Number of non-constant frequencies of Z_p, p // 2 ((p-1)/2 for odd p); k = 1..n_freqs(p)."""
    _check_p(p)
    return p // 2


def freq_rows(p: int, k: int) -> list[int]:
    """Rows of ``F`` that belong to frequency k: ``[2k-1, 2k]`` (cos k, sin k), or ``[2k-1]`` for the
    Nyquist frequency k = p/2 of an even p."""
    return [2 * k - 1] if 2 * k == p else [2 * k - 1, 2 * k]


def _check_p(p: int) -> None:
    if p < 2:
        raise ValueError(f"the Fourier measures need a group of order m >= 2 (got m={p})")


def _check_freq(p: int, k: int) -> None:
    if not 1 <= k <= p // 2:
        raise ValueError(f"frequency k must be in 1..{p // 2} for m={p} (got k={k})")


@functools.lru_cache(maxsize=16)
def _basis64(p: int) -> Tensor:
    """Cached float64 CPU basis (never hand this tensor out: callers could modify it)."""
    _check_p(p)
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), 1.0 / math.sqrt(p), dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        w = 2 * math.pi * k / p
        rows.append(torch.cos(w * x))
        if 2 * k < p:
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
    """The orthonormal real Fourier basis ``F`` (p, p) of Z_p and its row names.

    Row 0 is ``'const'``, row 2k-1 ``'cos k'``, row 2k ``'sin k'`` (for even p the last row is
    ``'cos p/2'``, with no sine). ``F @ F.T`` is the identity.
    """
    F = _basis64(p).to(device=device, dtype=dtype, copy=True)
    return F, basis_names(p)


def basis_names(p: int) -> list[str]:
    """Row names of ``fourier_basis(p)``."""
    names = ["const"]
    for k in range(1, p // 2 + 1):
        names += [f"cos {k}"] if 2 * k == p else [f"cos {k}", f"sin {k}"]
    return names


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
    if 2 * k == p:  # Nyquist: cos(pi(a+b)) = c c^T is already unit; there is no sine
        u_cos = torch.outer(F[2 * k - 1], F[2 * k - 1]).flatten()
        return u_cos.to(device=device, dtype=dtype), torch.zeros_like(u_cos, device=device, dtype=dtype)
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
    """Columns ``[u_cos(k1), u_sin(k1), u_cos(k2), ...]`` (p*p, 2K) for ``freqs`` (default: all;
    the Nyquist frequency of an even p has a u_cos column only).

    Uses ``u_cos(k)[a*p+b] = F[2k-1, (a+b) % p] / sqrt(p)`` (and F[2k] for u_sin), which equals the
    outer-product definition of ``cos_sin_apb_directions``.
    """
    freqs = list(range(1, n_freqs(p) + 1)) if freqs is None else list(freqs)
    for k in freqs:
        _check_freq(p, k)
    rows = [r for k in freqs for r in freq_rows(p, k)]
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
    if 2 * k == p:  # Nyquist: cos(pi(a+b-c)) = u_cos F[m-1]^T, already unit
        d = torch.outer(u_cos, F[2 * k - 1])
    else:
        d = (torch.outer(u_cos, F[2 * k - 1]) + torch.outer(u_sin, F[2 * k])) / math.sqrt(2)
    if not flat:
        d = d.reshape(p, p, p)
    return d.to(device=device, dtype=dtype)


def frequency_norms(coeffs: Float[Tensor, "p ..."]) -> Float[Tensor, " k"]:
    """Strength of each frequency k = 1..p//2 of Fourier coefficients ``coeffs`` (p, ...).

    The norm of rows 2k-1 and 2k together (over all trailing axes; row 2k-1 alone for the Nyquist
    frequency of an even p): shape (p//2,).
    """
    p = coeffs.shape[0]
    _check_p(p)
    sq = coeffs.reshape(p, -1).pow(2).sum(-1)
    return _per_freq(sq, p).sqrt()


def _per_freq(sq: Tensor, p: int) -> Tensor:
    """Sum the per-row values ``sq`` (p, ...) over the rows of each frequency: (p//2, ...)."""
    if p % 2:
        return sq[1::2] + sq[2::2]
    return torch.cat([sq[1:-1:2] + sq[2:-1:2], sq[-1:]])


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
    """Per-frequency energy of a (p, p, ...) grid: for k = 1..p//2 the sum of squares of the 8
    2D Fourier coefficients (0,cos k), (0,sin k), (cos k,0), (sin k,0), (cos k,cos k),
    (cos k,sin k), (sin k,cos k), (sin k,sin k) of ``fft2d(x)`` (for the Nyquist frequency of an
    even p, the 3 that exist: (0,cos), (cos,0), (cos,cos)). Shape (p//2, ...).

    Computed without the O(p^3) 2D transform: the linear terms come from the row and column sums,
    and the 2x2 quadratic block of frequency k spans the same plane as cos/sin(w_k(a+b)) and
    cos/sin(w_k(a-b)) (an orthonormal rotation of it), whose coefficients come from sums along the
    diagonals.
    """
    g, rest = _grid(x)
    energy, _ = frequency_energy_and_apb(g)
    return energy.reshape(n_freqs(g.shape[0]), *rest)


def frequency_energy_and_apb(g: Float[Tensor, "p p n"]) -> tuple[Float[Tensor, "k n"], Float[Tensor, "p n"]]:
    """For g (p, p, n): ``frequency_energy_2d(g)`` (K, n) and ``apb_coefficients(g)`` (p, n) from
    one pass of diagonal sums (the neuron measures need both)."""
    p, _, m = g.shape
    F = _basis(p, g)
    plus, minus = _diagonal_sum(g), _diagonal_sum(g, minus=True)
    # F[0] is constant 1/sqrt(p), so the (0, g) coefficients are F @ (column sums) / sqrt(p).
    lin = torch.cat([g.sum(0), g.sum(1), plus, minus], dim=1) / math.sqrt(p)  # (p, 4m)
    coeffs = F @ lin  # (p, 4m)
    sq = coeffs.pow(2)
    per_row = sq[:, :m] + sq[:, m : 2 * m] + sq[:, 2 * m : 3 * m] + sq[:, 3 * m :]
    if p % 2 == 0:
        # Nyquist: cos(pi(a-b)) = cos(pi(a+b)) = the (cos, cos) direction: count it once.
        per_row[-1] -= sq[-1, 3 * m :]
    return _per_freq(per_row, p), coeffs[:, 2 * m : 3 * m]
