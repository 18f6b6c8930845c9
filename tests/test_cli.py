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
        (["train", "--op", "pow", "--out", "X"], "unknown op 'pow'; choose one of: add"),
        # a group the toolkit does not know, or one too large, fails before anything is built
        (["train", "--op", "Q8", "--out", "X"], "or a group: S<n>, A<n>, D<n>, C<n>"),
        (["train", "--op", "S7", "--out", "X"], "S7 has 5040 elements"),
        (["train", "--op", "D600", "--out", "X"], "D600 has 1200 elements"),
        (["train", "--op", "S5", "--p", "97", "--out", "X"], "p must be 120 (got p=97)"),
        (["train", "--op", "S5", "--arch", "transformer", "--mlp-embed", "separate", "--out", "X"], "needs arch 'mlp'"),
        (["analyze", "does/not/exist", "--key-irreps", ","], "expected irrep names"),
        (["train", "--preset", "nope", "--out", "X"], "invalid choice"),
        (["train", "--lr", "abc", "--out", "X"], "invalid float value"),
        # argparse parses --betas with RunConfig.parse_field("betas", ...) and names the flag
        (["train", "--betas", "0.9", "--out", "X"], "argument --betas: betas must be two numbers like 0.9,0.98"),
        (["train"], "needs --out"),
        (["train", "--resume", "does/not/exist"], "no such run directory"),
        (["analyze", "does/not/exist"], "no such run directory"),
        (["presets", "nope"], "unknown preset"),
        (["train", "--p", "23", "--lr", "inf", "--out", "X"], "lr must be a finite number"),
        (["train", "--p", "23", "--lr", "nan", "--out", "X"], "lr must be a finite number"),
        (["train", "--p", "23", "--out", "afile"], "is a file, not a folder"),
        (["train", "--p", "23", "--out", "afile/X"], "afile is a file"),
        (["train", "--p", "23", "--from-checkpoint", "--out", "X"], "--from-checkpoint goes with --resume"),
        (["plot", "afile", "--out", "X"], "afile is a file, not a run directory"),
        (["export", "does/not/exist", "--out", "X"], "no such run directory"),
        (["tune", "--max-epochs", "0", "--out", "X"], "max_epochs must be at least 1"),
        (["sweep", "--grid", "lr=1e-3", "--out", "afile"], "afile"),
    ],
)
def test_bad_input_gives_one_clear_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
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


def _trained(tmp_path, capsys, *extra):
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--p", "11", "--d-mlp", "32", "--epochs", "20", "--checkpoint-every", "10"]
    rc, out, err = _run([*argv, "--no-progress", *extra], capsys)
    assert rc == 0, err
    return run


def test_force_removes_only_run_files(tmp_path, capsys):
    proj = tmp_path / "proj"
    (proj / "paper").mkdir(parents=True)
    (proj / "config.json").write_text("{}")
    (proj / "paper" / "main.tex").write_text("x")
    rc, _, err = _run(["train", "--p", "11", "--epochs", "5", "--out", str(proj), "--force"], capsys)
    assert rc == 2 and "did not write (paper/)" in err and (proj / "paper" / "main.tex").read_text() == "x"
    # --force replaces a previous run: every file of it, and nothing else is there afterwards
    run = _trained(tmp_path, capsys)
    (run / ".config.json.abc.grokinterp-tmp").write_text("stale")  # a killed writer's leftover (C.TMP_PATTERN)
    rc, _, err = _run(["train", "--p", "11", "--epochs", "5", "--out", str(run), "--force", "--no-progress"], capsys)
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 5
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch_000000.safetensors",
        "epoch_000005.safetensors",
    ]
    assert not list(run.glob("*.grokinterp-tmp"))


def test_resume_refuses_conflicts_and_records_extensions(tmp_path, capsys):
    run = _trained(tmp_path, capsys)
    for argv, needle in [
        (["--lr", "0.5"], "--lr cannot change"),
        (["--p", "13"], "--p cannot change"),
        (["--out", "elsewhere"], "drop --out"),
        (["--epochs", "10"], "below the run's current epoch 20"),
    ]:
        rc, _, err = _run(["train", "--resume", str(run), *argv], capsys)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    rc, out, _ = _run(["train", "--resume", str(run), "--epochs", "30", "--stop-acc", "0.5", "--no-progress"], capsys)
    assert rc == 0 and "epoch 30" in out
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["epochs"] == 30 and doc["config"]["stop_acc"] == 0.5
    assert doc["changes"][-1]["changes"] == {"epochs": [20, 30], "stop_acc": [None, 0.5]}
    # a lost state file is met with the non-destructive way on, never --force
    (run / "state.safetensors").unlink()
    rc, _, err = _run(["train", "--resume", str(run), "--epochs", "40"], capsys)
    assert rc == 2 and "--from-checkpoint" in err and "--force" not in err


