"""Figures of a run in one paper style (plotly), and batch export of all of them.

Every ``plot_*`` function returns a ``plotly.graph_objects.Figure`` drawn with the shared
``TEMPLATE`` (white background, Arial/Liberation Sans 14 pt, 900 x 500 px, boxed axes); the
over-time figures shade and name the three phases of ``run.analysis`` (Nanda et al. 2023,
Sec. 5.2) and use log axes where the paper does (losses).

>>> run = grokinterp.load_run("checkpoints/nanda-p113")
>>> plot_restricted_excluded(run).show()
>>> write_all_figures("checkpoints/nanda-p113", "figures", fmt="pdf")

Static export (png, pdf, svg) goes through kaleido 1.x, which drives a Chromium: all figures of
``write_all_figures`` / ``export_figures`` are rendered in ONE browser session. MathJax, for the
LaTeX labels, is only ever loaded from a local copy (``$GROKINTERP_MATHJAX`` or
``.mathjax/node_modules/mathjax/es5/tex-svg.js`` in the repository, installed by
``scripts/setup.sh``); without one, labels stay plain text. Without a Chromium the figures are
written as self-contained HTML instead (plotly.js next to them, no network needed).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from grokinterp.phases import PHASE_NAMES

if TYPE_CHECKING:
    import pandas as pd
    from jaxtyping import Float
    from torch import Tensor

    from grokinterp.clusters import NeuronClusters
    from grokinterp.runs import Run

__all__ = [
    "FIGURE_NAMES",
    "TEMPLATE",
    "add_phase_bands",
    "export_figures",
    "find_browser",
    "find_mathjax",
    "make_all_figures",
    "plot_accuracy",
    "plot_attention",
    "plot_cluster_sizes",
    "plot_cos_apb_c",
    "plot_embedding_spectrum",
    "plot_frac_neurons_explained",
    "plot_fraction_explained_hist",
    "plot_gini",
    "plot_loss",
    "plot_neuron_heatmaps",
    "plot_per_frequency_excluded_loss",
    "plot_restricted_excluded",
    "plot_restricted_excluded_neuron",
    "plot_weight_norm",
    "plot_wl_spectrum",
    "write_all_figures",
]

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Style
# ----------------------------------------------------------------------------------------------

WIDTH, HEIGHT = 900, 500
FONT = "Arial, Liberation Sans, Helvetica, sans-serif"
#: Line colours by role, used by every figure (train and test keep their colour everywhere).
COLORS = {
    "train": "#1f77b4",
    "test": "#d62728",
    "restricted": "#2ca02c",
    "excluded": "#9467bd",
    "W_E": "#1f77b4",
    "W_L": "#ff7f0e",
    "weights": "#444444",
    "key": "#d62728",
    "other": "#9bb7d4",
    "threshold": "#555555",
}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
PHASE_COLORS = dict(zip(PHASE_NAMES, ("#f4a582", "#92c5de", "#b8e186"), strict=True))
PHASE_OPACITY = 0.35

_AXIS = dict(
    showline=True,
    linecolor="black",
    linewidth=1,
    mirror=True,
    ticks="outside",
    showgrid=True,
    gridcolor="#e8e8e8",
    zeroline=False,
    exponentformat="none",
    separatethousands=True,
    title=dict(standoff=8),
)

#: The shared paper style, also registered as ``plotly.io.templates["grokinterp"]``.
TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family=FONT, size=14, color="#222222"),
        title=dict(font=dict(size=17), x=0.5, xanchor="center"),
        paper_bgcolor="white",
        plot_bgcolor="white",
        width=WIDTH,
        height=HEIGHT,
        margin=dict(l=80, r=30, t=70, b=65),
        colorway=PALETTE,
        xaxis=_AXIS,
        yaxis=_AXIS,
        legend=dict(bgcolor="rgba(255,255,255,0.9)", bordercolor="#cccccc", borderwidth=1),
        bargap=0.15,
    )
)
pio.templates["grokinterp"] = TEMPLATE


#: A log axis with 10^k tick labels (the paper's loss axes).
_LOG = dict(type="log", exponentformat="power")


def _figure(title: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title_text=title, **layout)
    return fig


def _tex(tex: bool, plain: str, latex: str) -> str:
    """A LaTeX label where MathJax renders it (``tex=True``), else the plain (unicode) one."""
    return latex if tex else plain


# ----------------------------------------------------------------------------------------------
# Phases
# ----------------------------------------------------------------------------------------------

PhasesArg = Mapping[str, Any] | Sequence[int | None] | bool | None


def _phase_spans(phases: PhasesArg, run: Run | None = None) -> dict[str, tuple[float, float]]:
    """{phase name: (start, end)} from ``phases``: None -> ``run.analysis`` (none if the run is not
    analysed), False -> none, a dict as in analysis.json (``{"phases": {...}}`` or the inner
    dict), or three boundaries such as ``phases.PAPER_PHASES``."""
    if phases is False:
        return {}
    if phases is None or phases is True:
        analysis = run.analysis if run is not None else None
        if not analysis or "phases" not in analysis:
            return {}
        phases = analysis["phases"]
    if isinstance(phases, Mapping):
        inner = phases.get("phases", phases)
        spans = {name: tuple(v) for name, v in inner.items()}
    else:
        bounds = list(phases)
        if len(bounds) != 3:
            raise ValueError(f"phases needs three boundaries (got {bounds!r})")
        spans = dict(zip(PHASE_NAMES, zip([0, *bounds[:2]], bounds, strict=True), strict=True))
    return {n: (s, e) for n, (s, e) in spans.items() if s is not None and e is not None and e > s}


def add_phase_bands(
    fig: go.Figure,
    phases: PhasesArg = None,
    run: Run | None = None,
    *,
    row: int | str | None = None,
    col: int | str | None = None,
    legend: bool = True,
) -> go.Figure:
    """Shade the phases (see ``_phase_spans`` for ``phases``) behind the data and name them in the
    legend (one square marker per phase, legend group "phase")."""
    spans = _phase_spans(phases, run)
    for name, (start, end) in spans.items():
        color = PHASE_COLORS.get(name, "#dddddd")
        kw = {} if row is None else {"row": row, "col": col}
        fig.add_vrect(x0=start, x1=end, fillcolor=color, opacity=PHASE_OPACITY, layer="below", line_width=0, **kw)
        if legend:
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    marker=dict(symbol="square", size=14, color=color, opacity=0.8),
                    name=f"{name} ({start:g}–{end:g})",
                    legendgroup="phase",
                    legendgrouptitle_text="phase",
                    meta={"phase": name, "start": start, "end": end},
                    hoverinfo="skip",
                )
            )
    return fig


# ----------------------------------------------------------------------------------------------
# Over training (metrics.jsonl and measures.csv)
# ----------------------------------------------------------------------------------------------


def _measures(run: Run) -> pd.DataFrame:
    table = run.measures
    if table is None:
        raise ValueError(f"{run.path}: no measures.csv yet; run grokinterp.analyze_run(run.path) first")
    return table


def _analysis(run: Run | None):
    """The typed analysis.json of a run (None if not analysed)."""
    from grokinterp.analysis import Analysis

    return None if run is None else Analysis.load(run.path)


def _not_defined_note(fig: go.Figure, run: Run | None, what: str) -> go.Figure:
    """A visible annotation saying that ``what`` is not defined for this run's operation."""
    a = _analysis(run)
    reason = (a.basis.get("reason") if a is not None else None) or "no Fourier basis for this task"
    fig.add_annotation(
        text=f"{what}: not defined for this operation<br><sup>{reason}</sup>",
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font=dict(size=14, color="#555555"),
    )
    return fig


