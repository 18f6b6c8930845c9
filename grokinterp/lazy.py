"""Lazy re-exports for packages: ``import grokinterp`` (or a wing) stays light, and torch and
transformer_lens load only when a name that needs them is first used.

A package declares which of its submodules hold its public names; ``__getattr__`` imports the
first submodule that defines the name, and ``__dir__`` lists every public name, so tab completion
and ``dir()`` in Jupyter show the whole API.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], submodules: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting the ``__all__`` names of its
    ``submodules`` (full module paths, searched in order)."""

    def _find(name: str) -> Any:
        for path in submodules:
            module = importlib.import_module(path)
            public = getattr(module, "__all__", None)
            if (name in public) if public is not None else hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        # A submodule (``from grokinterp.io import rundir``) is imported as itself: looking for it
        # among the exports first would import every submodule before it (and torch with them).
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        value = _find(name)
        namespace[name] = value  # found once: later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        names = set(namespace)
        for path in submodules:
            names.update(getattr(importlib.import_module(path), "__all__", ()))
        return sorted(n for n in names if not n.startswith("_"))

    return __getattr__, __dir__
