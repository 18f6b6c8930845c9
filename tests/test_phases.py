import pandas as pd

from grokinterp.phases import detect_phases


def test_phase_rule_on_synthetic_curves():
    # test loss peaks at 1400; excluded loss peaks at 9000; weights fall from 1500 to 900 after it.
    metrics = [{"epoch": e, "test_loss": 30 - abs(e - 1400) / 1000} for e in range(0, 20001, 100)]
    epochs = list(range(0, 20001, 1000))
    excluded = [min(e, 9000) / 1000 - max(0, e - 9000) / 2000 for e in epochs]
    ssw = [1500 if e <= 9000 else max(900, 1500 - (e - 9000) * 0.12) for e in epochs]
    table = pd.DataFrame({"epoch": epochs, "excluded_loss": excluded, "sum_sq_weights": ssw})
    out = detect_phases(metrics, table)
    # 95% of the fall (1500 -> 900) is reached at 1500 - 570 = 930, i.e. at epoch 9000 + 570/0.12 = 13750
    assert out["boundaries"] == [1400, 9000, 14000]
    assert out["phases"]["cleanup"] == [9000, 14000]


def test_phase_rule_on_shipped_run():
    import json
    from pathlib import Path

    run = Path(__file__).parents[1] / "checkpoints" / "nanda-p113"
    analysis = json.loads((run / "analysis.json").read_text())
    b1, b2, b3 = analysis["phases"]["boundaries"]
    assert 1000 <= b1 <= 2000 and 8000 <= b2 <= 12000 and b2 < b3 <= 17000


def test_no_cleanup_when_excluded_loss_still_rising():
    metrics = [{"epoch": e, "test_loss": 1.0} for e in range(0, 501, 100)]
    table = pd.DataFrame({"epoch": [0, 250, 500], "excluded_loss": [1, 2, 3], "sum_sq_weights": [3, 2, 1]})
    assert detect_phases(metrics, table)["boundaries"][1:] == [None, None]
