"""Figures of MLP neurons in the form Nanda et al. (2023) draw them.

- ``plot_neuron_heatmaps``: the activation of the cleanest neuron(s) of each frequency cluster over
  the task grid; by default both axes sorted by the phase k*u mod m of the cluster's frequency k
  (``neuron_fourier.phase_order``), which draws a neuron of frequency k as one period (one bump)
  instead of k periods (a moire texture at high k); ``order="grid"`` keeps the grid order.
- ``plot_neuron_fourier``: the same neurons in the 2D Fourier basis: the share of their variance in
  each (term of phi_a, term of phi_b) cell for the terms const, cos k, sin k of the listed
  frequencies and "other" (``neuron_fourier.fourier_terms``); a neuron of frequency k lights up
  (cos/sin k, const), (const, cos/sin k) and the (k, k) block, per cluster or per neuron.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import plotly.graph_objects as go
import torch

from grokinterp.analysis.neuron_fourier import phase_ordered
from grokinterp.viz.heatmap_grid import ab_heatmap_grid
from grokinterp.viz.style import StyleArg, get_style, new_figure, style_figure

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor

    from grokinterp.analysis.clusters import NeuronClusters
    from grokinterp.analysis.neuron_fourier import FourierTerms

__all__ = ["NEURON_ORDERS", "cluster_panels", "plot_neuron_fourier", "plot_neuron_heatmaps"]

#: The orders of ``plot_neuron_heatmaps``: "phase" (both axes sorted by k*u mod m), "grid" (as is).
NEURON_ORDERS = ("phase", "grid")


def cluster_panels(clusters: NeuronClusters, n_per_cluster: int = 1) -> list[tuple[int, int]]:
    """(frequency k, neuron) for the ``n_per_cluster`` neurons of each cluster whose best frequency
    explains the most of their variance, clusters in increasing k."""
    panels: list[tuple[int, int]] = []
    for k in sorted(k for k in clusters.cluster_sizes() if k >= 0):
        members = (clusters.labels == k).nonzero().flatten()
        best = members[clusters.best_frac[members].argsort(descending=True)][:n_per_cluster]
        panels += [(k, int(n)) for n in best]
    return panels


def _no_clusters(title: str, style) -> go.Figure:
    """A figure with only the note that no neuron is explained by one frequency."""
    fig = new_figure(f"{title}: no neuron clusters", style)
    fig.add_annotation(text="no neuron is explained by a single frequency", showarrow=False,
                       xref="paper", yref="paper", x=0.5, y=0.5)  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return style_figure(fig, style)


def plot_neuron_heatmaps(
    acts: Float[Tensor, "m m d_mlp"],
    clusters: NeuronClusters,
    n_per_cluster: int = 1,
    *,
    order: Literal["phase", "grid"] = "phase",
    max_cols: int = 4,
    axis_names: tuple[str, str] = ("a", "b"),
    style: StyleArg = None,
) -> go.Figure:
    """Activations of the most cleanly periodic neurons of each frequency cluster over the task
    grid (``measures.neuron_acts``: (m, m, d_mlp), rows phi_a, columns phi_b; for addition a and
    b), one heatmap per neuron with its own colour bar (demo "Neuron Activations").

    ``order="phase"`` (default): the rows and the columns of the panel of a frequency-k neuron are
    sorted by k*phi_a mod m and k*phi_b mod m and rolled to put the largest cell in the middle
    (``neuron_fourier.phase_ordered``), so it shows one period, one bump; the axes say so, their
    ticks the phase relative to the middle. ``order="grid"``: phi_a and phi_b in increasing
    order. Without any cluster, a figure with only a note (``make_all_figures`` leaves it out
    instead)."""
    if order not in NEURON_ORDERS:
        raise ValueError(f"order must be one of {', '.join(NEURON_ORDERS)} (got {order!r})")
    style = get_style(style)
    acts = acts.detach().cpu()
    panels = cluster_panels(clusters, n_per_cluster)
    m = acts.shape[0]
    if not panels:
        return _no_clusters("Neuron activations", style)
    ya, xb = axis_names
    phase = order == "phase"
    coprime = all(math.gcd(k, m) == 1 for k, _ in panels)
    if phase:  # position i holds the element of phase i + c when gcd(k, m) = 1, else the i-th by phase
        ya, xb = (f"k·{n} mod {m}, peak at 0" if coprime else f"{n} by k·{n} mod {m}" for n in axis_names)
    heatmaps = []
    for k, n in panels:
        z = acts[:, :, n]
        if phase:
            z, _, _ = phase_ordered(z, k)
        heatmaps.append(
            go.Heatmap(
                z=z.detach().cpu().numpy(),
                colorscale="Viridis",
                name=f"neuron {n}",
                hovertemplate=("row %{y}, column %{x} (phase order)" if phase else f"{ya}=%{{y}} {xb}=%{{x}}")
                + "<br>act=%{z:.3g}<extra></extra>",
            )
        )
    layer = f", layer {clusters.layer}" if clusters.layer is not None else ""
    ks = ", ".join(str(k) for k in sorted({k for k, _ in panels}))
    a, b = axis_names
    how = (
        f"{a} and {b} sorted by their phase k·{a} mod {m} and k·{b} mod {m} for the neuron's cluster frequency k "
        f"(ties by value) and rolled so that the largest activation sits in the middle (ticks: phase relative to "
        f"it), so each neuron shows one period of its pattern; "
        if phase
        else f"{a} down, {b} across; "
    )
    caption = (
        f"Activation (after the ReLU) of MLP neurons{layer.replace(',', ' of')} over the input grid ({a}, {b}), "
        f"m = {m}: {how}the {'neuron' if n_per_cluster == 1 else f'{n_per_cluster} neurons'} of each frequency "
        f"cluster (k = {ks}) best explained by its frequency; each panel has its own colour scale."
    )
    title = f"Neuron activations over ({a}, {b}){', ordered by phase' if phase else ''} (m = {m}{layer})"
    fig = ab_heatmap_grid(
        heatmaps,
        [f"k = {k}, neuron {n}" for k, n in panels],
        title,
        m,
        max_cols,
        style=style,
        colorbar_each=True,
        axis_names=(ya, xb),
        caption=caption,
    )
    if phase:  # every panel is centred the same way: ticks read as phase from the middle
        for i in range(len(heatmaps)):
            for ax in (f"xaxis{i + 1 if i else ''}", f"yaxis{i + 1 if i else ''}"):
                vals = list(fig.layout[ax].tickvals or ())
                fig.layout[ax].ticktext = [str(v - m // 2) for v in vals]
    return fig


def plot_neuron_fourier(
    terms: FourierTerms,
    clusters: NeuronClusters,
    *,
    per: Literal["cluster", "neuron"] = "cluster",
    max_cols: int = 2,
    axis_names: tuple[str, str] = ("a", "b"),
    style: StyleArg = None,
) -> go.Figure:
    """Neurons in the 2D Fourier basis (Nanda et al. 2023): for each frequency cluster (``per=
    "cluster"``: its neurons' energy summed) or its cleanest neuron (``per="neuron"``), the share of
    the variance in each (term of phi_a, term of phi_b) cell of ``terms``
    (``neuron_fourier.fourier_terms`` of the activations, (t, t, d_mlp)) in percent, one shared
    colour scale, shares of at least 5% written in their cell. The shares of a panel sum to 100
    (Parseval). Only the clusters whose frequency ``terms`` lists get a panel."""
    style = get_style(style)
    if per not in ("cluster", "neuron"):
        raise ValueError(f"per must be 'cluster' or 'neuron' (got {per!r})")
    panels = [(k, n) for k, n in cluster_panels(clusters) if k in terms.freqs]  # clusters with their own rows
    if not panels:
        return _no_clusters("Neurons in the Fourier basis", style)
    energy = terms.energy.detach().cpu().double()
    t = len(terms.terms)
    zs, titles = [], []
    for k, n in panels:
        if per == "cluster":
            members = clusters.labels == k
            e = energy[:, :, members].sum(-1)
            titles.append(f"k = {k} ({int(members.sum())} neurons)")
        else:
            e = energy[:, :, n]
            titles.append(f"k = {k}, neuron {n}")
        total = float(e.sum())
        zs.append(100 * e / total if total > 0 else torch.zeros_like(e))
    top = max(float(z.max()) for z in zs) or 100.0
    a, b = axis_names
    heatmaps = [
        go.Heatmap(
            z=z.tolist(),
            coloraxis="coloraxis",
            name=title,
            text=[[f"{v:.0f}" if v >= 5 else "" for v in row] for row in z.tolist()],
            texttemplate="%{text}",
            textfont_size=style.annotation_size * 0.85,
            hovertemplate=f"{a} term %{{y}}, {b} term %{{x}}<br>%{{z:.1f}}% of the variance<extra></extra>",
        )
        for z, title in zip(zs, titles, strict=True)
    ]
    freqs = ", ".join(map(str, terms.freqs))
    which = (
        "the neurons of each frequency cluster together" if per == "cluster" else "the cleanest neuron of each cluster"
    )
    caption = (
        f"Share of the activation variance of {which} in each 2D Fourier term (row: the term in {a}, column: the "
        f"term in {b}; const, cos and sin of the frequencies {freqs}; 'other': every other frequency), after "
        f"subtracting each neuron's mean, in percent; the shares of a panel sum to 100 and those of at least 5 are "
        f"written. "
        f"A neuron of frequency k lights up (k, const), (const, k) and the (k, k) block (cos/sin k{a} times "
        f"cos/sin k{b}), as in Nanda et al. (2023)."
    )
    fig = ab_heatmap_grid(
        heatmaps,
        titles,
        f"Neurons in the 2D Fourier basis ({'per cluster' if per == 'cluster' else 'cleanest neuron per cluster'})",
        t,
        max_cols,
        coloraxis=dict(colorscale="Viridis", cmin=0, cmax=top, colorbar=dict(title="% of var.")),
        style=style,
        axis_names=(f"term in {a}", f"term in {b}"),
        caption=caption,
        tick_labels=list(terms.terms),
        max_side=400 if not style.paper else 250,
    )
    return fig