def test_seed_sets_all_three_and_none_clears_a_preset_value(tmp_path, capsys):
    run = _trained(tmp_path, capsys, "--seed", "7", "--data-seed", "3")
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert (cfg["model_seed"], cfg["data_seed"], cfg["train_seed"]) == (7, 3, 7)
    from grokinterp.cli import build_parser, config_from_args

    argv = ["train", "--preset", "nanda-p113-fast", "--stop-acc", "none", "--batch-size", "none"]
    cfg = config_from_args(build_parser(argv).parse_args(argv))
    assert cfg.stop_acc is None and cfg.batch_size is None and cfg.lr == 5e-3


def test_help_is_light_documents_fields_and_shows_the_presets_values():
    import subprocess
    import sys

    code = "import sys; from grokinterp.cli import main; main(['--help'])"
    res = subprocess.run(
        [sys.executable, "-c", code + "\nprint('torch' in sys.modules)"], capture_output=True, text=True
    )
    code = "import sys\nfrom grokinterp.cli import build_parser\nbuild_parser(['train'])\nprint('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr  # --help never imports torch
    from grokinterp.cli import build_parser

    text = build_parser(["train", "--preset", "nanda-p113-fast"]).format_help()
    sub = build_parser(["train", "--preset", "nanda-p113-fast"])._subparsers._group_actions[0].choices["train"]
    help_text = sub.format_help()
    assert "AdamW learning rate [0.005]" in help_text and "[0.99]" in help_text  # the fast preset's values
    assert "add (a + b)" in " ".join(help_text.split()) and "x2_y" in help_text and "S<n>" in help_text
    assert text


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("grokinterp ")


