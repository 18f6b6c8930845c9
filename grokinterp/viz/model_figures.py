"""Figures of one checkpoint: what a model looks like at one epoch.

Each ``plot_*`` function here draws arrays it is given, computed elsewhere
(``grokinterp.analysis.checkpoint_views.checkpoint_view``, ``spectra``, ``clusters``,
``attention``): the embedding and W_L spectra in the task's Fourier basis, the neuron-frequency
clusters (sizes, and the histogram of the variance each neuron's best frequency explains), the
activations of the cleanest neuron of each cluster over the input grid, the attention from "=" to
a per head, and the excluded loss of each single frequency (from measures.csv). The neuron
figures (activations ordered by phase, and in the 2D Fourier basis) are drawn by
``grokinterp.viz.neuron_figures`` and re-exported here.
``checkpoint_figures`` draws a whole ``CheckpointView``.

>>> view = checkpoint_view(run.model(), run.dataset, view_settings(run))
>>> checkpoint_figures(view)["embedding_spectrum"].show()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

from grokinterp.viz.curves import analysis_of, measures_table
from grokinterp.viz.heatmap_grid import ab_heatmap_grid
from grokinterp.viz.neuron_figures import plot_neuron_fourier, plot_neuron_heatmaps
from grokinterp.viz.style import (
    COLORS,
    LOG_AXIS,
    OKABE_ITO,
    StyleArg,
    get_style,
    new_figure,
    style_figure,
    tex_label,
)

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor

    from grokinterp.analysis.checkpoint_views import CheckpointView
    from grokinterp.analysis.clusters import NeuronClusters
    from grokinterp.io.runs import Run

__all__ = [
    "MODEL_FIGURES",
    "SPECTRUM_TEXT",
    "attention_shares_text",
    "checkpoint_figures",
    "plot_attention",
    "plot_cluster_sizes",
    "plot_embedding_spectrum",
    "plot_fraction_explained_hist",
    "plot_neuron_fourier",
    "plot_neuron_heatmaps",
    "plot_per_frequency_excluded_loss",
    "plot_spectrum",
    "plot_wl_spectrum",
]


def _freq_ticks(n_k: int, start: int = 1) -> list[int]:
    """Regular ticks of a frequency axis: every k (up to 15 frequencies), else every 5th (up to 30)
    or every 10th k."""
    step = 1 if n_k <= 15 else 5 if n_k <= 30 else 10
    return list(range(start if step == 1 else 0, n_k + 1, step))


def _spectrum_parts(values, names: Sequence[str]) -> tuple[float | None, dict[str, dict[int, float]]]:
    """(const, {"cos": {k: value}, "sin": {k: value}}) from a spectrum and its ``basis_names``."""
    parts: dict[str, dict[int, float]] = {"cos": {}, "sin": {}}
    const = None
    for name, v in zip(names, [float(v) for v in values], strict=True):
        if name == "const":
            const = v
        else:
            kind, k = name.split()
            parts[kind][int(k)] = v
    return const, parts


#: Title and caption of the spectrum of each matrix (paper Fig. 3); ``{on}``: " of <basis>".
SPECTRUM_TEXT = {
    "W_E": (
        "Embedding W_E in the Fourier basis{on}",
        "Norm of each Fourier component of the token embedding W_E{on} (cos and sin of each frequency k).",
    ),
    "W_L": (
        "Neuron-logit map W_L in the Fourier basis{on}",
        "Norm of each Fourier component of the neuron-logit map W_L = W_out W_U{on} (cos and sin of each "
        "frequency k, over the output token).",
    ),
}


def plot_spectrum(
    values: Sequence[float],
    names: Sequence[str],
    key_freqs: Sequence[int] | None = None,
    *,
    matrix: str = "W_E",
    tex: bool = False,
    basis: str | None = None,
    style: StyleArg = None,
) -> go.Figure:
    """Norm of each Fourier component of ``matrix`` (paper Fig. 3): "W_E", the embedding
    (``spectra.embedding_spectrum(model, basis)``), or "W_L", the neuron-logit map W_L = W_out W_U
    (``spectra.wl_spectrum``). One bar per frequency k: cos and sin side by side (legend
    "cos"/"sin"; ``names`` from ``fourier.basis_names(m)``), the constant at k = 0, key
    frequencies marked with their number above the bars; regular ticks. ``basis``: its name, for
    the title; ``tex``: a MathJax axis label (screen style)."""
    style = get_style(style)
    names = list(names)
    title, caption = (text.format(on=f" of {basis}" if basis else "") for text in SPECTRUM_TEXT[matrix])
    const, parts = _spectrum_parts(values, names)
    n_k = max([*parts["cos"], 0])
    keys = sorted(int(k) for k in key_freqs or () if int(k) in parts["cos"])
    if style.titles and keys:
        title += f"<br><sup>key frequencies: {', '.join(str(k) for k in keys)}</sup>"
    if keys:
        caption += f" Key frequencies (marked): {', '.join(str(k) for k in keys)}."
    fig = new_figure(
        title,
        style,
        caption=caption,
        column="single" if n_k <= 20 else "double",
        xaxis_title=tex_label(
            tex and style.tex,
            "frequency k (ω<sub>k</sub> = 2πk/m; k = 0: constant)",
            r"$\text{frequency } k\ (\omega_k = 2\pi k/m;\ k = 0\text{: constant})$",
        ),
        yaxis_title="norm",
        xaxis_showgrid=False,
        barmode="group",
        bargap=0.15,
        bargroupgap=0.0,
        margin_t=80,
    )
    if const is not None:
        fig.add_trace(go.Bar(x=[0], y=[const], name="const", marker_color="#777777", showlegend=False))
    for kind in ("cos", "sin"):
        ks = sorted(parts[kind])
        fig.add_trace(go.Bar(x=ks, y=[parts[kind][k] for k in ks], name=kind, marker_color=COLORS[kind]))
    if keys:
        top = max(abs(v) for v in [float(v) for v in values])
        fig.add_trace(
            go.Scatter(
                x=keys,
                y=[max(parts["cos"].get(k, 0.0), parts["sin"].get(k, 0.0)) + 0.03 * top for k in keys],
                mode="markers+text",
                marker=dict(symbol="triangle-down", size=style.marker_size + 2, color=OKABE_ITO["black"]),
                text=[str(k) for k in keys],
                textposition="top center",
                name="key frequency",
                cliponaxis=False,
            )
        )
        fig.update_yaxes(range=[0, top * 1.18])
    fig.update_xaxes(tickmode="array", tickvals=_freq_ticks(n_k, 0), range=[-0.7, n_k + 0.7], ticks="outside")
    return style_figure(fig, style)


def plot_embedding_spectrum(
    values: Sequence[float], names: Sequence[str], key_freqs: Sequence[int] | None = None, **options: Any
) -> go.Figure:
    """``plot_spectrum`` of the embedding W_E (paper Fig. 3, W_E panel; demo "Fourier components
    of the embedding"); ``options``: ``tex``, ``basis``, ``style``."""
    return plot_spectrum(values, names, key_freqs, matrix="W_E", **options)


def plot_wl_spectrum(
    values: Sequence[float], names: Sequence[str], key_freqs: Sequence[int] | None = None, **options: Any
) -> go.Figure:
    """``plot_spectrum`` of the neuron-logit map W_L = W_out W_U (paper Fig. 3, W_L panel);
    ``options``: ``tex``, ``basis``, ``style``."""
    return plot_spectrum(values, names, key_freqs, matrix="W_L", **options)


def _cluster_label(k: int) -> str:
    return "unexplained" if k < 0 else f"k = {k}"


def plot_cluster_sizes(clusters: NeuronClusters, *, style: StyleArg = None) -> go.Figure:
    """Number of MLP neurons in each frequency cluster (and unexplained), paper Sec. 4.2."""
    style = get_style(style)
    sizes = clusters.cluster_sizes()
    order = sorted(k for k in sizes if k >= 0) + ([-1] if -1 in sizes else [])
    labels = [_cluster_label(k) for k in order]
    counts = [sizes[k] for k in order]
    layer = f" of layer {clusters.layer}" if getattr(clusters, "layer", None) is not None else ""
    fig = new_figure(
        f"Neuron clusters (threshold {clusters.threshold:g}, {sum(counts)} neurons)",
        style,
        caption=f"Number of MLP neurons{layer} in each frequency cluster: neurons whose best single frequency k "
        f"explains at least {clusters.threshold:g} of their activation variance; the rest are unexplained "
        f"({sum(counts)} neurons).",
        xaxis_title="cluster (frequency k)",
        yaxis_title="number of neurons",
        showlegend=False,
    )
    fig.add_trace(
        go.Bar(
            x=labels,
            y=counts,
            text=counts,
            textposition="outside",
            cliponaxis=False,
            marker_color=[COLORS["other"] if k < 0 else COLORS["key"] for k in order],
            name="neurons",
        )
    )
    fig.update_xaxes(type="category", showgrid=False)
    fig.update_yaxes(range=[0, max(counts, default=1) * 1.15])
    return style_figure(fig, style)


def plot_fraction_explained_hist(clusters: NeuronClusters, *, style: StyleArg = None) -> go.Figure:
    """Histogram over neurons of the fraction of their variance explained by their best single
    frequency, with the clustering threshold (paper Sec. 4.2)."""
    style = get_style(style)
    alive = clusters.best_freq >= 0
    fracs = [float(x) for x in clusters.best_frac[alive].tolist()]
    thr = clusters.threshold
    fig = new_figure(
        "Variance of each neuron explained by one frequency",
        style,
        caption="Histogram over MLP neurons of the fraction of each neuron's activation variance explained by its "
        f"best single frequency; dashed: the cluster threshold {thr:g} ({clusters.frac_explained:.0%} of neurons "
        "above).",
        xaxis_title="variance explained by the best frequency",
        yaxis_title="number of neurons",
        showlegend=True,
        bargap=0.05,
    )
    fig.add_trace(
        go.Histogram(x=fracs, xbins=dict(start=0, end=1.0001, size=0.025), marker_color=COLORS["train"], name="neurons")
    )
    fig.add_trace(
        go.Scatter(
            x=[thr, thr],
            y=[0, 1],
            yaxis="y2",
            mode="lines",
            line=dict(color=COLORS["key"], dash="dash", width=style.line_width),
            name=f"threshold {thr:g} ({clusters.frac_explained:.0%} above)",
        )
    )
    fig.update_layout(
        xaxis_range=[0, 1.0001],
        yaxis2=dict(overlaying="y", range=[0, 1], visible=False),
        legend=dict(x=0.02, y=0.97, xanchor="left"),
    )
    return style_figure(fig, style)


def plot_attention(
    attention: Float[Tensor, "heads p p"] | Float[Tensor, "layers heads pos p p"],
    layer: int = 0,
    *,
    positions: Sequence[str] = ("a", "b", "="),
    max_cols: int = 4,
    style: StyleArg = None,
) -> go.Figure:
    """Attention paid by the last position to the a position (the first), per head, as (a, b)
    heatmaps (paper Sec. 4.1, periodic attention; demo "Attention Patterns"). ``attention``: the
    attention from the last position to every position for every layer, (layers, heads, positions,
    p, p) (``checkpoint_views.attention_from_last``), drawn for every layer and head, with
    ``positions`` the token labels (``checkpoint_views.position_labels``); or the share on a of one
    ``layer``, (heads, p, p) (``attention.attention_to_a_b``). The caption says, from the numbers
    drawn, where each head's attention goes on average over the grid."""
    style = get_style(style)
    att = attention.detach().cpu().double()
    last, first = positions[-1], positions[0]
    if att.ndim == 3:  # one layer's share on a: the rest is not known here
        att, layers, positions = att[None, :, None], [layer], positions[:1]
    else:
        layers = list(range(att.shape[0]))
    n_layers, heads, p = att.shape[0], att.shape[1], att.shape[-1]
    panels = [(li, h) for li in range(n_layers) for h in range(heads)]
    name = (lambda li, h: f"layer {layers[li]}, head {h}") if n_layers > 1 else (lambda li, h: f"head {h}")
    heatmaps = [
        go.Heatmap(
            z=att[li, h, 0].numpy(),
            coloraxis="coloraxis",
            name=name(li, h),
            hovertemplate="a=%{y} b=%{x}<br>attention=%{z:.3f}<extra></extra>",
        )
        for li, h in panels
    ]
    which = f"layer {layers[0]}" if n_layers == 1 else "layers " + ", ".join(map(str, layers))
    return ab_heatmap_grid(
        heatmaps,
        [name(li, h) for li, h in panels],
        f'Attention from "{last}" to {first} ({which})',
        p,
        max_cols,
        coloraxis=dict(colorscale="Blues", cmin=0, cmax=1, colorbar=dict(title="attention")),
        style=style,
        caption=f'Attention paid by the final "{last}" token to the {first} token, per head of {which}, over the '
        f"input grid (a down, b across; p = {p}). {attention_shares_text(att, layers, positions)}",
    )


def attention_shares_text(
    att: Float[Tensor, "layers heads pos p p"], layers: Sequence[int], positions: Sequence[str]
) -> str:
    """Where each head's attention goes, from the numbers: the mean over the grid of the attention
    to each position (named by ``positions``), per layer and head, e.g. 'Mean over the grid, layer
    0: head 0 a 0.50, b 0.49, = 0.01; ...'. Positions below 0.005 are left out."""
    means = att.nanmean(dim=(-2, -1))  # (layers, heads, pos)
    parts = []
    for li, layer in enumerate(layers):
        heads = []
        for h in range(means.shape[1]):
            shares = [f"{positions[i]} {float(v):.2f}" for i, v in enumerate(means[li, h]) if float(v) >= 0.005]
            heads.append(f"head {h} " + ", ".join(shares))
        parts.append(f"layer {layer}: " + "; ".join(heads))
    scope = "to each position" if means.shape[2] > 1 else f"to {positions[0]}"
    return f"Mean attention over the grid {scope}, " + "; ".join(parts) + "."


def _key_freqs_of(run: Run | None) -> list[int]:
    """The key frequencies of the run's typed analysis (never parsed from measures.csv)."""
    a = analysis_of(run)
    return [] if a is None else a.key_freqs


def _measures_row(source, epoch: int | None) -> tuple[dict[str, Any], Run | None]:
    """A row of measures (dict) at ``epoch`` (default: the last) from a Run, a DataFrame or a
    mapping (one row already)."""
    from grokinterp.io.runs import Run

    run = source if isinstance(source, Run) else None
    if isinstance(source, Mapping):
        return dict(source), None
    table = measures_table(source) if run is not None else source
    if hasattr(table, "iloc"):
        if epoch is None:
            return table.iloc[-1].to_dict(), run
        hit = table[table["epoch"] == epoch]
        if hit.empty:
            raise ValueError(f"no measures at epoch {epoch} (epochs: {table['epoch'].tolist()})")
        return hit.iloc[0].to_dict(), run
    raise TypeError(f"expected a Run, a DataFrame of measures or a row mapping (got {type(source).__name__})")


def plot_per_frequency_excluded_loss(
    run_or_table,
    epoch: int | None = None,
    key_freqs: Sequence[int] | None = None,
    *,
    tex: bool = False,
    style: StyleArg = None,
) -> go.Figure:
    """Excluded loss (logit level, train split) when only frequency k is removed, for every k, at
    one checkpoint (default: the last), on a log axis: removing a key frequency (vermillion) hurts,
    removing any other does not. ``run_or_table``: a Run, its measures DataFrame or one row."""
    style = get_style(style)
    row, run = _measures_row(run_or_table, epoch)
    ks = sorted(int(c[len("excluded_loss_k") :]) for c in row if c.startswith("excluded_loss_k"))
    if not ks:
        raise ValueError("no excluded_loss_k{k} columns in the measures (not defined for this operation)")
    keys = set(key_freqs if key_freqs is not None else _key_freqs_of(run))
    vals = {k: float(row[f"excluded_loss_k{k}"]) for k in ks}
    title_epoch = f" (epoch {int(row['epoch'])})" if "epoch" in row else ""
    drawn = [f"key frequencies {', '.join(map(str, sorted(keys & set(ks))))} labelled" if keys & set(ks) else
             "no key frequencies to label"]  # fmt: skip
    if "train_loss" in row:
        drawn.append("dashed: the train loss with nothing removed")
    fig = new_figure(
        "Excluded loss of each single frequency" + title_epoch,
        style,
        caption="Excluded loss (logit level, train) when only frequency k is removed from the logits (its "
        f"cos/sin(ω_k(φ_a+φ_b)) directions), for every k{', at epoch ' + str(int(row['epoch'])) if 'epoch' in row else ''}"
        f"; {'; '.join(drawn)}; log scale.",
        column="single" if len(ks) <= 20 else "double",
        xaxis_title=tex_label(
            tex and style.tex,
            "frequency k removed (ω<sub>k</sub> = 2πk/m)",
            r"$\text{frequency } k \text{ removed }(\omega_k = 2\pi k/m)$",
        ),
        yaxis_title="excluded loss",
        yaxis=LOG_AXIS,
        barmode="overlay",
    )
    other = [k for k in ks if k not in keys]
    key = [k for k in ks if k in keys]
    fig.add_trace(
        go.Bar(x=other, y=[vals[k] for k in other], width=0.8, name="other frequencies", marker_color=COLORS["other"])
    )
    fig.add_trace(
        go.Bar(
            x=key,
            y=[vals[k] for k in key],
            width=0.8,
            name="key frequencies",
            marker_color=COLORS["key"],
            text=[str(k) for k in key],
            textposition="outside",
            textfont_size=style.annotation_size,
            constraintext="none",
            cliponaxis=False,
        )
    )
    if "train_loss" in row:
        fig.add_hline(
            y=float(row["train_loss"]), line=dict(color=COLORS["threshold"], dash="dash", width=style.line_width * 0.7)
        )
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line=dict(color=COLORS["threshold"], dash="dash", width=style.line_width * 0.7),
                name="train loss (nothing removed)",
            )
        )
    fig.update_xaxes(showgrid=False, range=[0.3, ks[-1] + 0.7], tickmode="array", tickvals=_freq_ticks(ks[-1]))
    return style_figure(fig, style)


