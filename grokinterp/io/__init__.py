"""Run files: the run directory and its owner (``rundir``), atomic file primitives (``files``),
checkpoints, ``load_run`` (``runs``) and TransformerLens-demo interop (``interop``).

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
        "grokinterp.io.checkpoints",
        "grokinterp.io.files",
        "grokinterp.io.interop",
    ],
)
