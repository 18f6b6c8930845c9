import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from grokinterp.cli import main
from grokinterp.config import RunConfig
from grokinterp.io import rundir
from grokinterp.training.sweep import expand_grid, fit_power_law, parse_grid, parse_sets, run_name, run_sweep
from grokinterp.viz.sweep_figure import write_sweep_figure
from tests.conftest import train_one_thread

# Groks p=23 addition in about 170-290 epochs at train_frac 0.6/0.7 (about 1-2 s per run on one core);
# the epoch moves with the CPU's rounding (tests/conftest.py), so the budget is twice that and runs
# stop when they grok. float64, so a run trained along another path (a worker process, the
# ensemble backend, the CLI) matches its direct run to rounding.
BASE = RunConfig(
    p=23, lr=3e-3, wd=3.0, epochs=600, eval_every=10, checkpoint_every=100,
    stop_acc=0.99, stop_patience=1, device="cpu", dtype="float64",
)  # fmt: skip
GRID = {"train_frac": [0.6, 0.7], "model_seed": [0, 1]}


def _train_direct(cfg):
    return train_one_thread(cfg)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "grid"
    start = time.perf_counter()
    df = run_sweep(BASE, GRID, out, workers=2, plot=write_sweep_figure)  # the figure is drawn by viz
    return out, df, time.perf_counter() - start


# ------------------------------------------------------------------------------------ parsing


def test_parse_grid_uses_field_types():
    grid = parse_grid(
        ["train_frac=0.3,0.5", "model-seed=0,1", "grokfast=none,ema", "batch_size=none,64",
         "orthograd=true,false", "stop_acc=none,0.99", "op=add,sub"]
    )  # fmt: skip
    assert grid == {
        "train_frac": [0.3, 0.5],
        "model_seed": [0, 1],
        "grokfast": ["none", "ema"],
        "batch_size": [None, 64],
        "orthograd": [True, False],
        "stop_acc": [None, 0.99],
        "op": ["add", "sub"],
    }
    assert all(type(v) is int for v in grid["model_seed"])
    assert parse_sets(["epochs=500", "lr=3e-3", "loss_dtype=float32"]) == {
        "epochs": 500,
        "lr": 0.003,
        "loss_dtype": "float32",
    }


