import json
import os
import sys

import pandas as pd
import pytest

from grokinterp.config import RunConfig

optuna = pytest.importorskip("optuna")

from grokinterp.cli import main  # noqa: E402
from grokinterp.training.tune import (  # noqa: E402
    SEARCH_SPACE,
    parse_search,
    prune_callback,
    run_tune,
    sample_params,
    score,
    trial_config,
    wandb_callback,
)

# p=23 at 60% train groks in about 150-200 epochs with lr ~3e-3, wd ~3 (1-2 s per trial). A study's
# trials stop when they grok; MAX_EPOCHS leaves a 2x margin, as the epoch moves with the CPU's
# float32 rounding (tests/conftest.py).
MAX_EPOCHS = 400
BASE = RunConfig(p=23, train_frac=0.6, model_seed=0, lr=3e-3, wd=3.0, epochs=300, eval_every=10, device="cpu")
SEARCH = "lr=2e-3:5e-3,wd=2:5"


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_three_trial_study_writes_a_valid_best_config(tmp_path):
    out = tmp_path / "study"
    seen = []
    res = run_tune(BASE, out, trials=3, max_epochs=MAX_EPOCHS, search=SEARCH, seed=0, on_trial=seen.append)
    assert [t.number for t in seen] == [0, 1, 2]
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and set(trials["state"]) == {"COMPLETE"}
    assert {"params_lr", "params_wd", "value", "user_attrs_grokking_epoch"} <= set(trials.columns)
    assert trials["params_lr"].between(2e-3, 5e-3).all() and trials["params_wd"].between(2, 5).all()
    best = json.loads((out / "best.json").read_text())
    cfg = RunConfig.from_dict(best["config"])  # a valid RunConfig
    assert cfg == res.best_config
    assert cfg.lr == best["params"]["lr"] and cfg.wd == best["params"]["wd"]
    assert cfg.epochs == MAX_EPOCHS and cfg.stop_acc == 0.99 and cfg.p == 23
    assert best["value"] == trials["value"].min() and best["reached_target"], "no trial grokked"
    # training the best config reproduces the best trial exactly
    from grokinterp.training.trainer import Trainer

    assert Trainer(cfg).run(progress=False).grokking_epoch == best["grokking_epoch"] == best["value"]
    # re-running continues the stored study: already 3 finished trials, nothing to do
    again = run_tune(BASE, out, trials=3, max_epochs=MAX_EPOCHS, search=SEARCH, seed=0)
    assert len(again.study.trials) == 3
    with pytest.raises(ValueError, match=r"different settings \(target_acc\); use a new --out"):
        run_tune(BASE, out, trials=4, target_acc=0.95, max_epochs=MAX_EPOCHS, search=SEARCH)


class _PruneAfter(optuna.trial.FixedTrial):
    """A stand-in trial whose pruner says 'prune' once it has seen ``n`` reports."""

    def __init__(self, params, n):
        super().__init__(params)
        self.n, self.reports = n, []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return len(self.reports) >= self.n


def test_prune_callback_stops_training_with_trial_pruned():
    from grokinterp.training.trainer import Trainer

    trial = _PruneAfter({}, n=3)
    trainer = Trainer(BASE)
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 30"):
        trainer.run(progress=False, callback=prune_callback(trial))
    assert [s for s, _ in trial.reports] == [10, 20, 30]
    assert trial.reports[-1][1] == trainer.metrics[-1]["test_loss"]
    assert trainer.epoch == 30  # stopped right there


def test_pruned_trials_in_a_study(tmp_path):
    pruner = optuna.pruners.ThresholdPruner(upper=1e-9)  # every trial is pruned at its first report
    res = run_tune(BASE, tmp_path, trials=2, max_epochs=300, search=SEARCH, pruner=pruner)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["state"]) == ["PRUNED", "PRUNED"]
    assert list(trials["user_attrs_pruned_epoch"]) == [10, 10]
    assert res.best is None and not (tmp_path / "best.json").exists()


