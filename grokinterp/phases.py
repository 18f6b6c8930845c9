"""The three phases of grokking (Nanda et al. 2023, Sec. 5.2), placed by a deterministic rule.

Boundaries, computed from the measures rather than hand-picked epochs:

1. **End of memorisation** = the epoch of the test-loss peak (from metrics.jsonl, which is dense),
   searched before boundary 2. Train loss has collapsed by then; from here on the test loss falls
   while the Fourier circuit grows.
2. **End of circuit formation / start of cleanup** = the checkpoint with the largest *excluded loss*
   (logit level, train split). Excluded loss rises while the model comes to rely on the key
   frequencies and falls once weight decay removes the memorising components.
3. **End of cleanup** = the first checkpoint after boundary 2 at which the sum of squared weights
   has made ``cleanup_fraction`` (default 95%) of its fall from its value at boundary 2 to its value
   at the last checkpoint: weight decay has finished removing the memorisation.

Anchors: the paper's main run [1400, 9400, 14000]; the TransformerLens demo [1500, 13300, 16600].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PAPER_PHASES = (1400, 9400, 14000)
DEMO_PHASES = (1500, 13300, 16600)
PHASE_NAMES = ("memorisation", "circuit formation", "cleanup")

RULE = (
    "1: test-loss peak before 2; 2: excluded-loss (logit level, train) peak; "
    "3: first checkpoint after 2 where sum of squared weights has made {f:.0%} of its fall "
    "from 2 to the last checkpoint"
)


def detect_phases(metrics_rows: Sequence[dict[str, Any]], table, cleanup_fraction: float = 0.95) -> dict[str, Any]:
    """Phase boundaries from a run's metrics rows and its measures table (``analyze_run``).

    Returns ``{"boundaries": [b1, b2, b3], "phases": {name: [start, end]}, "rule": str}``;
    boundaries are None when the run has not reached that phase (e.g. too few checkpoints).
    """
    epochs = [int(e) for e in table["epoch"]]
    excluded = [float(x) for x in table["excluded_loss"]]
    ssw = [float(x) for x in table["sum_sq_weights"]]
    b1 = b2 = b3 = None
    if len(epochs) >= 3:
        i2 = max(range(len(epochs)), key=lambda i: excluded[i])
        if 0 < i2 < len(epochs) - 1:
            b2 = epochs[i2]
            target = ssw[i2] - cleanup_fraction * (ssw[i2] - ssw[-1])
            b3 = next((epochs[i] for i in range(i2 + 1, len(epochs)) if ssw[i] <= target), None)
    rows = [r for r in metrics_rows if b2 is None or r["epoch"] <= b2]
    if rows:
        b1 = int(max(rows, key=lambda r: r["test_loss"])["epoch"])
    boundaries = [b1, b2, b3]
    starts = [0, b1, b2]
    phases = {name: [s, e] for name, s, e in zip(PHASE_NAMES, starts, boundaries, strict=True)}
    return {"boundaries": boundaries, "phases": phases, "rule": RULE.format(f=cleanup_fraction)}
