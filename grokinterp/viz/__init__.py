"""Figures: the style (``style``), progress-measure curves, model figures, export, the explorer
widget and the self-contained HTML report.

Every public figure function lives here too (``grokinterp.viz.plot_loss``, ...), and the old path
``grokinterp.plots`` is this package.
"""

from __future__ import annotations

from grokinterp.lazy import lazy_exports

SUBMODULES = ["grokinterp.viz.plots", "grokinterp.viz.explorer", "grokinterp.viz.report"]

__getattr__, __dir__ = lazy_exports(__name__, globals(), SUBMODULES)
