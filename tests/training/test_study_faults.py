"""Issue 17 faults of ``grokinterp sweep`` and ``grokinterp tune``: values checked where they are
parsed, diverged runs never "done", nothing of the user's replaced or deleted without ``--force``,
and nothing half-made when a command fails. Runs are tiny (p=23, a few epochs); assertions hold on
any CPU (statuses, files, exit codes; no trajectories)."""

from __future__ import annotations

import csv
import json

import pytest

from grokinterp.cli import main

SMALL = ["--set", "p=23", "--set", "d_model=32", "--set", "d_mlp=64", "--set", "n_heads=2", "--set", "d_head=16"]
SWEEP = ["sweep", "--preset", "nanda-p113-fast", *SMALL, "--set", "epochs=20", "--set", "checkpoint_every=10",
         "--no-plot", "--workers", "1"]  # fmt: skip
TUNE = ["tune", "--preset", "nanda-p113-fast", *SMALL, "--trials", "1", "--max-epochs", "5", "--no-prune"]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("grokinterp: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- fault 4: a run that lost its resume state is not restarted (its checkpoints kept) ---------


def test_sweep_keeps_a_run_that_lost_its_resume_state(tmp_path, capsys):
    from grokinterp.io import rundir
    from grokinterp.training.trainer import Trainer

    out = tmp_path / "sw"
    assert main([*SWEEP, "--grid", "model_seed=1", "--out", str(out)]) == 0
    run = out / "runs" / "model_seed=1"
    cfg = rundir.read_run_config(run)
    Trainer(cfg, run, force=True).run(progress=False, max_epochs=10)  # paused at epoch 10, state saved
    (run / "state.safetensors").unlink()  # ... and its state lost
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    assert before
    capsys.readouterr()
    assert main([*SWEEP, "--grid", "model_seed=1", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "--from-checkpoint" in text and str(run) in text
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    assert not rundir.read_summary(run).get("finished")


# --- fault 11: a diverged run is "diverged", never "done"; exit 3 ----------------------------------


@pytest.mark.parametrize("backend", ["local", "ensemble"])
def test_sweep_reports_diverged_runs(tmp_path, capsys, backend):
    out = tmp_path / backend
    code = main([*SWEEP, "--grid", "lr=1e30,0.001", "--backend", backend, "--out", str(out)])
    status = {r["lr"]: r["status"] for r in _rows(out / "results.csv")}
    assert status["1e+30"] == "diverged"
    assert status["0.001"] == "done"
    assert code == 3
    assert "diverged" in capsys.readouterr().out


# --- fault 16: tune after a kill; a study of another --search ---------------------------------------


def test_tune_marks_stale_running_trials_and_refuses_another_search(tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    out = tmp_path / "study"
    assert main([*TUNE, "--search", "lr", "--out", str(out)]) == 0
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")
    study.ask()  # a trial left RUNNING, as by a process killed mid-trial
    assert main([*TUNE, "--search", "lr", "--trials", "2", "--out", str(out)]) == 0
    states = [r["state"] for r in _rows(out / "trials.csv")]
    assert "RUNNING" not in states and "FAIL" in states
    assert any(r.get("user_attrs_interrupted") == "True" for r in _rows(out / "trials.csv"))
    capsys.readouterr()
    db = (out / "study.db").read_bytes()
    assert main([*TUNE, "--search", "wd", "--out", str(out)]) == 2
    _one_error_line(capsys, "--search lr=", "--search wd=", "--force")
    assert (out / "study.db").read_bytes() == db
    (out / "mine.txt").write_text("keep")
    assert main([*TUNE, "--search", "wd", "--out", str(out), "--force"]) == 0
    assert (out / "mine.txt").read_text() == "keep"
    assert [r["state"] for r in _rows(out / "trials.csv")] == ["COMPLETE"]
    assert "params_wd" in _rows(out / "trials.csv")[0]


# --- fault 17: sweep into a folder that is not this sweep's -----------------------------------------


def test_sweep_refuses_a_folder_that_is_not_its_own(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "results.csv").write_text("my data\n")
    assert main([*SWEEP, "--grid", "model_seed=1", "--out", str(folder)]) == 2
    _one_error_line(capsys, str(folder))
    assert (folder / "results.csv").read_text() == "my data\n"
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv"]
    assert main([*SWEEP, "--grid", "model_seed=1", "--out", str(folder), "--force"]) == 2  # not a sweep's: kept
    _one_error_line(capsys, str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv"]


def test_sweep_force_replaces_only_the_other_sweeps_files(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main([*SWEEP, "--grid", "model_seed=1", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main([*SWEEP, "--grid", "data_seed=2", "--out", str(out)]) == 2
    _one_error_line(capsys, "--grid model_seed=1", "--grid data_seed=2", "--force")
    assert (out / "runs" / "model_seed=1" / "summary.json").is_file()
    assert main([*SWEEP, "--grid", "data_seed=2", "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["data_seed=2"]
    assert (out / "notes.txt").read_text() == "keep"
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"data_seed": [2]}
    # more values of the same fields extend the sweep: the finished run is kept as it is
    summary = (out / "runs" / "data_seed=2" / "summary.json").read_bytes()
    assert main([*SWEEP, "--grid", "data_seed=2,3", "--out", str(out)]) == 0
    assert (out / "runs" / "data_seed=2" / "summary.json").read_bytes() == summary


# --- faults 19, 20: --search ranges checked as they are parsed --------------------------------------


@pytest.mark.parametrize("search", ["lr=1e-3:inf", "dropout=0:5", "warmup_steps=-10:-1", "lr=nan:1"])
def test_tune_search_ranges_are_validated_at_parse_time(tmp_path, capsys, search):
    pytest.importorskip("optuna")
    out = tmp_path / "study"
    assert main([*TUNE, "--search", search, "--out", str(out)]) == 2
    _one_error_line(capsys, "--search", search.split("=")[0])
    assert not out.exists()


# --- fault 24: seeds have limits, checked where they are parsed -------------------------------------


@pytest.mark.parametrize("flag", ["--seed", "--model-seed", "--data-seed", "--train-seed"])
@pytest.mark.parametrize("value", ["-5", "99999999999999999999999"])
def test_train_seed_limits_fail_at_parse_naming_the_flag(tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    argv = ["train", "--preset", "nanda-p113-fast", "--p", "23", "--d-model", "32", "--d-mlp", "64",
            "--n-heads", "2", "--d-head", "16", "--epochs", "1", "--no-progress"]  # fmt: skip
    assert main([*argv, flag, value, "--out", str(out)]) == 2
    _one_error_line(capsys, flag)
    assert not out.exists()


def test_seed_limits_in_config_and_set_and_tune(tmp_path, capsys):
    from grokinterp.config import RunConfig

    for name in ("model_seed", "data_seed", "train_seed"):
        for bad in (-1, 2**63):
            with pytest.raises(ValueError, match=name):
                RunConfig(**{name: bad})
        RunConfig(**{name: 2**63 - 1})
    assert main([*SWEEP, "--grid", "model_seed=1,-1", "--out", str(tmp_path / "sw")]) == 2
    _one_error_line(capsys, "model_seed")
    assert not (tmp_path / "sw").exists()
    pytest.importorskip("optuna")
    assert main([*TUNE, "--seed", "-5", "--out", str(tmp_path / "t")]) == 2
    _one_error_line(capsys, "--seed")
    assert not (tmp_path / "t").exists()


# --- fault 31: a Ray cluster that cannot be reached leaves no sweep folder ------------------------


def test_sweep_ray_bad_address_leaves_nothing(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "sw"
    assert main([*SWEEP, "--grid", "model_seed=1", "--backend", "ray", "--address", "x", "--out", str(out)]) == 2
    _one_error_line(capsys, "x")
    assert not out.exists()


# --- one more: a --search that names a field twice, or one that is never sampled -----------------------


@pytest.mark.parametrize(("search", "needle"), [("lr=1e-4:1e-3,lr=1e-2:1e-1", "twice"), ("grokfast_alpha", "grokfast")])
def test_tune_search_that_would_be_ignored_is_refused(tmp_path, capsys, search, needle):
    pytest.importorskip("optuna")
    out = tmp_path / "study"
    assert main([*TUNE, "--search", search, "--out", str(out)]) == 2
    _one_error_line(capsys, "--search", needle)
    assert not out.exists()
