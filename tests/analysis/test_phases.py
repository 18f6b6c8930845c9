"""Phase boundaries from the paper's measures, only where the evidence has been seen, never moved by
cutting a run short, and never placed on a loss spike (which is reported instead)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from grokinterp.analysis.instabilities import Instability, detect_instabilities, instabilities_of_run
from grokinterp.analysis.phases import detect_phases

SHIPPED = Path(__file__).parents[2] / "checkpoints" / "nanda-p113"
P = 113


def _synthetic(grok: bool = True):
    """Metrics every 100 epochs, checkpoints every 500. Train loss collapses by 300 (train acc 1
    from 300); test acc reaches 0.99 at 9500 (if ``grok``). Excluded loss falls to its minimum 0.1
    at 1500, rises to 15.1 at 9000 (on, if not ``grok``), falls to 7 at 14000 and stays; restricted
    loss stays at log p until 1500, then falls; weights fall from 1500 to 900 and the W_L Gini rises
    from 0.1 to 0.8 between 9000 and 14000."""
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
    epochs = list(range(0, 20001, 500))

    def cleanup(e):  # 0 before 9000, 1 from 14000 on
        return 0.0 if not grok else min(max(e - 9000, 0), 5000) / 5000

    excluded = [
        4.7 - 4.6 * e / 1500 if e <= 1500 else 0.1 + (min(e, 9000) - 1500) / 500 - 8.1 * cleanup(e) for e in epochs
    ]
    excluded = [x if grok or e <= 9000 else 0.1 + (e - 1500) / 500 for x, e in zip(excluded, epochs, strict=True)]
    restricted = [math.log(P) * max(1e-3, 1 - max(e - 1500, 0) / 8000) for e in epochs]
    table = pd.DataFrame(
        {
            "epoch": epochs,
            "excluded_loss": excluded,
            "restricted_loss": restricted,
            "sum_sq_weights": [1500 - 600 * cleanup(e) for e in epochs],
            "gini_W_L": [0.1 + 0.7 * cleanup(e) for e in epochs],
        }
    )
    return metrics, table


def _fast_like():
    """A fast-recipe-like run (wd 3): train acc 1 from 100 on, but the train loss stays at 0.1
    (2% of log p) until the test loss collapses at 450-500; the excluded loss falls to 1.2 at 100,
    rises to 6.2 at 500 while the restricted loss falls, then 5.7 from 650 on; weights and Ginis
    settle at 700. Metrics every 10 epochs, checkpoints every 50."""
    metrics = []
    for e in range(0, 1001, 10):
        train_loss = max(math.log(P) * math.exp(-e / 25), 0.1) if e < 450 else 0.1 * math.exp(-(e - 450) / 100)
        test_loss = 10 - 5 * max(e - 100, 0) / 350 if e < 450 else 0.01
        metrics.append(
            {
                "epoch": e,
                "train_loss": train_loss,
                "train_acc": min(1.0, e / 100),
                "test_loss": test_loss if e >= 100 else 4.7 + e * 0.053,
                "test_acc": 1.0 if e >= 500 else 0.01,
            }
        )
    epochs = list(range(0, 1001, 50))
    excluded = [
        4.7 - 3.5 * e / 100 if e <= 100 else 1.2 + (e - 100) * 5 / 400 if e <= 500 else max(5.7, 6.2 - (e - 500) / 300)
        for e in epochs
    ]
    restricted = [4.7 if e <= 100 else max(0.01, 4.7 * (1 - (e - 100) / 400)) for e in epochs]
    ssw = [2500 - 1200 * min(max(e - 450, 0), 250) / 250 - 0.1 * max(e - 700, 0) for e in epochs]
    gini = [0.1 + 0.6 * min(max(e - 450, 0), 250) / 250 for e in epochs]
    table = pd.DataFrame(
        {"epoch": epochs, "excluded_loss": excluded, "restricted_loss": restricted, "sum_sq_weights": ssw}
    )
    table["gini_W_E"] = gini
    table["gini_W_L"] = gini
    return metrics, table


def _cut(metrics, table, epoch):
    return [r for r in metrics if r["epoch"] <= epoch], table[table["epoch"] <= epoch].reset_index(drop=True)


def test_phase_rule_on_synthetic_curves():
    metrics, table = _synthetic()
    out = detect_phases(metrics, table, p=P)
    # 1: the excluded minimum at 1500, risen 1.5x by 2000; 2: the peak at 9000, 5% lower at 9500
    # (test acc 0.99 from 9500); 3: weights reach 900 at 14000 and stay: the plateau is seen up to 15500
    assert out["boundaries"] == [1500, 9000, 14000]
    assert out["confirmed"] == [2000, 9500, 15500]
    assert out["resolution"] == [500, 500, 500]
    assert out["reasons"] == [None, None, None]
    assert out["phases"]["cleanup"] == [9000, 14000]
    assert out["instabilities"] == []


def test_fast_recipe_memorisation_ends_when_the_excluded_loss_turns():
    """Fast preset (Why: "Fast preset"): memorisation ends where the excluded loss starts rising
    while the restricted loss falls (100), not where the train loss reaches 1% of log p (~530)."""
    metrics, table = _fast_like()
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"] == [100, 500, 700]
    assert out["confirmed"] == [150, 500, 800]
    assert out["reasons"] == [None, None, None]


@pytest.mark.parametrize("cut", [300, 1500, 2000, 5000, 9400, 9900, 11000, 14000, 15000, 15500, 16000, 20000])
def test_truncating_the_synthetic_run_never_moves_or_invents(cut):
    metrics, table = _synthetic()
    full = detect_phases(metrics, table, p=P)
    out = detect_phases(*_cut(metrics, table, cut), p=P)
    for b, f, c in zip(out["boundaries"], full["boundaries"], full["confirmed"], strict=True):
        assert b is None or b == f
        assert b is None or b <= cut
        assert (b is None) == (c > cut)  # reached exactly when its confirmation is within the cut
    for b, why in zip(out["boundaries"], out["reasons"], strict=True):
        assert (b is None) == (why is not None)


def test_never_generalising_run_has_no_circuit_formation_or_cleanup():
    metrics, table = _synthetic(grok=False)
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"] == [1500, None, None]
    assert "never reached 0.99" in out["reasons"][1]


def test_memorisation_needs_a_collapsed_train_loss():
    metrics, table = _synthetic()
    for r in metrics:
        r["train_loss"] = max(r["train_loss"], 1.0)  # never far below log p
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"] == [None, None, None]
    assert "collapsed" in out["reasons"][0]


def test_no_excluded_loss_no_boundaries_and_the_reason():
    metrics, table = _synthetic()
    table["excluded_loss"] = float("nan")
    out = detect_phases(metrics, table, p=P, excluded_reason="no key frequencies by the clustered rule")
    assert out["boundaries"] == [None, None, None]
    assert "no key frequencies by the clustered rule" in out["reasons"][0]


def test_grokking_before_the_excluded_loss_turns_places_no_boundary():
    """Checkpoints too sparse to separate the phases (a 2-layer run grokking at 110 with checkpoints
    every 100): no boundary, and the reason says why."""
    metrics, table = _synthetic()
    for r in metrics:
        r["test_acc"] = 1.0 if r["epoch"] >= 1000 else 0.01  # before the excluded minimum at 1500
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"] == [None, None, None]
    assert "epoch 1000, before the excluded loss was seen to turn" in out["reasons"][0]


def test_stopped_mid_transition_gets_no_cleanup():
    """A run stopped at test accuracy 0.01 (never 0.99) gets no boundary 2 or 3."""
    metrics, table = _synthetic()
    metrics, table = _cut(metrics, table, 9400)
    out = detect_phases(metrics, table, p=P)
    assert out["boundaries"] == [1500, None, None]


# ---- loss spikes -------------------------------------------------------------------------------


def _with_spike(metrics, at, values):
    """Metrics rows with the train loss replaced by ``values`` at ``at``, ``at`` + 10, ..."""
    out = [dict(r) for r in metrics]
    by_epoch = {r["epoch"]: r for r in out}
    for k, v in enumerate(values):
        by_epoch[at + 10 * k]["train_loss"] = v
    return out


def test_a_planted_spike_is_found_with_its_epochs_peak_and_baseline():
    rows = [{"epoch": e, "train_loss": 0.1 * 0.99**e} for e in range(0, 1001, 10)]
    baseline = 0.1 * 0.99**480  # the smallest of the five evaluations before 490
    rows = _with_spike(rows, 490, [1.17, 0.3, 0.0015])
    spikes = detect_instabilities(rows, log_p=math.log(59))
    # back at or below 2 x baseline (0.0016) at 510 (0.0015)
    assert spikes == [Instability(490, 510, 490, 1.17, pytest.approx(baseline))]
    assert spikes[0].recovered and spikes[0].covers(500) and not spikes[0].covers(510)
    d = instabilities_of_run(rows, 59)[0]
    assert (d["start"], d["end"], d["peak_loss"], d["recovered"]) == (490, 510, 1.17, True)
    assert Instability.from_dict(d) == spikes[0]
    assert "490" in spikes[0].describe() and "back by 510" in spikes[0].describe()


def test_an_unrecovered_spike_has_no_end():
    rows = _with_spike([{"epoch": e, "train_loss": 1e-3} for e in range(0, 101, 10)], 80, [0.5, 0.4, 0.3])
    (spike,) = detect_instabilities(rows, log_p=math.log(P))
    assert (spike.start, spike.end, spike.peak_loss, spike.recovered) == (80, None, 0.5, False)
    assert spike.covers(10**6)


def test_monotone_and_tiny_wiggles_have_no_spike():
    monotone = [{"epoch": e, "train_loss": math.log(P) * math.exp(-e / 100)} for e in range(0, 2001, 10)]
    assert detect_instabilities(monotone, log_p=math.log(P)) == []
    # a 10x jump near 1e-7 is float noise, far below 1% of log p
    wiggle = _with_spike([{"epoch": e, "train_loss": 1e-7} for e in range(0, 201, 10)], 100, [1e-6])
    assert detect_instabilities(wiggle, log_p=math.log(P)) == []
    assert detect_phases(*_synthetic(), p=P)["instabilities"] == []


def test_a_spike_in_a_memorised_run_is_reported_not_a_boundary():
    """Why: "A loss spike makes a phase boundary" (p = 59 division, spike 0.0014 -> 1.17 at 490): the
    rule of the day read it as the end of memorisation. Now it is listed and no boundary is placed."""
    p = 59
    metrics = []
    for e in range(0, 601, 10):
        metrics.append(
            {
                "epoch": e,
                "train_loss": max(math.log(p) * math.exp(-e / 20), 0.1 * math.exp(-e / 110)),
                "train_acc": min(1.0, e / 100),
                "test_loss": 4 + e / 40,
                "test_acc": 0.02,
            }
        )
    metrics = _with_spike(metrics, 490, [1.17, 0.3, 0.002])  # back below 2 x 0.00127 at 510
    for r in metrics:  # the test loss drops during the spike (what made today's boundary)
        if 490 <= r["epoch"] <= 510:
            r["test_loss"] = 8.0
    epochs = list(range(0, 601, 50))
    train_at = {r["epoch"]: r["train_loss"] for r in metrics}
    # excluded loss follows the train loss: at the checkpoint inside the spike it has risen 100x and
    # the restricted loss fell there, so without skipping spikes rule 1 would fire
    table = pd.DataFrame(
        {
            "epoch": epochs,
            "excluded_loss": [train_at[e] * 1.1 for e in epochs],
            "restricted_loss": [4.0 if e != 500 else 3.0 for e in epochs],
            "sum_sq_weights": [1600.0] * len(epochs),
        }
    )
    out = detect_phases(metrics, table, p=p)
    assert out["boundaries"] == [None, None, None]
    assert [(s["start"], s["end"], s["peak_loss"]) for s in out["instabilities"]] == [(490, 510, 1.17)]
    assert out["instabilities"][0]["baseline"] == pytest.approx(train_at[480])


def test_a_spike_during_circuit_formation_does_not_move_the_boundaries():
    """A spike at 5000-5100 (checkpoint 5000 inside it, with an excluded loss above the true peak)
    is reported; the boundaries stay those of the run without it."""
    metrics, table = _synthetic()
    base = detect_phases(metrics, table, p=P)["boundaries"]
    spiky = _with_spike(metrics, 5000, [1.0])  # rows every 100 epochs: back by 5100
    for r in spiky:
        if r["epoch"] == 5000:
            r["test_acc"] = 0.995  # even a test accuracy seen inside a spike does not count
    table.loc[table["epoch"] == 5000, "excluded_loss"] = 40.0
    out = detect_phases(spiky, table, p=P)
    assert out["boundaries"] == base == [1500, 9000, 14000]
    assert [(s["start"], s["end"]) for s in out["instabilities"]] == [(5000, 5100)]


@pytest.mark.parametrize("cut", [5000, 5050, 9500, 16000])
def test_truncating_inside_or_after_a_spike_never_moves_or_invents(cut):
    metrics, table = _synthetic()
    metrics = _with_spike(metrics, 5000, [1.0])
    table.loc[table["epoch"] == 5000, "excluded_loss"] = 40.0
    full = detect_phases(metrics, table, p=P)["boundaries"]
    out = detect_phases(*_cut(metrics, table, cut), p=P)["boundaries"]
    assert all(b is None or b == f for b, f in zip(out, full, strict=True)), (cut, out, full)


# ---- the shipped run ---------------------------------------------------------------------------


def _shipped():
    metrics = [json.loads(line) for line in (SHIPPED / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return metrics, pd.read_csv(SHIPPED / "measures.csv")


def test_phase_rule_on_shipped_run():
    """Near the anchors (paper [1400, 9400, 14000], TL demo [1500, 13300, 16600]); analysis.json
    holds what the rule gives."""
    metrics, table = _shipped()
    out = detect_phases(metrics, table, p=P)
    b1, b2, b3 = out["boundaries"]
    assert 1000 <= b1 <= 2000 and 8000 <= b2 <= 12000 and b2 < b3 <= 17000
    assert out["instabilities"] == []
    analysis = json.loads((SHIPPED / "analysis.json").read_text())
    assert analysis["phases"]["boundaries"] == [b1, b2, b3]


@pytest.mark.parametrize("cut", [1000, 1500, 2000, 9000, 10500, 11000, 12000, 14000, 15000, 16000, 20000])
def test_truncating_the_shipped_run_never_moves_or_invents(cut):
    metrics, table = _shipped()
    full = detect_phases(metrics, table, p=P)
    out = detect_phases(*_cut(metrics, table, cut), p=P)["boundaries"]
    assert all(b is None or b == f for b, f in zip(out, full["boundaries"], strict=True)), (cut, out, full)
    assert all((b is None) == (c > cut) for b, c in zip(out, full["confirmed"], strict=True))
    if cut >= 16000:
        assert out == full["boundaries"]