#: The figures ``checkpoint_figures`` draws from a ``CheckpointView``, in order.
MODEL_FIGURES = (
    "embedding_spectrum",
    "wl_spectrum",
    "cluster_sizes",
    "fraction_explained_hist",
    "neuron_heatmaps",
    "neuron_fourier",
    "attention",
)


def checkpoint_figures(
    view: CheckpointView, names: Sequence[str] = MODEL_FIGURES, *, tex: bool = False, style: StyleArg = None
) -> dict[str, go.Figure]:
    """The figures of ``names`` (``MODEL_FIGURES``) drawn from one checkpoint's ``view``, as
    {name: Figure}: those its arrays are there for (the Fourier figures need ``view.fourier``,
    ``attention`` a model with attention). Without any neuron cluster ``neuron_heatmaps`` and
    ``neuron_fourier`` are figures with only a note; leave them out of ``names`` to skip them. ``tex``: MathJax axis labels."""
    style = get_style(style)
    s = view.settings
    draw = {
        "embedding_spectrum": lambda: plot_embedding_spectrum(
            view.embedding_spectrum, view.basis_names, s.key_freqs, tex=tex, basis=s.basis.name, style=style
        ),
        "wl_spectrum": lambda: plot_wl_spectrum(
            view.wl_spectrum, view.basis_names, s.key_freqs, tex=tex, basis=s.basis.name, style=style
        ),
        "cluster_sizes": lambda: plot_cluster_sizes(view.clusters, style=style),
        "fraction_explained_hist": lambda: plot_fraction_explained_hist(view.clusters, style=style),
        "neuron_heatmaps": lambda: plot_neuron_heatmaps(
            view.neuron_acts, view.clusters, axis_names=s.axis_names, style=style
        ),
        "neuron_fourier": lambda: plot_neuron_fourier(
            view.neuron_terms, view.clusters, axis_names=s.axis_names, style=style
        ),
        "attention": lambda: plot_attention(view.attention, positions=view.positions, style=style),
    }
    there = {name: view.fourier for name in MODEL_FIGURES} | {"attention": view.attention is not None}
    return {name: draw[name]() for name in names if there[name]}
