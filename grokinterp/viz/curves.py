"""Progress measures over training: one figure per curve of metrics.jsonl and measures.csv.

Every ``plot_*`` function here takes a ``Run`` (``plot_llc``: its measures table) and draws what
the run's files hold, in a ``Style`` (``grokinterp.viz.style``): train/test loss and accuracy,
the restricted and excluded losses, Gini sparsity, the weight norm, the fraction of neurons
explained, the cos(w(a+b-c)) coefficients, the clock/pizza measures and the LLC. The three phases
of ``run.analysis`` (Nanda et al. 2023, Sec. 5.2) are shaded in greys labelled I, II, III
(``add_phase_bands``); every figure shares the x range 0..last epoch and uses log axes where the
paper does (losses).

>>> run = grokinterp.load_run("checkpoints/nanda-p113")
>>> plot_restricted_excluded(run).show()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

from grokinterp.analysis.phases import PHASE_NAMES
from grokinterp.viz.style import (
    COLORS,
    LOG_AXIS,
    OKABE_ITO,
    PALETTE,
    PHASE_COLORS,
    PHASE_LABELS,
    PHASE_OPACITY,
    Style,
    StyleArg,
    get_style,
    new_figure,
    set_meta,
    style_figure,
)

if TYPE_CHECKING:
    import pandas as pd

    from grokinterp.analysis.run_analysis import Analysis
    from grokinterp.io.runs import Run

__all__ = [
    "VARIANT_NAMES",
    "PhasesArg",
    "add_phase_bands",
    "analysis_of",
    "measures_table",
    "not_drawn_reason",
    "phase_spans",
    "plot_accuracy",
    "plot_clock_pizza",
    "plot_cos_apb_c",
    "plot_frac_neurons_explained",
    "plot_gini",
    "plot_llc",
    "plot_loss",
    "plot_restricted_excluded",
    "plot_restricted_excluded_neuron",
    "plot_weight_norm",
]

# ----------------------------------------------------------------------------------------------
# Phases
# ----------------------------------------------------------------------------------------------

#: The phases to shade: None (the run's analysis), False (none), a dict as in analysis.json, or
#: three boundaries (see ``phase_spans``).
PhasesArg = Mapping[str, Any] | Sequence[int | None] | bool | None


def phase_spans(phases: PhasesArg, run: Run | None = None) -> dict[str, tuple[float, float]]:
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
    style: StyleArg = None,
) -> go.Figure:
    """Shade the phases (see ``phase_spans`` for ``phases``) behind the data in neutral greys,
    label each band above the plot (I, II, III) and name them in the legend (one square marker per
    phase, legend group "phase")."""
    style = get_style(style)
    legend = legend and not style.paper  # paper: the bands are labelled, the caption names them
    spans = phase_spans(phases, run)
    kw = {} if row is None else {"row": row, "col": col}
    for name, (start, end) in spans.items():
        color = PHASE_COLORS.get(name, "#dddddd")
        label = PHASE_LABELS.get(name, "")
        fig.add_vrect(x0=start, x1=end, fillcolor=color, opacity=PHASE_OPACITY, layer="below", line_width=0, **kw)
        if label:
            fig.add_annotation(
                x=(start + end) / 2,
                y=1,
                xref="x",
                yref="y domain",
                text=label,
                showarrow=False,
                yanchor="bottom",
                yshift=1,
                font=dict(size=style.annotation_size, color="#444444"),
                **kw,
            )
        if legend:
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    marker=dict(
                        symbol="square",
                        size=14 if not style.paper else 10,
                        color=color,
                        line=dict(color="#888888", width=0.5),
                    ),
                    name=f"{label} {name}".strip() if style.paper else f"{label} {name} ({start:g}–{end:g})".strip(),
                    legendgroup="phase",
                    legendgrouptitle_text=None if style.paper else "phase",
                    meta={"phase": name, "start": start, "end": end},
                    hoverinfo="skip",
                ),
                **kw,
            )
    if spans:
        set_meta(fig, band_labels=True)
        phase_text = ", ".join(
            f"{PHASE_LABELS.get(n, '')} {n} (epochs {s:g}–{e:g})".strip() for n, (s, e) in spans.items()
        )
        meta = fig.layout.meta
        if isinstance(meta, Mapping) and meta.get("caption") and "Shaded:" not in meta["caption"]:
            set_meta(fig, caption=f"{meta['caption']} Shaded: the phases {phase_text}.")
    return fig


# ----------------------------------------------------------------------------------------------
# Over training (metrics.jsonl and measures.csv)
# ----------------------------------------------------------------------------------------------


def measures_table(run: Run) -> pd.DataFrame:
    """measures.csv of ``run`` (``ValueError`` saying how to make it when the run is not
    analysed)."""
    table = run.measures
    if table is None:
        raise ValueError(f"{run.path}: no measures.csv yet; run grokinterp.analyze_run(run.path) first")
    return table


def analysis_of(run: Run | None) -> Analysis | None:
    """The typed analysis.json of a run (None if not analysed, or no run)."""
    from grokinterp.analysis.run_analysis import Analysis

    return None if run is None else Analysis.load(run.path)


def not_drawn_reason(run: Run | None, *columns: str) -> str:
    """Why the measures ``columns`` are not drawn, in the analysis' own words: the ``not_defined``
    entry of analysis.json of the first column that has one (the basis' reason, "no key frequencies
    by the clustered rule (...)", ...), else the basis' reason, else that measures.csv lacks them."""
    a = analysis_of(run)
    if a is not None:
        for col in columns:
            if a.not_defined.get(col):
                return str(a.not_defined[col])
        if not a.basis_defined and a.basis.get("reason"):
            return str(a.basis["reason"])
    return "not in measures.csv (analysed by an older version?): re-run grokinterp analyze"


def _not_defined_note(fig: go.Figure, what: str, reason: str, drawn: str = "") -> go.Figure:
    """A visible annotation saying that ``what`` is not drawn for this run, and why (``reason``,
    the analysis' own: ``not_drawn_reason``); the caption becomes ``drawn`` (what the figure does
    show) and that sentence, so it never describes a curve that is not there."""
    set_meta(fig, caption=f"{drawn} Not drawn: {what}, not defined for this run ({reason.rstrip('.')}).".strip())
    return _note(fig, f"Not drawn: {what},", "not defined for this run:", reason)


#: Characters per line of a note on a figure (fits a single-column paper figure at 8 pt).
NOTE_WIDTH = 48


def _note(fig: go.Figure, *lines: str) -> go.Figure:
    """``lines`` on the middle of the plot, each wrapped (``NOTE_WIDTH``), on a white box over the
    data."""
    fig.add_annotation(
        text="<br>".join(_wrap(line, NOTE_WIDTH) for line in lines),
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        bgcolor="rgba(255,255,255,0.85)",
        font=dict(size=14, color="#444444"),
    )
    return fig


def _wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most about ``width`` characters (plotly's ``<br>``)."""
    import textwrap

    return "<br>".join(textwrap.wrap(text, width))


def _line(
    x, y, name: str, color: str | None = None, markers: bool = False, dash: str | None = None, style: StyleArg = None
) -> go.Scatter:
    """A line of the finite points of (x, y) only (undefined measures are NaN); markers are not
    clipped at the plot edge (the x range is exactly 0..last epoch)."""
    style = get_style(style)
    pts = [(a, b) for a, b in zip(x, y, strict=True) if b is not None and b == b]
    return go.Scatter(
        x=[a for a, _ in pts],
        y=[b for _, b in pts],
        name=name,
        mode="lines+markers" if markers else "lines",
        line=dict(color=color, width=style.line_width, dash=dash),
        marker=dict(size=style.marker_size),
        cliponaxis=not markers,
    )


def _last_epoch(run: Run) -> float | None:
    """The last epoch of the run's metrics.jsonl and measures.csv (the x range of every over-time
    figure is 0..this, whatever is plotted: per-epoch and per-checkpoint figures line up)."""
    ends = []
    for table in (getattr(run, "metrics", None), getattr(run, "measures", None)):
        if table is not None and "epoch" in table and len(table):
            ends.append(float(table["epoch"].max()))
    return max(ends) if ends else None


def _over_time(fig: go.Figure, run: Run, phases: PhasesArg, style: Style) -> go.Figure:
    """Phase bands, the shared x range 0..last epoch, and the style."""
    add_phase_bands(fig, phases, run, style=style)
    last = _last_epoch(run)
    if last:
        fig.update_xaxes(range=[0, last], autorange=False)
    return style_figure(fig, style)


def _measures_figure(run: Run, style: StyleArg, title: str, **layout: Any) -> tuple[Style, pd.DataFrame, go.Figure]:
    """The start of a figure of measures.csv over the epochs: the style, the table and a new figure
    (x axis "epoch")."""
    style = get_style(style)
    table = measures_table(run)
    return style, table, new_figure(title, style, xaxis_title="epoch", **layout)


def plot_loss(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Train and test loss (metrics.jsonl, every evaluation) on a log axis, phases shaded (paper
    Fig. 1 / demo "Loss Curves")."""
    style = get_style(style)
    m = run.metrics
    fig = new_figure(
        "Loss",
        style,
        caption="Train and test cross-entropy loss over training (every evaluation; log scale).",
        xaxis_title="epoch",
        yaxis_title="cross-entropy loss",
        yaxis=LOG_AXIS,
    )
    fig.add_trace(_line(m["epoch"], m["train_loss"], "train loss", COLORS["train"], style=style))
    fig.add_trace(_line(m["epoch"], m["test_loss"], "test loss", COLORS["test"], style=style))
    return _over_time(fig, run, phases, style)


def plot_accuracy(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Train and test accuracy (metrics.jsonl), phases shaded.

    Rows without an accuracy (an imported demo run logs losses every epoch but accuracies only at
    its checkpoints) are skipped, so the lines do not break into dots.
    """
    style = get_style(style)
    m = run.metrics
    fig = new_figure(
        "Accuracy",
        style,
        caption="Train and test accuracy over training (every evaluation).",
        xaxis_title="epoch",
        yaxis_title="accuracy",
        yaxis_range=[-0.02, 1.02],
    )
    for col, name in (("train_acc", "train"), ("test_acc", "test")):
        acc = m[col].dropna() if col in m else m["epoch"].iloc[:0]  # no column: an empty trace
        fig.add_trace(_line(m["epoch"][acc.index], acc, f"{name} accuracy", COLORS[name], style=style))
    return _over_time(fig, run, phases, style)


#: Legend names of the restricted / excluded loss variants (which logits, which split).
VARIANT_NAMES = {
    "restricted_loss": "restricted loss (logit level, all pairs)",
    "restricted_loss_train": "restricted loss (logit level, train)",
    "excluded_loss": "excluded loss (logit level, train)",
    "restricted_loss_neuron": "restricted loss (neuron level, test)",
    "excluded_loss_neuron": "excluded loss (neuron level, train)",
}


def plot_restricted_excluded(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Paper Fig. 7: train and test loss (every evaluation) with the restricted loss (logit level,
    all p*p pairs) and the excluded loss (logit level, train split) at the checkpoints, log y."""
    style = get_style(style)
    m, t = run.metrics, measures_table(run)
    fig = new_figure(
        "Restricted and excluded loss",
        style,
        caption="Train and test loss (lines, every evaluation) with the restricted loss (logit level, all pairs), "
        "for which the logits are projected onto the key frequencies' cos/sin(ω_k(φ_a+φ_b)) directions, and the excluded "
        "loss (logit level, train), for which those directions are removed, at each checkpoint (markers); log scale "
        "(Nanda et al. 2023, Fig. 7).",
        xaxis_title="epoch",
        yaxis_title="cross-entropy loss",
        yaxis=LOG_AXIS,
    )
    fig.add_trace(_line(m["epoch"], m["train_loss"], "train loss", COLORS["train"], style=style))
    fig.add_trace(_line(m["epoch"], m["test_loss"], "test loss", COLORS["test"], style=style))
    if _defined(t, "restricted_loss"):
        fig.add_trace(
            _line(
                t["epoch"],
                t["restricted_loss"],
                VARIANT_NAMES["restricted_loss"],
                COLORS["restricted"],
                True,
                None,
                style,
            )
        )
        fig.add_trace(
            _line(t["epoch"], t["excluded_loss"], VARIANT_NAMES["excluded_loss"], COLORS["excluded"], True, None, style)
        )
    else:
        _not_defined_note(
            fig,
            "the restricted and excluded loss",
            not_drawn_reason(run, "restricted_loss", "excluded_loss"),
            "Train and test cross-entropy loss over training (every evaluation; log scale).",
        )
    return _over_time(fig, run, phases, style)


def _defined(t, col: str) -> bool:
    return col in t and bool(t[col].notna().any())


def plot_restricted_excluded_neuron(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """The TransformerLens demo's neuron-level variants: restricted loss (neurons projected on the
    key frequencies, test split) and excluded loss (train split), with train and test loss."""
    style, t, fig = _measures_figure(
        run,
        style,
        "Restricted and excluded loss, neuron level (TransformerLens demo)",
        caption="Train and test loss with the restricted loss (neuron level, test), for which the MLP neurons are "
        "projected onto the key frequencies' cos/sin(ω_k(φ_a+φ_b)) directions, and the excluded loss (neuron level, "
        "train), for which those directions are removed, all at the checkpoints; log scale (the TransformerLens "
        "Grokking demo's variant).",
        yaxis_title="cross-entropy loss",
        yaxis=LOG_AXIS,
    )
    fig.add_trace(_line(t["epoch"], t["train_loss"], "train loss", COLORS["train"], True, style=style))
    fig.add_trace(_line(t["epoch"], t["test_loss"], "test loss", COLORS["test"], True, style=style))
    if not _defined(t, "restricted_loss_neuron"):
        _not_defined_note(
            fig,
            "the neuron-level restricted and excluded loss",
            not_drawn_reason(run, "restricted_loss_neuron", "excluded_loss_neuron"),
            "Train and test cross-entropy loss at the checkpoints (log scale).",
        )
    for col, color in (("restricted_loss_neuron", COLORS["restricted"]), ("excluded_loss_neuron", COLORS["excluded"])):
        if _defined(t, col):
            fig.add_trace(_line(t["epoch"], t[col], VARIANT_NAMES[col], color, True, style=style))
    return _over_time(fig, run, phases, style)


def plot_gini(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Gini coefficients of the per-frequency norms of W_E and W_L over training (paper Fig. 7)."""
    style, t, fig = _measures_figure(
        run,
        style,
        "Sparsity in the Fourier basis",
        caption="Gini coefficient of the per-frequency norms of the embedding W_E and of the neuron-logit map "
        "W_L = W_out W_U at each checkpoint (higher: sparser in the Fourier basis; Nanda et al. 2023, Fig. 7).",
        yaxis_title="Gini coefficient",
    )
    if not _defined(t, "gini_W_E"):
        _not_defined_note(fig, "the Gini coefficients in the Fourier basis", not_drawn_reason(run, "gini_W_E"))
    else:
        for w in ("E", "L"):
            name = f"Gini of W<sub>{w}</sub> frequency norms" if style.paper else f"Gini of W_{w} frequency norms"
            fig.add_trace(_line(t["epoch"], t[f"gini_W_{w}"], name, COLORS[f"W_{w}"], True, style=style))
    return _over_time(fig, run, phases, style)


def plot_weight_norm(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Total sum of squared weights over training (paper Fig. 7)."""
    style, t, fig = _measures_figure(
        run,
        style,
        "Weight norm",
        caption="Sum of squared weights of the model at each checkpoint (Nanda et al. 2023, Fig. 7).",
        yaxis_title="sum of squared weights",
    )
    fig.add_trace(
        _line(t["epoch"], t["sum_sq_weights"], "sum of squared weights", COLORS["weights"], True, style=style)
    )
    return _over_time(fig, run, phases, style)


def plot_frac_neurons_explained(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Fraction of MLP neurons explained by a single frequency (at the analysis threshold)."""
    threshold = (run.analysis or {}).get("threshold")
    at = f" (≥ {threshold:g})" if threshold else ""
    style, t, fig = _measures_figure(
        run,
        style,
        "Neurons explained by one frequency",
        caption="Fraction of MLP neurons whose best single frequency explains at least "
        + (f"{threshold:g}" if threshold else "the threshold")
        + " of their activation variance, at each checkpoint.",
        yaxis_title="fraction of neurons",
        yaxis_range=[-0.02, 1.02],
    )
    if not _defined(t, "frac_neurons_explained"):
        _not_defined_note(fig, "the fraction of neurons explained", not_drawn_reason(run, "frac_neurons_explained"))
        return _over_time(fig, run, phases, style)
    layer_cols = sorted(c for c in t.columns if c.startswith("frac_neurons_explained_l"))
    if len(layer_cols) > 1:
        for i, c in enumerate(layer_cols):
            name = f"layer {c[len('frac_neurons_explained_l') :]}"
            fig.add_trace(_line(t["epoch"], t[c], f"{name}{at}", PALETTE[i % len(PALETTE)], True, style=style))
    else:
        fig.add_trace(
            _line(t["epoch"], t["frac_neurons_explained"], f"explained{at}", COLORS["weights"], True, style=style)
        )
    return _over_time(fig, run, phases, style)


def plot_cos_apb_c(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Amplitude of cos(w_k(a+b-c)) in the logits for each key frequency over training (paper
    Fig. 11, demo "Coefficients with Predicted Logits"), in logits: the ``cos_apb_c_k*`` columns of
    measures.csv (the projection on the unit-norm cos(w_k(a+b-c)) grid, as the demo computes it)
    divided by the norm of that grid (``cos_apb_minus_c_norm``: sqrt(m^3/2)), so that logits
    A cos(w_k(a+b-c)) read A."""
    from grokinterp.analysis.ablations import cos_apb_minus_c_norm
    from grokinterp.analysis.bases import task_basis

    style, t, fig = _measures_figure(
        run,
        style,
        "Logits along cos(ω<sub>k</sub>(φ<sub>a</sub>+φ<sub>b</sub>−φ<sub>c</sub>)) of the key frequencies",
        caption="Amplitude A_k of A_k cos(ω_k(φ_a+φ_b−φ_c)) in the logits for each key frequency k at each "
        "checkpoint, in logits: the projection of the logits over all (a, b, c) onto that direction divided by "
        "its norm, sqrt(m³/2) (Nanda et al. 2023, Fig. 11, whose coefficients are the projection itself).",
        yaxis_title="amplitude (logits)",
    )
    cols = sorted((c for c in t.columns if c.startswith("cos_apb_c_k")), key=lambda c: int(c[len("cos_apb_c_k") :]))
    m = task_basis(run.config.op, run.config.p).m if cols else None
    for i, c in enumerate(cols):
        k = int(c[len("cos_apb_c_k") :])
        amplitude = t[c] / cos_apb_minus_c_norm(m, k)
        fig.add_trace(_line(t["epoch"], amplitude, f"k = {k}", PALETTE[i % len(PALETTE)], True, style=style))
    if not cols:
        why = not_drawn_reason(run, "cos_apb_c_k*", "cos_sim_cos_apb_c", "key_freqs")
        _not_defined_note(fig, "the cos(ω(φa+φb−φc)) coefficients", why)
    return _over_time(fig, run, phases, style)


def plot_clock_pizza(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Gradient symmetricity and distance irrelevance (Zhong et al. 2023, Sec. 4, Definitions 4.1
    and 4.2) at each checkpoint, from the ``gradient_symmetricity`` and ``distance_irrelevance``
    columns of measures.csv, and the embeddings' ``circularity`` (their eval notebook) where the
    column exists (runs analysed before it have none); the final verdict of analysis.json in the caption, or, where there is
    none (a model that does not generalise), "no verdict" and why, in the caption and on the
    figure. Pizza: symmetricity near 1, irrelevance near 0; clock: symmetricity low, irrelevance
    near 1."""
    from grokinterp.analysis.run_analysis import clock_pizza_verdict

    style = get_style(style)
    t = measures_table(run)
    a = analysis_of(run)
    cp = a.clock_pizza if a is not None else {}
    verdict, verdict_text = clock_pizza_verdict(cp)
    fig = new_figure(
        "Clock or pizza",
        style,
        caption="Gradient symmetricity (mean cosine between the gradients of a logit with respect to the embeddings "
        "of a and of b, 100 random triples) and distance irrelevance (how little the correct logit depends on "
        "φ_a − φ_b) at each checkpoint (Zhong et al. 2023, Sec. 4). Pizza: symmetricity near 1 and irrelevance "
        f"near 0; clock: low symmetricity, irrelevance near 1. Circularity (dotted): how much each of the first 4 "
        "principal components of the token embeddings is one Fourier mode (1: circles). "
        f"Final checkpoint: {verdict_text.rstrip('.')}.",
        xaxis_title="epoch",
        yaxis_title="value",
    )
    cols = (("gradient_symmetricity", "gradient symmetricity"), ("distance_irrelevance", "distance irrelevance"))
    if not all(_defined(t, c) for c, _ in cols):
        why = cp.get("reason") or not_drawn_reason(run, *(c for c, _ in cols))
        _not_defined_note(fig, "the clock/pizza measures", why, "No clock/pizza verdict.")
        return _over_time(fig, run, phases, style)
    for i, (c, name) in enumerate(cols):
        fig.add_trace(_line(t["epoch"], t[c], name, PALETTE[i], True, style=style))
    if _defined(t, "circularity"):
        fig.add_trace(_line(t["epoch"], t["circularity"], "circularity", PALETTE[2], True, "dot", style=style))
    if verdict is None:  # on the figure too: the curves alone would read as a clock
        _note(fig, verdict_text)
    low = min(0.0, float(t["gradient_symmetricity"].min()))
    fig.update_yaxes(range=[low - 0.02, 1.02])
    return _over_time(fig, run, phases, style)


# ----------------------------------------------------------------------------------------------
# The local learning coefficient (grokinterp analyze --llc)
# ----------------------------------------------------------------------------------------------


def plot_llc(
    table: pd.DataFrame, phases: PhasesArg = None, *, run: Run | None = None, style: StyleArg = None
) -> go.Figure:
    """The LLC estimate per checkpoint (``llc_mean`` with ``llc_std`` over chains as error bars,
    left axis) against the train and test loss at the same checkpoints (right axis, log scale),
    phases shaded (``phases``, or the run's analysis). ``table``: measures.csv of a run analysed
    with ``--llc``."""
    style = get_style(style)
    if "llc_mean" not in table.columns:
        raise ValueError("the table has no llc_mean column; run grokinterp analyze RUN --llc first")
    t = table.sort_values("epoch")
    fig = new_figure(
        "Local learning coefficient",
        style,
        caption="Local learning coefficient (devinterp SGLD estimate on the train split; error bars: spread "
        "over chains) and train/test loss at each checkpoint (right axis, log scale).",
        xaxis_title="epoch",
        yaxis_title="LLC estimate",
        yaxis2=dict(LOG_AXIS, title_text="cross-entropy loss", overlaying="y", side="right", showgrid=False),
    )
    llc = _line(t["epoch"], t["llc_mean"], "LLC (train)", OKABE_ITO["bluish green"], True, style=style)
    if "llc_std" in t.columns:
        keep = t["llc_mean"].notna()
        llc.error_y = dict(type="data", array=list(t.loc[keep, "llc_std"].fillna(0.0)), thickness=1, width=2)
    fig.add_trace(llc)
    for col, name, color in (("test_loss", "test loss", COLORS["test"]), ("train_loss", "train loss", COLORS["train"])):
        if col in t.columns:
            line = _line(t["epoch"], t[col], name, color, dash="dot", style=style)
            line.yaxis = "y2"
            fig.add_trace(line)
    add_phase_bands(fig, phases if phases is not None or run is not None else False, run, style=style)
    last = t["epoch"].max() if len(t) else None
    if last:
        fig.update_xaxes(range=[0, last], autorange=False)
    if not style.paper:  # the legend goes right of the second y axis and its title
        fig.update_layout(legend=dict(x=1.16, xanchor="left"))
    return style_figure(fig, style)
