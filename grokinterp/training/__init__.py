"""Training: the ``Trainer`` (``trainer``), seed ensembles trained as one batched model
(``ensemble``), the acceleration methods (``methods``), sweeps (``sweep``) and Optuna tuning
(``tune``).

``from grokinterp.training import Trainer, train`` works as before the package was split.
"""

from __future__ import annotations

from grokinterp.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    ["grokinterp.training.trainer", "grokinterp.training.ensemble", "grokinterp.training.methods"],
)