def _line(x, y, name: str, color: str | None = None, markers: bool = False, dash: str | None = None) -> go.Scatter:
    """A line of the finite points of (x, y) only (undefined measures are NaN)."""
    pts = [(a, b) for a, b in zip(x, y, strict=True) if b is not None and b == b]
    return go.Scatter(
        x=[a for a, _ in pts],
        y=[b for _, b in pts],
        name=name,
        mode="lines+markers" if markers else "lines",
        line=dict(color=color, width=2.2, dash=dash),
        marker=dict(size=6),
    )


def plot_loss(run: Run, phases: PhasesArg = None) -> go.Figure:
    """Train and test loss (metrics.jsonl, every evaluation) on a log axis, phases shaded (paper
    Fig. 1 / demo "Loss Curves")."""
    m = run.metrics
    fig = _figure("Loss", xaxis_title="epoch", yaxis_title="cross-entropy loss", yaxis=_LOG)
    fig.add_trace(_line(m["epoch"], m["train_loss"], "train loss", COLORS["train"]))
    fig.add_trace(_line(m["epoch"], m["test_loss"], "test loss", COLORS["test"]))
    return add_phase_bands(fig, phases, run)


def plot_accuracy(run: Run, phases: PhasesArg = None) -> go.Figure:
    """Train and test accuracy (metrics.jsonl), phases shaded.

    Rows without an accuracy (an imported demo run logs losses every epoch but accuracies only at
    its checkpoints) are skipped, so the lines do not break into dots.
    """
    m = run.metrics
    fig = _figure("Accuracy", xaxis_title="epoch", yaxis_title="accuracy", yaxis_range=[-0.02, 1.02])
    for col, name in (("train_acc", "train"), ("test_acc", "test")):
        acc = m[col].dropna() if col in m else m["epoch"].iloc[:0]  # no column: an empty trace
        fig.add_trace(_line(m["epoch"][acc.index], acc, f"{name} accuracy", COLORS[name]))
    return add_phase_bands(fig, phases, run)


