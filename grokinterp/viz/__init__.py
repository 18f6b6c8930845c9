"""Figures: the style (``style``), progress-measure curves (``curves``), figures of one checkpoint
(``model_figures``, laid out by ``heatmap_grid``), neurons in phase order and in the 2D Fourier
basis (``neuron_figures``), frequency x epoch heatmaps (``training_heatmaps``), a group task's irrep figures
(``irrep_figures``), export
(``export``), every figure of a run at once (``figures``), the explorer widget (``explorer``) and
the self-contained HTML report (``report``).

Every public figure function is reachable here too (``grokinterp.viz.plot_loss``, ...), and the
old path ``grokinterp.plots`` is this package.
"""

from __future__ import annotations

from grokinterp.lazy import lazy_exports

SUBMODULES = [
    "grokinterp.viz.style",
    "grokinterp.viz.curves",
    "grokinterp.viz.model_figures",
    "grokinterp.viz.neuron_figures",
    "grokinterp.viz.training_heatmaps",
    "grokinterp.viz.irrep_figures",
    "grokinterp.viz.heatmap_grid",
    "grokinterp.viz.export",
    "grokinterp.viz.figures",
    "grokinterp.viz.explorer",
    "grokinterp.viz.report",
    "grokinterp.viz.sweep_figure",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), SUBMODULES)
