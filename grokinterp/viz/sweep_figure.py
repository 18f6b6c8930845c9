"""The figure of a sweep: the grokking epoch (or step) of every run against the train fraction,
with the medians and the power-law fit (``grokinterp.analysis.powerlaw``), in the project's figure
style.

``write_sweep_figure(df, fit, out)`` is the function ``grokinterp sweep`` passes to
``grokinterp.training.sweep.run_sweep(plot=...)``: it writes ``OUT/grokking_vs_train_frac.html``
(and ``.png`` when static export works).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from grokinterp.viz.export import export_figures
from grokinterp.viz.style import StyleArg, get_style, new_figure, style_figure

__all__ = ["FIGURE_NAME", "sweep_fit_figure", "write_sweep_figure"]

log = logging.getLogger(__name__)

#: File name (without extension) of the sweep's figure.
FIGURE_NAME = "grokking_vs_train_frac"


def sweep_fit_figure(df, fit: dict[str, Any], y: str | None = None, *, style: StyleArg = None):
    """A plotly figure of ``y`` (``fit["y"]``, default ``grokking_epoch``) against train_frac on
    log-log axes: every grokked run of the results table ``df``, and when the fit succeeded
    (``fit`` from ``fit_sweep``) the median per fraction and the fitted line, with A, b, its
    interval and R² in the title."""
    import numpy as np
    import plotly.graph_objects as go

    style = get_style(style)
    y = y or fit.get("y", "grokking_epoch")
    label = y.replace("_", " ")
    title = f"{label.capitalize()} against train fraction"
    if "A" in fit:
        lo, hi = fit["b_ci"]
        ci = "" if math.isnan(lo) else f" (b {fit['confidence']:.0%} CI [{lo:.2f}, {hi:.2f}])"
        title += f": {fit['A']:.4g} · f^{-fit['b']:.3f}{ci}, R² {fit['r2']:.3f}"
    fig = new_figure(title, style, xaxis_title="train fraction", yaxis_title=label)
    grokked = df[df[y].notna()]
    fig.add_trace(
        go.Scatter(
            x=grokked["train_frac"].astype(float),
            y=grokked[y].astype(float),
            mode="markers",
            name="runs",
            marker={"opacity": 0.5, "size": style.marker_size},
            text=grokked["run"],
        )
    )
    if "A" in fit:
        pts = fit["points"]
        fig.add_trace(go.Scatter(x=pts["train_frac"], y=pts[y], mode="markers", name="median",
                                 marker={"size": 1.6 * style.marker_size, "symbol": "diamond"}))  # fmt: skip
        xs = np.geomspace(min(pts["train_frac"]), max(pts["train_frac"]), 100)
        fig.add_trace(go.Scatter(x=xs, y=fit["A"] * xs ** -fit["b"], mode="lines", name="fit",
                                 line={"width": style.line_width}))  # fmt: skip
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return style_figure(fig, style)


def write_sweep_figure(df, fit: dict[str, Any], out: str | Path, *, style: StyleArg = None) -> list[str]:
    """Write ``sweep_fit_figure`` to ``out/grokking_vs_train_frac.html``, and ``.png`` when kaleido
    and a Chromium work (without them the HTML is enough: one log line); returns the paths."""
    out = Path(out)
    style = get_style(style)
    figs = {FIGURE_NAME: sweep_fit_figure(df, fit, style=style)}
    paths = list(export_figures(figs, out, "html"))
    png = out / f"{FIGURE_NAME}.png"
    try:
        export_figures(figs, out, "png", scale=style.png_scale)  # without a Chromium: HTML again, one warning
    except Exception as e:  # kaleido or Chromium broken: the HTML is enough
        log.info("no PNG (%s); wrote %s", str(e).splitlines()[0] if str(e) else type(e).__name__, paths[0])
    if png.is_file():
        paths.append(png)
    return [str(p) for p in paths]
