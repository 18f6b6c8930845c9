"""Phase boundaries only where the evidence has been seen, and never moved by cutting a run short."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from grokinterp.analysis.phases import detect_phases

SHIPPED = Path(__file__).parents[2] / "checkpoints" / "nanda-p113"
P = 113


def _synthetic(grok: bool = True):
    """Train loss collapses by 500; test loss peaks at 1400; test acc reaches 0.99 at 9500 (if
    ``grok``); excluded loss peaks at 9000 and falls until 14000; weights fall from 1500 to 900
    between 9000 and 14000."""
    metrics = []
    for e in range(0, 20001, 100):
        train_loss = math.log(P) * math.exp(-e / 50)
        test_loss = 30 - abs(e - 1400) / 1000 if (e < 9000 or not grok) else max(1e-6, 22 - (e - 9000) / 50)
        test_acc = (0.01 if e < 9500 else 1.0) if grok else 0.02
        metrics.append(
            {
                "epoch": e,
                "train_loss": train_loss,
                "train_acc": float(e >= 300),
                "test_loss": test_loss,
                "test_acc": test_acc,
            }
        )
    epochs = list(range(0, 20001, 1000))
    excluded = [min(e, 9000) / 1000 - min(max(0, e - 9000), 5000) / 2000 if grok else e / 1000 for e in epochs]
    excluded = [max(x, 1.0) for x in excluded]
    ssw = [1500 if e <= 9000 or not grok else max(900, 1500 - (e - 9000) * 0.12) for e in epochs]
    table = pd.DataFrame({"epoch": epochs, "excluded_loss": excluded, "sum_sq_weights": ssw})
    return metrics, table


def _cut(metrics, table, epoch):
    return [r for r in metrics if r["epoch"] <= epoch], table[table["epoch"] <= epoch].reset_index(drop=True)


def test_phase_rule_on_synthetic_curves():
    metrics, table = _synthetic()
    out = detect_phases(metrics, table, p=P)
    # weights reach 900 at 14000 and stay: the plateau is seen over 15000..16000
    assert out["boundaries"] == [1400, 9000, 14000]
    assert out["resolution"] == [100, 1000, 1000]
    assert out["reasons"] == [None, None, None]
    assert out["phases"]["cleanup"] == [9000, 14000]


@pytest.mark.parametrize("cut", [300, 1500, 5000, 9400, 9900, 11000, 14000, 15000, 16000, 20000])
def test_truncating_the_synthetic_run_never_moves_or_invents(cut):
    metrics, table = _synthetic()
    full = detect_phases(metrics, table, p=P)["boundaries"]
    out = detect_phases(*_cut(metrics, table, cut), p=P)
    for b, f in zip(out["boundaries"], full, strict=True):
        assert b is None or b == f
        assert b is None or b <= cut
    for b, why in zip(out["boundaries"], out["reasons"], strict=True):
        assert (b is None) == (why is not None)


def test_never_generalising_run_has_no_circuit_formation_or_cleanup():
    metrics, table = _synthetic(grok=False)
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"][1:] == [None, None]
    assert "never reached 0.99" in out["reasons"][1]


def test_memorisation_needs_a_collapsed_train_loss():
    metrics, table = _synthetic()
    for r in metrics:
        r["train_loss"] = max(r["train_loss"], 1.0)  # never far below log p
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"] == [None, None, None]
    assert "collapsed" in out["reasons"][0]


def test_stopped_mid_transition_gets_no_cleanup():
    """A run stopped at test accuracy 0.67 (never 0.99) gets no boundary 2 or 3."""
    metrics, table = _synthetic()
    metrics, table = _cut(metrics, table, 9400)
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"] == [1400, None, None]


def _shipped():
    metrics = [json.loads(line) for line in (SHIPPED / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return metrics, pd.read_csv(SHIPPED / "measures.csv")


def test_phase_rule_on_shipped_run():
    analysis = json.loads((SHIPPED / "analysis.json").read_text())
    b1, b2, b3 = analysis["phases"]["boundaries"]
    assert 1000 <= b1 <= 2000 and 8000 <= b2 <= 12000 and b2 < b3 <= 17000
    metrics, table = _shipped()
    assert detect_phases(metrics, table, p=P)["boundaries"] == [b1, b2, b3]


@pytest.mark.parametrize("cut", [1000, 2000, 9000, 10500, 11000, 12000, 14000, 15000, 16000, 20000])
def test_truncating_the_shipped_run_never_moves_or_invents(cut):
    metrics, table = _shipped()
    full = detect_phases(metrics, table, p=P)["boundaries"]
    out = detect_phases(*_cut(metrics, table, cut), p=P)["boundaries"]
    assert all(b is None or b == f for b, f in zip(out, full, strict=True)), (cut, out, full)
    if cut in (11000, 12000):  # cleanup has not been seen to end yet
        assert out[2] is None
    if cut >= 16000:
        assert out == full
