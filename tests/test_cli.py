import json

import pytest

from grokinterp.cli import main


def _run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--p", "12", "--op", "div", "--out", "X"], "needs a prime p"),
        (["train", "--p", "1", "--out", "X"], "at least 2"),
        (["train", "--train-frac", "1.5", "--out", "X"], "train_frac must be in (0, 1)"),
        (["train", "--op", "pow", "--out", "X"], "unknown op 'pow'"),
        (["train", "--preset", "nope", "--out", "X"], "invalid choice"),
        (["train", "--lr", "abc", "--out", "X"], "invalid float value"),
        (["train", "--betas", "0.9", "--out", "X"], "--betas must be two numbers"),
        (["train"], "needs --out"),
        (["train", "--resume", "does/not/exist"], "not a run directory"),
        (["analyze", "does/not/exist"], "no such run directory"),
        (["presets", "nope"], "unknown preset"),
    ],
)
def test_bad_input_gives_one_clear_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(argv, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grokinterp: error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "X").exists()  # nothing was created


def test_train_resume_analyze_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--p", "23", "--epochs", "40", "--eval-every", "10", "--checkpoint-every", "20", "--no-progress"]
    rc, out, _ = _run(["train", "--out", str(run), "--lr", "3e-3", "--betas", "0.9,0.95", *common], capsys)
    assert rc == 0 and "epoch 40" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["beta2"] == 0.95 and cfg["config"]["lr"] == 3e-3 and cfg["config"]["p"] == 23
    assert "torch" in cfg["versions"] and "transformer-lens" in cfg["versions"]
    # an existing run is never overwritten without --force
    before = (run / "metrics.jsonl").read_text()
    rc, _, err = _run(["train", "--out", str(run), *common], capsys)
    assert rc == 2 and "--force" in err and (run / "metrics.jsonl").read_text() == before
    # resume with more epochs continues from the saved state
    rc, out, _ = _run(["train", "--resume", str(run), "--epochs", "60", "--no-progress"], capsys)
    assert rc == 0 and "epoch 60" in out
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(0, 61, 10))
    rc, out, _ = _run(["analyze", str(run), "--no-progress"], capsys)
    assert rc == 0 and "checkpoints analysed" in out
    analysis = json.loads((run / "analysis.json").read_text())
    assert analysis["n_checkpoints"] == 4 and len(analysis["phases"]["boundaries"]) == 3
    rc, _, err = _run(["analyze", str(run), "--key-freqs", "1,x"], capsys)
    assert rc == 2 and "comma-separated integers" in err


def test_presets_listing(capsys):
    rc, out, _ = _run(["presets"], capsys)
    assert rc == 0 and "nanda-p113" in out and "power-p97" in out
    rc, out, _ = _run(["presets", "nanda-p113"], capsys)
    assert json.loads(out)["d_mlp"] == 512


def test_power_preset_trains_from_cli(tmp_path, capsys):
    rc, out, _ = _run(
        [
            "train",
            "--preset",
            "power-p97",
            "--p",
            "23",
            "--epochs",
            "3",
            "--out",
            str(tmp_path / "pw"),
            "--no-progress",
        ],
        capsys,
    )
    assert rc == 0 and "epoch 3" in out