#: Legend names of the restricted / excluded loss variants (which logits, which split).
VARIANT_NAMES = {
    "restricted_loss": "restricted loss (logit level, all pairs)",
    "restricted_loss_train": "restricted loss (logit level, train)",
    "excluded_loss": "excluded loss (logit level, train)",
    "restricted_loss_neuron": "restricted loss (neuron level, test)",
    "excluded_loss_neuron": "excluded loss (neuron level, train)",
}


def plot_restricted_excluded(run: Run, phases: PhasesArg = None) -> go.Figure:
    """Paper Fig. 7: train and test loss (every evaluation) with the restricted loss (logit level,
    all p*p pairs) and the excluded loss (logit level, train split) at the checkpoints, log y."""
    m, t = run.metrics, _measures(run)
    fig = _figure("Restricted and excluded loss", xaxis_title="epoch", yaxis_title="cross-entropy loss", yaxis=_LOG)
    fig.add_trace(_line(m["epoch"], m["train_loss"], "train loss", COLORS["train"]))
    fig.add_trace(_line(m["epoch"], m["test_loss"], "test loss", COLORS["test"]))
    if _defined(t, "restricted_loss"):
        fig.add_trace(
            _line(t["epoch"], t["restricted_loss"], VARIANT_NAMES["restricted_loss"], COLORS["restricted"], True)
        )
        fig.add_trace(_line(t["epoch"], t["excluded_loss"], VARIANT_NAMES["excluded_loss"], COLORS["excluded"], True))
    else:
        _not_defined_note(fig, run, "restricted and excluded loss")
    return add_phase_bands(fig, phases, run)


def _defined(t, col: str) -> bool:
    return col in t and bool(t[col].notna().any())


def plot_restricted_excluded_neuron(run: Run, phases: PhasesArg = None) -> go.Figure:
    """The TransformerLens demo's neuron-level variants: restricted loss (neurons projected on the
    key frequencies, test split) and excluded loss (train split), with train and test loss."""
    t = _measures(run)
    fig = _figure(
        "Restricted and excluded loss, neuron level (TransformerLens demo)",
        xaxis_title="epoch",
        yaxis_title="cross-entropy loss",
        yaxis=_LOG,
    )
    fig.add_trace(_line(t["epoch"], t["train_loss"], "train loss", COLORS["train"], True))
    fig.add_trace(_line(t["epoch"], t["test_loss"], "test loss", COLORS["test"], True))
    if not _defined(t, "restricted_loss_neuron"):
        _not_defined_note(fig, run, "neuron-level restricted and excluded loss")
    for col, color in (("restricted_loss_neuron", COLORS["restricted"]), ("excluded_loss_neuron", COLORS["excluded"])):
        if _defined(t, col):
            fig.add_trace(_line(t["epoch"], t[col], VARIANT_NAMES[col], color, True))
    return add_phase_bands(fig, phases, run)


def plot_gini(run: Run, phases: PhasesArg = None) -> go.Figure:
    """Gini coefficients of the per-frequency norms of W_E and W_L over training (paper Fig. 7)."""
    t = _measures(run)
    fig = _figure("Sparsity in the Fourier basis", xaxis_title="epoch", yaxis_title="Gini coefficient")
    if not _defined(t, "gini_W_E"):
        _not_defined_note(fig, run, "Gini coefficients in the Fourier basis")
    else:
        fig.add_trace(_line(t["epoch"], t["gini_W_E"], "Gini of W_E frequency norms", COLORS["W_E"], True))
        fig.add_trace(_line(t["epoch"], t["gini_W_L"], "Gini of W_L frequency norms", COLORS["W_L"], True))
    return add_phase_bands(fig, phases, run)


def plot_weight_norm(run: Run, phases: PhasesArg = None) -> go.Figure:
    """Total sum of squared weights over training (paper Fig. 7)."""
    t = _measures(run)
    fig = _figure("Weight norm", xaxis_title="epoch", yaxis_title="sum of squared weights")
    fig.add_trace(_line(t["epoch"], t["sum_sq_weights"], "sum of squared weights", COLORS["weights"], True))
    return add_phase_bands(fig, phases, run)


def plot_frac_neurons_explained(run: Run, phases: PhasesArg = None) -> go.Figure:
    """Fraction of MLP neurons explained by a single frequency (at the analysis threshold)."""
    t = _measures(run)
    threshold = (run.analysis or {}).get("threshold")
    label = "fraction of neurons explained" + (f" (≥ {threshold:g} by one frequency)" if threshold else "")
    fig = _figure(
        "Neurons explained by one frequency",
        xaxis_title="epoch",
        yaxis_title="fraction of neurons",
        yaxis_range=[-0.02, 1.02],
    )
    if not _defined(t, "frac_neurons_explained"):
        _not_defined_note(fig, run, "neuron-frequency clusters")
        return add_phase_bands(fig, phases, run)
    layer_cols = sorted(c for c in t.columns if c.startswith("frac_neurons_explained_l"))
    if len(layer_cols) > 1:
        for i, c in enumerate(layer_cols):
            name = f"layer {c[len('frac_neurons_explained_l') :]}"
            fig.add_trace(_line(t["epoch"], t[c], f"{label}, {name}", PALETTE[i % len(PALETTE)], True))
    else:
        fig.add_trace(_line(t["epoch"], t["frac_neurons_explained"], label, COLORS["weights"], True))
    return add_phase_bands(fig, phases, run)


