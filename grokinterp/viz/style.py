"""The figure style of grokinterp: one look for every figure, on screen and in print.

Every figure function of ``grokinterp.viz`` returns a ``plotly.graph_objects.Figure`` in a
``Style`` (keyword ``style``): ``SCREEN`` (the default; the shared ``TEMPLATE``: white background,
Arial/Liberation Sans 14 px, 900 x 500 px, boxed axes, titles) or ``PAPER`` (print-ready: no
titles, 3.25 or 6.75 in wide, 8-10 pt, one font family and no MathJax, legend below). Each figure
keeps its caption in ``layout.meta`` (``figure_caption``; written to captions.md in paper style);
``style_figure`` applies a style to any figure. Curves use the Okabe-Ito palette in both styles
(``COLORS`` by role, ``PALETTE`` in order); the phases of a run are shaded in the greys
``PHASE_COLORS``, labelled ``PHASE_LABELS``.

>>> fig = new_figure("Loss", get_style("paper"), xaxis_title="epoch")
>>> style_figure(fig, "paper", column="double")
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from grokinterp.analysis.phases import PHASE_NAMES

__all__ = [
    "COLORS",
    "COLUMN_WIDTHS",
    "FONT",
    "HEIGHT",
    "LOG_AXIS",
    "LOG_TICK_GROWTH",
    "OKABE_ITO",
    "PALETTE",
    "PAPER",
    "PHASE_COLORS",
    "PHASE_LABELS",
    "PHASE_OPACITY",
    "PX_PER_IN",
    "PX_PER_PT",
    "SCREEN",
    "STYLES",
    "TEMPLATE",
    "WIDTH",
    "Style",
    "StyleArg",
    "colorbar_font",
    "figure_caption",
    "get_style",
    "merge_layout",
    "new_figure",
    "plain_text",
    "set_meta",
    "style_figure",
    "style_updates",
    "tex_label",
]


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
        """Whether this is the print style (no titles, column widths, legend below)."""
        return self.name == "paper"

    def width(self, column: str = "single") -> int:
        """Figure width in px: the screen width, or the column width in inches * ``PX_PER_IN``."""
        if not self.paper:
            return WIDTH
        return round(COLUMN_WIDTHS[self.column or column] * PX_PER_IN)

    def with_column(self, column: str | None) -> Style:
        """This style with every figure at ``column`` width ("single", "double"; None: each
        figure's own choice)."""
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
LOG_AXIS = dict(type="log", exponentformat="power")


def new_figure(
    title: str, style: Style = SCREEN, *, caption: str | None = None, column: str = "single", **layout: Any
) -> go.Figure:
    """A new figure in ``style`` with ``layout``: the title is drawn in screen style only; the
    caption (default: the title) and the paper ``column`` width are kept in ``layout.meta`` (for
    captions.md: ``figure_caption``)."""
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title_text=title if style.titles else None, **layout)
    set_meta(fig, caption=caption or plain_text(title), column=column)
    return fig


def set_meta(fig: go.Figure, **items: Any) -> None:
    """Add ``items`` to the figure's ``layout.meta`` dict (caption, column, and hints to the paper
    layout such as ``grid``, ``band_labels``, ``plot_height``, ``margin``)."""
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, Mapping) else {}
    meta.update(items)
    fig.layout.meta = meta


def plain_text(text: str | None) -> str:
    """Text of a plotly label without its HTML tags (<br> -> "; ")."""
    text = (text or "").replace("<br>", "; ")
    return re.sub(r"<[^>]+>", "", text).strip()


def figure_caption(fig: go.Figure) -> str:
    """The caption of a figure: the one its builder set (``layout.meta["caption"]``), else its
    title text."""
    meta = fig.layout.meta
    if isinstance(meta, Mapping) and meta.get("caption"):
        return str(meta["caption"])
    return plain_text(fig.layout.title.text)


def tex_label(tex: bool, plain: str, latex: str) -> str:
    """A LaTeX label where MathJax renders it (``tex=True``), else the plain (unicode) one."""
    return latex if tex else plain


