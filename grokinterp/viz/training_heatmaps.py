"""Over-training heatmaps: one row per frequency, one column per checkpoint.

- ``plot_embedding_spectrum_over_training``: the strength of each frequency k of the embedding W_E
  (``checkpoint_views.embedding_spectrum_over_training``): the key frequencies grow out of a flat
  spectrum during circuit formation and the others fade during cleanup (Nanda et al. 2023, Fig. 7).
- ``plot_excluded_loss_over_training``: the excluded loss when only frequency k is removed from the
  logits (measures.csv, ``excluded_loss_k{k}``), on a log colour scale: the rows of the key
  frequencies light up as the model comes to rely on them.

The x axis is the epoch, so the explorer's checkpoint cursor (``explorer.add_cursor``) works on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from grokinterp.viz.style import StyleArg, get_style, new_figure, style_figure

if TYPE_CHECKING:
    from grokinterp.analysis.checkpoint_views import SpectrumOverTraining

__all__ = ["plot_embedding_spectrum_over_training", "plot_excluded_loss_over_training"]


def _freq_axis(fig: go.Figure, n_k: int, keys: Sequence[int]) -> None:
    """A frequency y axis, k = 1 at the bottom: ticks at the key frequencies (else every 10th k)."""
    ticks = sorted(int(k) for k in keys if 1 <= int(k) <= n_k) or list(range(0, n_k + 1, 10 if n_k > 30 else 5))[1:]
    fig.update_yaxes(tickmode="array", tickvals=ticks, range=[0.5, n_k + 0.5], showgrid=False, ticks="outside")
    fig.update_xaxes(showgrid=False, ticks="outside")


def _layout(style) -> dict:
    """The paper figure's plot height (a heatmap needs more than a curve)."""
    return dict(plot_height=220) if style.paper else {}


def plot_embedding_spectrum_over_training(
    spectrum: SpectrumOverTraining, key_freqs: Sequence[int] = (), *, style: StyleArg = None
) -> go.Figure:
    """Heatmap of the strength of each frequency k of W_E (rows, k = 1..m//2) at every checkpoint
    (columns, by epoch); ticks at the ``key_freqs``."""
    style = get_style(style)
    norms = spectrum.norms.detach().cpu().double()
    n_k = norms.shape[1]
    keys = [int(k) for k in key_freqs]
    heatmap = go.Heatmap(
        x=list(spectrum.epochs),
        y=list(range(1, n_k + 1)),
        z=norms.T.numpy(),
        colorscale="Viridis",
        zmin=0,
        colorbar=dict(title="norm", thickness=10),
        name="W_E norm",
        hovertemplate="epoch %{x}, k = %{y}<br>norm %{z:.3g}<extra></extra>",
    )
    caption = (
        "Norm of each frequency k of the token embedding W_E (its cos and sin components in the task's "
        f"Fourier basis together) at every checkpoint; {_keys_text(keys)}"
    )
    return _frequency_by_epoch(
        heatmap, "Embedding W_E per frequency over training", caption, "frequency k", n_k, keys, style
    )


def _frequency_by_epoch(
    heatmap: go.Heatmap, title: str, caption: str, yaxis_title: str, n_k: int, keys: list[int], style
) -> go.Figure:
    """The figure of a (frequency x epoch) ``heatmap``: double column, key frequencies ticked."""
    fig = new_figure(title, style, caption=caption, column="double", xaxis_title="epoch", yaxis_title=yaxis_title)
    fig.layout.meta = {**fig.layout.meta, **_layout(style)}
    fig.add_trace(heatmap)
    _freq_axis(fig, n_k, keys)
    return style_figure(fig, style)


def _keys_text(keys: Sequence[int]) -> str:
    """The caption's note on the ticked key frequencies."""
    return f"key frequencies ({', '.join(map(str, sorted(keys)))}) ticked." if keys else "no key frequencies."


def plot_excluded_loss_over_training(table, key_freqs: Sequence[int] = (), *, style: StyleArg = None) -> go.Figure:
    """Heatmap of the excluded loss (logit level, train) when only frequency k is removed (rows)
    at every checkpoint (columns, by epoch), log10 colour scale. ``table``: the run's measures
    (a DataFrame with ``epoch`` and ``excluded_loss_k{k}`` columns)."""
    style = get_style(style)
    cols = sorted((c for c in table.columns if c.startswith("excluded_loss_k")), key=lambda c: int(c[15:]))
    if not cols:
        raise ValueError("no excluded_loss_k{k} columns in the measures (not defined for this operation)")
    ks = [int(c[15:]) for c in cols]
    epochs = [int(e) for e in table["epoch"]]
    z = [[_log10(v) for v in table[c]] for c in cols]
    keys = [int(k) for k in key_freqs]
    heatmap = go.Heatmap(
        x=epochs,
        y=ks,
        z=z,
        colorscale="Magma",
        colorbar=dict(title="log10 loss", thickness=10),
        name="excluded loss",
        hovertemplate="epoch %{x}, k = %{y} removed<br>log10 excluded loss %{z:.2f}<extra></extra>",
    )
    caption = (
        "Excluded loss (logit level, train) when only frequency k is removed from the logits (its "
        "cos/sin(ω_k(φ_a+φ_b)) directions), at every checkpoint, log10 colour scale: a bright row is a frequency "
        f"the model relies on; {_keys_text(keys)}"
    )
    title = "Excluded loss of each single frequency over training"
    return _frequency_by_epoch(heatmap, title, caption, "frequency k removed", max(ks), keys, style)


def _log10(v: float) -> float | None:
    """log10 of a positive loss; None (a gap) otherwise."""
    v = float(v)
    return math.log10(v) if v > 0 and math.isfinite(v) else None
