"""The three phases of grokking (Nanda et al. 2023, Sec. 5.2), placed from the measures the paper
uses and only where the evidence has been seen (docs/measures.md, "Phases").

Every boundary is decided from the data up to some epoch (its *confirmation*), never from where
the run happens to stop: cutting a run short never moves an earlier boundary, and a boundary whose
confirmation lies beyond the cut is null ("not reached", with the reason), never invented.

Loss spikes (``grokinterp.analysis.instabilities``) are reported under ``instabilities`` and
skipped: no evaluation or checkpoint inside one counts for any step below.

1. **End of memorisation / start of circuit formation**: the excluded loss (logit level, train)
   stops falling with the train loss and starts rising while the restricted loss falls. Once the
   train set is memorised (the first evaluation with train accuracy >= 0.99 and train loss <= 10%
   of log p, chance), follow the checkpoints' excluded loss and keep its smallest value so far; the
   boundary is that checkpoint, confirmed at the first later checkpoint whose excluded loss is at
   least 1.2 x that minimum and whose restricted loss is below the restricted loss at the minimum.
   A minimum after the grokking epoch (below) places no boundary: the checkpoints are too sparse to
   separate the phases.
2. **End of circuit formation / start of cleanup** (the test loss collapse): needs test accuracy >=
   0.99 (the grokking threshold) at some evaluation (the first such: the grokking epoch). The
   checkpoint with the largest excluded loss from boundary 1 up to the first checkpoint at or after
   the grokking epoch (and not before boundary 1's confirmation), which confirms it.
3. **End of cleanup**: the first checkpoint e after boundary 2 where a plateau is seen: over the
   following checkpoints up to the first at or beyond 1.1 e (at least two), the sum of squared
   weights stays within 2% of its value at e and the Gini coefficients of W_E and W_L (where
   defined) within 0.02. (Not the excluded loss: with strong weight decay it keeps rising after
   grokking, as the train loss keeps falling.)

Each boundary comes with its resolution (the largest gap between the sample it sits on and its
neighbours: checkpoints) and its confirmation epoch.

Anchors: the paper's main run [1400, 9400, 14000]; the TransformerLens demo [1500, 13300, 16600].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grokinterp.analysis.instabilities import RULE as INSTABILITY_RULE
from grokinterp.analysis.instabilities import Instability, detect_instabilities
from grokinterp.constants import GROKKING_THRESHOLD

if TYPE_CHECKING:
    import pandas as pd

PAPER_PHASES = (1400, 9400, 14000)
DEMO_PHASES = (1500, 13300, 16600)
PHASE_NAMES = ("memorisation", "circuit formation", "cleanup")

MEMORISED_ACC = 0.99
MEMORISED_LOSS = 0.1  # train loss <= this * log p
RISE = 1.2  # boundary 1: the excluded loss has risen to RISE x its minimum
PLATEAU_SPAN = 0.1  # the plateau window reaches 1.1 e
PLATEAU_SSW = 0.02  # relative
PLATEAU_GINI = 0.02  # absolute
GINI_COLUMNS = ("gini_W_E", "gini_W_L")

RULE = (
    f"loss spikes skipped ({INSTABILITY_RULE}); "
    f"1: once memorised (train acc >= {MEMORISED_ACC}, train loss <= {MEMORISED_LOSS:g} log p), the checkpoint "
    f"of the smallest excluded loss (logit, train), confirmed when the excluded loss is >= {RISE:g} x it and the "
    f"restricted loss below its value there (none if test acc reached {GROKKING_THRESHOLD} before it); 2: largest excluded loss from 1 up to the first checkpoint at or "
    f"after test acc first reached {GROKKING_THRESHOLD} (which confirms it); 3: first checkpoint after 2 followed "
    f"by a seen plateau (checkpoints up to {1 + PLATEAU_SPAN:g} x its epoch, at least two: sum of squared weights "
    f"within {PLATEAU_SSW:.0%}, Gini of W_E and W_L within {PLATEAU_GINI:g} where defined)"
)


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


def _resolution(epochs: Sequence[int], i: int) -> int:
    gaps = [epochs[i] - epochs[i - 1]] if i > 0 else []
    gaps += [epochs[i + 1] - epochs[i]] if i + 1 < len(epochs) else []
    return int(max(gaps)) if gaps else 0


def _column(table: pd.DataFrame, name: str, n: int) -> list[float]:
    """The column as floats (NaN where missing or not finite; all NaN if the table lacks it)."""
    if name not in table:
        return [math.nan] * n
    return [float(x) if _finite(x) else math.nan for x in table[name]]


class _Curves:
    """The checkpoints outside every loss spike, as lists (``i`` indexes them)."""

    def __init__(self, table: pd.DataFrame, spikes: list[Instability]) -> None:
        keep = [k for k, e in enumerate(table["epoch"]) if not any(s.covers(int(e)) for s in spikes)]
        n = len(table)

        def col(name: str) -> list[float]:
            values = _column(table, name, n)
            return [values[k] for k in keep]

        self.epochs = [int(e) for e in col("epoch")]
        self.excluded = col("excluded_loss")
        self.restricted = col("restricted_loss")
        self.ssw = col("sum_sq_weights")
        self.test_acc = col("test_acc")
        self.ginis = [g for g in (col(c) for c in GINI_COLUMNS) if any(math.isfinite(x) for x in g)]


def _memorised_at(rows: list[dict], log_p: float) -> int | None:
    for r in rows:
        acc_ok = not _finite(r.get("train_acc")) or r["train_acc"] >= MEMORISED_ACC
        if _finite(r.get("train_loss")) and acc_ok and r["train_loss"] <= MEMORISED_LOSS * log_p:
            return int(r["epoch"])
    return None


def _circuit_starts(c: _Curves, since: int) -> tuple[int | None, int | None]:
    """Boundary 1 as (index of the excluded-loss minimum, index of its confirmation)."""
    low = None
    for i, e in enumerate(c.epochs):
        if e < since or not math.isfinite(c.excluded[i]):
            continue
        if low is None or c.excluded[i] < c.excluded[low]:
            low = i
        elif c.excluded[i] >= RISE * c.excluded[low] and not c.restricted[i] >= c.restricted[low]:
            return low, i
    return None, None


def _first_grokked(rows: list[dict], c: _Curves) -> int | None:
    hits = [int(r["epoch"]) for r in rows if _finite(r.get("test_acc")) and r["test_acc"] >= GROKKING_THRESHOLD]
    hits += [e for e, a in zip(c.epochs, c.test_acc, strict=True) if a >= GROKKING_THRESHOLD]
    return min(hits) if hits else None


def _cleanup_starts(c: _Curves, i1: int, confirmed1: int, grokked: int) -> tuple[int | None, int | None]:
    """Boundary 2 as (index of the largest excluded loss from boundary 1 up to the first checkpoint
    at or after the grokking epoch, index of that checkpoint: the confirmation)."""
    for k in range(max(i1, confirmed1), len(c.epochs)):
        if c.epochs[k] >= grokked:
            window = [i for i in range(i1, k + 1) if math.isfinite(c.excluded[i])]
            if not window:
                return None, None
            return max(window, key=lambda i: c.excluded[i]), k
    return None, None


def _flat(values: list[float], i: int, window: list[int], tol: float, relative: bool) -> bool:
    scale = abs(values[i]) if relative else 1.0
    return all(abs(values[j] - values[i]) <= tol * scale for j in window)


def _cleanup_ends(c: _Curves, i2: int) -> tuple[int | None, int | None]:
    """Boundary 3 as (index of the first checkpoint followed by a seen plateau, index of the window's end)."""
    for i in range(i2 + 1, len(c.epochs)):
        window = []
        for j in range(i + 1, len(c.epochs)):
            window.append(j)
            if c.epochs[j] >= (1 + PLATEAU_SPAN) * c.epochs[i] and len(window) >= 2:
                break
        else:
            return None, None  # the window is not complete: the plateau has not been seen (yet)
        if _flat(c.ssw, i, window, PLATEAU_SSW, True) and all(
            _flat(g, i, window, PLATEAU_GINI, False) for g in c.ginis
        ):
            return i, window[-1]
    return None, None


def detect_phases(
    metrics_rows: Sequence[dict[str, Any]],
    table: pd.DataFrame,
    p: int | None = None,
    *,
    excluded_reason: str | None = None,
) -> dict[str, Any]:
    """Phase boundaries from a run's metrics rows (every evaluation: ``epoch``, ``train_loss``,
    ``train_acc``, ``test_acc``) and its measures table (every checkpoint: ``epoch``,
    ``excluded_loss``, ``restricted_loss``, ``sum_sq_weights``, optionally ``test_acc``,
    ``gini_W_E``, ``gini_W_L``), by the rule of the module docstring.

    Returns ``{"boundaries": [b1, b2, b3], "resolution": [...], "confirmed": [...], "reasons": [...],
    "phases": {name: [start, end]}, "instabilities": [dict, ...], "rule": str}``; a boundary not
    reached is None with its reason. ``p`` gives log p (chance loss); default: the first train loss
    in the metrics. ``excluded_reason``: why the excluded loss is not defined (for the reasons).
    """
    rows = sorted((dict(r) for r in metrics_rows), key=lambda r: r["epoch"])
    if p is not None:
        log_p = math.log(p)
    else:
        first = next((r["train_loss"] for r in rows if _finite(r.get("train_loss"))), None)
        log_p = float(first) if first is not None else math.inf
    spikes = detect_instabilities(rows, log_p)
    rows = [r for r in rows if not any(s.covers(int(r["epoch"])) for s in spikes)]
    c = _Curves(table, spikes)
    b: list[int | None] = [None, None, None]
    res: list[int | None] = [None, None, None]
    conf: list[int | None] = [None, None, None]
    why: list[str | None] = [None, None, None]

    def place(k: int, at: int | None, confirmed: int | None) -> bool:
        if at is None or confirmed is None:
            return False
        b[k], res[k], conf[k] = c.epochs[at], _resolution(c.epochs, at), c.epochs[confirmed]
        return True

    memorised = _memorised_at(rows, log_p)
    grokked = _first_grokked(rows, c)
    i1 = c1 = i2 = c2 = None
    if memorised is None:
        why[0] = (
            f"train loss has not collapsed (train acc >= {MEMORISED_ACC} and train loss <= "
            f"{MEMORISED_LOSS:.0%} of log p)"
        )
    elif not any(math.isfinite(x) for x in c.excluded):
        why[0] = "excluded loss is not defined for this run" + (f" ({excluded_reason})" if excluded_reason else "")
    else:
        i1, c1 = _circuit_starts(c, memorised)
        if i1 is not None and grokked is not None and grokked < c.epochs[i1]:
            why[0] = (
                f"test accuracy reached {GROKKING_THRESHOLD} at epoch {grokked}, before the excluded loss was seen to "
                "turn: the checkpoints are too far apart to separate the phases"
            )
        elif not place(0, i1, c1):
            why[0] = f"excluded loss has not yet risen to {RISE:g} x its minimum while the restricted loss falls"
    if b[0] is None:
        why[1] = why[2] = f"no end of memorisation ({why[0]})"
    elif grokked is None:
        why[1] = why[2] = f"test accuracy never reached {GROKKING_THRESHOLD}: the run has not generalised"
    else:
        i2, c2 = _cleanup_starts(c, i1, c1, grokked)
        if not place(1, i2, c2):
            why[1] = why[2] = f"no checkpoint yet after test accuracy first reached {GROKKING_THRESHOLD}"
    if b[1] is not None:
        i3, c3 = _cleanup_ends(c, i2)
        if not place(2, i3, None if c3 is None else max(c3, c2)):
            why[2] = "no plateau of the sum of squared weights and the Gini coefficients seen yet"
    starts = [0, b[0], b[1]]
    return {
        "boundaries": b,
        "resolution": res,
        "confirmed": conf,
        "reasons": why,
        "phases": {name: [s, e] for name, s, e in zip(PHASE_NAMES, starts, b, strict=True)},
        "instabilities": [s.to_dict() for s in spikes],
        "rule": RULE,
    }
