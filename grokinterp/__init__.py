"""grokinterp: train, analyse and plot grokking models on modular arithmetic (TransformerLens).

Quick start::

    import grokinterp
    run = grokinterp.load_run("checkpoints/nanda-p113")
    model = run.model()                   # HookedTransformer, final checkpoint
    table, summary = grokinterp.analyze_run(run.path)
    grokinterp.explore(run)               # in Jupyter: a slider over the checkpoints
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["PRESETS", "RunConfig", "analyze_run", "explore", "get_preset", "load_run", "train"]


def __getattr__(name: str):
    # Lazy: `import grokinterp` stays light; torch and transformer_lens load on first use.
    if name == "load_run":
        from grokinterp.runs import load_run

        return load_run
    if name == "analyze_run":
        from grokinterp.analysis import analyze_run

        return analyze_run
    if name == "explore":
        from grokinterp.explorer import explore

        return explore
    if name == "train":
        from grokinterp.training import train

        return train
    if name == "RunConfig":
        from grokinterp.config import RunConfig

        return RunConfig
    if name in ("PRESETS", "get_preset"):
        from grokinterp import presets

        return getattr(presets, name)
    raise AttributeError(f"module 'grokinterp' has no attribute {name!r}")
