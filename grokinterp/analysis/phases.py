"""The three phases of grokking (Nanda et al. 2023, Sec. 5.2), placed only where the evidence has
been seen (docs/measures.md, "Phases, stated honestly").

Every boundary is decided from the data up to some epoch (its *confirmation*), never from where
the run happens to stop: cutting a run short never moves an earlier boundary, and a boundary whose
confirmation lies beyond the cut is null ("not reached", with the reason), never invented.

1. **End of memorisation**: train loss has collapsed at the first evaluation with train accuracy
   >= 0.99 and train loss <= 1% of log p (chance). From there on, the epoch of the largest test
   loss seen, confirmed once the test loss has fallen to 75% of that peak (metrics.jsonl, every
   evaluation).
2. **End of circuit formation / start of cleanup**: needs test accuracy >= 0.99 (the grokking
   threshold) at some evaluation. The checkpoint with the largest excluded loss (logit level,
   train) at or after boundary 1, confirmed once test accuracy has reached 0.99 and the excluded
   loss has fallen to 75% of that peak.
3. **End of cleanup**: the first checkpoint e after boundary 2 where a plateau is seen: over the
   following checkpoints up to the first at or beyond 1.1 e (at least two), the sum of squared
   weights stays within 2% and the excluded loss within 5% of their values at e.

Each boundary comes with its resolution: the largest gap between the sample it sits on and its
neighbours (evaluations for 1, checkpoints for 2 and 3).

Anchors: the paper's main run [1400, 9400, 14000]; the TransformerLens demo [1500, 13300, 16600].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grokinterp.constants import GROKKING_THRESHOLD

if TYPE_CHECKING:
    import pandas as pd

PAPER_PHASES = (1400, 9400, 14000)
DEMO_PHASES = (1500, 13300, 16600)
PHASE_NAMES = ("memorisation", "circuit formation", "cleanup")

COLLAPSE_ACC = 0.99
COLLAPSE_FRACTION = 0.01  # train loss <= this * log p
FALL = 0.75  # a peak is confirmed once the curve is at or below FALL * peak
PLATEAU_SPAN = 0.1  # the plateau window reaches 1.1 e
PLATEAU_SSW = 0.02
PLATEAU_EXCLUDED = 0.05

RULE = (
    f"1: largest test loss after train loss collapsed (train acc >= {COLLAPSE_ACC}, train loss <= "
    f"{COLLAPSE_FRACTION:g} log p), confirmed when test loss <= {FALL:g} x that peak; "
    f"2: largest excluded loss (logit, train) at or after 1, confirmed when test acc reached {GROKKING_THRESHOLD} "
    f"and excluded loss <= {FALL:g} x that peak; 3: first checkpoint after 2 followed by a seen plateau "
    f"(checkpoints up to 1.1 x its epoch, at least two: sum of squared weights within {PLATEAU_SSW:.0%}, "
    f"excluded loss within {PLATEAU_EXCLUDED:.0%})"
)


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


def _resolution(epochs: Sequence[int], i: int) -> int:
    gaps = [epochs[i] - epochs[i - 1]] if i > 0 else []
    gaps += [epochs[i + 1] - epochs[i]] if i + 1 < len(epochs) else []
    return int(max(gaps)) if gaps else 0


def _memorisation_end(rows: list[dict], log_p: float) -> tuple[int | None, int | None, str | None]:
    """(boundary, resolution, reason if null)."""
    collapse = None
    for i, r in enumerate(rows):
        acc_ok = not _finite(r.get("train_acc")) or r["train_acc"] >= COLLAPSE_ACC
        if _finite(r.get("train_loss")) and acc_ok and r["train_loss"] <= COLLAPSE_FRACTION * log_p:
            collapse = i
            break
    if collapse is None:
        return None, None, "train loss has not collapsed (train acc >= 0.99 and train loss <= 1% of log p)"
    peak = None
    for i in range(collapse, len(rows)):
        loss = rows[i].get("test_loss")
        if not _finite(loss):
            continue
        if peak is None or loss > rows[peak]["test_loss"]:
            peak = i
        elif loss <= FALL * rows[peak]["test_loss"]:
            epochs = [int(r["epoch"]) for r in rows]
            return epochs[peak], _resolution(epochs, peak), None
    return None, None, "test loss has not yet fallen from its peak after train loss collapsed"


def _first_grokked(rows: list[dict], table: pd.DataFrame) -> int | None:
    hits = [int(r["epoch"]) for r in rows if _finite(r.get("test_acc")) and r["test_acc"] >= GROKKING_THRESHOLD]
    if "test_acc" in table:
        hits += [
            int(e)
            for e, a in zip(table["epoch"], table["test_acc"], strict=True)
            if _finite(a) and a >= GROKKING_THRESHOLD
        ]
    return min(hits) if hits else None


def detect_phases(metrics_rows: Sequence[dict[str, Any]], table: pd.DataFrame, p: int | None = None) -> dict[str, Any]:
    """Phase boundaries from a run's metrics rows (every evaluation) and its measures table (every
    checkpoint: ``epoch``, ``excluded_loss``, ``sum_sq_weights``, optionally ``test_acc``).

    Returns ``{"boundaries": [b1, b2, b3], "resolution": [r1, r2, r3], "reasons": [...],
    "phases": {name: [start, end]}, "rule": str}``; a boundary not reached is None with its reason.
    ``p`` gives log p (chance loss); default: the first train loss in the metrics.
    """
    rows = sorted((dict(r) for r in metrics_rows), key=lambda r: r["epoch"])
    if p is not None:
        log_p = math.log(p)
    else:
        first = next((r["train_loss"] for r in rows if _finite(r.get("train_loss"))), None)
        log_p = float(first) if first is not None else math.inf
    epochs = [int(e) for e in table["epoch"]]
    excluded = [float(x) for x in table["excluded_loss"]]
    ssw = [float(x) for x in table["sum_sq_weights"]]
    b = [None, None, None]
    res = [None, None, None]
    why: list[str | None] = [None, None, None]

    b[0], res[0], why[0] = _memorisation_end(rows, log_p)
    grokked = _first_grokked(rows, table)
    if b[0] is None:
        why[1] = why[2] = "memorisation has not ended"
    elif grokked is None:
        why[1] = why[2] = f"test accuracy never reached {GROKKING_THRESHOLD}: the run has not generalised"
    elif not any(math.isfinite(x) for x in excluded):
        why[1] = why[2] = "excluded loss is not defined for this run (see not_defined)"
    else:
        peak = None
        for i, e in enumerate(epochs):
            if e < b[0] or not math.isfinite(excluded[i]):
                continue
            if peak is None or excluded[i] > excluded[peak]:
                peak = i
            elif e >= grokked and excluded[i] <= FALL * excluded[peak]:
                b[1], res[1] = epochs[peak], _resolution(epochs, peak)
                break
        if b[1] is None:
            why[1] = why[2] = "excluded loss has not yet fallen from its peak after test accuracy reached 0.99"
    if b[1] is not None:
        i2 = epochs.index(b[1])
        for i in range(i2 + 1, len(epochs)):
            window = []
            for j in range(i + 1, len(epochs)):
                window.append(j)
                if epochs[j] >= (1 + PLATEAU_SPAN) * epochs[i] and len(window) >= 2:
                    break
            else:
                break  # the window is not complete: the plateau has not been seen (yet)
            flat_w = all(abs(ssw[j] - ssw[i]) <= PLATEAU_SSW * abs(ssw[i]) for j in window)
            flat_e = all(abs(excluded[j] - excluded[i]) <= PLATEAU_EXCLUDED * abs(excluded[i]) for j in window)
            if flat_w and flat_e:
                b[2], res[2] = epochs[i], _resolution(epochs, i)
                break
        if b[2] is None:
            why[2] = "no plateau of the sum of squared weights and the excluded loss seen after cleanup began"
    starts = [0, b[0], b[1]]
    phases = {name: [s, e] for name, s, e in zip(PHASE_NAMES, starts, b, strict=True)}
    return {"boundaries": b, "resolution": res, "reasons": why, "phases": phases, "rule": RULE}
