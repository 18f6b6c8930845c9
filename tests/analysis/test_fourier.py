"""Tests of grokinterp.fourier: the basis, the transforms and the (a+b) / (a+b-c) directions."""

from __future__ import annotations

import math

import pytest
import torch

from grokinterp.analysis.fourier import (
    amb_coefficients,
    apb_basis,
    apb_coefficients,
    cos_apb_minus_c,
    cos_sin_apb_directions,
    fft1d,
    fft2d,
    fourier_basis,
    frequency_energy_2d,
    frequency_norms,
    n_freqs,
)

P_VALUES = [23, 31]
f64 = torch.float64


def _w(p: int, k: int) -> float:
    return 2 * math.pi * k / p


@pytest.mark.parametrize("p", P_VALUES)
def test_basis_is_orthonormal_with_cos_first(p):
    F, names = fourier_basis(p, dtype=f64)
    assert F.shape == (p, p)
    torch.testing.assert_close(F @ F.T, torch.eye(p, dtype=f64), atol=1e-12, rtol=0)
    torch.testing.assert_close(F.T @ F, torch.eye(p, dtype=f64), atol=1e-12, rtol=0)
    assert names[0] == "const" and names[1] == "cos 1" and names[2] == "sin 1"
    assert names[-1] == f"sin {(p - 1) // 2}" and len(names) == p
    x = torch.arange(p, dtype=f64)
    torch.testing.assert_close(F[0], torch.full((p,), 1 / math.sqrt(p), dtype=f64))
    k = 3
    torch.testing.assert_close(F[2 * k - 1], torch.cos(_w(p, k) * x) * math.sqrt(2 / p))
    torch.testing.assert_close(F[2 * k], torch.sin(_w(p, k) * x) * math.sqrt(2 / p))


def test_basis_dtype_device_and_fresh_copy():
    F, _ = fourier_basis(23)
    assert F.dtype == torch.float32
    F.zero_()  # must not corrupt the cached basis
    G, _ = fourier_basis(23)
    assert G.abs().sum() > 0


@pytest.mark.parametrize("p", [1, 0])
def test_tiny_group_is_rejected(p):
    with pytest.raises(ValueError, match="m >= 2"):
        fourier_basis(p)


@pytest.mark.parametrize("p", P_VALUES)
def test_fft1d_matches_rfft(p):
    g = torch.Generator().manual_seed(p)
    x = torch.randn(p, 5, generator=g, dtype=f64)
    ours = fft1d(x)
    ref = torch.fft.rfft(x, dim=0)  # sum_n x_n exp(-2 pi i k n / p)
    K = n_freqs(p)
    assert ref.shape[0] == K + 1
    torch.testing.assert_close(ours[0], ref[0].real / math.sqrt(p))
    scale = math.sqrt(2 / p)
    torch.testing.assert_close(ours[1::2], scale * ref[1:].real)  # cos rows
    torch.testing.assert_close(ours[2::2], -scale * ref[1:].imag)  # sin rows: exp(-i) gives -sin
    # and the transform inverts with F^T (F is orthogonal)
    F, _ = fourier_basis(p, dtype=f64)
    torch.testing.assert_close(F.T @ ours, x)


@pytest.mark.parametrize("p", P_VALUES)
def test_fft2d_is_the_two_sided_transform(p):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(p, p, 3, generator=g, dtype=f64)
    F, _ = fourier_basis(p, dtype=f64)
    ref = torch.stack([F @ x[..., i] @ F.T for i in range(3)], dim=-1)
    torch.testing.assert_close(fft2d(x), ref)
    with pytest.raises(ValueError):
        fft2d(torch.zeros(p, p + 1))


@pytest.mark.parametrize("p", P_VALUES)
def test_planted_pure_frequency_is_recovered_exactly(p):
    k = 5
    x = torch.arange(p, dtype=f64)
    signal = 3.0 * torch.cos(_w(p, k) * x) - 2.0 * torch.sin(_w(p, k) * x) + 7.0
    coeffs = fft1d(signal)
    expected = torch.zeros(p, dtype=f64)
    expected[0] = 7.0 * math.sqrt(p)
    expected[2 * k - 1] = 3.0 * math.sqrt(p / 2)
    expected[2 * k] = -2.0 * math.sqrt(p / 2)
    torch.testing.assert_close(coeffs, expected, atol=1e-10, rtol=0)
    norms = frequency_norms(coeffs)
    assert norms.shape == (n_freqs(p),)
    assert int(norms.argmax()) == k - 1
    torch.testing.assert_close(norms[k - 1], torch.tensor(math.sqrt(13 * p / 2), dtype=f64))
    assert norms[torch.arange(len(norms)) != k - 1].abs().max() < 1e-10

    # 2D: cos(w_k(a+b)) lives on (cos k, cos k) and (sin k, sin k) only.
    a, b = x[:, None], x[None, :]
    grid = torch.cos(_w(p, k) * (a + b))
    X = fft2d(grid)
    nz = (X.abs() > 1e-9).nonzero().tolist()
    assert sorted(map(tuple, nz)) == [(2 * k - 1, 2 * k - 1), (2 * k, 2 * k)]
    energy = frequency_energy_2d(grid[..., None])[:, 0]
    torch.testing.assert_close(energy[k - 1], grid.pow(2).sum())
    assert energy.sum() == pytest.approx(float(grid.pow(2).sum()), rel=1e-12)


