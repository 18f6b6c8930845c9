"""Figures of a run in one paper style (plotly), and batch export of all of them.

Every ``plot_*`` function returns a ``plotly.graph_objects.Figure`` in a ``Style`` (keyword
``style``): ``SCREEN`` (the default; the shared ``TEMPLATE``: white background, Arial/Liberation
Sans 14 px, 900 x 500 px, boxed axes, titles) or ``PAPER`` (print-ready: no titles, 3.25 or 6.75 in
wide, 8-10 pt, one font family and no MathJax, legend below). Each figure keeps its caption in
``layout.meta`` (``figure_caption``; written to captions.md in paper style); ``style_figure``
applies a style to any figure. Curves use the Okabe-Ito palette in both styles; the over-time
figures shade the three phases of ``run.analysis`` (Nanda et al. 2023, Sec. 5.2) in greys labelled
I, II, III, share the x range 0..last epoch, and use log axes where the paper does (losses).

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
import dataclasses
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import plotly.io as pio

from grokinterp.analysis.phases import PHASE_NAMES

if TYPE_CHECKING:
    import pandas as pd
    from jaxtyping import Float
    from torch import Tensor

    from grokinterp.analysis.clusters import NeuronClusters
    from grokinterp.io.runs import Run

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
    "plot_clock_pizza",
    "plot_cluster_sizes",
    "plot_cos_apb_c",
    "plot_embedding_spectrum",
    "plot_frac_neurons_explained",
    "plot_fraction_explained_hist",
    "plot_gini",
    "plot_llc",
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
#: kaleido (Chromium) writes PDF and SVG at 96 CSS px per inch: a plotly size of N px comes out
#: N / 96 in (N * 0.75 pt) in the file. Paper-style sizes are chosen in inches and points and
#: converted with these.
PX_PER_IN = 96
PX_PER_PT = PX_PER_IN / 72
#: Journal column widths in inches (``--width single|double``).
COLUMN_WIDTHS = {"single": 3.25, "double": 6.75}
#: plotly draws the tick labels of a log axis with exponentformat="power" 1.25x larger than its
#: tickfont (``formatLog`` in plotly.js); log axes get tickfont / LOG_TICK_GROWTH to match.
LOG_TICK_GROWTH = 1.25

#: The colour-blind-safe palette of Okabe and Ito (2008).
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
#: Line colours by role, used by every figure in both styles (train and test keep their colour).
COLORS = {
    "train": OKABE_ITO["blue"],
    "test": OKABE_ITO["vermillion"],
    "restricted": OKABE_ITO["bluish green"],
    "excluded": OKABE_ITO["reddish purple"],
    "W_E": OKABE_ITO["blue"],
    "W_L": OKABE_ITO["orange"],
    "weights": OKABE_ITO["black"],
    "key": OKABE_ITO["vermillion"],
    "other": OKABE_ITO["sky blue"],
    "cos": OKABE_ITO["blue"],
    "sin": OKABE_ITO["orange"],
    "threshold": OKABE_ITO["black"],
}
PALETTE = [
    OKABE_ITO[c] for c in ("blue", "vermillion", "bluish green", "reddish purple", "orange", "sky blue", "black")
]
#: Phase bands: neutral greys (no curve is grey), told apart by shade and a label (I, II, III)
#: drawn above each band and in the legend.
PHASE_COLORS = dict(zip(PHASE_NAMES, ("#d0d0d0", "#ececec", "#dddddd"), strict=True))
PHASE_LABELS = dict(zip(PHASE_NAMES, ("I", "II", "III"), strict=True))
PHASE_OPACITY = 1.0

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


@dataclass(frozen=True)
class Style:
    """How figures are drawn: ``SCREEN`` (the default: titles, 900 x 500 px, legend at the right)
    or ``PAPER`` (no titles, journal column widths, 8-10 pt, legend below, no MathJax). Sizes are
    in plotly px (1 pt = ``PX_PER_PT`` px in PDF/SVG). ``column`` forces every figure of the style
    to "single" or "double" column width (paper); None: each figure's own choice."""

    name: str
    font_size: float  # axis titles
    tick_size: float  # tick labels (log axes are corrected for plotly's 1.25x growth)
    legend_size: float
    annotation_size: float  # subplot titles, band labels, bar labels
    title_size: float
    titles: bool  # figure titles inside the figure (screen) or only in the caption (paper)
    tex: bool  # MathJax labels allowed
    legend: str  # "right" or "below"
    line_width: float
    marker_size: float
    margin: tuple[int, int, int, int]  # l, r, t, b
    column: str | None = None
    png_scale: float = 1.0
    font_family: str = FONT

    def __post_init__(self) -> None:
        if self.column not in (None, *COLUMN_WIDTHS):
            raise ValueError(f"column must be one of {', '.join(COLUMN_WIDTHS)} (got {self.column!r})")

    @property
    def paper(self) -> bool:
        return self.name == "paper"

    def width(self, column: str = "single") -> int:
        """Figure width in px: the screen width, or the column width in inches * ``PX_PER_IN``."""
        if not self.paper:
            return WIDTH
        return round(COLUMN_WIDTHS[self.column or column] * PX_PER_IN)

    def with_column(self, column: str | None) -> Style:
        return dataclasses.replace(self, column=column)


