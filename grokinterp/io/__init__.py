"""Run files: the run directory and its owner (``rundir``), its lock (``lock``), atomic file
primitives (``files``), checkpoints, ``load_run`` (``runs``), the trainer's run writers (``writer``)
and TransformerLens-demo interop (``interop``, reading the demo file in ``tl_demo``).

Every file of a run directory is named in ``grokinterp.constants`` and written through
``grokinterp.io.rundir``.
"""

from __future__ import annotations

from grokinterp.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    [
        "grokinterp.io.runs",
        "grokinterp.io.rundir",
        "grokinterp.io.writer",
        "grokinterp.io.lock",
        "grokinterp.io.checkpoints",
        "grokinterp.io.files",
        "grokinterp.io.interop",
    ],
)
