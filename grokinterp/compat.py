"""Old module paths, kept for one release (as TransformerLens kept ``utils.py``).

Before 0.2 every module lived directly under ``grokinterp`` (``grokinterp.plots``,
``grokinterp.runs``, ``grokinterp.measures``, ...). They now live in four wings: ``grokinterp.io``
(run files), ``grokinterp.training``, ``grokinterp.analysis`` and ``grokinterp.viz``. Code written
against the old paths keeps working: ``import grokinterp.runs`` and ``from grokinterp import plots``
give the module at its new address (the same module object, so patching it patches the real one).

Nothing inside the package imports through these names (a test checks it); use the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

#: Old module path (under ``grokinterp``) -> its new address.
OLD_PATHS: dict[str, str] = {
    "files": "grokinterp.io.files",
    "rundir": "grokinterp.io.rundir",
    "checkpoints": "grokinterp.io.checkpoints",
    "runs": "grokinterp.io.runs",
    "interop": "grokinterp.io.interop",
    "ensemble": "grokinterp.training.ensemble",
    "methods": "grokinterp.training.methods",
    "sweep": "grokinterp.training.sweep",
    "tune": "grokinterp.training.tune",
    "fourier": "grokinterp.analysis.fourier",
    "bases": "grokinterp.analysis.bases",
    "spectra": "grokinterp.analysis.spectra",
    "clusters": "grokinterp.analysis.clusters",
    "ablations": "grokinterp.analysis.ablations",
    "attention": "grokinterp.analysis.attention",
    "measures": "grokinterp.analysis.measures",
    "clock_pizza": "grokinterp.analysis.clock_pizza",
    "phases": "grokinterp.analysis.phases",
    "llc": "grokinterp.analysis.llc",
    "plots": "grokinterp.viz",
    "explorer": "grokinterp.viz.explorer",
    "report": "grokinterp.viz.report",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"grokinterp.{old} moved to {new}; the old path will be removed in a later release",
        DeprecationWarning,
        stacklevel=3,
    )


def load_old_path(name: str) -> ModuleType:
    """The module that used to live at ``grokinterp.<name>``, imported from its new address."""
    new = OLD_PATHS[name]
    _warn(name, new)
    module = importlib.import_module(new)
    sys.modules[f"grokinterp.{name}"] = module
    return module


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``grokinterp.<old name>`` for ``import grokinterp.runs``-style imports."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix != "grokinterp" or name not in OLD_PATHS:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return load_old_path(spec.name.partition(".")[2])

    def exec_module(self, module):  # the module is the new one, already executed
        pass


def install() -> None:
    """Register the finder for the old paths (once)."""
    if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())
