"""Moved to ``grokinterp.memory`` (single runs and the analysis use it too); kept for old imports."""

from grokinterp.memory import keep_freed_memory

__all__ = ["keep_freed_memory"]