def test_search_space_and_score():
    space = parse_search("lr,wd,grokfast")
    assert list(space) == ["lr", "wd", "grokfast"] and space["lr"] == SEARCH_SPACE["lr"]
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (3e-4, 1e-2, True)
    assert (space["wd"].low, space["wd"].high, space["wd"].log) == (0.1, 10.0, True)
    custom = parse_search("lr=1e-4:1e-3,grokfast=none|ema")
    assert (custom["lr"].low, custom["lr"].high) == (1e-4, 1e-3) and custom["grokfast"].choices == ("none", "ema")
    for spec, needle in [
        ("lr,batch", "cannot search 'batch'"),
        ("lr=1:x", "lr range must be LOW:HIGH"),
        ("wd=0:1", r"LOW > 0 \(log scale\)"),
        ("grokfast=none|fast", "grokfast must be one of"),
        ("", "at least one field"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_search(spec)
    # grokfast settings are sampled only when grokfast is on
    full = parse_search("grokfast,grokfast_alpha,grokfast_window")
    assert sample_params(optuna.trial.FixedTrial({"grokfast": "none"}), full, BASE) == {"grokfast": "none"}
    params = sample_params(optuna.trial.FixedTrial({"grokfast": "ema", "grokfast_alpha": 0.9}), full, BASE)
    assert params == {"grokfast": "ema", "grokfast_alpha": 0.9}
    cfg = trial_config(BASE, params, 0.95, 500)
    assert (cfg.grokfast, cfg.epochs, cfg.stop_acc, cfg.stop_patience) == ("ema", 500, 0.95, 1)
    assert score(170, 1.0, 300) == 170
    assert 300 < score(None, 0.9, 300) < score(None, 0.5, 300) <= 600


def test_missing_optuna_gives_one_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(ValueError, match=r"install with pip install 'grokinterp\[tune\]'"):
        run_tune(BASE, tmp_path / "x", trials=1)
    assert not (tmp_path / "x").exists()


def test_missing_wandb_gives_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ValueError, match="--wandb needs wandb; install with pip install wandb"):
        run_tune(BASE, tmp_path / "x", trials=1, use_wandb=True)


def test_wandb_callback_logs_numeric_metrics_by_epoch():
    class FakeRun:
        def __init__(self):
            self.logged = []

        def log(self, data, step):
            self.logged.append((step, data))

    run = FakeRun()
    wandb_callback(run)(None, {"epoch": 20, "step": 20, "train_loss": 0.5, "test_acc": 0.25, "note": "x"})
    assert run.logged == [(20, {"step": 20, "train_loss": 0.5, "test_acc": 0.25})]


def test_wandb_offline_writes_inside_out_dir(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # no credentials: offline must not need any
    out = tmp_path / "wb"
    res = run_tune(BASE, out, trials=1, max_epochs=300, search=SEARCH, use_wandb=True)
    assert res.best is not None
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (data,) = runs[0].glob("run-*.wandb")
    assert b"test_loss" in data.read_bytes() and b"grokking_epoch" in data.read_bytes()
    assert "WANDB_MODE" not in os.environ  # the offline setting does not leak out


@pytest.mark.parametrize(
    ("argv", "needle", "hide_optuna"),
    [
        (["--search", "lr,depth"], "cannot search 'depth'", False),
        (["--search", "lr", "--set", "lr=1e-3"], "lr given in both --search and --set", False),
        (["--target-acc", "1.5"], "target_acc must be in (0, 1]", False),
        (["--trials", "0"], "trials must be at least 1", False),
        ([], "tune needs optuna; install with pip install 'grokinterp[tune]'", True),
    ],
)
def test_cli_bad_input_gives_one_clear_line(argv, needle, hide_optuna, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if hide_optuna:
        monkeypatch.setitem(sys.modules, "optuna", None)
    rc = main(["tune", "--out", "X", *argv])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("grokinterp: error:"), err
    assert needle in lines[0]
    assert not (tmp_path / "X").exists()


def test_cli_tune(capsys, tmp_path):
    out = tmp_path / "cli"
    argv = ["tune", "--preset", "nanda-p113", "--trials", "1", "--max-epochs", str(MAX_EPOCHS), "--out", str(out)]
    argv += ["--search", SEARCH, "--set", "p=23", "--set", "train_frac=0.6", "--set", "model_seed=0"]
    argv += ["--set", "eval_every=10", "--set", "device=cpu"]
    rc = main(argv)
    stdout, _ = capsys.readouterr()
    assert rc == 0, stdout
    assert "trial 0: reached 0.99 at epoch" in stdout and "best: trial 0" in stdout
    assert RunConfig.from_dict(json.loads((out / "best.json").read_text())["config"]).p == 23
