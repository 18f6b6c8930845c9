"""grokinterp: train, analyse and plot grokking models on modular arithmetic and finite groups
(TransformerLens).

Quick start::

    import grokinterp
    run = grokinterp.load_run("checkpoints/nanda-p113")
    model = run.model()                   # HookedTransformer, final checkpoint
    table, summary = grokinterp.analyze_run(run.path)
    grokinterp.explore(run)               # in Jupyter: a slider over the checkpoints
    grokinterp.interventions.remove_frequencies(run.model(10_000), run.dataset, [9])  # W_E without k=9

The package is a house of four wings over a few foundations:

- foundations: ``config`` (RunConfig), ``presets``, ``tasks`` (datasets), ``groups`` (finite groups
  by their Cayley tables: the group tasks), ``models``, ``forward``
  (the one forward pass and the one evaluator), ``losses``, ``constants``, ``errors``, ``cli``;
- ``grokinterp.io``: run directories and their files, checkpoints, ``load_run``, interop;
- ``grokinterp.analysis``: Fourier bases, spectra, clusters, ablations, measures, phases,
  clock/pizza, LLC, power-law statistics and ``analyze_run``;
- ``grokinterp.training``: the trainer, ensembles, acceleration methods, sweeps and tuning;
- ``grokinterp.viz``: figures, their style and export, the explorer and the HTML report.
"""

from __future__ import annotations

from grokinterp import compat as _compat

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "RunConfig",
    "analyze_run",
    "explore",
    "get_preset",
    "interventions",
    "load_run",
    "train",
]

_compat.install()

_ROOT_NAMES = {
    "load_run": "grokinterp.io.runs",
    "analyze_run": "grokinterp.analysis.run_analysis",
    "explore": "grokinterp.viz.explorer",
    "train": "grokinterp.training.trainer",
    "RunConfig": "grokinterp.config",
    "PRESETS": "grokinterp.presets",
    "get_preset": "grokinterp.presets",
    "interventions": "grokinterp.analysis",
}
_WINGS = ("io", "analysis", "training", "viz")


def __getattr__(name: str):
    # Lazy: `import grokinterp` stays light; torch and transformer_lens load on first use.
    import importlib

    if name in _ROOT_NAMES:
        value = getattr(importlib.import_module(_ROOT_NAMES[name]), name)
    elif name in _WINGS:
        value = importlib.import_module(f"grokinterp.{name}")
    elif name in _compat.OLD_PATHS:
        value = _compat.load_old_path(name)
    else:
        raise AttributeError(f"module 'grokinterp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({"__version__", *__all__, *_WINGS})
