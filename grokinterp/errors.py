"""The errors grokinterp raises for input it cannot use, each with a one-line explanation.

The CLI prints the message of these as one line and exits with code 2 (no traceback).
"""

from __future__ import annotations


class RunDirError(ValueError):
    """A run directory, checkpoint or file that cannot be used, with a one-line explanation."""


__all__ = ["RunDirError"]