SCREEN = Style(
    name="screen",
    font_size=16.8,  # plotly's default axis title size for 14 px text
    tick_size=14,
    legend_size=14,
    annotation_size=13,
    title_size=17,
    titles=True,
    tex=True,
    legend="right",
    line_width=2.2,
    marker_size=6,
    margin=(80, 30, 70, 65),
)
PAPER = Style(
    name="paper",
    font_size=9 * PX_PER_PT,
    tick_size=8 * PX_PER_PT,
    legend_size=8 * PX_PER_PT,
    annotation_size=8 * PX_PER_PT,
    title_size=9 * PX_PER_PT,
    titles=False,
    tex=False,
    legend="below",
    line_width=1.5,
    marker_size=4,
    margin=(52, 10, 22, 38),
    png_scale=3.0,  # 288 dpi
)
STYLES = {"screen": SCREEN, "paper": PAPER}
StyleArg = Style | str | None


def get_style(style: StyleArg = None, column: str | None = None) -> Style:
    """A ``Style`` from a Style, its name ("screen", "paper") or None (screen); ``column``
    overrides its column width."""
    if style is None:
        style = SCREEN
    if isinstance(style, str):
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)} (got {style!r})")
        style = STYLES[style]
    return style.with_column(column) if column is not None else style


#: The shared screen style, also registered as ``plotly.io.templates["grokinterp"]``.
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


def _figure(title: str, style: Style = SCREEN, *, caption: str | None = None, column: str = "single", **layout: Any):
    """A new figure in ``style``: the title is drawn in screen style only; the caption (default: the
    title) is kept in ``layout.meta`` for captions.md (``figure_caption``)."""
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title_text=title if style.titles else None, **layout)
    _set_meta(fig, caption=caption or _plain(title), column=column)
    return fig


def _set_meta(fig: go.Figure, **items: Any) -> None:
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, Mapping) else {}
    meta.update(items)
    fig.layout.meta = meta


def _plain(text: str | None) -> str:
    """Text of a plotly label without its HTML tags (<br> -> "; ")."""
    import re

    text = (text or "").replace("<br>", "; ")
    return re.sub(r"<[^>]+>", "", text).strip()


def figure_caption(fig: go.Figure) -> str:
    """The caption of a figure: the one its builder set (``layout.meta["caption"]``), else its
    title text."""
    meta = fig.layout.meta
    if isinstance(meta, Mapping) and meta.get("caption"):
        return str(meta["caption"])
    return _plain(fig.layout.title.text)


def _tex(tex: bool, plain: str, latex: str) -> str:
    """A LaTeX label where MathJax renders it (``tex=True``), else the plain (unicode) one."""
    return latex if tex else plain


def _axis_names(fig: go.Figure) -> list[str]:
    return [k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))] or ["xaxis", "yaxis"]


def _legend_entries(fig: go.Figure) -> list[str]:
    if fig.layout.showlegend is False:
        return []
    names = [t.name for t in fig.data if t.name and t.showlegend is not False and t.type not in ("heatmap",)]
    return names if len(names) > 1 or fig.layout.showlegend else []


def style_figure(fig: go.Figure, style: StyleArg = None, *, column: str | None = None) -> go.Figure:
    """Apply ``style`` to a figure, also one built elsewhere (in place; idempotent): one font
    family and the style's sizes for every label (axis titles, ticks, legend, annotations, colour
    bars), log-axis tick labels the size of linear ones, and in paper style no title (its text
    becomes the caption unless the builder set one), the column width, and the legend below the
    plot. ``column`` ("single"/"double") overrides the figure's column width."""
    style = get_style(style, column)
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, Mapping) else {}
    if not meta.get("caption") and fig.layout.title.text:
        meta["caption"] = _plain(fig.layout.title.text)
    fig.layout.meta = meta
    family = style.font_family
    fig.update_layout(font=dict(family=family, size=style.tick_size), legend_font=dict(family=family))
    fig.update_layout(legend_font_size=style.legend_size, legend_grouptitlefont_size=style.legend_size)
    if style.titles:
        fig.update_layout(title_font=dict(family=family, size=style.title_size))
    else:
        fig.update_layout(title_text=None)
    for name in _axis_names(fig):
        axis = fig.layout[name]
        growth = LOG_TICK_GROWTH if axis.type == "log" and axis.exponentformat in ("power", None) else 1.0
        axis.update(tickfont=dict(family=family, size=style.tick_size / growth))
        axis.update(title_font=dict(family=family, size=style.font_size))
        if style.paper:
            axis.update(title_standoff=4, automargin=True, ticklen=3)
    for ann in fig.layout.annotations:
        ann.update(font=dict(family=family, size=style.annotation_size))
    bars = [t.colorbar for t in fig.data if "colorbar" in t and (t.showscale is None or t.showscale)]
    bars += [fig.layout[k].colorbar for k in fig.layout.to_plotly_json() if k.startswith("coloraxis")]
    for bar in bars:
        bar.update(tickfont=dict(family=family, size=style.tick_size), title_font=dict(family=family))
        bar.update(title_font_size=style.annotation_size)
    for t in fig.data:
        if "textfont" in t and t.text is not None:
            t.update(textfont=dict(family=family, size=style.annotation_size))
    if style.paper:
        _paper_layout(fig, style, meta)
    return fig


