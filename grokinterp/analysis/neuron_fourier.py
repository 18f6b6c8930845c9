"""Neurons in the 2D Fourier basis and in phase order (Nanda et al. 2023, Sec. 4.2 and App. figures
of neuron activations in the Fourier basis).

A neuron's activation over the task grid (``measures.neuron_acts``: (m, m) over (phi_a, phi_b),
for addition (a, b)) is written in the 2D real Fourier basis of Z_m x Z_m (``fourier.fft2d``): the
coefficient of term (s, t), s and t each one of ``const``, ``cos k``, ``sin k`` (``basis_names``),
is that of the grid s(phi_a) t(phi_b). A neuron of frequency k puts its energy (sum of squared
coefficients; their total is the neuron's sum of squares, Parseval) in a few cells: (k, const),
(const, k) and the 2x2 block (k, k), which spans cos/sin(w_k(phi_a + phi_b)) and
cos/sin(w_k(phi_a - phi_b)).

- ``fourier_terms``: the energy of each (a term, b term) cell for the terms of a few frequencies,
  the rest of the basis gathered in an ``other`` row and column, so the cells still sum to the
  total (what the neuron Fourier figure draws).
- ``frequency_block_energy``: the energy of every (frequency of phi_a, frequency of phi_b) block,
  (m//2 + 1, m//2 + 1), frequency 0 the constant.
- ``phase_order``: Z_m sorted by the phase k*u mod m of frequency k. Re-indexing both axes of a
  neuron of frequency k by it turns w_k u into 2 pi i / m along the sorted axis, so the neuron shows
  one period of its pattern (one bump along each axis) instead of k periods (a moire texture);
  ``phase_ordered`` also rolls the sorted axes so that the bump sits in the middle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grokinterp.analysis.fourier import basis_names, fft1d, fft2d, freq_rows

__all__ = ["FourierTerms", "fourier_terms", "frequency_block_energy", "phase_order", "phase_ordered", "row_frequency"]


def phase_order(m: int, k: int) -> Int[Tensor, " m"]:
    """The elements u of Z_m sorted by their phase ``k*u mod m`` (ties, when gcd(k, m) > 1, by u):
    ``acts[order][:, order]`` draws a neuron of frequency k as one period. For gcd(k, m) = 1 the
    element at position i has phase i, i.e. ``(k * order) % m == arange(m)``."""
    if m < 1 or k < 0:
        raise ValueError(f"phase_order needs m >= 1 and k >= 0 (got m={m}, k={k})")
    u = torch.arange(m, dtype=torch.int64)
    return torch.argsort((k * u) % m * m + u)


def phase_ordered(
    grid: Float[Tensor, "m m"], k: int, *, centre: bool = True
) -> tuple[Float[Tensor, "m m"], Int[Tensor, " m"], Int[Tensor, " m"]]:
    """A (m, m) grid (one neuron over (phi_a, phi_b)) with both axes in ``phase_order(m, k)``, and
    with ``centre`` rolled along each axis so that its largest cell lands at (m // 2, m // 2): the
    bump of a frequency-k neuron in the middle instead of split over the corners. Returns
    ``(z, rows, cols)`` with ``z[i, j] = grid[rows[i], cols[j]]``."""
    m = grid.shape[0]
    order = phase_order(m, k)
    rows, cols = order, order
    if centre:
        z = grid[order][:, order]
        i, j = divmod(int(torch.argmax(z)), m)
        rows, cols = torch.roll(order, m // 2 - i), torch.roll(order, m // 2 - j)
    return grid[rows][:, cols], rows, cols


def row_frequency(m: int) -> Int[Tensor, " m"]:
    """The frequency of each row of ``fourier_basis(m)``: 0 for ``const``, k for ``cos k`` and ``sin k``."""
    rows = torch.arange(m, dtype=torch.int64)
    return (rows + 1) // 2


def _grid(acts: Tensor, centre: bool) -> tuple[Tensor, tuple[int, ...]]:
    """A (m, m, ...) grid as (m, m, n) (each grid centred with ``centre``), and its trailing shape:
    float32 stays float32 (a model's activations: a float64 copy of 113 x 113 x 512 neurons cost
    more than the transforms), anything else becomes float64."""
    if acts.ndim < 2 or acts.shape[0] != acts.shape[1]:
        raise ValueError(f"expected a (m, m, ...) grid (got shape {tuple(acts.shape)})")
    m, rest = acts.shape[0], tuple(acts.shape[2:])
    dtype = torch.float32 if acts.dtype == torch.float32 else torch.float64
    x = acts.detach().to(dtype).reshape(m, m, -1)
    if centre:
        x = x - x.mean(dim=(0, 1), keepdim=True)
    return x, rest


def frequency_block_energy(acts: Float[Tensor, "m m ..."], *, centre: bool = False) -> Float[Tensor, "f f ..."]:
    """Energy (sum of squared 2D Fourier coefficients) of each block (frequency of phi_a, frequency
    of phi_b), f = m//2 + 1 with frequency 0 the constant: block (i, j) gathers the terms
    {const} or {cos i, sin i} on phi_a times those of j on phi_b. Sums to ``acts.pow(2).sum((0, 1))``
    (Parseval; after subtracting each grid's mean with ``centre``)."""
    x, rest = _grid(acts, centre)
    sq = fft2d(x).pow(2)
    m, n = sq.shape[0], sq.shape[2]
    f = m // 2 + 1
    idx = row_frequency(m)
    by_a = sq.new_zeros(f, m, n).index_add_(0, idx, sq)
    out = sq.new_zeros(f, f, n).index_add_(1, idx, by_a)
    return out.reshape(f, f, *rest)


@dataclass(frozen=True)
class FourierTerms:
    """Energy of a grid in the (phi_a term, phi_b term) cells of the 2D Fourier basis.

    ``terms``: the names of the rows and the columns: ``const``, then ``cos k``, ``sin k`` for each
    frequency asked for, then ``other`` (every other row of the basis; absent when none is left);
    ``energy`` (t, t, ...): the sum of squared coefficients in each cell, rows the term on phi_a,
    columns the term on phi_b; its cells sum to the grid's sum of squares (Parseval).
    """

    terms: tuple[str, ...]
    freqs: tuple[int, ...]
    energy: Float[Tensor, "t t ..."]

    def fraction(self) -> Float[Tensor, "t t ..."]:
        """``energy`` divided by its total over the cells (per trailing element; 0 where the total is 0)."""
        total = self.energy.sum(dim=(0, 1), keepdim=True)
        return torch.where(total > 0, self.energy / total.clamp_min(1e-300), torch.zeros_like(self.energy))


def fourier_terms(acts: Float[Tensor, "m m ..."], freqs: Sequence[int], *, centre: bool = True) -> FourierTerms:
    """The ``FourierTerms`` of a (m, m, ...) grid (e.g. neuron activations, (m, m, d_mlp)) for the
    frequencies ``freqs`` (each in 1..m//2, in the order given). ``centre`` (default): subtract each
    grid's mean first, so the energy is the variance (the (const, const) cell is 0), as the neuron
    clusters measure it."""
    x, rest = _grid(acts, centre)
    m = x.shape[0]
    freqs = tuple(int(k) for k in dict.fromkeys(freqs))
    for k in freqs:
        if not 1 <= k <= m // 2:
            raise ValueError(f"frequency k must be in 1..{m // 2} for m={m} (got k={k})")
    names = basis_names(m)
    rows = [0] + [r for k in freqs for r in freq_rows(m, k)]
    terms = [names[r] for r in rows]
    # Only the listed rows are transformed (O(r m^2) per grid, not O(m^3)); the "other" cells follow
    # from Parseval: a row's energy over every column is the norm of its 1D transform.
    F = fft1d(torch.eye(m, dtype=torch.float64))[rows].to(x.dtype)  # (r, m): the listed rows of the basis
    along_a = torch.einsum("sx,xyn->syn", F, x)  # (r, m, n): term s on phi_a, phi_b as is
    along_b = torch.einsum("ty,xyn->xtn", F, x)  # (m, r, n)
    sel = torch.einsum("syn,ty->stn", along_a, F).pow(2)  # (r, r, n)
    if len(rows) < m:
        terms.append("other")
        a_other = along_a.pow(2).sum(1) - sel.sum(1)  # (r, n): term s on phi_a, any other on phi_b
        b_other = along_b.pow(2).sum(0) - sel.sum(0)  # (r, n)
        rest_energy = x.pow(2).sum((0, 1)) - sel.sum((0, 1)) - a_other.sum(0) - b_other.sum(0)
        top = torch.cat([sel, a_other[:, None]], dim=1)
        bottom = torch.cat([b_other, rest_energy[None]], dim=0)[None]
        sel = torch.cat([top, bottom], dim=0).clamp_min(0)
    t = len(terms)
    return FourierTerms(tuple(terms), freqs, sel.to(torch.float64).reshape(t, t, *rest))
