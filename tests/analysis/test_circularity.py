"""Circularity of the token embeddings (Zhong et al.'s eval notebook, cell "Circularity"): closed forms
on planted embeddings, the notebook's own loop as an independent reference, noise, and the group
order for multiplication."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from grokinterp.analysis.bases import primitive_root
from grokinterp.analysis.circularity import circularity, component_circularities, group_embedding

f64 = torch.float64


def _wave(m: int, k: int, amp: float = 1.0, phase: float = 0.0) -> torch.Tensor:
    return amp * torch.cos(2 * math.pi * k * torch.arange(m, dtype=f64) / m + phase)


def _notebook(embedding: np.ndarray, first_k: int = 4) -> float:
    """The notebook's cell, written out for numpy (PCA = SVD of the centred rows)."""
    C = embedding.shape[0]
    x = embedding - embedding.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    we2 = u * s
    rst = 0.0
    for ix in range(first_k):
        vs = we2[:, ix] / np.sqrt(np.sum(we2[:, ix] ** 2)) / math.sqrt(C)
        best = 0.0
        for i in range(1, C):
            sa = sum(
                vs[t * i % C] * complex(math.cos(2 * math.pi * t / C), math.sin(2 * math.pi * t / C)) for t in range(C)
            )
            best = max(best, abs(sa) ** 2 * 2)
        rst += max(min(best, 1.0), 0.0)
    return rst / first_k


def test_planted_circles_give_one():
    m = 59
    cols = [_wave(m, 7, 3.0), _wave(m, 7, 3.0, math.pi / 2), _wave(m, 20, 1.0), _wave(m, 20, 1.0, math.pi / 2)]
    emb = torch.stack(cols + [torch.zeros(m, dtype=f64)] * 4, 1) @ torch.linalg.qr(torch.randn(8, 8, dtype=f64))[0]
    c = component_circularities(emb)
    assert c.tolist() == pytest.approx([1.0] * 4, abs=1e-12)
    assert circularity(emb) == pytest.approx(1.0, abs=1e-12)


def test_mixed_component_closed_form_and_self_conjugate_frequency():
    # cos(k1) + 0.5 cos(k2) on Z_59: the strongest pair holds 1 / (1 + 0.25) of the energy.
    one = (_wave(59, 4) + _wave(59, 11, 0.5))[:, None]
    assert component_circularities(one).tolist() == pytest.approx([0.8], abs=1e-12)
    # Z_22: cos(pi g) (frequency 11 = -11, one DFT bin, energy m^2) beside cos(3 g 2pi/22) (two
    # bins of (m/2)^2): the best pair holds 1 / 1.5; counting bin 11 twice would read 1.
    even = (_wave(22, 11) + _wave(22, 3))[:, None]
    assert component_circularities(even).tolist() == pytest.approx([2 / 3], abs=1e-12)


def test_equals_the_notebook_loop_on_a_random_embedding():
    g = torch.Generator().manual_seed(3)
    m = 59
    low = torch.stack([_wave(m, 5, 4.0), _wave(m, 5, 4.0, 1.0), _wave(m, 13, 2.0), _wave(m, 2, 1.5, 0.3)], 1)
    emb = low @ torch.randn(4, 16, generator=g, dtype=f64) + 0.7 * torch.randn(m, 16, generator=g, dtype=f64)
    ours = circularity(emb)
    assert 0.3 < ours < 0.99  # a case away from both ends
    assert ours == pytest.approx(_notebook(emb.numpy()), abs=1e-10)


def test_noise_gives_a_small_value():
    # Isotropic noise: each component's best of 29 pair shares, about (ln 29 + 0.58) / 29 = 0.14.
    g = torch.Generator().manual_seed(0)
    values = [circularity(torch.randn(59, 128, generator=g, dtype=f64)) for _ in range(5)]
    assert max(values) < 0.3, values


def test_group_embedding_orders_multiplication_by_discrete_log():
    p = 23
    r = primitive_root(p)
    log = {pow(r, e, p): e for e in range(p - 1)}
    W_E = torch.zeros(p + 1, 2, dtype=f64)  # rows: tokens 0..p-1 and "="
    for x in range(1, p):
        W_E[x, 0] = math.cos(2 * math.pi * 5 * log[x] / (p - 1))
        W_E[x, 1] = math.sin(2 * math.pi * 5 * log[x] / (p - 1))
    W_E[p] = 100.0  # the "=" row is not read
    model = SimpleNamespace(W_E=W_E)
    emb = group_embedding(model, "mul", p)
    assert emb.shape == (p - 1, 2)
    assert circularity(emb) == pytest.approx(1.0, abs=1e-12)
    # In token order the same embedding is no clean circle.
    assert component_circularities(W_E[1:p]).max() < 0.9
    with pytest.raises(ValueError, match="cyclic-group"):
        group_embedding(model, "x2_xy_y2", p)
