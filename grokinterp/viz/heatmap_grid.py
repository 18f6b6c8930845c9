"""A grid of square (a, b) heatmaps, one per head or neuron, each cell a whole number of pixels.

The layout of ``plot_neuron_heatmaps``, ``plot_neuron_fourier`` (``grokinterp.viz.neuron_figures``)
and ``plot_attention`` (``grokinterp.viz.model_figures``):
the panels are placed by hand (axis domains in paper coordinates) so that every heatmap cell is
the same whole number of screen pixels (no moire), with one shared colour bar or one per panel.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from grokinterp.viz.style import TEMPLATE, StyleArg, colorbar_font, get_style, merge_layout, plain_text, style_updates

__all__ = ["ab_heatmap_grid", "grid_cells"]


def grid_cells(n: int, p: int, avail: int, gap: int, max_cols: int, max_side: int) -> tuple[int, int, int]:
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


def ab_heatmap_grid(
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
    tick_labels: list[str] | None = None,
    max_side: int | None = None,
) -> go.Figure:
    """Square (a, b) heatmaps in a grid, a down the rows and b across, each cell a whole number of
    pixels (no moire), ``zsmooth=False``; one shared colour bar (``coloraxis``) or one per panel
    (``colorbar_each``). Tick labels on the left column and bottom row only: every 4th value, or
    with ``tick_labels`` (p names) one label per row and column (the x labels vertical).
    ``max_side``: the largest panel side in px (default 340, paper 230). ``side_pad`` is accepted
    for compatibility and not used."""
    style = get_style(style)
    ya, xb = axis_names
    label_room = 0 if tick_labels is None else round(0.62 * style.tick_size * max(map(len, tick_labels)))
    width = style.width("double")
    ml = (58 if not style.paper else 40) + label_room
    cb_w = 8 if style.paper else 12  # colour bar thickness
    cb_gap = cb_w + 6 + (28 if style.paper else 40)  # bar, ticks and their labels
    shared = not colorbar_each and coloraxis is not None
    mr = 10
    bar_room = cb_gap + 30 if shared else 0  # the shared colour bar and its title, right of the grid
    gap = cb_gap if colorbar_each else 12
    mt = (90 if style.titles else 6) + round(style.annotation_size * 1.6)
    title_h = round(style.annotation_size * 1.6)  # subplot titles
    mb = round(style.tick_size + style.font_size + 24) + label_room
    max_side = max_side or (340 if not style.paper else 230)
    rows, cols, cell = grid_cells(len(heatmaps), p, width - ml - mr - bar_room, gap, max_cols, max_side)
    side = cell * p
    used = cols * side + (cols - 1) * gap + (gap if colorbar_each else 0)
    pw = width - ml - mr
    x_left = max(0, (pw - used - bar_room) // 2)  # centred
    ph = rows * side + (rows - 1) * (title_h + 8)
    height = mt + ph + mb
    layout: dict[str, Any] = dict(
        template=TEMPLATE,
        title=dict(text=title if style.titles else None),
        width=width,
        height=height,
        margin=dict(l=ml, r=mr, t=mt, b=mb, autoexpand=False),
        showlegend=False,
        plot_bgcolor="white",
        meta=dict(caption=caption or plain_text(title), column="double", grid=True),
    )
    if shared:
        layout["coloraxis"] = dict(
            coloraxis,
            colorbar=dict(
                coloraxis.get("colorbar", {}),
                thickness=cb_w,
                len=min(1.0, side * min(rows, 2) / ph),
                y=1.0,
                yanchor="top",
                x=(x_left + used + 8) / pw,
                xanchor="left",
            ),
        )
    ticks = [t for t in range(0, p, max(1, p // 4)) if t <= 0.9 * (p - 1)]  # none at the far edge
    # The whole layout, styled, goes to the Figure constructor at once: plotly validates every
    # update call, and per-panel (or even one) update calls made this the slowest step of a report.
    annotations = []
    bar_font = colorbar_font(style)
    for i, hm in enumerate(heatmaps):
        r, c = divmod(i, cols)
        x0 = x_left + c * (side + gap)
        y_top = r * (side + title_h + 8)
        suffix = "" if i == 0 else str(i + 1)
        xd = [x0 / pw, (x0 + side) / pw]
        yd = [1 - (y_top + side) / ph, 1 - y_top / ph]
        hm.update(x=list(range(p)), y=list(range(p)), zsmooth=False, xaxis=f"x{suffix}", yaxis=f"y{suffix}")
        if hm.showscale is None or hm.showscale:
            hm.update(colorbar=bar_font)  # as style_figure styles a trace's colour bar
        if colorbar_each:
            ax_name = f"coloraxis{i + 1}" if i else "coloraxis"
            hm.update(coloraxis=ax_name, showscale=None)
            layout.update(
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
        axis = dict(showgrid=False, ticks="", showline=False, zeroline=False, tickvals=ticks, mirror=False)
        if tick_labels is not None:
            axis.update(tickvals=list(range(p)), ticktext=list(tick_labels))
        layout.update(
            {
                f"xaxis{suffix}": dict(
                    axis,
                    domain=xd,
                    anchor=f"y{suffix}",
                    range=[-0.5, p - 0.5],
                    showticklabels=r == rows - 1 or i + cols >= len(heatmaps),
                    tickangle=None if tick_labels is None else -90,
                    title=dict(text=xb if (r == rows - 1 or i + cols >= len(heatmaps)) else None),
                ),
                f"yaxis{suffix}": dict(
                    axis,
                    domain=yd,
                    anchor=f"x{suffix}",
                    range=[p - 0.5, -0.5],
                    showticklabels=c == 0,
                    title=dict(text=ya if c == 0 else None),
                ),
            }
        )
        annotations.append(dict(
            text=titles[i], x=(xd[0] + xd[1]) / 2, y=yd[1], xref="paper", yref="paper",
            xanchor="center", yanchor="bottom", yshift=2, showarrow=False,
        ))  # fmt: skip
    layout["annotations"] = annotations
    fig = go.Figure(data=heatmaps, layout=merge_layout(layout, style_updates(layout, style)))
    return fig  # styled as style_figure(fig, style) would (tested: it changes nothing)
