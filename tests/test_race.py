"""benchmarks/race.py end to end on a tiny task with two trials per tuned method: one results row
per method and seed, a summary whose medians follow from those rows, the figure, and the tuned
recipe is the study's best trial."""

from __future__ import annotations

import csv
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks" / "race.py"

pytestmark = pytest.mark.slow


def _load():
    spec = importlib.util.spec_from_file_location("race", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_race_on_a_tiny_task(tmp_path, capsys, monkeypatch):
    race = _load()
    argv = ["--tasks", "11:0.6", "--methods", "fast-preset,adamw", "--trials", "2", "--eval-seeds", "2",
            "--max-epochs", "200", "--cleanup", "20", "--out", str(tmp_path)]  # fmt: skip
    assert race.main(argv) == 0
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seed"]) for r in rows] == [("fast-preset", "0"), ("fast-preset", "1"),
                                                        ("adamw", "0"), ("adamw", "1")]  # fmt: skip
    summary = (tmp_path / "summary.md").read_text()
    for method in ("fast-preset", "adamw"):
        mine = [r for r in rows if r["method"] == method]
        done = [float(r["epoch"]) for r in mine if r["grokked"] == "True"]
        cell = f"{statistics.median(done):.0f} (" if done else "none grokked"
        line = next(x for x in summary.splitlines() if x.startswith(f"| {method} |"))
        assert f"| {len(done)}/2 |" in line and cell in line
    assert json.loads(rows[0]["recipe"])["lr"] == 5e-3  # the fast preset's, not tuned
    best = json.loads((tmp_path / "p11-0.6" / "adamw" / "best.json").read_text())["config"]
    assert json.loads(rows[2]["recipe"])["lr"] == best["lr"] and json.loads(rows[2]["recipe"])["wd"] == best["wd"]
    assert (tmp_path / "race.png").stat().st_size > 1000 or (tmp_path / "race.html").exists()

    # Rerun: every seed comes from seeds.jsonl, nothing is trained again, and the rows are the same.
    def no_training(*args, **kwargs):
        raise AssertionError("an evaluation seed was trained again")

    monkeypatch.setattr(race, "evaluate_seed", no_training)
    assert race.main(argv) == 0
    with open(tmp_path / "results.csv") as f:
        assert list(csv.DictReader(f)) == rows

    # A tagged table of one method from the same studies and seeds, beside the first one.
    one = ["--methods", "adamw", "--eval-seeds", "1", "--tag", "one"]
    assert race.main(argv[:2] + argv[4:6] + argv[8:] + one) == 0
    with open(tmp_path / "results-one.csv") as f:
        assert list(csv.DictReader(f)) == rows[2:3]
    assert (tmp_path / "summary-one.md").exists() and "| fast-preset |" not in (tmp_path / "summary-one.md").read_text()
    with open(tmp_path / "results.csv") as f:
        assert list(csv.DictReader(f)) == rows  # the untagged table is left alone
    assert race.main([*argv, "--tag", "a b"]) == 2
    assert "--tag takes" in capsys.readouterr().out


def test_race_refuses_an_unknown_method(tmp_path, capsys):
    assert _load().main(["--methods", "adam", "--out", str(tmp_path)]) == 2
    assert "unknown method 'adam'" in capsys.readouterr().out


def test_circuit_cells_are_medians_over_grokked_seeds_or_say_why_not():
    race = _load()

    def row(grokked, keys, frac, rl):
        return race.SeedResult("t", "m", 0, grokked, 100 if grokked else None, 1.0, keys, frac, rl, 1.0, "{}")

    assert race.circuit_cells([]) == "n/a: none grokked | n/a | n/a"
    done = [row(True, 4, 0.5, 0.01), row(True, 2, 0.7, 0.03), row(True, 0, 0.0, float("nan"))]
    assert race.circuit_cells(done) == "2 | 0.50 | 0.02"  # the loss median skips the seed without keys
    assert race.circuit_cells([row(True, 0, 0.0, float("nan"))]) == "0 | 0.00 | n/a: no key frequencies"


def test_seeds_that_lost_0_99_again_are_counted_and_left_out_of_the_circuit():
    race = _load()

    def row(seed, final_acc, keys, frac):
        return race.SeedResult("t", "m", seed, True, 100, 1.0, keys, frac, 0.01, final_acc, '{"lr": 0.001}')

    # two seeds keep test accuracy >= 0.99 to the end; one reached it and collapsed to 0.02
    rows = [row(0, 1.0, 4, 0.8), row(1, 0.995, 2, 0.6), row(2, 0.02, 0, 0.0)]
    line = race.summary_table(rows, "t").splitlines()[-1]
    assert line.startswith("| m | 3/3 | 2/3 | 100 (100-100) |")
    assert "| 3 | 0.70 | 0.01 |" in line  # medians of the two that held, not of all three
    # the verdict ranks by seeds that kept 0.99 first: a faster method that lost it does not win
    fast = [race.SeedResult("t", "quick", i, True, 50, 1.0, 0, 0.0, 4.0, 0.02, "{}") for i in range(3)]
    text = race.verdict(rows + fast, "t")
    assert text.startswith("t: the winner is **m** (median 100 epochs to 0.99, 67% of seeds grokked and still")
    assert "sooner but keeping it on fewer seeds: quick (50 epochs, 0% kept)" in text
    collapsed = race.summary_table([row(0, 0.5, 1, 0.1)], "t").splitlines()[-1]
    assert "| 1/1 | 0/1 |" in collapsed and "n/a: none still at 0.99 | n/a | n/a" in collapsed