def _legend_entries(fig: go.Figure) -> list[str]:
    if fig.layout.showlegend is False:
        return []
    names = [t.name for t in fig.data if t.name and t.showlegend is not False and t.type not in ("heatmap",)]
    return names if len(names) > 1 or fig.layout.showlegend else []


def colorbar_font(style: Style) -> dict[str, Any]:
    """A colour bar's fonts in ``style`` (what ``style_figure`` sets on every colour bar)."""
    family = style.font_family
    return dict(
        tickfont=dict(family=family, size=style.tick_size),
        title=dict(font=dict(family=family, size=style.annotation_size)),
    )


def style_updates(layout: dict[str, Any], style: Style) -> dict[str, Any]:
    """The layout changes ``style_figure`` makes, for a layout given as a plain dict (its
    ``to_plotly_json()``): fonts and sizes of every label, axis and colour bar, the title shown or
    not. One dict, applied in one ``update_layout`` (plotly validates each call, and a call per
    axis or annotation made styling the slowest step of a report's heatmap grids) or merged into
    a layout before the figure is built (``merge_layout``)."""
    family = style.font_family
    updates: dict[str, Any] = dict(
        font=dict(family=family, size=style.tick_size),
        legend=dict(font=dict(family=family, size=style.legend_size), grouptitlefont=dict(size=style.legend_size)),
        title=dict(font=dict(family=family, size=style.title_size)) if style.titles else dict(text=None),
    )
    for name in [k for k in layout if k.startswith(("xaxis", "yaxis"))] or ["xaxis", "yaxis"]:
        axis = layout.get(name, {})
        is_log = axis.get("type") == "log" and axis.get("exponentformat") in ("power", None)
        growth = LOG_TICK_GROWTH if is_log else 1.0
        upd: dict[str, Any] = dict(
            tickfont=dict(family=family, size=style.tick_size / growth),
            title=dict(font=dict(family=family, size=style.font_size)),
        )
        if style.paper:
            upd["title"]["standoff"] = 4
            upd.update(automargin=True, ticklen=3)
        updates[name] = upd
    if layout.get("annotations"):
        font = dict(family=family, size=style.annotation_size)
        updates["annotations"] = [{**a, "font": {**a.get("font", {}), **font}} for a in layout["annotations"]]
    for k in layout:
        if k.startswith("coloraxis"):
            updates[k] = dict(colorbar=colorbar_font(style))
    return updates


def merge_layout(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``updates`` merged in as ``update_layout`` merges them: nested dicts key by
    key, anything else (lists such as annotations included) replaced."""
    out = dict(base)
    for k, v in updates.items():
        old = out.get(k)
        if k == "title" and isinstance(old, str):
            old = {"text": old}  # plotly's shorthand for a title
        out[k] = merge_layout(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return out


def style_figure(fig: go.Figure, style: StyleArg = None, *, column: str | None = None) -> go.Figure:
    """Apply ``style`` to a figure, also one built elsewhere (in place; idempotent): one font
    family and the style's sizes for every label (axis titles, ticks, legend, annotations, colour
    bars), log-axis tick labels the size of linear ones, and in paper style no title (its text
    becomes the caption unless the builder set one), the column width, and the legend below the
    plot. ``column`` ("single"/"double") overrides the figure's column width."""
    style = get_style(style, column)
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, Mapping) else {}
    if not meta.get("caption") and fig.layout.title.text:
        meta["caption"] = plain_text(fig.layout.title.text)
    fig.layout.meta = meta
    updates = style_updates(fig.layout.to_plotly_json(), style)
    fig.update_layout(updates)
    for t in fig.data:
        if "colorbar" in t and (t.showscale is None or t.showscale):
            t.update(colorbar=colorbar_font(style))
    for t in fig.data:
        if "textfont" in t and t.text is not None:
            t.update(textfont=dict(family=style.font_family, size=style.annotation_size))
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