def _paper_layout(fig: go.Figure, style: Style, meta: dict[str, Any]) -> None:
    """Column width, height and the legend below the plot (entries in as many columns as fit)."""
    width = style.width(meta.get("column", "double"))
    if meta.get("grid"):  # heatmap grids size themselves (whole cells per pixel)
        return
    ml, mr, mt, mb = style.margin
    plot_h = meta.get("plot_height") or (150 if width < 500 else 190)
    entries = _legend_entries(fig)
    legend_h = 0
    if entries:
        char = 0.45 * style.legend_size
        entry_w = max(len(n) for n in entries) * char + 50  # text, symbol (30 px) and gaps
        room = width - ml - mr - 4  # plotly wraps a horizontal legend at the plot width
        cols = max(1, min(len(entries), int(room // entry_w)))
        rows = math.ceil(len(entries) / cols)
        line = max(19.0, style.legend_size * 1.6)  # plotly's row height
        legend_h = int(rows * line + 6)
        fig.update_layout(
            legend=dict(
                orientation="h",
                x=0,
                xanchor="left",
                xref="container",
                y=0,
                yanchor="bottom",
                yref="container",
                entrywidth=min(room // cols, entry_w) - 46,  # plotly adds the symbol and gaps (45 px)
                entrywidthmode="pixels",
                borderwidth=0,
                bgcolor="rgba(0,0,0,0)",
                itemwidth=30,
                tracegroupgap=0,
                traceorder="normal",
                valign="middle",
            )
        )
    margin = dict(l=ml, r=mr, t=mt if meta.get("band_labels") else max(8, mt - 12), b=mb + legend_h)
    if meta.get("margin"):
        margin.update(meta["margin"])
    fig.update_layout(width=width, height=int(plot_h + margin["t"] + margin["b"]), margin=margin)


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
    style: StyleArg = None,
) -> go.Figure:
    """Shade the phases (see ``_phase_spans`` for ``phases``) behind the data in neutral greys,
    label each band above the plot (I, II, III) and name them in the legend (one square marker per
    phase, legend group "phase")."""
    style = get_style(style)
    legend = legend and not style.paper  # paper: the bands are labelled, the caption names them
    spans = _phase_spans(phases, run)
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
        _set_meta(fig, band_labels=True)
        phase_text = ", ".join(
            f"{PHASE_LABELS.get(n, '')} {n} (epochs {s:g}–{e:g})".strip() for n, (s, e) in spans.items()
        )
        meta = fig.layout.meta
        if isinstance(meta, Mapping) and meta.get("caption") and "Shaded:" not in meta["caption"]:
            _set_meta(fig, caption=f"{meta['caption']} Shaded: the phases {phase_text}.")
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
    from grokinterp.analysis.run_analysis import Analysis

    return None if run is None else Analysis.load(run.path)


def _not_defined_note(fig: go.Figure, run: Run | None, what: str) -> go.Figure:
    """A visible annotation saying that ``what`` is not defined for this run's operation."""
    a = _analysis(run)
    reason = (a.basis.get("reason") if a is not None else None) or "no Fourier basis for this task"
    fig.add_annotation(
        text=f"{what}: not defined for this run<br><sup>{reason}</sup>",
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font=dict(size=14, color="#555555"),
    )
    return fig


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


def plot_loss(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Train and test loss (metrics.jsonl, every evaluation) on a log axis, phases shaded (paper
    Fig. 1 / demo "Loss Curves")."""
    style = get_style(style)
    m = run.metrics
    fig = _figure(
        "Loss",
        style,
        caption="Train and test cross-entropy loss over training (every evaluation; log scale).",
        xaxis_title="epoch",
        yaxis_title="cross-entropy loss",
        yaxis=_LOG,
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
    fig = _figure(
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
    m, t = run.metrics, _measures(run)
    fig = _figure(
        "Restricted and excluded loss",
        style,
        caption="Train and test loss (lines, every evaluation) with the restricted loss (logit level, all pairs), "
        "for which the logits are projected onto the key frequencies' cos/sin(ω_k(φ_a+φ_b)) directions, and the excluded "
        "loss (logit level, train), for which those directions are removed, at each checkpoint (markers); log scale "
        "(Nanda et al. 2023, Fig. 7).",
        xaxis_title="epoch",
        yaxis_title="cross-entropy loss",
        yaxis=_LOG,
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
        _not_defined_note(fig, run, "restricted and excluded loss")
    return _over_time(fig, run, phases, style)


def _defined(t, col: str) -> bool:
    return col in t and bool(t[col].notna().any())


def plot_restricted_excluded_neuron(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """The TransformerLens demo's neuron-level variants: restricted loss (neurons projected on the
    key frequencies, test split) and excluded loss (train split), with train and test loss."""
    style = get_style(style)
    t = _measures(run)
    fig = _figure(
        "Restricted and excluded loss, neuron level (TransformerLens demo)",
        style,
        caption="Train and test loss with the restricted loss (neuron level, test), for which the MLP neurons are "
        "projected onto the key frequencies' cos/sin(ω_k(φ_a+φ_b)) directions, and the excluded loss (neuron level, "
        "train), for which those directions are removed, all at the checkpoints; log scale (the TransformerLens "
        "Grokking demo's variant).",
        xaxis_title="epoch",
        yaxis_title="cross-entropy loss",
        yaxis=_LOG,
    )
    fig.add_trace(_line(t["epoch"], t["train_loss"], "train loss", COLORS["train"], True, style=style))
    fig.add_trace(_line(t["epoch"], t["test_loss"], "test loss", COLORS["test"], True, style=style))
    if not _defined(t, "restricted_loss_neuron"):
        _not_defined_note(fig, run, "neuron-level restricted and excluded loss")
    for col, color in (("restricted_loss_neuron", COLORS["restricted"]), ("excluded_loss_neuron", COLORS["excluded"])):
        if _defined(t, col):
            fig.add_trace(_line(t["epoch"], t[col], VARIANT_NAMES[col], color, True, style=style))
    return _over_time(fig, run, phases, style)


def plot_gini(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Gini coefficients of the per-frequency norms of W_E and W_L over training (paper Fig. 7)."""
    style = get_style(style)
    t = _measures(run)
    fig = _figure(
        "Sparsity in the Fourier basis",
        style,
        caption="Gini coefficient of the per-frequency norms of the embedding W_E and of the neuron-logit map "
        "W_L = W_out W_U at each checkpoint (higher: sparser in the Fourier basis; Nanda et al. 2023, Fig. 7).",
        xaxis_title="epoch",
        yaxis_title="Gini coefficient",
    )
    if not _defined(t, "gini_W_E"):
        _not_defined_note(fig, run, "Gini coefficients in the Fourier basis")
    else:
        for w in ("E", "L"):
            name = f"Gini of W<sub>{w}</sub> frequency norms" if style.paper else f"Gini of W_{w} frequency norms"
            fig.add_trace(_line(t["epoch"], t[f"gini_W_{w}"], name, COLORS[f"W_{w}"], True, style=style))
    return _over_time(fig, run, phases, style)


def plot_weight_norm(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Total sum of squared weights over training (paper Fig. 7)."""
    style = get_style(style)
    t = _measures(run)
    fig = _figure(
        "Weight norm",
        style,
        caption="Sum of squared weights of the model at each checkpoint (Nanda et al. 2023, Fig. 7).",
        xaxis_title="epoch",
        yaxis_title="sum of squared weights",
    )
    fig.add_trace(
        _line(t["epoch"], t["sum_sq_weights"], "sum of squared weights", COLORS["weights"], True, style=style)
    )
    return _over_time(fig, run, phases, style)


def plot_frac_neurons_explained(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Fraction of MLP neurons explained by a single frequency (at the analysis threshold)."""
    style = get_style(style)
    t = _measures(run)
    threshold = (run.analysis or {}).get("threshold")
    at = f" (≥ {threshold:g})" if threshold else ""
    fig = _figure(
        "Neurons explained by one frequency",
        style,
        caption="Fraction of MLP neurons whose best single frequency explains at least "
        + (f"{threshold:g}" if threshold else "the threshold")
        + " of their activation variance, at each checkpoint.",
        xaxis_title="epoch",
        yaxis_title="fraction of neurons",
        yaxis_range=[-0.02, 1.02],
    )
    if not _defined(t, "frac_neurons_explained"):
        _not_defined_note(fig, run, "neuron-frequency clusters")
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


def _key_freqs_of(run: Run | None) -> list[int]:
    """The key frequencies of the run's typed analysis (never parsed from measures.csv)."""
    a = _analysis(run)
    return [] if a is None else a.key_freqs


def plot_cos_apb_c(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Coefficient of the logits on cos(w_k(a+b-c)) for each key frequency over training (paper
    Fig. 11, demo "Coefficients with Predicted Logits"): the projection of the (a, b, c) logit grid
    on the unit-norm cos(w_k(a+b-c)) grid, in logit units."""
    style = get_style(style)
    t = _measures(run)
    cols = sorted((c for c in t.columns if c.startswith("cos_apb_c_k")), key=lambda c: int(c[len("cos_apb_c_k") :]))
    fig = _figure(
        "Logits along cos(ω<sub>k</sub>(φ<sub>a</sub>+φ<sub>b</sub>−φ<sub>c</sub>)) of the key frequencies",
        style,
        caption="Coefficient of the logits along cos(ω_k(φ_a+φ_b−φ_c)) for each key frequency k at each "
        "checkpoint: the projection of the logits over all (a, b, c) onto that unit-norm direction, in logit "
        "units (Nanda et al. 2023, Fig. 11).",
        xaxis_title="epoch",
        yaxis_title="coefficient (logit units)",
    )
    for i, c in enumerate(cols):
        k = int(c[len("cos_apb_c_k") :])
        fig.add_trace(_line(t["epoch"], t[c], f"k = {k}", PALETTE[i % len(PALETTE)], True, style=style))
    if not cols:
        _not_defined_note(fig, run, "cos(ω(φa+φb−φc)) coefficients")
    return _over_time(fig, run, phases, style)


def plot_clock_pizza(run: Run, phases: PhasesArg = None, *, style: StyleArg = None) -> go.Figure:
    """Gradient symmetricity and distance irrelevance (Zhong et al. 2023, Sec. 4, Definitions 4.1
    and 4.2) at each checkpoint, from the ``gradient_symmetricity`` and ``distance_irrelevance``
    columns of measures.csv; the final verdict of analysis.json in the caption. Pizza: symmetricity
    near 1, irrelevance near 0; clock: symmetricity low, irrelevance near 1."""
    style = get_style(style)
    t = _measures(run)
    a = _analysis(run)
    cp = a.clock_pizza if a is not None else {}
    verdict = cp.get("verdict")
    fig = _figure(
        "Clock or pizza",
        style,
        caption="Gradient symmetricity (mean cosine between the gradients of a logit with respect to the embeddings "
        "of a and of b, 100 random triples) and distance irrelevance (how little the correct logit depends on "
        "φ_a − φ_b) at each checkpoint (Zhong et al. 2023, Sec. 4). Pizza: symmetricity near 1 and irrelevance "
        "near 0; clock: low symmetricity, irrelevance near 1." + (f" Final checkpoint: {verdict}." if verdict else ""),
        xaxis_title="epoch",
        yaxis_title="value",
    )
    cols = (("gradient_symmetricity", "gradient symmetricity"), ("distance_irrelevance", "distance irrelevance"))
    if not all(_defined(t, c) for c, _ in cols):
        reason = cp.get("reason") or "not computed: re-run grokinterp analyze"
        fig.add_annotation(
            text=f"clock/pizza measures: not defined for this run<br><sup>{reason}</sup>",
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            font=dict(size=14, color="#555555"),
        )
        return _over_time(fig, run, phases, style)
    for i, (c, name) in enumerate(cols):
        fig.add_trace(_line(t["epoch"], t[c], name, PALETTE[i], True, style=style))
    low = min(0.0, float(t["gradient_symmetricity"].min()))
    fig.update_yaxes(range=[low - 0.02, 1.02])
    return _over_time(fig, run, phases, style)


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------


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


def _spectrum_figure(
    values, names: list[str], title: str, key_freqs, tex: bool, style: Style, caption: str
) -> go.Figure:
    """One bar per frequency k: cos and sin side by side (legend "cos"/"sin"), the constant at
    k = 0, key frequencies marked with their number above the bars; regular ticks."""
    const, parts = _spectrum_parts(values, names)
    n_k = max([*parts["cos"], 0])
    keys = sorted(int(k) for k in key_freqs or () if int(k) in parts["cos"])
    if style.titles and keys:
        title += f"<br><sup>key frequencies: {', '.join(str(k) for k in keys)}</sup>"
    if keys:
        caption += f" Key frequencies (marked): {', '.join(str(k) for k in keys)}."
    fig = _figure(
        title,
        style,
        caption=caption,
        column="single" if n_k <= 20 else "double",
        xaxis_title=_tex(
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
    values: Sequence[float],
    names: Sequence[str],
    key_freqs: Sequence[int] | None = None,
    *,
    tex: bool = False,
    basis: str | None = None,
    style: StyleArg = None,
) -> go.Figure:
    """Norm of each Fourier component of the embedding, ``spectra.embedding_spectrum(model, basis)``
    (paper Fig. 3, W_E panel), one bar per frequency and component (cos, sin; ``names`` from
    ``fourier.basis_names(m)``); key frequencies marked."""
    on = f" of {basis}" if basis else ""
    title = "Embedding W_E in the Fourier basis" + on
    caption = f"Norm of each Fourier component of the token embedding W_E{on} (cos and sin of each frequency k)."
    return _spectrum_figure(values, list(names), title, key_freqs, tex, get_style(style), caption)


def plot_wl_spectrum(
    values: Sequence[float],
    names: Sequence[str],
    key_freqs: Sequence[int] | None = None,
    *,
    tex: bool = False,
    basis: str | None = None,
    style: StyleArg = None,
) -> go.Figure:
    """Norm of each Fourier component of the neuron-logit map W_L = W_out W_U
    (``spectra.wl_spectrum``; paper Fig. 3, W_L panel), one bar per frequency and component; key
    frequencies marked."""
    on = f" of {basis}" if basis else ""
    title = "Neuron-logit map W_L in the Fourier basis" + on
    caption = (
        f"Norm of each Fourier component of the neuron-logit map W_L = W_out W_U{on} (cos and sin of each "
        "frequency k, over the output token)."
    )
    return _spectrum_figure(values, list(names), title, key_freqs, tex, get_style(style), caption)


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
    fig = _figure(
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
    fig = _figure(
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


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols), cols


def _grid_cells(n: int, p: int, avail: int, gap: int, max_cols: int, max_side: int) -> tuple[int, int, int]:
    """(rows, cols, pixels per cell) of a grid of n square p x p heatmaps in ``avail`` px: as many
    columns as keep each cell at least 2 px wide (else 1 px), rows balanced, panels at most
    ``max_side`` px. Whole pixels per cell: plotly draws a heatmap into a canvas of the panel's
    pixel size, so a fractional cell size alternates between n and n + 1 px (moire)."""
    n = max(n, 1)
    fit = [c for c in range(min(n, max_cols), 0, -1) if (avail - c * gap) // c // p >= 2]
    cols = fit[0] if fit else min(n, max_cols)
    rows = math.ceil(n / cols)
    cols = math.ceil(n / rows)
    cell = max(1, min((avail - cols * gap) // cols // p, max(1, max_side // p)))
    return rows, cols, cell


def _ab_heatmap_grid(
    heatmaps: list[go.Heatmap],
    titles: list[str],
    title: str,
    p: int,
    max_cols: int,
    *,
    side_pad: int = 0,
    coloraxis: dict[str, Any] | None = None,
    style: StyleArg = None,
    colorbar_each: bool = False,
    axis_names: tuple[str, str] = ("a", "b"),
    caption: str | None = None,
) -> go.Figure:
    """Square (a, b) heatmaps in a grid, a down the rows and b across, each cell a whole number of
    pixels (no moire), ``zsmooth=False``; one shared colour bar (``coloraxis``) or one per panel
    (``colorbar_each``). Tick labels on the left column and bottom row only. ``side_pad`` is
    accepted for compatibility and not used."""
    style = get_style(style)
    ya, xb = axis_names
    width = style.width("double")
    ml = 58 if not style.paper else 40
    cb_w = 8 if style.paper else 12  # colour bar thickness
    cb_gap = cb_w + 6 + (28 if style.paper else 40)  # bar, ticks and their labels
    shared = not colorbar_each and coloraxis is not None
    mr = 10
    bar_room = cb_gap + 30 if shared else 0  # the shared colour bar and its title, right of the grid
    gap = cb_gap if colorbar_each else 12
    mt = (90 if style.titles else 6) + round(style.annotation_size * 1.6)
    title_h = round(style.annotation_size * 1.6)  # subplot titles
    mb = round(style.tick_size + style.font_size + 24)
    max_side = 340 if not style.paper else 230
    rows, cols, cell = _grid_cells(len(heatmaps), p, width - ml - mr - bar_room, gap, max_cols, max_side)
    side = cell * p
    used = cols * side + (cols - 1) * gap + (gap if colorbar_each else 0)
    pw = width - ml - mr
    x_left = max(0, (pw - used - bar_room) // 2)  # centred
    ph = rows * side + (rows - 1) * (title_h + 8)
    height = mt + ph + mb
    fig = go.Figure()
    fig.update_layout(
        template=TEMPLATE,
        title_text=title if style.titles else None,
        width=width,
        height=height,
        margin=dict(l=ml, r=mr, t=mt, b=mb, autoexpand=False),
        showlegend=False,
        plot_bgcolor="white",
    )
    if shared:
        fig.update_layout(coloraxis=coloraxis)
        fig.update_layout(
            coloraxis_colorbar=dict(
                thickness=cb_w,
                len=min(1.0, side * min(rows, 2) / ph),
                y=1.0,
                yanchor="top",
                x=(x_left + used + 8) / pw,
                xanchor="left",
            )
        )
    ticks = [t for t in range(0, p, max(1, p // 4)) if t <= 0.9 * (p - 1)]  # none at the far edge
    for i, hm in enumerate(heatmaps):
        r, c = divmod(i, cols)
        x0 = x_left + c * (side + gap)
        y_top = r * (side + title_h + 8)
        suffix = "" if i == 0 else str(i + 1)
        xd = [x0 / pw, (x0 + side) / pw]
        yd = [1 - (y_top + side) / ph, 1 - y_top / ph]
        hm.update(x=list(range(p)), y=list(range(p)), zsmooth=False, xaxis=f"x{suffix}", yaxis=f"y{suffix}")
        if colorbar_each:
            ax_name = f"coloraxis{i + 1}" if i else "coloraxis"
            hm.update(coloraxis=ax_name, showscale=None)
            fig.update_layout(
                {
                    ax_name: dict(
                        colorscale=hm.colorscale or "Viridis",
                        colorbar=dict(
                            thickness=cb_w,
                            len=side / ph,
                            lenmode="fraction",
                            x=(x0 + side + 4) / pw,
                            xanchor="left",
                            y=yd[1],
                            yanchor="top",
                            outlinewidth=0,
                            ticks="outside",
                            ticklen=2,
                            nticks=4,
                        ),
                    )
                }
            )
            hm.update(colorscale=None)
        fig.add_trace(hm)
        axis = dict(showgrid=False, ticks="", showline=False, zeroline=False, tickvals=ticks, mirror=False)
        fig.update_layout(
            {
                f"xaxis{suffix}": dict(
                    axis,
                    domain=xd,
                    anchor=f"y{suffix}",
                    range=[-0.5, p - 0.5],
                    showticklabels=r == rows - 1 or i + cols >= len(heatmaps),
                    title_text=xb if (r == rows - 1 or i + cols >= len(heatmaps)) else None,
                ),
                f"yaxis{suffix}": dict(
                    axis,
                    domain=yd,
                    anchor=f"x{suffix}",
                    range=[p - 0.5, -0.5],
                    showticklabels=c == 0,
                    title_text=ya if c == 0 else None,
                ),
            }
        )
        fig.add_annotation(
            text=titles[i], x=(xd[0] + xd[1]) / 2, y=yd[1], xref="paper", yref="paper",
            xanchor="center", yanchor="bottom", yshift=2, showarrow=False,
        )  # fmt: skip
    _set_meta(fig, caption=caption or _plain(title), column="double", grid=True)
    return style_figure(fig, style)


def plot_neuron_heatmaps(
    acts: Float[Tensor, "m m d_mlp"],
    clusters: NeuronClusters,
    n_per_cluster: int = 1,
    *,
    max_cols: int = 4,
    axis_names: tuple[str, str] = ("a", "b"),
    style: StyleArg = None,
) -> go.Figure:
    """Activations of the most cleanly periodic neurons of each frequency cluster over the task
    grid (``measures.neuron_acts``: (m, m, d_mlp), rows phi_a, columns phi_b; for addition a and
    b), one heatmap per neuron with its own colour bar (demo "Neuron Activations"). Without any
    cluster, a figure with only a note (``make_all_figures`` leaves it out instead)."""
    style = get_style(style)
    acts = acts.detach().cpu()
    panels: list[tuple[int, int]] = []  # (k, neuron)
    for k in sorted(k for k in clusters.cluster_sizes() if k >= 0):
        members = (clusters.labels == k).nonzero().flatten()
        best = members[clusters.best_frac[members].argsort(descending=True)][:n_per_cluster]
        panels += [(k, int(n)) for n in best]
    m = acts.shape[0]
    if not panels:
        fig = _figure("Neuron activations: no neuron clusters", style)
        fig.add_annotation(text="no neuron is explained by a single frequency", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)  # fmt: skip
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return style_figure(fig, style)
    ya, xb = axis_names
    heatmaps = [
        go.Heatmap(
            z=acts[:, :, n].tolist(),
            colorscale="Viridis",
            name=f"neuron {n}",
            hovertemplate=f"{ya}=%{{y}} {xb}=%{{x}}<br>act=%{{z:.3g}}<extra></extra>",
        )
        for _, n in panels
    ]
    layer = f", layer {clusters.layer}" if clusters.layer is not None else ""
    ks = ", ".join(str(k) for k in sorted({k for k, _ in panels}))
    caption = (
        f"Activation (after the ReLU) of MLP neurons{layer.replace(',', ' of')} over the input grid ({ya}, {xb}), "
        f"{ya} down, {xb} across (m = {m}): the {'neuron' if n_per_cluster == 1 else f'{n_per_cluster} neurons'} "
        f"of each frequency cluster (k = {ks}) best explained by its frequency; each panel has its own colour scale."
    )
    return _ab_heatmap_grid(
        heatmaps,
        [f"k = {k}, neuron {n}" for k, n in panels],
        f"Neuron activations over ({ya}, {xb}), one neuron per cluster (m = {m}{layer})",
        m,
        max_cols,
        style=style,
        colorbar_each=True,
        axis_names=axis_names,
        caption=caption,
    )


def plot_attention(
    to_a: Float[Tensor, "heads p p"], layer: int = 0, *, max_cols: int = 4, style: StyleArg = None
) -> go.Figure:
    """Attention paid by the final "=" position to the a position, per head, as (a, b) heatmaps
    (``attention.attention_to_a_b``; paper Sec. 4.1, periodic attention; demo "Attention
    Patterns")."""
    style = get_style(style)
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
        coloraxis=dict(colorscale="Blues", cmin=0, cmax=1, colorbar=dict(title="attention")),
        style=style,
        caption=f'Attention paid by the final "=" token to the a token, per head of layer {layer}, over the input '
        f"grid (a down, b across; p = {p}); the rest goes to b.",
    )


def _measures_row(source, epoch: int | None) -> tuple[dict[str, Any], Run | None]:
    """A row of measures (dict) at ``epoch`` (default: the last) from a Run, a DataFrame or a
    mapping (one row already)."""
    from grokinterp.io.runs import Run

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
    fig = _figure(
        "Excluded loss of each single frequency" + title_epoch,
        style,
        caption="Excluded loss (logit level, train) when only frequency k is removed from the logits (its "
        f"cos/sin(ω_k(φ_a+φ_b)) directions), for every k{', at epoch ' + str(int(row['epoch'])) if 'epoch' in row else ''}"
        "; key frequencies labelled; dashed: the train loss with nothing removed; log scale.",
        column="single" if len(ks) <= 20 else "double",
        xaxis_title=_tex(
            tex and style.tex,
            "frequency k removed (ω<sub>k</sub> = 2πk/m)",
            r"$\text{frequency } k \text{ removed }(\omega_k = 2\pi k/m)$",
        ),
        yaxis_title="excluded loss",
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
    "clock_pizza",
    "embedding_spectrum",
    "wl_spectrum",
    "cluster_sizes",
    "fraction_explained_hist",
    "neuron_heatmaps",
    "attention",
    "per_frequency_excluded_loss",
)


class FigureSet(dict):
    """``{name: Figure}`` as returned by ``make_all_figures``, with ``skipped``: ``{name: reason}``
    for the figures left out (written to captions.md in paper style)."""

    def __init__(self, *args: Any, skipped: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped: dict[str, str] = dict(skipped or {})


def make_all_figures(
    run: Run | str | Path,
    epoch: int | None = None,
    *,
    tex: bool = False,
    layer: int | None = None,
    style: StyleArg = None,
    column: str | None = None,
) -> FigureSet:
    """Every figure of an analysed run as {name: Figure} (names from ``FIGURE_NAMES``; a
    ``FigureSet``, whose ``skipped`` says which were left out and why). This is where data is
    loaded and the per-model arrays are computed (the checkpoint ``epoch``, default the last); the
    ``plot_*`` functions only draw them. For a task without a Fourier basis the Fourier figures are
    left out (one log line, the reason is in analysis.json); so are the neuron heatmaps when no
    neuron is explained by one frequency (a run that has not grokked). ``layer``: the MLP layer of
    the neuron figures (default: the analysis's layer). ``style``: "screen" (default) or "paper"
    (``Style``); ``column``: "single" or "double" forces every paper figure to that width; ``tex``
    (MathJax labels) applies to the screen style only."""
    import torch

    from grokinterp.analysis import measures
    from grokinterp.analysis.attention import attention_to_a_b, has_attention
    from grokinterp.analysis.bases import task_basis
    from grokinterp.analysis.fourier import basis_names
    from grokinterp.io.runs import Run, load_run

    style = get_style(style, column)
    tex = tex and style.tex
    skipped: dict[str, str] = {}
    run = run if isinstance(run, Run) else load_run(run)
    figs: dict[str, go.Figure] = {
        "loss": plot_loss(run, style=style),
        "accuracy": plot_accuracy(run, style=style),
        "restricted_excluded": plot_restricted_excluded(run, style=style),
        "restricted_excluded_neuron": plot_restricted_excluded_neuron(run, style=style),
        "gini": plot_gini(run, style=style),
        "weight_norm": plot_weight_norm(run, style=style),
        "frac_neurons_explained": plot_frac_neurons_explained(run, style=style),
    }
    table = _measures(run)
    dataset = run.dataset
    basis = task_basis(dataset.op, dataset.p)
    if any(c.startswith("cos_apb_c_k") for c in table.columns) or not basis.defined:
        figs["cos_apb_c"] = plot_cos_apb_c(run, style=style)
    figs["clock_pizza"] = plot_clock_pizza(run, style=style)
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
                from grokinterp.analysis.clusters import best_layer

                layer = best_layer(layers)
            clusters = layers[layer]
            acts = measures.neuron_acts(model, dataset, layer)
            names = basis_names(basis.m)
            e_spec = measures.embedding_spectrum(model, basis).cpu().tolist()
            w_spec = measures.wl_spectrum(model, basis).cpu().tolist()
        figs["embedding_spectrum"] = plot_embedding_spectrum(
            e_spec, names, keys, tex=tex, basis=basis.name, style=style
        )
        figs["wl_spectrum"] = plot_wl_spectrum(w_spec, names, keys, tex=tex, basis=basis.name, style=style)
        figs["cluster_sizes"] = plot_cluster_sizes(clusters, style=style)
        figs["fraction_explained_hist"] = plot_fraction_explained_hist(clusters, style=style)
        axes = ("a", "b") if dataset.op == "add" else ("φa", "φb")
        if bool((clusters.labels >= 0).any()):
            figs["neuron_heatmaps"] = plot_neuron_heatmaps(acts, clusters, axis_names=axes, style=style)
        else:
            at = f"epoch {epoch}" if epoch is not None else "the last checkpoint"
            skipped["neuron_heatmaps"] = (
                f"no MLP neuron of layer {layer} is explained by a single frequency (threshold {clusters.threshold:g}) "
                f"at {at}: the model has not formed the Fourier circuit, so there is no cluster to show"
            )
            log.info("%s: skipping neuron_heatmaps: %s", run.path, skipped["neuron_heatmaps"])
    else:
        log.info(
            "%s: op %r has no Fourier basis (%s); skipping the Fourier figures", run.path, dataset.op, basis.reason
        )
        for name in ("embedding_spectrum", "wl_spectrum", "cluster_sizes", "fraction_explained_hist", "neuron_heatmaps",
                     "per_frequency_excluded_loss"):  # fmt: skip
            skipped[name] = f"op {dataset.op!r} has no Fourier basis ({basis.reason})"
    if has_attention(model):
        figs["attention"] = plot_attention(attention_to_a_b(model, dataset)[0], style=style)
    else:
        log.info("%s: no attention in this architecture; skipping the attention figure", run.path)
        skipped["attention"] = "no attention in this architecture"
    if basis.defined:
        ep = epoch if epoch is not None and epoch in set(table["epoch"]) else None
        figs["per_frequency_excluded_loss"] = plot_per_frequency_excluded_loss(run, ep, tex=tex, style=style)
    if "llc_mean" in table.columns and table["llc_mean"].notna().any():  # grokinterp analyze --llc
        figs["llc"] = plot_llc(table, run=run, style=style)
    return FigureSet(
        {name: style_figure(figs[name], style) for name in (*FIGURE_NAMES, "llc") if name in figs},
        skipped={name: skipped[name] for name in FIGURE_NAMES if name in skipped},
    )


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


def write_captions(
    figs: Mapping[str, go.Figure], paths: Sequence[Path], out_dir: str | Path, skipped: Mapping[str, str] | None = None
) -> Path:
    """Write ``out_dir/captions.md``: one entry per figure file (its name and caption), then the
    figures left out and why."""
    lines = ["# Figure captions", ""]
    for path, fig in zip(paths, figs.values(), strict=True):
        lines += [f"## {Path(path).name}", "", figure_caption(fig), ""]
    if skipped:
        lines += ["## Not drawn", ""]
        lines += [f"- `{name}`: {reason}." for name, reason in skipped.items()]
        lines.append("")
    out = Path(out_dir) / "captions.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def write_all_figures(
    run_dir: str | Path,
    out_dir: str | Path,
    fmt: str = "png",
    epoch: int | None = None,
    *,
    style: StyleArg = None,
    column: str | None = None,
) -> list[Path]:
    """Write every figure of ``run_dir`` (``FIGURE_NAMES``) to ``out_dir`` as png, pdf, svg or html
    and return the paths. Runs ``analyze_run`` first if the run has no measures.csv yet, or if the
    run went on after its last analysis (never draws stale measures); without a Chromium the static
    formats fall back to HTML (one warning). ``style="paper"``: print-ready figures (``PAPER``: no
    titles, column widths, 8-10 pt, PNG at 288 dpi) and their captions in ``out_dir/captions.md``;
    ``column`` forces "single" or "double" column width."""
    from grokinterp.io.runs import load_run

    run = load_run(run_dir)
    if (reason := run.stale_reason) is not None:
        from grokinterp.analysis.run_analysis import analyze_run

        log.warning("%s: %s; analysing the run first", run.path, reason)
        analyze_run(run.path, progress=False)
    style = get_style(style, column)
    static = fmt.lower() in _STATIC
    browser = find_browser() if static else None
    tex = style.tex and static and browser is not None and find_mathjax() is not None
    figs = make_all_figures(run, epoch, tex=tex, style=style)
    paths = export_figures(figs, out_dir, fmt, browser=browser, scale=style.png_scale if fmt.lower() == "png" else 1.0)
    if style.paper:
        write_captions(figs, paths, out_dir, getattr(figs, "skipped", None))
    return paths


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
    fig = _figure(
        "Local learning coefficient",
        style,
        caption="Local learning coefficient (devinterp SGLD estimate on the train split; error bars: spread "
        "over chains) and train/test loss at each checkpoint (right axis, log scale).",
        xaxis_title="epoch",
        yaxis_title="LLC estimate",
        yaxis2=dict(_LOG, title_text="cross-entropy loss", overlaying="y", side="right", showgrid=False),
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