def test_an_interrupted_seed_is_not_kept(tmp_path, monkeypatch):
    """The trainer turns SIGINT/SIGTERM into a clean stop; the race must not cache that seed as a
    run that did not grok."""
    race = _load()
    real_run = race.Trainer.run

    def interrupted_run(self, *args, **kwargs):
        res = real_run(self, *args, **{**kwargs, "max_epochs": 3})  # stops as an interruption does
        assert res.status == "interrupted"
        return res

    monkeypatch.setattr(race.Trainer, "run", interrupted_run)
    argv = [
        "--tasks",
        "11:0.6",
        "--methods",
        "classic",
        "--eval-seeds",
        "1",
        "--max-epochs",
        "50",
        "--out",
        str(tmp_path),
    ]
    with pytest.raises(KeyboardInterrupt, match="classic seed 0 interrupted at epoch 3"):
        race.main(argv)
    assert not (tmp_path / "p11-0.6" / "classic" / "seeds.jsonl").exists()


def test_ensemble_shares_charge_each_interval_to_the_members_running_then():
    race = _load()
    # Two members: both run epochs 0-20 (clock 0, 4, 10), member 1 stops after epoch 20 and
    # member 0 runs to epoch 30 alone (clock 13).
    a = [{"epoch": 0, "elapsed": 0.0}, {"epoch": 10, "elapsed": 4.0}, {"epoch": 20, "elapsed": 10.0},
         {"epoch": 30, "elapsed": 13.0}]  # fmt: skip
    b = [{"epoch": 0, "elapsed": 0.0}, {"epoch": 10, "elapsed": 4.0}, {"epoch": 20, "elapsed": 10.0}]
    sa, sb = race.ensemble_shares([a, b])
    assert sa == {0: 0.0, 10: 2.0, 20: 5.0, 30: 8.0} and sb == {0: 0.0, 10: 2.0, 20: 5.0}
    assert sa[30] + sb[20] == 13.0  # the shares add up to the ensemble's clock


def test_an_ensemble_race_matches_single_runs_in_float64(tmp_path, monkeypatch):
    """--ensemble trains the seeds of fixed AdamW recipes as one ensemble: in float64 its epochs to
    0.99, final accuracies and circuits equal the single runs', the rows say which trained
    together, and a method the ensemble cannot train (perp-Grad) still trains alone."""
    race = _load()
    real = race.task_config
    monkeypatch.setattr(race, "task_config", lambda p, frac: real(p, frac).replace(dtype="float64"))
    # p = 23 with 80% training pairs: the fast preset groks seeds 0 and 1 by epoch ~150 in float64
    argv = ["--tasks", "23:0.8", "--methods", "fast-preset", "--eval-seeds", "2", "--max-epochs", "300",
            "--cleanup", "20"]  # fmt: skip
    assert race.main([*argv, "--out", str(tmp_path / "alone")]) == 0
    assert race.main([*argv, "--out", str(tmp_path / "together"), "--ensemble"]) == 0

    def rows(folder):
        with open(tmp_path / folder / "results.csv") as f:
            return list(csv.DictReader(f))

    alone, together = rows("alone"), rows("together")
    assert all(r["grokked"] == "True" for r in alone)  # the comparison covers grokked seeds
    for x, y in zip(alone, together, strict=True):
        assert (x["method"], x["seed"], x["grokked"], x["epoch"], x["n_keys"]) == (
            y["method"], y["seed"], y["grokked"], y["epoch"], y["n_keys"])  # fmt: skip
        assert float(y["final_test_acc"]) == pytest.approx(float(x["final_test_acc"]), abs=1e-12)
        assert (x["members"], y["members"]) == ("1", "2")
    summary = (tmp_path / "together" / "summary.md").read_text()
    grokked = {r["method"] for r in together if r["grokked"] == "True"}
    assert all("share of ensembles of 2" in line for line in summary.splitlines()
               if any(line.startswith(f"| {m} |") for m in grokked))  # fmt: skip
    assert race.ensemble_allows(race.task_config(11, 0.6)) and not race.ensemble_allows(
        race.task_config(11, 0.6).replace(orthograd=True)
    )
    # single-run keys are what they were before --ensemble existed: old seeds.jsonl stay valid
    cfg = race.task_config(11, 0.6)
    assert "ensemble" not in race.seed_key(cfg, 0, 300, 20) and '"ensemble": true' in race.seed_key(
        cfg, 0, 300, 20, True
    )
