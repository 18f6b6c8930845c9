"""Run identity and the run lock (issue 17): a file of a run is checked against config.json, a
file from another run or another config is refused with one line, and every writer (import
``--force``, ``analyze``) takes the run's lock first."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from grokinterp import constants as C
from grokinterp.backend import TL_MAJOR
from grokinterp.cli import main
from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError
from grokinterp.io import rundir
from grokinterp.io.files import load_tensors, save_tensors
from grokinterp.io.lock import RunLock
from grokinterp.io.runs import load_run
from grokinterp.training.trainer import Trainer

CFG = RunConfig(p=23, d_model=32, d_mlp=64, n_heads=2, d_head=16, epochs=20, eval_every=10, checkpoint_every=10)
ROOT_RUN = "checkpoints/nanda-p113"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs of the same config (A and B: different run ids), kept pristine."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("identity")
    for name in ("A", "B"):
        Trainer(CFG, base / name).run(progress=False)
    return base


@pytest.fixture
def run_a(runs, tmp_path):
    """A fresh copy of run A (and B beside it) for a test that damages it."""
    for name in ("A", "B"):
        shutil.copytree(runs / name, tmp_path / name)
    return tmp_path / "A"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _snapshot(run) -> dict[str, bytes]:
    return {
        str(f.relative_to(run)): f.read_bytes() for f in sorted(run.rglob("*")) if f.is_file() and f.name != C.LOCK_FILE
    }


# ---------------------------------------------------------------------------------------------- fault 1


@pytest.mark.skipif(TL_MAJOR >= 4, reason="exporting a TL-demo .pth needs TransformerLens 3.x")
def test_import_force_refuses_a_run_another_process_is_writing(run_a, tmp_path, capsys):
    demo = tmp_path / "demo.pth"
    assert main(["export", str(run_a.parent / "B"), "--out", str(demo)]) == 0
    capsys.readouterr()
    before = _snapshot(run_a)
    with RunLock(run_a):  # the trainer of run A holds its lock
        assert main(["import", str(demo), "--out", str(run_a), "--trust", "--force"]) == 2
        assert "being written by another grokinterp process" in _one_line(capsys)
    assert _snapshot(run_a) == before
    # Once nobody writes it, --force replaces it.
    assert main(["import", str(demo), "--out", str(run_a), "--trust", "--force"]) == 0


# ---------------------------------------------------------------------------------------------- fault 3


def test_state_file_of_another_run_is_refused(run_a, capsys):
    shutil.copy(run_a.parent / "B" / C.STATE_FILE, run_a / C.STATE_FILE)
    before = _snapshot(run_a)
    assert main(["train", "--resume", str(run_a), "--epochs", "30", "--no-progress"]) == 2
    err = _one_line(capsys)
    assert "belongs to another run" in err and C.STATE_FILE in err and C.CONFIG_FILE in err
    assert _snapshot(run_a) == before


def test_new_files_carry_the_run_identity(run_a):
    doc = json.loads((run_a / C.CONFIG_FILE).read_text())
    assert isinstance(doc["run_id"], str) and isinstance(doc["config_hash"], str)
    other = json.loads((run_a.parent / "B" / C.CONFIG_FILE).read_text())
    assert other["run_id"] != doc["run_id"] and other["config_hash"] == doc["config_hash"]
    for f in (C.SPLIT_FILE, C.STATE_FILE, f"{C.CHECKPOINT_DIR}/epoch_000010.safetensors"):
        meta = load_tensors(run_a / f)[1]
        assert (meta["run_id"], meta["config_hash"]) == (doc["run_id"], doc["config_hash"]), f


# ---------------------------------------------------------------------------------------------- fault 8


def test_hand_edited_op_is_refused_by_analyze_resume_and_the_api(run_a, capsys):
    doc = json.loads((run_a / C.CONFIG_FILE).read_text())
    doc["config"]["op"] = "sub"
    (run_a / C.CONFIG_FILE).write_text(json.dumps(doc))
    for argv in (["analyze", str(run_a), "--no-progress"], ["train", "--resume", str(run_a), "--epochs", "30"]):
        assert main(argv) == 2
        err = _one_line(capsys)
        assert "do not fit the config" in err and C.CONFIG_FILE in err, err
    with pytest.raises(RunDirError, match=r"op='add' there, 'sub' in config\.json"):
        load_run(run_a).model()


def _strip_identity(run) -> None:
    """Make ``run`` look like a run written before run identity (as checkpoints/nanda-p113)."""
    doc = json.loads((run / C.CONFIG_FILE).read_text())
    for k in ("run_id", "config_hash"):
        doc.pop(k)
    (run / C.CONFIG_FILE).write_text(json.dumps(doc))
    for f in [run / C.SPLIT_FILE, run / C.STATE_FILE, *(run / C.CHECKPOINT_DIR).iterdir()]:
        tensors, meta = load_tensors(f)
        save_tensors(f, tensors, {k: v for k, v in meta.items() if k not in ("run_id", "config_hash")})


def test_a_run_without_identity_loads_and_is_checked_by_its_stored_config(run_a):
    _strip_identity(run_a)
    run = load_run(run_a)
    assert len(run.dataset.train_indices) > 0 and run.model() is not None
    doc = json.loads((run_a / C.CONFIG_FILE).read_text())
    doc["config"]["op"] = "sub"
    (run_a / C.CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match="do not fit the config"):
        load_run(run_a).checkpoint(10)


def test_the_shipped_run_without_identity_keeps_loading():
    run = load_run(ROOT_RUN)
    assert len(run.dataset.test_indices) > 0
    for epoch in run.checkpoint_epochs[:: max(1, len(run.checkpoint_epochs) // 4)]:
        assert run.checkpoint(epoch).epoch == epoch


# ---------------------------------------------------------------------------------------------- fault 9


def test_checkpoint_copied_from_another_run_or_epoch_is_refused(run_a, capsys):
    name = f"{C.CHECKPOINT_DIR}/epoch_000010.safetensors"
    shutil.copy(run_a.parent / "B" / name, run_a / name)
    assert main(["analyze", str(run_a), "--no-progress"]) == 2
    err = _one_line(capsys)
    assert "epoch_000010.safetensors" in err and "belongs to another run" in err
    shutil.copy(run_a.parent / "B" / name, run_a.parent / "B" / f"{C.CHECKPOINT_DIR}/epoch_000015.safetensors")
    with pytest.raises(RunDirError, match="holds the weights of epoch 10, not 15"):
        load_run(run_a.parent / "B").checkpoint(15)


# ---------------------------------------------------------------------------------------------- fault 10


def test_missing_split_is_an_error_not_a_regenerated_split(run_a, capsys):
    (run_a / C.SPLIT_FILE).unlink()
    with pytest.raises(RunDirError, match=r"has no split\.safetensors"):
        _ = load_run(run_a).dataset
    assert main(["analyze", str(run_a), "--no-progress"]) == 2
    assert C.SPLIT_FILE in _one_line(capsys)
    assert not (run_a / C.MEASURES_FILE).exists()


# ---------------------------------------------------------------------------------------------- fault 26


def test_resume_of_a_folder_without_config_says_so(run_a, capsys):
    (run_a / C.CONFIG_FILE).unlink()
    assert main(["train", "--resume", str(run_a), "--epochs", "30"]) == 2
    err = _one_line(capsys)
    assert "no config.json" in err and "not a run directory" in err


# ---------------------------------------------------------------------------------------------- fault 30


def test_epoch_argument_is_validated_and_a_file_is_not_a_run(run_a):
    run = load_run(run_a)
    for bad in ("10", 10.0, True):
        with pytest.raises(TypeError, match=r"epoch must be an integer, one of 0, 10, 20"):
            run.model(bad)
    assert run.checkpoint(torch.tensor(10).numpy()[()]).epoch == 10  # numpy integers are integers
    with pytest.raises(RunDirError, match="is a file, not a run directory"):
        load_run(run_a / C.CONFIG_FILE)


# ---------------------------------------------------------------------------------------------- lock rule


def test_analyze_takes_the_run_lock(run_a, tmp_path, capsys):
    from grokinterp.analysis.run_analysis import analyze_run

    with RunLock(run_a):  # a trainer writes run A
        assert main(["analyze", str(run_a), "--no-progress"]) == 2
        assert "being written by another grokinterp process" in _one_line(capsys)
        assert not (run_a / C.MEASURES_FILE).exists()
        analyze_run(run_a, progress=False, write=False)  # reading needs no lock
    assert main(["analyze", str(run_a), "--no-progress"]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(empty), "--no-progress"]) == 2
    assert not any(empty.iterdir())  # no .lock left in a folder that is not a run


# ---------------------------------------------------------------------------------------------- one more


def test_llc_estimate_copied_from_another_epoch_or_run_is_refused(run_a):
    from grokinterp.analysis.llc import LLCEstimate, load_llc

    est = LLCEstimate(1.0, 0.1, [1.0], 1.0, 0.5, 2.0, 10, 100, [], [], [], {}, epoch=10)
    rundir.write_llc_estimate(run_a, 10, est)
    assert load_llc(run_a)[10].llc_mean == 1.0
    shutil.copy(rundir.llc_path(run_a, 10), rundir.llc_path(run_a, 20))
    with pytest.raises(RunDirError, match="estimate of epoch 10, not 20"):
        load_llc(run_a)
    other = run_a.parent / "B"
    (other / C.LLC_DIR).mkdir()
    shutil.copy(rundir.llc_path(run_a, 10), rundir.llc_path(other, 10))
    with pytest.raises(RunDirError, match="belongs to another run"):
        load_llc(other)
