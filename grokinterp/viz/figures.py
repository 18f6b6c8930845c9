"""Every figure of a run at once: ``make_all_figures`` (in memory) and ``write_all_figures``
(to files, and ``grokinterp plot``).

This is where a run's data is loaded and the per-checkpoint arrays are computed, once, by
``grokinterp.analysis.checkpoint_views.checkpoint_view`` (the explorer uses the same function);
the ``plot_*`` functions only draw them.

>>> figs = make_all_figures("checkpoints/nanda-p113", style="paper")
>>> write_all_figures("checkpoints/nanda-p113", "figures", fmt="pdf")
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grokinterp.viz.export as export  # module lookups: patching export.find_browser reaches both calls
from grokinterp.viz.curves import (
    measures_table,
    not_drawn_reason,
    plot_accuracy,
    plot_clock_pizza,
    plot_cos_apb_c,
    plot_frac_neurons_explained,
    plot_gini,
    plot_llc,
    plot_loss,
    plot_restricted_excluded,
    plot_restricted_excluded_neuron,
    plot_weight_norm,
)
from grokinterp.viz.irrep_figures import irrep_curves, plot_irrep_restricted_excluded, plot_irrep_spectrum_over_training
from grokinterp.viz.model_figures import MODEL_FIGURES, checkpoint_figures, plot_per_frequency_excluded_loss
from grokinterp.viz.style import StyleArg, get_style, style_figure
from grokinterp.viz.training_heatmaps import plot_embedding_spectrum_over_training, plot_excluded_loss_over_training

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from grokinterp.io.runs import Run

__all__ = ["FIGURE_NAMES", "GROUP_FIGURES", "FigurePaths", "FigureSet", "make_all_figures", "write_all_figures"]

log = logging.getLogger(__name__)


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
    *MODEL_FIGURES,  # embedding_spectrum, wl_spectrum, cluster_sizes, fraction_explained_hist, neuron_heatmaps,
    # neuron_fourier, attention
    "per_frequency_excluded_loss",
    "embedding_spectrum_over_training",
    "excluded_loss_over_training",
    "irrep_spectrum_over_training",
    "irrep_restricted_excluded",
)
#: The figures of a group task only (``grokinterp.viz.irrep_figures``): skipped, with the reason,
#: for every other task.
GROUP_FIGURES = ("irrep_spectrum_over_training", "irrep_restricted_excluded")


class FigurePaths(list):
    """The files ``write_all_figures`` wrote (a list of paths), with ``skipped``: ``{name: reason}``
    for the figures left out."""

    def __init__(self, paths: Any = (), *, skipped: Mapping[str, str] | None = None) -> None:
        super().__init__(paths)
        self.skipped: dict[str, str] = dict(skipped or {})


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
    ``FigureSet``, whose ``skipped`` says which were left out and why). The per-model figures draw
    the ``CheckpointView`` of the checkpoint ``epoch`` (default the last). For a task without a
    Fourier basis the Fourier figures are left out (one log line, the reason is in analysis.json);
    so are the neuron heatmaps when no neuron is explained by one frequency (a run that has not
    grokked). ``layer``: the MLP layer of the neuron figures (default: the analysis's layer).
    ``style``: "screen" (default) or "paper" (``Style``); ``column``: "single" or "double" forces
    every paper figure to that width; ``tex`` (MathJax labels) applies to the screen style only."""
    from grokinterp.analysis.checkpoint_views import checkpoint_view, embedding_spectrum_over_training, view_settings
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
    table = measures_table(run)
    settings = view_settings(run, layer)
    basis = settings.basis
    if any(c.startswith("cos_apb_c_k") for c in table.columns) or not basis.defined:
        figs["cos_apb_c"] = plot_cos_apb_c(run, style=style)
    else:  # the basis is there but no key frequency: nothing to fit, and the analysis says why
        skipped["cos_apb_c"] = not_drawn_reason(run, "cos_apb_c_k*", "cos_sim_cos_apb_c", "key_freqs")
        log.info("%s: skipping cos_apb_c: %s", run.path, skipped["cos_apb_c"])
    figs["clock_pizza"] = plot_clock_pizza(run, style=style)
    view = checkpoint_view(run.model(epoch), run.dataset, settings)
    names = list(MODEL_FIGURES)
    if not basis.defined:
        log.info(
            "%s: op %r has no Fourier basis (%s); skipping the Fourier figures", run.path, run.dataset.op, basis.reason
        )
        for name in ("embedding_spectrum", "wl_spectrum", "cluster_sizes", "fraction_explained_hist", "neuron_heatmaps",
                     "neuron_fourier", "per_frequency_excluded_loss", "embedding_spectrum_over_training",
                     "excluded_loss_over_training"):  # fmt: skip
            skipped[name] = f"op {run.dataset.op!r} has no Fourier basis ({basis.reason})"
    elif not bool((view.clusters.labels >= 0).any()):
        at = f"epoch {epoch}" if epoch is not None else "the last checkpoint"
        for name in ("neuron_heatmaps", "neuron_fourier"):
            names.remove(name)
            skipped[name] = (
                f"no MLP neuron of layer {view.layer} is explained by a single frequency (threshold "
                f"{view.clusters.threshold:g}) at {at}, so there is no cluster to show"
            )
            log.info("%s: skipping %s: %s", run.path, name, skipped[name])
    if view.attention_to_a is None:
        log.info("%s: no attention in this architecture; skipping the attention figure", run.path)
        skipped["attention"] = "no attention in this architecture"
    figs.update(checkpoint_figures(view, names, tex=tex, style=style))
    if basis.defined:
        ep = epoch if epoch is not None and epoch in set(table["epoch"]) else None
        figs["per_frequency_excluded_loss"] = plot_per_frequency_excluded_loss(run, ep, tex=tex, style=style)
        spectrum = embedding_spectrum_over_training(run)
        figs["embedding_spectrum_over_training"] = plot_embedding_spectrum_over_training(
            spectrum, settings.key_freqs, style=style
        )
        figs["excluded_loss_over_training"] = plot_excluded_loss_over_training(table, settings.key_freqs, style=style)
    irreps = (run.analysis or {}).get("irreps") or {}
    if irreps.get("defined"):
        curves = irrep_curves(table, irreps)
        figs["irrep_spectrum_over_training"] = plot_irrep_spectrum_over_training(curves, style=style)
        figs["irrep_restricted_excluded"] = plot_irrep_restricted_excluded(curves, style=style)
    else:
        why = irreps.get("reason", "not a group task")
        for name in GROUP_FIGURES:
            skipped[name] = f"no irrep measures: {why}"
    if "llc_mean" in table.columns and table["llc_mean"].notna().any():  # grokinterp analyze --llc
        figs["llc"] = plot_llc(table, run=run, style=style)
    return FigureSet(
        {name: style_figure(figs[name], style) for name in (*FIGURE_NAMES, "llc") if name in figs},
        skipped={name: skipped[name] for name in FIGURE_NAMES if name in skipped},
    )


