"""Neurons in the 2D Fourier basis and in phase order (grokinterp.analysis.neuron_fourier), against
closed forms and a basis built here from cos/sin directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grokinterp.analysis.checkpoint_views import term_freqs
from grokinterp.analysis.clusters import neuron_frequency_clusters
from grokinterp.analysis.neuron_fourier import (
    fourier_terms,
    frequency_block_energy,
    phase_order,
    phase_ordered,
    row_frequency,
)


def _wave(m: int, k: int, fn=np.cos) -> np.ndarray:
    return fn(2 * np.pi * k * np.arange(m) / m)


def _basis(m: int) -> tuple[np.ndarray, list[str]]:
    """An orthonormal real Fourier basis of Z_m built here (rows const, cos k, sin k)."""
    rows, names = [np.ones(m)], ["const"]
    for k in range(1, m // 2 + 1):
        rows.append(_wave(m, k))
        names.append(f"cos {k}")
        if 2 * k < m:
            rows.append(_wave(m, k, np.sin))
            names.append(f"sin {k}")
    F = np.stack(rows)
    return F / np.linalg.norm(F, axis=1, keepdims=True), names


@pytest.mark.parametrize("m,k", [(113, 38), (58, 29), (58, 7)])
def test_planted_cos_cos_neuron_is_one_cell(m, k):
    """cos(w a) cos(w b) is the (cos k, cos k) basis grid: all its energy in that one cell."""
    x = torch.tensor(np.outer(_wave(m, k), _wave(m, k)))
    total = float((x - x.mean()).pow(2).sum())
    ft = fourier_terms(x, [k, 1 if k != 1 else 2])
    i = ft.terms.index(f"cos {k}")
    assert ft.energy[i, i].item() == pytest.approx(total, rel=1e-10)
    assert ft.energy.sum().item() == pytest.approx(total, rel=1e-10)
    assert ft.fraction()[i, i].item() == pytest.approx(1.0)
    blocks = frequency_block_energy(x)
    assert blocks[k, k].item() == pytest.approx(float(x.pow(2).sum()), rel=1e-10)


def test_planted_sin_of_sum_splits_between_cos_sin_cells():
    """sin(w(a+b)) = sin(wa)cos(wb) + cos(wa)sin(wb): half of the energy m^2/2 in each of the two cells."""
    m, k = 59, 11
    w = 2 * math.pi * k / m
    u = torch.arange(m, dtype=torch.float64)
    x = torch.sin(w * (u[:, None] + u[None, :]))
    ft = fourier_terms(x, [k])
    assert ft.terms == ("const", f"cos {k}", f"sin {k}", "other")
    e = ft.energy.numpy()
    np.testing.assert_allclose([e[1, 2], e[2, 1]], [m * m / 4, m * m / 4], rtol=1e-10)
    assert e.sum() - e[1, 2] - e[2, 1] == pytest.approx(0.0, abs=1e-8)


def test_terms_match_an_independent_transform_and_parseval():
    """Each listed cell equals the squared coefficient of a basis built here, the 'other' cells
    hold the rest of their row/column, and every panel's cells sum to the centred sum of squares."""
    m, freqs = 31, [3, 12]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(m, m, 5, generator=gen, dtype=torch.float64)
    ft = fourier_terms(x, freqs)
    F, names = _basis(m)
    xc = (x - x.mean((0, 1), keepdim=True)).numpy()
    coef = np.einsum("fx,gy,xyn->fgn", F, F, xc) ** 2
    rows = [names.index(t) for t in ft.terms[:-1]]
    e = ft.energy.numpy()
    np.testing.assert_allclose(e[:-1, :-1], coef[np.ix_(rows, rows)], rtol=1e-9, atol=1e-12)
    others = [r for r in range(m) if r not in rows]
    np.testing.assert_allclose(e[:-1, -1], coef[np.ix_(rows, others)].sum(1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(e[-1, -1], coef[np.ix_(others, others)].sum((0, 1)), rtol=1e-9)
    np.testing.assert_allclose(e.sum((0, 1)), (xc**2).sum((0, 1)), rtol=1e-12)
    blocks = frequency_block_energy(x).numpy()  # not centred: the whole sum of squares
    np.testing.assert_allclose(blocks.sum((0, 1)), (x.numpy() ** 2).sum((0, 1)), rtol=1e-12)
    freq = row_frequency(m).numpy()
    np.testing.assert_allclose(blocks[3, 12], np.einsum("fx,gy,xyn->fgn", F, F, x.numpy())[freq == 3][:, freq == 12].__pow__(2).sum((0, 1)), rtol=1e-9)  # fmt: skip


def test_phase_order():
    """Coprime k: position i holds the element of phase i; otherwise sorted by phase, ties by value."""
    for m, k in ((113, 38), (58, 9), (7, 1)):
        order = phase_order(m, k)
        assert sorted(order.tolist()) == list(range(m))
        assert ((k * order) % m).tolist() == list(range(m))
    order = phase_order(58, 2).tolist()  # gcd 2: phases 0, 2, 4, ... each twice
    phases = [(2 * u) % 58 for u in order]
    assert phases == sorted(phases) and order[:2] == [0, 29] and order[2:4] == [1, 30]
    with pytest.raises(ValueError):
        phase_order(0, 1)


def test_term_freqs_key_frequencies_then_largest_clusters():
    """The listed frequencies: the key frequencies and the clusters', largest first up to the limit."""
    m = 31
    u = torch.arange(m, dtype=torch.float64)
    cols = [torch.cos(2 * math.pi * k * (u[:, None] + u[None, :]) / m) for k in (2, 2, 2, 5, 5, 9)]
    clusters = neuron_frequency_clusters(torch.stack(cols, -1))
    assert term_freqs([7], clusters) == [2, 5, 7, 9]
    assert term_freqs([7], clusters, limit=2) == [2, 7]


def test_phase_ordered_centres_the_peak():
    """z[i, j] = grid[rows[i], cols[j]], both axes in phase order up to a roll, the largest cell at
    (m//2, m//2)."""
    m, k = 37, 11
    u = torch.arange(m, dtype=torch.float64)
    ca = torch.cos(2 * math.pi * k * u / m)
    grid = torch.outer(ca, ca) + ca[:, None] + 0.1 * torch.sin(2 * math.pi * k * u / m)[None, :]
    z, rows, cols = phase_ordered(grid, k)
    np.testing.assert_array_equal(z.numpy(), grid[rows][:, cols].numpy())
    assert divmod(int(torch.argmax(z)), m) == (m // 2, m // 2)
    phase = ((k * rows) % m).tolist()
    start = phase.index(0)
    assert phase[start:] + phase[:start] == list(range(m))  # a rotation of the phase order
    z0, r0, _ = phase_ordered(grid, k, centre=False)
    assert r0.tolist() == phase_order(m, k).tolist()


def test_terms_agree_with_the_cluster_fractions():
    """The cells of frequency k ((k, const), (const, k), the (k, k) block) hold the fraction of
    each neuron that the clustering computes another way (sums along the diagonals)."""
    m = 29
    gen = torch.Generator().manual_seed(1)
    acts = torch.relu(torch.randn(m, m, 6, generator=gen, dtype=torch.float64))
    clusters = neuron_frequency_clusters(acts, threshold=0.0)
    for k in (1, 7, 14):
        ft = fourier_terms(acts, [k])
        e = ft.energy
        mine = (e[0, 1:3].sum(0) + e[1:3, 0].sum(0) + e[1:3, 1:3].sum((0, 1))) / e.sum((0, 1))
        np.testing.assert_allclose(mine.numpy(), clusters.frac[:, k - 1].numpy(), rtol=1e-9)