@pytest.mark.parametrize(
    ("specs", "needle"),
    [
        (["trian_frac=0.3"], "unknown config field 'trian_frac'; did you mean 'train_frac'?"),
        (["lr=abc"], "lr takes float values (got 'abc')"),
        (["model_seed=0.5"], "model_seed takes int values"),
        (["grokfast=fast"], "grokfast must be one of 'none', 'ema', 'ma' (got 'fast')"),
        (["orthograd=maybe"], "orthograd takes bool values"),
        (["lr"], "--grid takes FIELD=VALUE"),
        (["lr="], "--grid lr has no values"),
        (["lr=1e-3", "lr=2e-3"], "--grid lr given twice"),
        (["lr=1e-3,1e-3"], "repeats a value"),
        (["preset=a,b"], "unknown config field 'preset'"),
    ],
)
def test_parse_grid_errors_are_one_line(specs, needle):
    with pytest.raises(ValueError) as e:
        parse_grid(specs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_expand_grid_is_the_cartesian_product_and_validates():
    points = expand_grid(BASE, {"train_frac": [0.3, 0.5], "model_seed": [0, 1, 2]})
    assert [p[0] for p in points][:4] == [
        "train_frac=0.3,model_seed=0",
        "train_frac=0.3,model_seed=1",
        "train_frac=0.3,model_seed=2",
        "train_frac=0.5,model_seed=0",
    ]
    assert len(points) == 6 and points[4][2] == BASE.replace(train_frac=0.5, model_seed=1)
    assert run_name({"layout": "a op b =", "batch_size": None, "orthograd": True}) == (
        "layout=a_op_b_=,batch_size=none,orthograd=true"
    )
    with pytest.raises(ValueError, match=r"^grid point train_frac=1.5: train_frac must be in \(0, 1\)"):
        expand_grid(BASE, {"train_frac": [0.5, 1.5]})
    with pytest.raises(ValueError, match="at least one --grid"):
        expand_grid(BASE, {})


# ------------------------------------------------------------------------------------ power-law fit

A_TRUE, B_TRUE = 37316.0, 2.41
FRACS = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_power_law_fit_recovers_exact_parameters():
    fit = fit_power_law(FRACS, [A_TRUE * f**-B_TRUE for f in FRACS])
    assert fit["A"] == pytest.approx(A_TRUE, rel=1e-9)
    assert fit["b"] == pytest.approx(B_TRUE, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["n"] == len(FRACS) and fit["n_runs"] == len(FRACS)
    assert fit["b_ci"] == pytest.approx([B_TRUE, B_TRUE], abs=1e-6)  # no residuals: no uncertainty
    assert fit["A_ci"] == pytest.approx([A_TRUE, A_TRUE], rel=1e-6)


@pytest.mark.parametrize("aggregate", ["median", "none"])
def test_power_law_fit_with_noise_has_ci_containing_truth(aggregate):
    rng = np.random.default_rng(0)
    fracs = np.repeat(FRACS, 5)  # 5 seeds per fraction
    epochs = A_TRUE * fracs**-B_TRUE * np.exp(rng.normal(0, 0.15, fracs.size))
    epochs[3] = np.nan  # a run that did not grok is ignored
    epochs = [None if math.isnan(e) else e for e in epochs]
    fit = fit_power_law(fracs, epochs, aggregate=aggregate, bootstrap=500)
    assert fit["n_runs"] == fracs.size - 1
    assert fit["n"] == (len(FRACS) if aggregate == "median" else fracs.size - 1)
    assert fit["b_ci"][0] < B_TRUE < fit["b_ci"][1]
    assert fit["A_ci"][0] < A_TRUE < fit["A_ci"][1]
    assert fit["b_ci"][1] - fit["b_ci"][0] < 0.5 and fit["r2"] > 0.95
    assert fit["bootstrap_b_ci"][0] < B_TRUE < fit["bootstrap_b_ci"][1]


def test_power_law_fit_needs_two_fractions():
    with pytest.raises(ValueError, match="two or more train fractions"):
        fit_power_law([0.3, 0.3, 0.5], [100, 120, None])
    two = fit_power_law([0.3, 0.5], [400, 200])  # exactly determined: no confidence interval
    assert two["n"] == 2 and math.isnan(two["b_ci"][0])


# ------------------------------------------------------------------------------------ local sweep


def test_local_sweep_writes_results_matching_direct_training(local_sweep):
    out, df, _ = local_sweep
    assert list(df["status"]) == ["done"] * 4
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 4
    assert list(csv.columns[:9]) == [
        "train_frac", "model_seed", "grokking_epoch", "grokking_step", "final_epoch", "train_acc", "test_acc",
        "train_loss", "test_loss",
    ]  # fmt: skip
    assert (csv["grokking_step"] == csv["grokking_epoch"]).all()  # full batch: one step per epoch
    assert {"wall_clock_s", "status", "run"} <= set(csv.columns)
    assert csv["grokking_epoch"].notna().all(), f"a run did not grok within {BASE.epochs} epochs:\n{csv}"
    # every grid point is a normal run directory whose summary agrees with results.csv
    for row in csv.itertuples():
        run_dir = out / "runs" / row.run
        assert rundir.read_run_config(run_dir) == BASE.replace(train_frac=row.train_frac, model_seed=row.model_seed)
        assert rundir.read_summary(run_dir)["grokking_epoch"] == row.grokking_epoch
        last = rundir.read_metrics(run_dir)[-1]  # results.csv holds the run's own final metrics
        assert last["epoch"] == row.final_epoch
        assert (last["test_loss"], last["test_acc"]) == pytest.approx((row.test_loss, row.test_acc), rel=1e-12)
    # determinism: a run trained directly in this process groks at the same epoch, same losses (one
    # thread and float64, like the sweep's worker)
    cell = csv.iloc[3]
    direct = _train_direct(BASE.replace(train_frac=cell.train_frac, model_seed=int(cell.model_seed)))
    assert direct.grokking_epoch == cell.grokking_epoch
    assert direct.metrics[-1]["test_loss"] == pytest.approx(cell.test_loss, rel=1e-12)
    # the fit and its figure
    fit = json.loads((out / "fit.json").read_text())
    assert fit["n"] == 2 and fit["n_runs_grokked"] == 4 and fit["A"] > 0
    assert fit["points"]["grokking_epoch"] == [
        float(np.median(csv[csv.train_frac == f].grokking_epoch)) for f in (0.6, 0.7)
    ]
    assert (out / "grokking_vs_train_frac.html").is_file()


def test_fit_on_steps(tmp_path):
    """Minibatch studies count optimizer steps; steps per epoch change with the train fraction."""
    from grokinterp.training.sweep import write_fit

    fracs = [0.35, 0.35, 0.4, 0.45]
    steps = [37_316 * f**-2.41 for f in fracs]
    df = pd.DataFrame(
        {"train_frac": fracs, "grokking_epoch": [1, 1, 1, 1], "grokking_step": steps, "run": ["a", "b", "c", "d"]}
    )
    fit = write_fit(df, tmp_path, plot=False, fit_on="step")
    assert fit["y"] == "grokking_step" and fit["model"].startswith("grokking_step = A")
    assert fit["A"] == pytest.approx(37_316, rel=1e-9) and fit["b"] == pytest.approx(2.41, rel=1e-9)
    assert fit["points"]["grokking_step"] == pytest.approx([steps[0], steps[2], steps[3]])
    assert json.loads((tmp_path / "fit.json").read_text())["y"] == "grokking_step"
    assert write_fit(df, tmp_path, plot=False)["b"] == pytest.approx(0.0, abs=1e-12)  # epochs: all equal


def test_rerun_skips_finished_runs_without_touching_them(local_sweep):
    out, df, first_s = local_sweep
    files = sorted(p for p in (out / "runs").rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    start = time.perf_counter()
    again = run_sweep(BASE, GRID, out, workers=2, plot=False)
    elapsed = time.perf_counter() - start
    assert list(again["status"]) == ["skipped"] * 4
    assert elapsed < 2.0 and elapsed < first_s / 3
    assert sorted(p for p in (out / "runs").rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == before
    pd.testing.assert_frame_equal(
        again.drop(columns=["status", "wall_clock_s"]), df.drop(columns=["status", "wall_clock_s"])
    )
    # changing the base config is refused for the existing runs, with one line, before any work
    with pytest.raises(ValueError, match=r"different config \(epochs differ\); use a new --out"):
        run_sweep(BASE.replace(epochs=400), GRID, out, workers=1)


def test_interrupted_run_is_resumed(tmp_path):
    from grokinterp.training.trainer import Trainer

    grid = {"model_seed": [0]}
    cfg = BASE.replace(train_frac=0.6)
    run_dir = tmp_path / "runs" / "model_seed=0"
    partial = Trainer(cfg.replace(model_seed=0), run_dir).run(progress=False, max_epochs=50)
    assert partial.final_epoch == 50 and not rundir.read_summary(run_dir)["finished"]
    df = run_sweep(cfg, grid, tmp_path, workers=1, plot=False)
    assert df.loc[0, "status"] == "resumed"
    direct = _train_direct(cfg.replace(model_seed=0))
    # The exact epoch moves with float rounding (any change to the forward's kernels); that it equals
    # the uninterrupted run is the point.
    assert df.loc[0, "grokking_epoch"] == direct.grokking_epoch and 50 < direct.grokking_epoch <= cfg.epochs
    epochs = [r["epoch"] for r in rundir.read_metrics(run_dir)]
    assert epochs == list(range(0, direct.grokking_epoch + 1, 10))  # continued, not restarted
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert "train_frac is not a grid field" in fit["error"]


# Alone it takes ~40 s; the timeout only stops a hang (seen once while another job loaded both cores).
@pytest.mark.timeout(300)
def test_ray_backend_matches_local(local_sweep, tmp_path):
    pytest.importorskip("ray")
    _, local_df, _ = local_sweep
    grid = {"train_frac": [0.6], "model_seed": [0, 1]}
    df = run_sweep(BASE, grid, tmp_path / "ray", workers=2, backend="ray", plot=False)
    assert list(df["status"]) == ["done", "done"]
    cols = [
        "train_frac",
        "model_seed",
        "grokking_epoch",
        "final_epoch",
        "train_acc",
        "test_acc",
        "train_loss",
        "test_loss",
    ]
    expected = local_df[local_df.train_frac == 0.6][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(df[cols], expected)
    import ray

    assert not ray.is_initialized()  # the local instance was shut down


# ------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--grid", "lr=abc"], "lr takes float values"),
        (["--grid", "bogus=1,2"], "unknown config field 'bogus'"),
        (["--grid", "train_frac=0.5,1.5"], "grid point train_frac=1.5: train_frac must be in (0, 1)"),
        (["--set", "epochs=10"], "at least one --grid"),
        (["--grid", "lr=1e-3,2e-3", "--set", "lr=1e-3"], "lr given in both --grid and --set"),
        (["--grid", "lr=1e-3", "--address", "1.2.3.4:6379"], "--address needs --backend ray"),
        (["--grid", "lr=1e-3", "--workers", "0"], "workers must be at least 1"),
    ],
)
def test_cli_bad_input_gives_one_clear_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["sweep", "--out", "X", *argv])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("grokinterp: error:"), err
    assert needle in lines[0]
    assert not (tmp_path / "X").exists()


def test_cli_sweep_without_checkpoints(capsys, tmp_path):
    out = tmp_path / "cli"
    sets = [
        "p=23",
        "lr=3e-3",
        "wd=3",
        "epochs=600",  # twice what either fraction needs to grok (see BASE); the fit needs both
        "dtype=float64",
        "stop_acc=0.99",
        "stop_patience=1",
        "model_seed=0",
        "device=cpu",
        "eval_every=10",
    ]
    argv = [
        "sweep",
        "--preset",
        "nanda-p113",
        "--grid",
        "train_frac=0.6,0.7",
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-checkpoints",
        "--no-plot",
    ]
    for s in sets:
        argv += ["--set", s]
    rc = main(argv)
    stdout, _ = capsys.readouterr()
    assert rc == 0, stdout
    from grokinterp.presets import get_preset

    direct = _train_direct(get_preset("nanda-p113").replace(train_frac=0.6, **parse_sets(sets)))
    assert f"train_frac=0.6: done, grokking epoch {direct.grokking_epoch} " in stdout
    assert "fit: grokking_epoch =" in stdout
    for run in ("train_frac=0.6", "train_frac=0.7"):
        epochs = rundir.checkpoint_epochs(out / "runs" / run)
        assert epochs[0] == 0 and len(epochs) == 2  # only the first and the last
    assert not (out / "grokking_vs_train_frac.html").exists()


def test_ensemble_backend_matches_separate_runs(tmp_path):
    # Same-shape grid points train as one batched ensemble. In float32 the batched kernels round
    # differently from one model's, which can move a grokking epoch by an evaluation; in float64
    # the ensemble reproduces each separate run.
    base = BASE.replace(train_frac=0.7, dtype="float64")
    ens = run_sweep(base, {"model_seed": [0, 1]}, tmp_path / "ens", backend="ensemble", plot=False)
    assert list(ens["status"]) == ["done", "done"]
    for row in ens.itertuples():
        direct = _train_direct(base.replace(model_seed=int(row.model_seed)))
        assert row.grokking_epoch == direct.grokking_epoch
        assert row.test_loss == pytest.approx(direct.metrics[-1]["test_loss"], rel=1e-8)
