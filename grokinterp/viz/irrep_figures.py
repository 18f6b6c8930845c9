"""Figures of a group task in the irrep basis (``grokinterp.analysis.irrep_measures``).

- ``plot_irrep_spectrum_over_training``: the fraction of variance of a weight (W_a by default)
  explained by each irrep (rows) at every checkpoint (columns): the key irreps grow out of a spread
  spectrum, the analogue of Nanda et al.'s embedding spectrum over training.
- ``plot_irrep_restricted_excluded``: the restricted and excluded loss of the key irreps (neuron
  level) with train and test loss, and each irrep's own excluded loss, over training.

Both draw an ``IrrepCurves`` (``irrep_curves`` reads it off a run's measures and its analysis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from grokinterp.viz.style import StyleArg, get_style, new_figure, style_figure

__all__ = ["IrrepCurves", "irrep_curves", "plot_irrep_restricted_excluded", "plot_irrep_spectrum_over_training"]

_WHAT = {
    "fve_W_a": "the embedding of a as the first layer sees it (W_a)",
    "fve_W_b": "the embedding of b as the first layer sees it (W_b)",
    "fve_W_U": "the unembedding from the neurons (W_U)",
    "fve_mlp": "the last MLP layer's neurons",
}


@dataclass(frozen=True)
class IrrepCurves:
    """Per-checkpoint irrep measures of one run: ``epochs``; ``irreps`` (names, trivial first) and
    their dims; ``per_irrep[measure][name]`` one value per epoch; ``totals[column]`` one value per
    epoch (``restricted_loss_irrep``, ``excluded_loss_irrep``, ``train_loss``, ``test_loss``);
    ``key_irreps``; ``group``."""

    group: str
    epochs: list[int]
    irreps: list[str]
    dims: list[int]
    key_irreps: list[str]
    per_irrep: dict[str, dict[str, list[float]]]
    totals: dict[str, list[float]]


def irrep_curves(table: Any, entry: dict[str, Any]) -> IrrepCurves:
    """The ``IrrepCurves`` of a measures table (DataFrame) and analysis.json's ``irreps`` entry
    (``ValueError`` with the reason for a task that is not a group task)."""
    from grokinterp.analysis.irrep_measures import PER_IRREP, irrep_column

    if not entry.get("defined"):
        raise ValueError(f"no irrep measures: {entry.get('reason', 'the run was analysed before they existed')}")
    names = [r["name"] for r in entry["irreps"]]
    per = {
        m: {n: [float(v) for v in table[irrep_column(m, n)]] for n in names if irrep_column(m, n) in table.columns}
        for m in PER_IRREP
    }
    totals = {
        c: [float(v) for v in table[c]]
        for c in ("restricted_loss_irrep", "excluded_loss_irrep", "train_loss", "test_loss")
        if c in table.columns
    }
    return IrrepCurves(
        group=entry["group"],
        epochs=[int(e) for e in table["epoch"]],
        irreps=names,
        dims=[int(r["dim"]) for r in entry["irreps"]],
        key_irreps=list(entry.get("key_irreps") or []),
        per_irrep=per,
        totals=totals,
    )


def _label(name: str, dim: int, keys: Sequence[str]) -> str:
    return f"{name} ({dim}){' *' if name in keys else ''}"


def plot_irrep_spectrum_over_training(
    curves: IrrepCurves, measure: str = "fve_W_a", *, style: StyleArg = None
) -> go.Figure:
    """Heatmap of ``measure`` (fve_W_a, fve_W_b, fve_W_U or fve_mlp) per irrep (rows, their
    dimension in parentheses, key irreps starred) at every checkpoint (columns, by epoch)."""
    style = get_style(style)
    if measure not in _WHAT:
        raise ValueError(f"measure must be one of {', '.join(_WHAT)} (got {measure!r})")
    values = curves.per_irrep[measure]
    labels = [_label(n, d, curves.key_irreps) for n, d in zip(curves.irreps, curves.dims, strict=True)]
    z = [values[n] for n in curves.irreps]
    fig = new_figure(
        f"{curves.group}: fraction of variance per irrep over training",
        style,
        caption=(
            f"Fraction of the variance of {_WHAT[measure]} explained by each irreducible representation of "
            f"{curves.group} (rows; dimension in parentheses) at every checkpoint; key irreps "
            f"({', '.join(curves.key_irreps) or 'none'}) starred."
        ),
        column="double",
        xaxis_title="epoch",
        yaxis_title="irrep",
    )
    fig.add_trace(
        go.Heatmap(
            x=curves.epochs,
            y=labels,
            z=z,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar=dict(title="FVE", thickness=10),
            name=measure,
            hovertemplate="epoch %{x}, %{y}<br>FVE %{z:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(showgrid=False, ticks="outside")
    fig.update_yaxes(showgrid=False, ticks="outside", type="category", automargin=True, title_standoff=6)
    return style_figure(fig, style)


def plot_irrep_restricted_excluded(curves: IrrepCurves, *, style: StyleArg = None) -> go.Figure:
    """Train and test loss, the restricted and excluded loss of the key irreps (neuron level), and
    each non-trivial irrep's own excluded loss (thin), over training, log y."""
    style = get_style(style)
    keys = ", ".join(curves.key_irreps) or "none"
    fig = new_figure(
        f"{curves.group}: restricted and excluded loss in the irrep basis",
        style,
        caption=(
            f"Loss over training of {curves.group}: train and test loss; restricted loss (the last MLP layer's "
            f"neurons projected onto the rho(ab) functions of the key irreps: {keys}; all pairs) and excluded loss "
            "(that projection removed; train pairs); thin lines: the excluded loss of each irrep alone."
        ),
        xaxis_title="epoch",
        yaxis_title="loss",
    )
    for col, name, dash in (
        ("train_loss", "train", "solid"),
        ("test_loss", "test", "solid"),
        ("restricted_loss_irrep", "restricted (key irreps)", "dash"),
        ("excluded_loss_irrep", "excluded (key irreps)", "dot"),
    ):
        ys = curves.totals.get(col)
        if ys is not None and any(_positive(y) for y in ys):
            fig.add_trace(go.Scatter(x=curves.epochs, y=[_gap(y) for y in ys], name=name, line=dict(dash=dash)))
    for n in curves.irreps[1:]:
        ys = curves.per_irrep.get("excluded_loss_irrep", {}).get(n)
        if ys is not None:
            fig.add_trace(
                go.Scatter(
                    x=curves.epochs,
                    y=[_gap(y) for y in ys],
                    name=f"excluded: {n}",
                    line=dict(width=1),
                    opacity=0.6,
                    visible=True if n in curves.key_irreps else "legendonly",
                )
            )
    fig.update_yaxes(type="log")
    return style_figure(fig, style)


def _positive(y: float) -> bool:
    return math.isfinite(y) and y > 0


def _gap(y: float) -> float | None:
    """A loss as drawn on a log axis: None (a gap) where it is not positive and finite."""
    return y if _positive(y) else None