def test_frequency_norms_of_matrix_sum_over_trailing_axes():
    p = 23
    coeffs = torch.zeros(p, 4, dtype=f64)
    coeffs[3] = torch.tensor([1.0, 2.0, 0.0, 0.0])  # cos 2
    coeffs[4] = torch.tensor([0.0, 0.0, 2.0, 0.0])  # sin 2
    norms = frequency_norms(coeffs)
    assert norms[1] == pytest.approx(3.0)
    assert norms.sum() == pytest.approx(3.0)


@pytest.mark.parametrize("p", P_VALUES)
def test_frequency_energy_2d_matches_fft2d(p):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(p, p, 6, generator=g, dtype=f64)
    x = x - x.mean((0, 1), keepdim=True)
    X = fft2d(x)
    ref = []
    for k in range(1, n_freqs(p) + 1):
        idx = [0, 2 * k - 1, 2 * k]
        block = X[idx][:, idx]
        ref.append(block.pow(2).sum((0, 1)) - block[0, 0].pow(2))  # the 8 coefficients
    torch.testing.assert_close(frequency_energy_2d(x), torch.stack(ref))
    # float32 input gives the same up to float32 rounding
    torch.testing.assert_close(frequency_energy_2d(x.float()).double(), torch.stack(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p", P_VALUES)
def test_cos_sin_apb_directions(p):
    k = 4
    u_cos, u_sin = cos_sin_apb_directions(p, k, dtype=f64)
    assert u_cos.shape == (p * p,)
    x = torch.arange(p, dtype=f64)
    s = (x[:, None] + x[None, :]).flatten()  # a-major
    ref_cos = torch.cos(_w(p, k) * s)
    ref_sin = torch.sin(_w(p, k) * s)
    torch.testing.assert_close(u_cos, ref_cos / ref_cos.norm())
    torch.testing.assert_close(u_sin, ref_sin / ref_sin.norm())
    assert float(u_cos @ u_sin) == pytest.approx(0.0, abs=1e-12)
    # The outer-product definition of the doc.
    F, _ = fourier_basis(p, dtype=f64)
    c, sn = F[2 * k - 1], F[2 * k]
    torch.testing.assert_close(u_cos, (torch.outer(c, c) - torch.outer(sn, sn)).flatten() / math.sqrt(2))
    torch.testing.assert_close(u_sin, (torch.outer(sn, c) + torch.outer(c, sn)).flatten() / math.sqrt(2))
    with pytest.raises(ValueError):
        cos_sin_apb_directions(p, 0)
    with pytest.raises(ValueError):
        cos_sin_apb_directions(p, (p + 1) // 2)


@pytest.mark.parametrize("p", P_VALUES)
def test_apb_basis_and_coefficients(p):
    U = apb_basis(p)
    assert U.shape == (p * p, p - 1)
    torch.testing.assert_close(U.T @ U, torch.eye(p - 1, dtype=f64), atol=1e-12, rtol=0)
    u_cos, u_sin = cos_sin_apb_directions(p, 2, dtype=f64)
    torch.testing.assert_close(U[:, 2], u_cos)
    torch.testing.assert_close(U[:, 3], u_sin)
    sub = apb_basis(p, [5, 2])
    torch.testing.assert_close(sub, U[:, [8, 9, 2, 3]])

    g = torch.Generator().manual_seed(3)
    x = torch.randn(p, p, 4, generator=g, dtype=f64)
    coeffs = apb_coefficients(x)
    torch.testing.assert_close(coeffs[1:], U.T @ x.reshape(p * p, 4))
    torch.testing.assert_close(coeffs[0], x.sum((0, 1)) / p)

    a = torch.arange(p, dtype=f64)
    diff = (a[:, None] - a[None, :]).flatten()
    cm = torch.cos(_w(p, 3) * diff)
    sm = torch.sin(_w(p, 3) * diff)
    amb = amb_coefficients(x)
    torch.testing.assert_close(amb[5], cm / cm.norm() @ x.reshape(p * p, 4))
    torch.testing.assert_close(amb[6], sm / sm.norm() @ x.reshape(p * p, 4))


@pytest.mark.parametrize("p", P_VALUES)
def test_cos_apb_minus_c(p):
    k = 6
    d = cos_apb_minus_c(p, k, flat=False, dtype=f64)
    assert d.shape == (p, p, p)
    x = torch.arange(p, dtype=f64)
    ref = torch.cos(_w(p, k) * (x[:, None, None] + x[None, :, None] - x[None, None, :]))
    torch.testing.assert_close(d, ref / ref.norm())
    flat = cos_apb_minus_c(p, k, dtype=f64)
    assert flat.shape == (p * p, p)
    torch.testing.assert_close(flat, d.reshape(p * p, p))
    # directions of different frequencies are orthogonal
    other = cos_apb_minus_c(p, k + 1, dtype=f64)
    assert float((flat * other).sum()) == pytest.approx(0.0, abs=1e-12)
