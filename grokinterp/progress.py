"""Progress bars that stay quiet off a terminal.

A bar is drawn on a terminal or in Jupyter; in a log file, a pipe or CI each update would be one
more line (or a long run of carriage returns), so there it is off. Every bar of the package (training,
ensembles, analysis, LLC, report) goes through ``progress_enabled``.
"""

from __future__ import annotations

import sys


def progress_enabled(progress: bool) -> bool:
    """Whether to draw a bar: asked for (``progress``) and on a terminal or in a Jupyter kernel."""
    if not progress:
        return False
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None
    except ImportError:
        return False


__all__ = ["progress_enabled"]
