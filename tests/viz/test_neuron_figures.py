"""Neuron figures (phase order, 2D Fourier terms) and the over-training heatmaps, on planted
neurons and synthetic measures whose pictures are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from grokinterp import viz
from grokinterp.analysis.checkpoint_views import SpectrumOverTraining
from grokinterp.analysis.clusters import neuron_frequency_clusters
from grokinterp.analysis.neuron_fourier import fourier_terms

M = 31


def _planted(ks: tuple[int, ...]) -> torch.Tensor:
    """Neuron n = relu(cos(w_k(a + b))) for k = ks[n], over the (a, b) grid of Z_M: (M, M, n)."""
    u = torch.arange(M, dtype=torch.float64)
    s = u[:, None] + u[None, :]
    return torch.stack([torch.relu(torch.cos(2 * math.pi * k * s / M)) for k in ks], -1)


def test_phase_ordered_heatmap_is_one_period():
    """Phase order turns relu(cos(w_k(a+b))) into relu(cos(2 pi (i+j-2c)/M)), c = M//2 (the peak
    rolled to the middle): one band, its row maxima walking down the anti-diagonal; ticks read as
    phase from the middle; grid order keeps the raw k-period texture."""
    acts = _planted((7, 13))
    clusters = neuron_frequency_clusters(acts, threshold=0.5)  # the ReLU puts a fifth in the harmonics
    assert sorted(k for k in clusters.cluster_sizes() if k >= 0) == [7, 13]
    fig = viz.plot_neuron_heatmaps(acts, clusters)
    i = torch.arange(M, dtype=torch.float64)
    c = M // 2
    one_period = torch.relu(torch.cos(2 * math.pi * (i[:, None] + i[None, :] - 2 * c) / M)).numpy()
    assert [t.name for t in fig.data] == ["neuron 0", "neuron 1"]
    for trace in fig.data:
        z = np.array(trace.z)
        np.testing.assert_allclose(z, one_period, atol=1e-12)
        assert [int(np.argmax(row)) for row in z] == [(2 * c - r) % M for r in range(M)]
    assert fig.layout.yaxis.title.text == f"k·a mod {M}, peak at 0"
    assert fig.layout.xaxis2.title.text == f"k·b mod {M}, peak at 0"
    assert [int(t) for t in fig.layout.xaxis.ticktext] == [v - c for v in fig.layout.xaxis.tickvals]
    assert "sorted by their phase" in viz.figure_caption(fig)
    grid = viz.plot_neuron_heatmaps(acts, clusters, order="grid")
    np.testing.assert_allclose(np.array(grid.data[1].z), acts[:, :, 1].numpy())
    assert grid.layout.yaxis.title.text == "a"
    with pytest.raises(ValueError, match="order"):
        viz.plot_neuron_heatmaps(acts, clusters, order="value")


def test_neuron_fourier_planted_cluster():
    """A cluster of cos(w a) cos(w b) neurons: 100% of its variance in the (cos k, cos k) cell, and
    every panel's shares sum to 100 (Parseval); labels name the terms."""
    u = torch.arange(M, dtype=torch.float64)
    cos = [torch.cos(2 * math.pi * k * u / M) for k in (4, 4, 9)]
    acts = torch.stack([torch.outer(c, c) * s for c, s in zip(cos, (1.0, 2.0, 1.0), strict=True)], -1)
    clusters = neuron_frequency_clusters(acts)
    terms = fourier_terms(acts, [4, 9])
    fig = viz.plot_neuron_fourier(terms, clusters)
    assert [t.name for t in fig.data] == ["k = 4 (2 neurons)", "k = 9 (1 neurons)"]
    for trace, k in zip(fig.data, (4, 9), strict=True):
        z = np.array(trace.z)
        i = terms.terms.index(f"cos {k}")
        assert z[i, i] == pytest.approx(100.0) and z.sum() == pytest.approx(100.0)
        assert trace.text[i][i] == "100" and trace.text[0][0] == ""
    assert (
        list(fig.layout.xaxis.ticktext) == list(terms.terms) == ["const", "cos 4", "sin 4", "cos 9", "sin 9", "other"]
    )
    only_4 = viz.plot_neuron_fourier(fourier_terms(acts, [4]), clusters)  # k = 9 has no rows of its own: no panel
    assert [t.name for t in only_4.data] == ["k = 4 (2 neurons)"]
    per_neuron = viz.plot_neuron_fourier(terms, clusters, per="neuron")
    assert per_neuron.data[0].name.startswith("k = 4, neuron")


def test_over_training_heatmaps_draw_the_numbers():
    """Embedding spectrum vs epoch: z = the norms (frequency rows); excluded loss vs epoch: z =
    log10 of the excluded_loss_k columns, ticks at the key frequencies."""
    norms = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.5, 6.0]])
    fig = viz.plot_embedding_spectrum_over_training(SpectrumOverTraining((0, 100), norms), [2])
    trace = fig.data[0]
    assert list(trace.x) == [0, 100] and list(trace.y) == [1, 2, 3]
    np.testing.assert_allclose(np.array(trace.z), norms.T.numpy())
    assert list(fig.layout.yaxis.tickvals) == [2]
    table = pd.DataFrame(
        {"epoch": [0, 10, 30], "excluded_loss_k2": [1.0, 10.0, 0.0], "excluded_loss_k1": [0.1, 1e-3, 1e-5]}
    )
    fig = viz.plot_excluded_loss_over_training(table, [1])
    trace = fig.data[0]
    assert list(trace.y) == [1, 2] and list(trace.x) == [0, 10, 30]
    np.testing.assert_allclose(np.array(trace.z[0], dtype=float), [-1, -3, -5])
    assert list(trace.z[1]) == [0.0, 1.0, None]  # a zero loss has no log: a gap
    with pytest.raises(ValueError, match="excluded_loss_k"):
        viz.plot_excluded_loss_over_training(table[["epoch"]])
