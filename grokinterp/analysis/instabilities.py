"""Loss spikes: short instabilities of the train loss, found and reported (never read as phases).

Training with a large learning rate or strong weight decay, or with Adam late in training (the
"slingshot"), sometimes throws the train loss up by one or more orders of magnitude for a few
evaluations, after which it comes back. Such a spike is an event to report (``grokinterp train``
prints it, summary.json and analysis.json list it), not a change of phase: the phase rule
(``grokinterp.analysis.phases``) skips the evaluations and checkpoints inside it.

The rule (``detect_instabilities``), on the metrics rows (every evaluation), in epoch order; rows
with a non-finite train loss are left out (a diverged run is reported as such by the trainer):

- the *baseline* of an evaluation is the smallest train loss of the ``BASELINE_EVALS`` (5)
  evaluations before it;
- a spike *starts* at the first evaluation whose train loss is at least ``RISE`` (5) times its
  baseline and at least ``FLOOR`` (1%) of the chance loss log p (so that the noise of a loss near
  1e-7 is not a spike);
- it *ends* at the first later evaluation whose train loss is back at or below ``RECOVER`` (2) times
  that baseline; ``end`` is None when the run stops before that (not recovered);
- it is described by its start, end, the epoch and value of its largest train loss, and its
  baseline. The next spike is looked for from its end on.

An evaluation at epoch e lies inside the spike when ``start <= e < end`` (``end`` None: from
``start`` on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

BASELINE_EVALS = 5
RISE = 5.0
RECOVER = 2.0
FLOOR = 0.01

RULE = (
    f"train loss >= {RISE:g} x its baseline (the smallest of the {BASELINE_EVALS} evaluations before) and >= "
    f"{FLOOR:g} x log p; ends at the first evaluation back at or below {RECOVER:g} x that baseline"
)


@dataclass(frozen=True)
class Instability:
    """One train-loss spike: epochs ``start`` (first evaluation above the rise) to ``end`` (first
    evaluation back near the baseline; None: not recovered by the last evaluation), the largest
    train loss ``peak_loss`` at ``peak_epoch``, and the ``baseline`` it rose from."""

    start: int
    end: int | None
    peak_epoch: int
    peak_loss: float
    baseline: float

    @property
    def recovered(self) -> bool:
        """The train loss came back near its baseline before the run stopped."""
        return self.end is not None

    def covers(self, epoch: float) -> bool:
        """Whether an evaluation or checkpoint at ``epoch`` lies inside the spike."""
        return self.start <= epoch and (self.end is None or epoch < self.end)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Instability:
        """Back from ``to_dict``'s dict (summary.json, analysis.json)."""
        return cls(int(doc["start"]), doc.get("end"), int(doc["peak_epoch"]), doc["peak_loss"], doc["baseline"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (summary.json, analysis.json): the fields plus ``recovered``."""
        return {**asdict(self), "recovered": self.recovered}

    def describe(self) -> str:
        """One line: ``train loss spike at epoch 490: 0.0014 -> 1.17 (x836) at 490, back by 520``."""
        back = f"back by {self.end}" if self.end is not None else "not recovered by the last evaluation"
        ratio = self.peak_loss / self.baseline if self.baseline > 0 else math.inf
        return (
            f"train loss spike at epoch {self.start}: {self.baseline:.3g} -> {self.peak_loss:.3g} "
            f"(x{ratio:.3g}) at {self.peak_epoch}, {back}"
        )


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def detect_instabilities(rows: Sequence[dict[str, Any]], log_p: float | None = None) -> list[Instability]:
    """The train-loss spikes of a run's metrics ``rows`` (``epoch``, ``train_loss``), by the rule of
    the module docstring. ``log_p``: the chance loss (default: the first finite train loss)."""
    pts = sorted((int(r["epoch"]), float(r["train_loss"])) for r in rows if _finite(r.get("train_loss")))
    if log_p is None:
        log_p = pts[0][1] if pts else math.inf
    floor = FLOOR * log_p
    found: list[Instability] = []
    i = 1
    while i < len(pts):
        baseline = min(loss for _, loss in pts[max(0, i - BASELINE_EVALS) : i])
        epoch, loss = pts[i]
        if not (loss >= RISE * baseline and loss >= floor):
            i += 1
            continue
        peak_epoch, peak = epoch, loss
        end = None
        j = i + 1
        while j < len(pts):
            if pts[j][1] <= RECOVER * baseline:
                end = pts[j][0]
                break
            if pts[j][1] > peak:
                peak_epoch, peak = pts[j]
            j += 1
        found.append(Instability(epoch, end, peak_epoch, peak, baseline))
        i = j  # the recovered evaluation may itself start the next spike's baseline
    return found


def instabilities_of_run(rows: Sequence[dict[str, Any]], p: int | None) -> list[dict[str, Any]]:
    """``detect_instabilities`` with log p from the modulus ``p``, as JSON-ready dicts (what
    summary.json and analysis.json store)."""
    log_p = math.log(p) if p else None
    return [s.to_dict() for s in detect_instabilities(rows, log_p)]