def test_progress_bar_is_quiet_off_a_terminal(tmp_path):
    import subprocess
    import sys

    code = (
        "from grokinterp.training.trainer import train\nfrom grokinterp.config import RunConfig\n"
        "train(RunConfig(p=7, d_mlp=16, epochs=300), progress=True)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # stderr is a pipe
    assert res.returncode == 0 and "epoch/s" not in res.stderr and "it/s" not in res.stderr, res.stderr[-500:]


def test_analyze_says_no_verdict_and_why_for_a_model_that_learned_nothing(tmp_path, capsys):
    """Issue 18: a run of 20 epochs (test accuracy ~0.05) gets no clock/pizza verdict on the CLI
    line, with analysis.json's reason; the values are still shown. The key rule is the default
    "auto", and the line says what it chose and why."""
    run = tmp_path / "run"
    rc, _, _ = _run(["train", "--out", str(run), "--p", "23", "--epochs", "20", "--checkpoint-every", "10",
                     "--no-progress"], capsys)  # fmt: skip
    assert rc == 0
    rc, out, _ = _run(["analyze", str(run), "--no-progress"], capsys)
    assert rc == 0
    a = json.loads((run / "analysis.json").read_text())
    cp = a["clock_pizza"]
    assert a["final"]["test_acc"] < 0.99 and cp["verdict"] is None
    line = next(x for x in out.splitlines() if "clock/pizza" in x)
    why = (cp.get("verdict_reason") or cp["reason"]).removeprefix("no verdict: ")
    assert "-> no verdict: " + why in line and "-> clock" not in line and "gradient symmetricity" in line
    assert a["key_rule"]["requested"] == "auto" and a["key_rule"]["used"] == "clustered"
    assert "key rule auto -> clustered: 1-layer transformer" in out


def test_llc_nbeta_flag_takes_devinterps_rule():
    import math

    from grokinterp.analysis.llc import LLCConfig
    from grokinterp.cli import build_parser

    args = build_parser(["analyze"]).parse_args(
        ["analyze", "RUN", "--llc-nbeta", "devinterp", "--llc-batch-size", "64"]
    )
    cfg = LLCConfig(nbeta=args.llc_nbeta, batch_size=args.llc_batch_size)
    assert args.llc_nbeta == "devinterp" and cfg.resolved_nbeta(3830) == pytest.approx(64 / math.log(64))
    assert build_parser(["analyze"]).parse_args(["analyze", "RUN", "--llc-nbeta", "12"]).llc_nbeta == 12.0
    assert build_parser(["analyze"]).parse_args(["analyze", "RUN"]).key_rule == "auto"
    help_text = build_parser(["analyze"])._subparsers._group_actions[0].choices["analyze"].format_help()
    assert "'devinterp' = B/log(B)" in " ".join(help_text.split()) and "devinterp's default_nbeta(n)" not in help_text


def test_llc_nbeta_flag_bad_value_names_the_rules(capsys):
    rc, _, err = _run(["analyze", "RUN", "--llc-nbeta", "n"], capsys)
    assert rc == 2 and "argument --llc-nbeta: nbeta takes a number, train or devinterp" in err


def _ensemble(tmp_path, capsys, seeds="0-1", *extra):
    ens = tmp_path / "ENS"
    argv = ["train", "--seeds", seeds, "--out", str(ens), "--p", "11", "--d-mlp", "32", "--d-model", "32",
            "--epochs", "30", "--eval-every", "10", "--checkpoint-every", "10", "--no-progress", *extra]  # fmt: skip
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    return ens, out


def test_train_seeds_prints_member_events_off_a_terminal(tmp_path, capsys):
    _, out = _ensemble(tmp_path, capsys, "0-1", "--stop-acc", "0.01", "--stop-patience", "2")
    lines = out.splitlines()
    for s in (0, 1):  # test acc >= 0.01 (above 0: near chance, 1/11): "grokked" early, stopped two evaluations later
        assert f"seed={s}: test acc " in out and any(x.startswith(f"seed={s}: stopped early at epoch ") for x in lines)
    assert lines.index(next(x for x in lines if x.startswith("seed=0: test acc"))) < lines.index(
        next(x for x in lines if x.startswith("seed=0: stopped early"))
    )


def test_analyze_plot_report_take_an_ensemble_folder(tmp_path, capsys):
    ens, out = _ensemble(tmp_path, capsys)
    assert "seed=0: finished at epoch 30" in out and "seed=1: finished at epoch 30" in out
    rc, out, err = _run(["analyze", str(ens), "--no-progress"], capsys)
    assert rc == 0, err
    study = json.loads((ens / "study.json").read_text())
    assert [m["seed"] for m in study["members"]] == [0, 1] and "2 analysed, 0 up to date" in out
    for s in (0, 1):
        a = json.loads((ens / f"seed={s}/analysis.json").read_text())
        assert study["members"][s]["key_freqs"] == a["key_freqs"] and f"seed={s}: finished at 30" in out
    mtime = (ens / "seed=0/analysis.json").stat().st_mtime_ns
    rc, out, _ = _run(["plot", str(ens), "--out", str(tmp_path / "figs"), "--format", "html"], capsys)
    assert rc == 0 and sorted(p.name for p in (tmp_path / "figs").glob("*.html")) == [
        "grokking_epochs.html", "key_frequencies.html", "loss_bands.html"]  # fmt: skip
    rc, out, _ = _run(["report", str(ens), "--out", str(tmp_path / "study.html"), "--no-progress"], capsys)
    assert rc == 0 and "<td>not grokked</td>" in (tmp_path / "study.html").read_text()
    rc, out, _ = _run(["analyze", str(ens), "--no-progress"], capsys)
    assert rc == 0 and "0 analysed, 2 up to date and reused" in out
    assert (ens / "seed=0/analysis.json").stat().st_mtime_ns == mtime  # reused, never rewritten
    # an analysed ensemble can still be replaced with --force; its study goes with it
    _ensemble(tmp_path, capsys, "0-1", "--force")
    assert not (ens / "study.json").exists()


def test_ensemble_commands_name_the_bad_folder_or_member(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    for cmd in (["analyze", str(plain)], ["plot", str(plain), "--out", str(tmp_path / "f")],
                ["report", str(plain), "--out", str(tmp_path / "r.html")]):  # fmt: skip
        rc, _, err = _run(cmd, capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert "neither a run directory (no config.json) nor an ensemble folder" in err
    ens, _ = _ensemble(tmp_path, capsys)
    (ens / "seed=1/summary.json").unlink()  # half-written: its training never ended
    rc, _, err = _run(["analyze", str(ens)], capsys)
    assert rc == 2 and "member seed=1 cannot be studied: no summary.json" in err and "Traceback" not in err
    assert not (ens / "study.json").exists()