def _key_freqs_of(run: Run | None) -> list[int]:
    """The key frequencies of the run's typed analysis (never parsed from measures.csv)."""
    a = _analysis(run)
    return [] if a is None else a.key_freqs


def plot_cos_apb_c(run: Run, phases: PhasesArg = None) -> go.Figure:
    """Coefficient of the logits on cos(w_k(a+b-c)) for each key frequency over training (paper
    Fig. 11, demo "Coefficients with Predicted Logits")."""
    t = _measures(run)
    cols = sorted((c for c in t.columns if c.startswith("cos_apb_c_k")), key=lambda c: int(c[len("cos_apb_c_k") :]))
    fig = _figure(
        "Logits along cos(ω<sub>k</sub>(φ<sub>a</sub>+φ<sub>b</sub>−φ<sub>c</sub>)) of the key frequencies",
        xaxis_title="epoch",
        yaxis_title="coefficient",
    )
    for i, c in enumerate(cols):
        k = int(c[len("cos_apb_c_k") :])
        fig.add_trace(_line(t["epoch"], t[c], f"k = {k}", PALETTE[i % len(PALETTE)], True))
    if not cols:
        _not_defined_note(fig, run, "cos(ω(φa+φb−φc)) coefficients")
    return add_phase_bands(fig, phases, run)


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------


def _bar_colors(names: Sequence[str], key_freqs: Sequence[int] | None) -> list[str]:
    keys = {int(k) for k in key_freqs or ()}
    return [COLORS["key"] if n.split()[-1].isdigit() and int(n.split()[-1]) in keys else COLORS["train"] for n in names]


def _spectrum_ticks(names: list[str], key_freqs) -> list[str]:
    """Tick labels of a spectrum: every component for small p, else const, cos k for every 5th
    (p <= 60) or 10th k, and the key frequencies."""
    n_k = (len(names) - 1) // 2
    if n_k <= 15:
        return names
    step = 5 if n_k <= 30 else 10
    keys = {int(k) for k in key_freqs or ()}
    near_key = {k + d for k in keys for d in (-2, -1, 1, 2)}
    ks = sorted(keys | {k for k in range(step, n_k + 1, step) if k not in near_key})
    return ["const"] + [f"cos {k}" for k in ks]


def _spectrum_figure(values, names: list[str], title: str, key_freqs, tex: bool) -> go.Figure:
    if key_freqs:
        title += f"<br><sup>key frequencies (red): {', '.join(str(k) for k in sorted(key_freqs))}</sup>"
    fig = _figure(
        title,
        xaxis_title=_tex(
            tex,
            "Fourier component (cos/sin of ω<sub>k</sub> = 2πk/m)",
            r"$\text{Fourier component }\cos/\sin(\omega_k),\ \omega_k = 2\pi k/m$",
        ),
        yaxis_title="norm",
        xaxis_showgrid=False,
        showlegend=False,
        bargap=0.1,
        margin_t=80,
    )
    fig.add_trace(
        go.Bar(x=names, y=[float(v) for v in values], marker_color=_bar_colors(names, key_freqs), name="norm")
    )
    fig.update_xaxes(type="category", tickangle=-90, tickfont_size=11, tickvals=_spectrum_ticks(names, key_freqs))
    return fig


def plot_embedding_spectrum(
    values: Sequence[float],
    names: Sequence[str],
    key_freqs: Sequence[int] | None = None,
    *,
    tex: bool = False,
    basis: str | None = None,
) -> go.Figure:
    """Norm of each Fourier component of the embedding, ``spectra.embedding_spectrum(model, basis)``
    (paper Fig. 3, W_E panel), one bar per component (const, cos 1, sin 1, ...; ``names`` from
    ``fourier.basis_names(m)``); key frequencies red."""
    title = "Embedding W_E in the Fourier basis" + (f" of {basis}" if basis else "")
    return _spectrum_figure(values, list(names), title, key_freqs, tex)


def plot_wl_spectrum(
    values: Sequence[float],
    names: Sequence[str],
    key_freqs: Sequence[int] | None = None,
    *,
    tex: bool = False,
    basis: str | None = None,
) -> go.Figure:
    """Norm of each Fourier component of the neuron-logit map W_L = W_out W_U
    (``spectra.wl_spectrum``; paper Fig. 3, W_L panel), one bar per component; key frequencies red."""
    title = "Neuron-logit map W_L in the Fourier basis" + (f" of {basis}" if basis else "")
    return _spectrum_figure(values, list(names), title, key_freqs, tex)


