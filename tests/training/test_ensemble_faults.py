"""Issue 17, the ensemble faults: ``train --seeds`` and ensemble ``--resume`` check everything
before the first write, leave nothing half-made, refuse what they would mix or lose (one line,
exit 2), and carry each member's elapsed time forward."""

from __future__ import annotations

import json
import os
import signal

import pytest

from grokinterp.cli import main
from grokinterp.config import RunConfig
from grokinterp.io import rundir
from grokinterp.training.ensemble import EnsembleTrainer, parse_seeds
from grokinterp.training.trainer import Trainer

S = ["--preset", "nanda-p113-fast", "--p", "23", "--d-model", "32", "--d-mlp", "64", "--n-heads", "2"]
S += ["--d-head", "16", "--no-progress"]
SMALL = RunConfig(p=13, d_model=32, n_heads=2, d_head=16, d_mlp=64, epochs=10, eval_every=5, checkpoint_every=5)


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = main(["train", *argv])
    err = capsys.readouterr().err
    return rc, err


def _one_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("grokinterp: error:"), err
    for n in needles:
        assert n in err, err


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def ensemble(tmp_path, capsys):
    out = tmp_path / "ens"
    rc, err = _cli(capsys, *S, "--seeds", "0-1", "--epochs", "4", "--eval-every", "2", "--out", str(out))
    assert rc == 0, err
    return out


# ---------------------------------------------------------------- fault 6: a failed start
def test_failed_ensemble_start_leaves_no_half_made_member(tmp_path, capsys):
    out = tmp_path / "ens"
    rc, err = _cli(capsys, *S, "--out", str(out / "seed=1"), "--epochs", "2")
    assert rc == 0, err
    before = _snapshot(out)
    rc, err = _cli(capsys, *S, "--seeds", "7,8,1", "--out", str(out), "--epochs", "2")
    _one_error(rc, err)
    assert sorted(p.name for p in out.iterdir()) == ["seed=1"]
    assert _snapshot(out) == before


def test_create_validates_every_member_before_writing(tmp_path):
    taken = tmp_path / "c"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    dirs = [tmp_path / "a", tmp_path / "b", taken]
    cfgs = [SMALL.replace(model_seed=s) for s in range(3)]
    with pytest.raises(ValueError, match="not empty"):
        EnsembleTrainer.create(cfgs, dirs)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert (taken / "mine.txt").read_text() == "keep"


def test_seed_count_is_limited_at_parse_time(tmp_path, capsys):
    with pytest.raises(ValueError, match="at most 4096"):
        parse_seeds("0-100000")
    assert len(parse_seeds("0-4095")) == 4096
    assert parse_seeds("9223372036854775807") == [2**63 - 1]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "4096" in capsys.readouterr().out


# ---------------------------------------------------------------- fault 7: a refused resume changes nothing
def test_refused_ensemble_resume_rewrites_no_config(tmp_path, capsys):
    ens = tmp_path / "ens"
    for s, p in ((0, 13), (1, 17)):
        Trainer(SMALL.replace(p=p, model_seed=s), ens / f"seed={s}").run(progress=False)
    before = _snapshot(ens)
    rc, err = _cli(capsys, "--resume", str(ens), "--epochs", "20")
    _one_error(rc, err, "must share p")
    assert _snapshot(ens) == before


