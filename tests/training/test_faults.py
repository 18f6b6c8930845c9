"""Fault injection: kill -9 at random moments, two writers, corrupt and truncated files, Ctrl-C with
early stopping, divergence, stale analysis. Every case must end in an exact resume or one clear line,
never a corrupt run directory. Budget: well under a minute on 2 cores."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from grokinterp import constants as C
from grokinterp.cli import main
from grokinterp.config import RunConfig
from grokinterp.io import rundir
from grokinterp.training.trainer import Trainer

ROOT = Path(__file__).parents[2]
# Small and I/O heavy: a checkpoint every 2 epochs, so random kills often land inside a write.
CFG = RunConfig(p=13, d_model=32, n_heads=2, d_head=16, d_mlp=64, epochs=120, eval_every=1, checkpoint_every=2)
MODEL = ["--p", "13", "--d-model", "32", "--n-heads", "2", "--d-head", "16", "--d-mlp", "64"]
FLAGS = [*MODEL, "--epochs", "120", "--eval-every", "1", "--checkpoint-every", "2", "--no-progress"]
CHILD = (
    "import sys, torch; torch.set_num_threads(1)\n"
    "import grokinterp.training.trainer, grokinterp.cli\n"
    "print('ready', flush=True)\n"
    "sys.exit(grokinterp.cli.main(sys.argv[1:]))\n"
)


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]


def _child(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout.readline().strip() == b"ready"
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ref") / "run"
    result = Trainer(CFG, path).run(progress=False)
    return path, result


def test_kill_9_at_random_moments_then_resume_is_exact(tmp_path, reference):
    ref_dir, ref = reference
    run = tmp_path / "run"
    rng = random.Random(0)
    kills = 0
    for attempt in range(3):
        args = ["train", "--resume", str(run)] if attempt else ["train", "--out", str(run), *FLAGS]
        if attempt and not (run / C.STATE_FILE).exists():
            args = ["train", "--out", str(run), "--force", *FLAGS]  # killed before the first state
        proc = _child(args)
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2  # the runs were really cut short
    resumed = Trainer.resume(run).run(progress=False)
    assert not list(run.rglob(f"*{C.TMP_SUFFIX}"))  # stale temporary files were cleaned up
    assert _strip(rundir.read_metrics(run)) == _strip(rundir.read_metrics(ref_dir))
    assert rundir.checkpoint_epochs(run) == rundir.checkpoint_epochs(ref_dir)
    for name, tensor in ref.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_second_writer_gets_one_line_and_a_dead_writers_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _child(
        ["train", "--out", str(run), *MODEL, "--epochs", "100000", "--checkpoint-every", "5", "--no-progress"]
    )
    try:
        # Wait for a resume point past epoch 0 (the state is saved after each checkpoint, so a checkpoint
        # at epoch 10 means a state at epoch >= 5 exists): on a loaded
        # machine the child may take seconds to get there, and resuming at epoch 0 proves nothing.
        deadline = time.time() + 120
        while time.time() < deadline and not (
            (run / C.STATE_FILE).exists() and any(e >= 10 for e in rundir.checkpoint_epochs(run))
        ):
            time.sleep(0.05)
        for argv in (["train", "--resume", str(run)], ["train", "--out", str(run), "--force", *FLAGS]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "being written by another grokinterp process" in err[0]
            assert f"pid {proc.pid}" in err[0]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel dropped the dead writer's lock: resuming takes it over.
    t = Trainer.resume(run)
    assert t.epoch > 0
    t.lock.release()


def test_ctrl_c_between_evaluations_with_early_stopping_resumes_exactly(tmp_path):
    # The case: a forced evaluation at the interruption counted toward the stop streak.
    cfg = RunConfig(
        p=31, train_frac=0.6, lr=5e-3, wd=3.0, warmup_steps=10, d_model=64, d_head=16, d_mlp=256,
        epochs=3000, eval_every=10, checkpoint_every=50, stop_acc=0.99, stop_patience=11,
    )  # fmt: skip
    full = Trainer(cfg, tmp_path / "full").run(progress=False)
    assert full.stopped_early
    stop_at = full.grokking_epoch + 15  # inside the streak, between two evaluations
    t = Trainer(cfg, tmp_path / "part")
    step = t.train_step

    def interrupting_step(tokens, labels):
        if t.step == stop_at - 1:
            t.request_stop()  # what the SIGINT handler does
        return step(tokens, labels)

    t.train_step = interrupting_step
    part = t.run(progress=False)
    assert part.interrupted and part.final_epoch == stop_at
    resumed = Trainer.resume(tmp_path / "part").run(progress=False)
    assert resumed.final_epoch == full.final_epoch and resumed.stopped_early
    assert _strip(rundir.read_metrics(tmp_path / "part")) == _strip(rundir.read_metrics(tmp_path / "full"))


def test_corrupt_metrics_line_is_reported_and_later_rows_kept(tmp_path, caplog):
    run = tmp_path / "run"
    Trainer(CFG.replace(epochs=20), run).run(progress=False, max_epochs=10)
    lines = (run / C.METRICS_FILE).read_text().splitlines(keepends=True)
    lines[3] = '{"epoch": 3, "trai\n'
    (run / C.METRICS_FILE).write_text("".join(lines))
    rows = rundir.read_metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert "line 4 is corrupt" in caplog.text
    Trainer.resume(run).run(progress=False)  # resume keeps every good row
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [0, 1, 2, *range(4, 21)]


def test_metrics_are_strict_json_even_when_training_diverges(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(
        ["train", "--out", str(run), *MODEL, "--epochs", "100", "--lr", "100", "--eval-every", "5", "--no-progress"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and len(err) == 1 and "diverged" in err[0] and "lower the learning rate" in err[0]
    for line in (run / C.METRICS_FILE).read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    summary = json.loads((run / C.SUMMARY_FILE).read_text())
    assert summary["status"] == "diverged"
    last_good = summary["last_good_epoch"]
    assert last_good == rundir.checkpoint_epochs(run)[-1]
    from grokinterp.io.checkpoints import load_checkpoint

    for epoch in rundir.checkpoint_epochs(run):  # only finite weights were checkpointed
        weights = load_checkpoint(rundir.checkpoint_path(run, epoch)).state_dict
        assert all(torch.isfinite(v).all() for k, v in weights.items() if k.split(".")[-1].startswith("W_"))


def test_truncated_state_and_checkpoint_give_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(CFG.replace(epochs=10), run).run(progress=False)
    state = run / C.STATE_FILE
    state.write_bytes(state.read_bytes()[:100])
    assert main(["train", "--resume", str(run), "--epochs", "20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated" in err[0] and "--from-checkpoint" in err[0]
    assert main(["train", "--resume", str(run), "--epochs", "20", "--from-checkpoint", "--no-progress"]) == 0
    config = json.loads((run / C.CONFIG_FILE).read_text())
    assert "optimizer moments" in config["changes"][-1]["note"] and config["config"]["epochs"] == 20
    capsys.readouterr()
    ck = rundir.checkpoint_path(run, 10)
    ck.write_bytes(ck.read_bytes()[:50])
    assert main(["analyze", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch_000010.safetensors" in err[0]


def test_edited_config_or_foreign_checkpoint_gives_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(CFG.replace(epochs=4), run).run(progress=False)
    doc = json.loads((run / C.CONFIG_FILE).read_text())
    doc["config"]["d_mlp"] = 32
    (run / C.CONFIG_FILE).write_text(json.dumps(doc))
    assert main(["analyze", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit the config" in err[0]


def test_stale_temporary_files_are_removed_when_the_lock_is_taken(tmp_path):
    run = tmp_path / "run"
    Trainer(CFG.replace(epochs=4), run).run(progress=False, max_epochs=2)
    leftovers = [
        run / f".{C.STATE_FILE}.abc123{C.TMP_SUFFIX}",
        run / C.CHECKPOINT_DIR / f".epoch_000004.safetensors.x9{C.TMP_SUFFIX}",
    ]
    for f in leftovers:
        f.write_bytes(b"half")
    Trainer.resume(run).run(progress=False)
    assert not any(f.exists() for f in leftovers)


def test_resume_deletes_only_the_temporary_files_grokinterp_made(tmp_path, capsys):
    """A user's file whose name merely looks temporary survives ``--resume`` and stops ``--force``;
    a leftover of grokinterp's own writer (``C.TMP_PATTERN``) is still removed."""
    from grokinterp.io.files import atomic_write

    run = tmp_path / "run"
    Trainer(CFG.replace(epochs=4), run).run(progress=False, max_epochs=2)
    # The name the writer really gives its temporary file matches the pattern the cleanup removes.
    seen: list[str] = []
    atomic_write(run / "probe", lambda f: seen.extend(p.name for p in run.iterdir() if p.name.startswith(".probe.")))
    (run / "probe").unlink()
    assert len(seen) == 1 and re.match(C.TMP_PATTERN, seen[0]), seen
    users = [
        run / ".my.notes.tmp",
        run / f".{C.STATE_FILE}.backup.tmp",  # the shape of grokinterp's old temporary names
        run / C.CHECKPOINT_DIR / ".epoch_000004.safetensors.mine.tmp",
    ]
    for f in users:
        f.write_text("mine")
    ours = run / f".{C.STATE_FILE}.k2j4h1x9{C.TMP_SUFFIX}"
    ours.write_bytes(b"half")
    assert re.match(C.TMP_PATTERN, ours.name)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert all(f.read_text() == "mine" for f in users)
    assert not ours.exists()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--force", *FLAGS]) == 2
    assert ".my.notes.tmp" in capsys.readouterr().err
    assert all(f.read_text() == "mine" for f in users)


def test_plot_never_draws_stale_measures(tmp_path, caplog):
    from grokinterp.analysis.run_analysis import analyze_run
    from grokinterp.io.runs import load_run
    from grokinterp.viz import write_all_figures

    run = tmp_path / "run"
    Trainer(CFG.replace(epochs=8, eval_every=2, checkpoint_every=4), run).run(progress=False, max_epochs=4)
    analyze_run(run, progress=False)
    assert load_run(run).stale_reason is None
    Trainer.resume(run).run(progress=False)  # the run goes on past the analysis
    assert "up to epoch 4" in load_run(run).stale_reason
    write_all_figures(run, tmp_path / "figs", fmt="html")
    assert "analysing the run first" in caplog.text
    assert list(load_run(run).measures["epoch"]) == [0, 4, 8]


def test_plot_without_metrics_gives_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(CFG.replace(epochs=4), run).run(progress=False)
    (run / C.METRICS_FILE).unlink()
    assert main(["plot", str(run), "--out", str(tmp_path / "figs"), "--format", "html"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no metrics.jsonl" in err[0]