def write_all_figures(
    run_dir: str | Path,
    out_dir: str | Path,
    fmt: str = "png",
    epoch: int | None = None,
    *,
    style: StyleArg = None,
    column: str | None = None,
) -> FigurePaths:
    """Write every figure of ``run_dir`` (``FIGURE_NAMES``) to ``out_dir`` as png, pdf, svg or html
    and return the paths (a ``FigurePaths``, whose ``skipped`` names the figures left out and
    why). Analyses the run first (``ensure_analysed``) if it has no measures.csv
    yet, or if the run went on after its last analysis (never draws stale measures); without a
    Chromium the static formats fall back to HTML (one warning). ``style="paper"``: print-ready
    figures (``PAPER``: no titles, column widths, 8-10 pt, PNG at 288 dpi) and their captions in
    ``out_dir/captions.md``; ``column`` forces "single" or "double" column width."""
    from grokinterp.analysis.checkpoint_views import ensure_analysed
    from grokinterp.io.rundir import check_out_path
    from grokinterp.io.runs import load_run

    check_out_path(out_dir)  # before any work: a folder we can write
    run = load_run(run_dir)
    ensure_analysed(run)
    style = get_style(style, column)
    static = fmt.lower() in export.STATIC_FORMATS
    browser = export.find_browser() if static else None
    tex = style.tex and static and browser is not None and export.find_mathjax() is not None
    figs = make_all_figures(run, epoch, tex=tex, style=style)
    scale = style.png_scale if fmt.lower() == "png" else 1.0
    paths = export.export_figures(figs, out_dir, fmt, browser=browser, scale=scale)
    if style.paper:
        export.write_captions(figs, paths, out_dir, figs.skipped)
    return FigurePaths(paths, skipped=figs.skipped)