def _cluster_label(k: int) -> str:
    return "unexplained" if k < 0 else f"k = {k}"


def plot_cluster_sizes(clusters: NeuronClusters) -> go.Figure:
    """Number of MLP neurons in each frequency cluster (and unexplained), paper Sec. 4.2."""
    sizes = clusters.cluster_sizes()
    order = sorted(k for k in sizes if k >= 0) + ([-1] if -1 in sizes else [])
    labels = [_cluster_label(k) for k in order]
    counts = [sizes[k] for k in order]
    fig = _figure(
        f"Neuron clusters (threshold {clusters.threshold:g}, {sum(counts)} neurons)",
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
            marker_color=[COLORS["other"] if k < 0 else COLORS["key"] for k in order],
            name="neurons",
        )
    )
    fig.update_xaxes(type="category", showgrid=False)
    fig.update_yaxes(range=[0, max(counts, default=1) * 1.15])
    return fig


def plot_fraction_explained_hist(clusters: NeuronClusters) -> go.Figure:
    """Histogram over neurons of the fraction of their variance explained by their best single
    frequency, with the clustering threshold (paper Sec. 4.2)."""
    alive = clusters.best_freq >= 0
    fracs = [float(x) for x in clusters.best_frac[alive].tolist()]
    fig = _figure(
        "Variance of each neuron explained by one frequency",
        xaxis_title="fraction of variance explained by the neuron's best frequency",
        yaxis_title="number of neurons",
        showlegend=True,
        bargap=0.05,
    )
    fig.add_trace(
        go.Histogram(x=fracs, xbins=dict(start=0, end=1.0001, size=0.025), marker_color=COLORS["train"], name="neurons")
    )
    thr = clusters.threshold
    fig.add_trace(
        go.Scatter(
            x=[thr, thr],
            y=[0, 1],
            yaxis="y2",
            mode="lines",
            line=dict(color=COLORS["key"], dash="dash", width=2),
            name=f"threshold {thr:g} ({clusters.frac_explained:.0%} of neurons above)",
        )
    )
    fig.update_layout(
        xaxis_range=[0, 1.0001],
        yaxis2=dict(overlaying="y", range=[0, 1], visible=False),
        legend=dict(x=0.02, y=0.97, xanchor="left"),
    )
    return fig


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols), cols


