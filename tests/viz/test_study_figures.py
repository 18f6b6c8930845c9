"""The study's figures and page (grokinterp.viz.study_figures), checked against a planted study:
what each figure draws equals the values computed independently from the members."""

import numpy as np
import pytest

from grokinterp.analysis.study import MemberSummary, Study
from grokinterp.io import rundir
from grokinterp.viz.study_figures import (
    build_study_report,
    grokking_epochs_figure,
    key_frequency_figure,
    loss_band_figure,
    study_table_rows,
    write_study_report,
)

GROK = {0: 300, 1: None, 2: 100, 3: 200, 4: 500}
KEYS = {0: (4, 9), 1: (), 2: (9,), 3: (2, 9), 4: (4,)}
STATUS = {0: "stopped_early", 1: "finished", 2: "stopped_early", 3: "finished", 4: "finished"}
LAST = {0: 60, 1: 100, 2: 40, 3: 100, 4: 100}


@pytest.fixture
def planted(tmp_path):
    """An ensemble folder whose members have only metrics.jsonl, and its Study."""
    rng = np.random.default_rng(0)
    members = []
    for s in GROK:
        d = tmp_path / f"seed={s}"
        d.mkdir()
        rows = [{"epoch": e, "train_loss": float(rng.uniform(0.01, 3)), "test_loss": float(rng.uniform(0.1, 5))}
                for e in range(0, LAST[s] + 1, 20)]  # fmt: skip
        rundir.write_metrics(d, rows)
        members.append(MemberSummary(seed=s, run=d.name, status=STATUS[s], final_epoch=LAST[s] * 10,
                                     grokking_epoch=GROK[s], phase_boundaries=(10, None, None),
                                     phase_reasons=(None, "not yet", "not yet"), key_freqs=KEYS[s], key_rule="clustered",
                                     frac_explained=0.5 + s / 10, verdict="clock" if GROK[s] else None,
                                     verdict_text="clock" if GROK[s] else "no verdict: not generalised",
                                     final={"train_loss": 0.01, "test_loss": 0.2, "train_acc": 1.0, "test_acc": 0.9}))  # fmt: skip
    return tmp_path, Study(ensemble=str(tmp_path), members=tuple(members))


def test_grokking_epochs_figure_draws_every_seed_and_the_quantiles(planted):
    _, study = planted
    fig = grokking_epochs_figure(study)
    dots, crosses = fig.data[0], fig.data[1]
    assert list(dots.x) == ["0", "2", "3", "4"] and list(dots.y) == [300, 100, 200, 500]
    assert list(crosses.x) == ["1"] and list(crosses.y) == [1000]  # not grokked: at its last epoch
    grokked = [g for g in GROK.values() if g is not None]
    band = fig.layout.shapes[0]
    assert (band.y0, band.y1) == (np.quantile(grokked, 0.25), np.quantile(grokked, 0.75))
    assert fig.layout.shapes[1].y0 == np.median(grokked)


def test_key_frequency_histogram_counts_seeds_per_frequency(planted):
    _, study = planted
    bars = key_frequency_figure(study).data[0]
    counts = {k: sum(k in keys for keys in KEYS.values()) for k in range(1, 10)}
    assert list(bars.x) == list(range(1, 10)) and list(bars.y) == [counts[k] for k in range(1, 10)]


def test_loss_bands_median_and_quartiles_over_seeds(planted):
    folder, study = planted
    fig = loss_band_figure(folder, study)
    med = next(t for t in fig.data if t.name == "test median")
    lo = next(t for t in fig.data if t.name == "test 25-75%")
    rows = {s: {r["epoch"]: r["test_loss"] for r in rundir.read_metrics(folder / f"seed={s}")} for s in GROK}
    for i, e in enumerate(med.x):
        # members evaluated at e, and members that stopped early held at their last value
        vals = [
            rows[s][e] if e in rows[s] else rows[s][LAST[s]]
            for s in GROK
            if e in rows[s] or STATUS[s] == "stopped_early"
        ]
        assert med.y[i] == pytest.approx(np.median(vals)) and med.customdata[i] == len(vals)
        assert lo.y[i] == pytest.approx(np.quantile(vals, 0.25))
    assert list(med.x) == list(range(0, 101, 20))
    assert sum((t.name or "").startswith("test seed") for t in fig.data) == len(GROK)


def test_report_page_has_the_table_and_the_figures(planted, tmp_path):
    folder, study = planted
    rows = study_table_rows(study)
    assert rows[0][0] == "seed" and [r[0] for r in rows[1:]] == [str(s) for s in GROK]
    assert rows[2][2] == "not grokked" and rows[2][6] == "no verdict: not generalised"
    page = build_study_report(folder, study)
    assert page.count('class="plotly-graph-div"') == 3 and "not grokked" in page
    out = write_study_report(folder, study, tmp_path / "out" / "study.html")
    written = out.read_text()  # the same page (the plots' div ids are random)
    assert written.count('class="plotly-graph-div"') == 3 and "<td>not grokked</td>" in written
    with pytest.raises(ValueError, match="already exists"):
        write_study_report(folder, study, out)