# ---------------------------------------------------------------- fault 12: elapsed carried forward
def test_ensemble_resume_carries_elapsed_forward(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    EnsembleTrainer.create([SMALL, SMALL.replace(model_seed=1)], dirs).run(progress=False)
    ens = EnsembleTrainer.resume(dirs, epochs=20)
    for m in ens.members:
        m.elapsed += 1000.0  # as if the first part had taken 1000 s
    results = ens.run(progress=False)
    for d, r in zip(dirs, results, strict=True):
        later = [row["elapsed"] for row in rundir.read_metrics(d) if row["epoch"] > 10]
        assert later and min(later) >= 1000.0
        assert r.wall_clock_s >= 1000.0
        assert rundir.read_summary(d)["wall_clock_s"] >= 1000.0


# ---------------------------------------------------------------- fault 13: --seeds parsed strictly
@pytest.mark.parametrize("bad", ["", "0,5-2", "-1", "0,,3", "9223372036854775808", "1,1"])
def test_bad_seeds_are_refused_before_anything_is_made(tmp_path, capsys, bad):
    out = tmp_path / "ens"
    rc, err = _cli(capsys, *S, "--seeds", bad, "--out", str(out), "--epochs", "2")
    _one_error(rc, err, "--seeds")
    assert not out.exists()


def test_parse_seeds_limits():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    for bad in ("", " ", "0,5-2", "-1", "0,,1", "1-", "9223372036854775808"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


# ---------------------------------------------------------------- fault 14: resume refuses new-run flags
@pytest.mark.parametrize(
    "extra,flag",
    [(["--seeds", "0-1"], "--seeds"), (["--preset", "nanda-p113"], "--preset"), (["--out", "X", "--force"], "--out")],
)
def test_ensemble_resume_refuses_new_run_flags(ensemble, capsys, extra, flag):
    before = _snapshot(ensemble)
    rc, err = _cli(capsys, "--resume", str(ensemble), "--epochs", "6", *extra)
    _one_error(rc, err, flag, "--resume")
    assert _snapshot(ensemble) == before


# ---------------------------------------------------------------- fault 17: --seeds into a used folder
def test_seeds_refuses_a_folder_that_is_not_an_ensemble(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    for force in ([], ["--force"]):
        rc, err = _cli(capsys, *S, "--seeds", "0-1", "--out", str(out), "--epochs", "2", *force)
        _one_error(rc, err, "notes.txt")
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    run = tmp_path / "run"
    assert _cli(capsys, *S, "--out", str(run), "--epochs", "2")[0] == 0
    before = _snapshot(run)
    for force in ([], ["--force"]):
        rc, err = _cli(capsys, *S, "--seeds", "0-1", "--out", str(run), "--epochs", "2", *force)
        _one_error(rc, err, "single run")
        assert _snapshot(run) == before


def test_force_replaces_exactly_an_earlier_ensemble(ensemble, capsys):
    rc, err = _cli(capsys, *S, "--seeds", "0-1", "--out", str(ensemble), "--epochs", "2")
    _one_error(rc, err, "--force")
    (ensemble / "seed=1" / "mine.txt").write_text("keep")
    before = _snapshot(ensemble)
    rc, err = _cli(capsys, *S, "--seeds", "5", "--out", str(ensemble), "--epochs", "2", "--force")
    _one_error(rc, err, "mine.txt")
    assert _snapshot(ensemble) == before
    (ensemble / "seed=1" / "mine.txt").unlink()
    rc, err = _cli(capsys, *S, "--seeds", "1,5", "--out", str(ensemble), "--epochs", "2", "--force")
    assert rc == 0, err
    assert sorted(p.name for p in ensemble.iterdir()) == ["seed=1", "seed=5"]  # no member of the old one left
    assert json.loads((ensemble / "seed=1" / "config.json").read_text())["config"]["epochs"] == 2


# ---------------------------------------------------------------- fault 18: --seeds without --out
def test_seeds_without_out_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = _cli(capsys, *S, "--seeds", "0-1", "--epochs", "2")
    _one_error(rc, err, "--out")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- found: Ctrl-C in the first evaluation
def test_ctrl_c_during_the_first_evaluation_leaves_resumable_members(tmp_path, monkeypatch):
    dirs = [tmp_path / "a", tmp_path / "b"]
    ens = EnsembleTrainer.create([SMALL, SMALL.replace(model_seed=1)], dirs)
    evaluate = EnsembleTrainer._evaluate

    def interrupted(self, *a, **k):
        monkeypatch.setattr(EnsembleTrainer, "_evaluate", evaluate)
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(self, *a, **k)

    monkeypatch.setattr(EnsembleTrainer, "_evaluate", interrupted)
    try:
        results = ens.run(progress=False)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C in the first evaluation escaped and left the members without a resume state")
    assert all(r.interrupted and r.final_epoch == 0 for r in results)
    for d in dirs:
        assert (d / "state.safetensors").is_file()
    results = EnsembleTrainer.resume(dirs).run(progress=False)
    assert [r.status for r in results] == ["finished", "finished"]