def _ab_heatmap_grid(
    heatmaps: list[go.Heatmap],
    titles: list[str],
    title: str,
    p: int,
    max_cols: int,
    *,
    side_pad: int,
    coloraxis: dict[str, Any] | None = None,
) -> go.Figure:
    """Square (a, b) heatmaps in a grid: a down the rows, b across, shared ticks and axis titles."""
    rows, cols = _grid_shape(len(heatmaps), max_cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.04,
        vertical_spacing=0.1 if rows > 1 else 0.05,
    )
    side = (WIDTH - side_pad) / cols
    fig.update_layout(
        template=TEMPLATE,
        title_text=title,
        height=int(side * rows + 110),
        margin=dict(l=50, r=20, t=90, b=40),
        showlegend=False,
    )
    if coloraxis is not None:
        fig.update_layout(coloraxis=coloraxis)
    for i, hm in enumerate(heatmaps):
        hm.update(x=list(range(p)), y=list(range(p)))
        fig.add_trace(hm, row=i // cols + 1, col=i % cols + 1)
    ticks = list(range(0, p, max(1, p // 4)))
    fig.update_xaxes(showgrid=False, tickvals=ticks, ticks="", showline=False, constrain="domain")
    fig.update_yaxes(showgrid=False, tickvals=ticks, ticks="", showline=False, autorange="reversed")
    for i in range(len(heatmaps)):
        fig.update_yaxes(scaleanchor=f"x{i + 1 if i else ''}", row=i // cols + 1, col=i % cols + 1)
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text="b", row=rows, col=c)
    for r in range(1, rows + 1):
        fig.update_yaxes(title_text="a", row=r, col=1)
    fig.update_annotations(font_size=13)
    return fig


def plot_neuron_heatmaps(
    acts: Float[Tensor, "m m d_mlp"],
    clusters: NeuronClusters,
    n_per_cluster: int = 1,
    *,
    max_cols: int = 4,
    axis_names: tuple[str, str] = ("a", "b"),
) -> go.Figure:
    """Activations of the most cleanly periodic neurons of each frequency cluster over the task
    grid (``measures.neuron_acts``: (m, m, d_mlp), rows phi_a, columns phi_b; for addition a and
    b), one heatmap per neuron (demo "Neuron Activations")."""
    acts = acts.detach().cpu()
    panels: list[tuple[int, int]] = []  # (k, neuron)
    for k in sorted(k for k in clusters.cluster_sizes() if k >= 0):
        members = (clusters.labels == k).nonzero().flatten()
        best = members[clusters.best_frac[members].argsort(descending=True)][:n_per_cluster]
        panels += [(k, int(n)) for n in best]
    m = acts.shape[0]
    if not panels:
        fig = _figure("Neuron activations: no neuron clusters")
        fig.add_annotation(text="no neuron is explained by a single frequency", showarrow=False)
        return fig
    ya, xb = axis_names
    heatmaps = [
        go.Heatmap(
            z=acts[:, :, n].tolist(),
            colorscale="Viridis",
            showscale=False,
            name=f"neuron {n}",
            hovertemplate=f"{ya}=%{{y}} {xb}=%{{x}}<br>act=%{{z:.3g}}<extra></extra>",
        )
        for _, n in panels
    ]
    layer = f", layer {clusters.layer}" if clusters.layer is not None else ""
    fig = _ab_heatmap_grid(
        heatmaps,
        [f"k = {k}, neuron {n}" for k, n in panels],
        f"Neuron activations over ({ya}, {xb}), one neuron per cluster (m = {m}{layer})",
        m,
        max_cols,
        side_pad=60,
    )
    if axis_names != ("a", "b"):
        fig.update_xaxes(title_text=xb, selector=dict(title_text="b"))
        fig.update_yaxes(title_text=ya, selector=dict(title_text="a"))
    return fig


def plot_attention(to_a: Float[Tensor, "heads p p"], layer: int = 0, *, max_cols: int = 4) -> go.Figure:
    """Attention paid by the final "=" position to the a position, per head, as (a, b) heatmaps
    (``attention.attention_to_a_b``; paper Sec. 4.1, periodic attention; demo "Attention
    Patterns")."""
    to_a = to_a.detach().cpu()
    heads, p = to_a.shape[0], to_a.shape[1]
    heatmaps = [
        go.Heatmap(
            z=to_a[h].tolist(),
            coloraxis="coloraxis",
            name=f"head {h}",
            hovertemplate="a=%{y} b=%{x}<br>attention=%{z:.3f}<extra></extra>",
        )
        for h in range(heads)
    ]
    return _ab_heatmap_grid(
        heatmaps,
        [f"head {h}" for h in range(heads)],
        f'Attention from "=" to a (layer {layer})',
        p,
        max_cols,
        side_pad=140,
        coloraxis=dict(colorscale="Blues", cmin=0, cmax=1, colorbar=dict(title="attention", thickness=14)),
    )


def _measures_row(source, epoch: int | None) -> tuple[dict[str, Any], Run | None]:
    """A row of measures (dict) at ``epoch`` (default: the last) from a Run, a DataFrame or a
    mapping (one row already)."""
    from grokinterp.runs import Run

    run = source if isinstance(source, Run) else None
    if isinstance(source, Mapping):
        return dict(source), None
    table = _measures(source) if run is not None else source
    if hasattr(table, "iloc"):
        if epoch is None:
            return table.iloc[-1].to_dict(), run
        hit = table[table["epoch"] == epoch]
        if hit.empty:
            raise ValueError(f"no measures at epoch {epoch} (epochs: {table['epoch'].tolist()})")
        return hit.iloc[0].to_dict(), run
    raise TypeError(f"expected a Run, a DataFrame of measures or a row mapping (got {type(source).__name__})")


def plot_per_frequency_excluded_loss(
    run_or_table, epoch: int | None = None, key_freqs: Sequence[int] | None = None, *, tex: bool = False
) -> go.Figure:
    """Excluded loss (logit level, train split) when only frequency k is removed, for every k, at
    one checkpoint (default: the last), on a log axis: removing a key frequency (red) hurts,
    removing any other does not. ``run_or_table``: a Run, its measures DataFrame or one row."""
    row, run = _measures_row(run_or_table, epoch)
    ks = sorted(int(c[len("excluded_loss_k") :]) for c in row if c.startswith("excluded_loss_k"))
    if not ks:
        raise ValueError("no excluded_loss_k{k} columns in the measures (not defined for this operation)")
    keys = set(key_freqs if key_freqs is not None else _key_freqs_of(run))
    vals = {k: float(row[f"excluded_loss_k{k}"]) for k in ks}
    title_epoch = f" (epoch {int(row['epoch'])})" if "epoch" in row else ""
    fig = _figure(
        "Excluded loss of each single frequency" + title_epoch,
        xaxis_title=_tex(
            tex,
            "frequency k removed (ω<sub>k</sub> = 2πk/m)",
            r"$\text{frequency } k \text{ removed }(\omega_k = 2\pi k/m)$",
        ),
        yaxis_title="excluded loss (logit level, train)",
        yaxis=_LOG,
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
            textfont_size=13,
            constraintext="none",
            cliponaxis=False,
        )
    )
    if "train_loss" in row:
        fig.add_hline(y=float(row["train_loss"]), line=dict(color=COLORS["threshold"], dash="dash", width=1.5))
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line=dict(color=COLORS["threshold"], dash="dash"),
                name="train loss (nothing removed)",
            )
        )
    fig.update_xaxes(showgrid=False, range=[0.3, ks[-1] + 0.7])
    return fig


# ----------------------------------------------------------------------------------------------
# All figures of a run, and export
# ----------------------------------------------------------------------------------------------

#: File stems of ``write_all_figures``, in order (per-model figures are skipped where they do not
#: apply: Fourier figures need a full-grid op, attention a transformer).
FIGURE_NAMES = (
    "loss",
    "accuracy",
    "restricted_excluded",
    "restricted_excluded_neuron",
    "gini",
    "weight_norm",
    "frac_neurons_explained",
    "cos_apb_c",
    "embedding_spectrum",
    "wl_spectrum",
    "cluster_sizes",
    "fraction_explained_hist",
    "neuron_heatmaps",
    "attention",
    "per_frequency_excluded_loss",
)


def make_all_figures(
    run: Run | str | Path, epoch: int | None = None, *, tex: bool = False, layer: int | None = None
) -> dict[str, go.Figure]:
    """Every figure of an analysed run as {name: Figure} (names from ``FIGURE_NAMES``). This is
    where data is loaded and the per-model arrays are computed (the checkpoint ``epoch``, default
    the last); the ``plot_*`` functions only draw them. For a task without a Fourier basis the
    Fourier figures are left out (one log line, the reason is in analysis.json). ``layer``: the MLP
    layer of the neuron figures (default: the analysis's layer)."""
    import torch

    from grokinterp import measures
    from grokinterp.attention import attention_to_a_b, has_attention
    from grokinterp.bases import task_basis
    from grokinterp.fourier import basis_names
    from grokinterp.runs import Run, load_run

    run = run if isinstance(run, Run) else load_run(run)
    figs: dict[str, go.Figure] = {
        "loss": plot_loss(run),
        "accuracy": plot_accuracy(run),
        "restricted_excluded": plot_restricted_excluded(run),
        "restricted_excluded_neuron": plot_restricted_excluded_neuron(run),
        "gini": plot_gini(run),
        "weight_norm": plot_weight_norm(run),
        "frac_neurons_explained": plot_frac_neurons_explained(run),
    }
    table = _measures(run)
    dataset = run.dataset
    basis = task_basis(dataset.op, dataset.p)
    if any(c.startswith("cos_apb_c_k") for c in table.columns) or not basis.defined:
        figs["cos_apb_c"] = plot_cos_apb_c(run)
    model = run.model(epoch)
    if basis.defined:
        analysis = _analysis(run)
        keys = [] if analysis is None else analysis.key_freqs
        threshold = analysis.threshold if analysis is not None else measures.DEFAULT_THRESHOLD
        kf = analysis.key_frequencies if analysis is not None else None
        if layer is None and kf is not None and kf.layer is not None:
            layer = kf.layer
        with torch.no_grad():
            layers = measures.layer_clusters(model, dataset, threshold)
            if layer is None:
                from grokinterp.clusters import best_layer

                layer = best_layer(layers)
            clusters = layers[layer]
            acts = measures.neuron_acts(model, dataset, layer)
            names = basis_names(basis.m)
            e_spec = measures.embedding_spectrum(model, basis).cpu().tolist()
            w_spec = measures.wl_spectrum(model, basis).cpu().tolist()
        figs["embedding_spectrum"] = plot_embedding_spectrum(e_spec, names, keys, tex=tex, basis=basis.name)
        figs["wl_spectrum"] = plot_wl_spectrum(w_spec, names, keys, tex=tex, basis=basis.name)
        figs["cluster_sizes"] = plot_cluster_sizes(clusters)
        figs["fraction_explained_hist"] = plot_fraction_explained_hist(clusters)
        axes = ("a", "b") if dataset.op == "add" else ("φa", "φb")
        figs["neuron_heatmaps"] = plot_neuron_heatmaps(acts, clusters, axis_names=axes)
    else:
        log.info(
            "%s: op %r has no Fourier basis (%s); skipping the Fourier figures", run.path, dataset.op, basis.reason
        )
    if has_attention(model):
        figs["attention"] = plot_attention(attention_to_a_b(model, dataset)[0])
    else:
        log.info("%s: no attention in this architecture; skipping the attention figure", run.path)
    if basis.defined:
        ep = epoch if epoch is not None and epoch in set(table["epoch"]) else None
        figs["per_frequency_excluded_loss"] = plot_per_frequency_excluded_loss(run, ep, tex=tex)
    return {name: figs[name] for name in FIGURE_NAMES if name in figs}


def find_browser() -> str | None:
    """The Chromium kaleido would use (``$BROWSER_PATH``, kaleido's own download, or chromium /
    chrome on PATH), or None."""
    try:
        from choreographer.browsers.chromium import Chromium

        path = Chromium.find_browser(skip_local=False)
        if path:
            return str(path)
    except Exception:  # best effort: fall back to PATH
        pass
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def find_mathjax() -> Path | None:
    """A local MathJax 3 ``tex-svg.js``: ``$GROKINTERP_MATHJAX`` or the repository's ``.mathjax``
    (never a CDN), or None."""
    candidates = []
    if env := os.environ.get("GROKINTERP_MATHJAX"):
        candidates.append(Path(env))
    root = Path(__file__).resolve().parents[1]
    candidates += [
        root / ".mathjax/node_modules/mathjax/es5/tex-svg.js",
        Path.cwd() / ".mathjax/node_modules/mathjax/es5/tex-svg.js",
    ]
    return next((c.resolve() for c in candidates if c.is_file()), None)


_STATIC = ("png", "pdf", "svg")
_NO_BROWSER = (
    "no Chromium found for static figure export (kaleido 1.x needs one); writing HTML instead. "
    "Install it with: apt-get install -y chromium"
)


@contextlib.contextmanager
def _quiet_kaleido():
    """kaleido and choreographer log every tab at INFO (and Chromium's stderr at DEBUG): keep them
    to warnings unless grokinterp.plots itself is at DEBUG."""
    names = ("kaleido", "choreographer", "browser_proc")
    saved = {n: logging.getLogger(n).level for n in names}
    if not log.isEnabledFor(logging.DEBUG):
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        tmp = logging.getLogger("choreographer.utils._tmpfile")  # also logs its cleanup at exit
        if tmp.level == logging.NOTSET:
            tmp.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def export_figures(
    figs: Mapping[str, go.Figure],
    out_dir: str | Path,
    fmt: str = "png",
    *,
    scale: float = 1.0,
    browser: str | None = None,
) -> list[Path]:
    """Write ``{name: figure}`` to ``out_dir/name.fmt``. Static formats are rendered in one kaleido
    (Chromium) session for the whole batch, with the local MathJax if there is one; ``html``, or
    any format when no Chromium is found (one warning), writes HTML with plotly.js saved once next
    to the files (``include_plotlyjs="directory"``: works offline)."""
    fmt = fmt.lower()
    if fmt not in (*_STATIC, "html"):
        raise ValueError(f"format must be one of png, pdf, svg, html (got {fmt!r})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not figs:
        return []
    if fmt in _STATIC:
        browser = browser or find_browser()
        if browser is None:
            log.warning(_NO_BROWSER)
            fmt = "html"
    paths = [out / f"{name}.{fmt}" for name in figs]
    if fmt == "html":
        for fig, path in zip(figs.values(), paths, strict=True):
            fig.write_html(path, include_plotlyjs="directory", include_mathjax=False, full_html=True)
        return paths

    import kaleido

    mathjax = find_mathjax()
    specs = [
        {
            "fig": fig,
            "path": path,
            "opts": {
                "format": fmt,
                "width": fig.layout.width or WIDTH,
                "height": fig.layout.height or HEIGHT,
                "scale": scale,
            },
        }
        for fig, path in zip(figs.values(), paths, strict=True)
    ]
    kopts: dict[str, Any] = {"mathjax": mathjax.as_uri() if mathjax else False, "path": browser}
    start = time.perf_counter()
    with _quiet_kaleido():
        kaleido.write_fig_from_object_sync(specs, kopts=kopts, cancel_on_error=True)
    log.debug("rendered %d %s figures in %.1f s", len(specs), fmt, time.perf_counter() - start)
    return paths


def write_all_figures(
    run_dir: str | Path, out_dir: str | Path, fmt: str = "png", epoch: int | None = None
) -> list[Path]:
    """Write every figure of ``run_dir`` (``FIGURE_NAMES``) to ``out_dir`` as png, pdf, svg or html
    and return the paths. Runs ``analyze_run`` first if the run has no measures.csv yet, or if the
    run went on after its last analysis (never draws stale measures); without a Chromium the static
    formats fall back to HTML (one warning)."""
    from grokinterp.runs import load_run

    run = load_run(run_dir)
    if (reason := run.stale_reason) is not None:
        from grokinterp.analysis import analyze_run

        log.warning("%s: %s; analysing the run first", run.path, reason)
        analyze_run(run.path, progress=False)
    static = fmt.lower() in _STATIC
    browser = find_browser() if static else None
    tex = static and browser is not None and find_mathjax() is not None
    figs = make_all_figures(run, epoch, tex=tex)
    return export_figures(figs, out_dir, fmt, browser=browser)
