"""An ensemble folder analysed as one study (grokinterp.analysis.study): per-seed values taken from
the members' own files, aggregates against independent computations, the reuse rule, bad folders."""

import json
import os
import statistics
from collections import Counter

import numpy as np
import pytest
import torch

from grokinterp.analysis.study import (
    MemberSummary,
    Study,
    ensemble_members,
    load_study,
    quantile_bands,
    stale_reason,
    study_ensemble,
)
from grokinterp.config import RunConfig
from grokinterp.errors import RunDirError

TINY = RunConfig(p=11, d_model=32, n_heads=2, d_head=16, d_mlp=32, epochs=40, eval_every=10, checkpoint_every=20,
                 device="cpu")  # fmt: skip


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """A trained three-seed ensemble folder (ENS/seed=S), analysed once as a study."""
    from grokinterp.training.ensemble import train_ensemble

    ens = tmp_path_factory.mktemp("study") / "ENS"
    seeds = [0, 3, 5]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfgs = [TINY.replace(model_seed=s, data_seed=s, train_seed=s) for s in seeds]
        train_ensemble(cfgs, [ens / f"seed={s}" for s in seeds], progress=False)
        study_ensemble(ens, progress=False)
    finally:
        torch.set_num_threads(threads)
    return ens


def _copy(ens, tmp_path):
    import shutil

    dst = tmp_path / "ENS"
    shutil.copytree(ens, dst)
    return dst


def test_study_file_holds_each_members_values_from_its_own_files(ensemble):
    doc = json.loads((ensemble / "study.json").read_text())
    study = load_study(ensemble)
    assert study is not None and study.seeds == [0, 3, 5] == [m["seed"] for m in doc["members"]]
    for m in study.members:
        run = ensemble / f"seed={m.seed}"
        summary = json.loads((run / "summary.json").read_text())
        analysis = json.loads((run / "analysis.json").read_text())
        assert m.grokking_epoch == summary["grokking_epoch"] and m.final_epoch == summary["final_epoch"] == 40
        assert m.status == summary["status"]
        assert m.final["test_loss"] == pytest.approx(summary["final"]["test_loss"], rel=1e-12)
        assert list(m.key_freqs) == analysis["key_freqs"]
        assert list(m.phase_boundaries) == analysis["phases"]["boundaries"]
        assert list(m.phase_reasons) == analysis["phases"]["reasons"]
        assert m.frac_explained == pytest.approx(analysis["frac_neurons_explained_final"])
        cp = analysis["clock_pizza"]
        assert m.verdict == cp.get("verdict")
        if m.verdict is None:  # the tiny models do not generalise: no verdict, and why
            assert m.verdict_text.startswith("no verdict: ") and len(m.verdict_text) > len("no verdict: ")
    # aggregates, independently from the members' files
    agg = doc["aggregates"]
    keys = Counter(
        k for s in (0, 3, 5) for k in json.loads((ensemble / f"seed={s}/analysis.json").read_text())["key_freqs"]
    )
    assert agg["key_freq_counts"] == {str(k): keys[k] for k in sorted(keys)}
    fracs = [json.loads((ensemble / f"seed={s}/analysis.json").read_text())["frac_neurons_explained_final"]
             for s in (0, 3, 5)]  # fmt: skip
    assert agg["frac_explained"]["median"] == pytest.approx(statistics.median(fracs))
    losses = [json.loads((ensemble / f"seed={s}/summary.json").read_text())["final"]["test_loss"] for s in (0, 3, 5)]
    assert agg["final_test_loss"]["median"] == pytest.approx(statistics.median(losses))
    assert agg["n_members"] == 3 and doc["options"]["threshold"] == 0.85
    assert Study.from_dict(doc) == study  # round trip


def test_grokking_epoch_quantiles_and_counts_closed_form():
    def member(seed, grok, keys, verdict):
        return MemberSummary(seed=seed, run=f"seed={seed}", status="finished", final_epoch=2000, grokking_epoch=grok,
                             phase_boundaries=(None, None, None), phase_reasons=("a", "b", "c"), key_freqs=keys,
                             key_rule="clustered", frac_explained=0.5, verdict=verdict,
                             verdict_text=verdict or "no verdict: x", final={"test_loss": 0.1})  # fmt: skip

    grok = [1000, 100, None, 300, 200, 400]
    members = tuple(member(s, g, (s % 3 + 1, 7), "clock" if g else None) for s, g in enumerate(grok))
    agg = Study(ensemble="E", members=members).aggregates()
    # five grokked epochs 100..400, 1000: linear quantiles at positions 1, 2, 3 are exact order statistics
    assert agg["grokking_epoch"] == {"min": 100, "q25": 200, "median": 300, "q75": 400, "max": 1000}
    assert agg["n_grokked"] == 5 and agg["not_grokked"] == [2]
    assert agg["key_freq_counts"] == {"1": 2, "2": 2, "3": 2, "7": 6}
    assert agg["verdict_counts"] == {"clock": 5, "no verdict": 1}
    none = Study(ensemble="E", members=(member(0, None, (), None),)).aggregates()
    assert none["grokking_epoch"] is None and none["key_freq_counts"] == {}


def test_quantile_bands_per_epoch_and_held_members():
    curves = {0: ([0, 10, 20], [4.0, 2.0, 1.0]), 1: ([0, 10], [6.0, 3.0]), 2: ([0, 10, 20], [5.0, 1.0, 0.5])}
    band = quantile_bands(curves)
    assert band["epoch"] == [0, 10, 20] and band["n"] == [3, 3, 2]
    assert band["q50"] == [5.0, 2.0, 0.75]
    assert band["q25"][1] == pytest.approx(np.quantile([2.0, 3.0, 1.0], 0.25))
    held = quantile_bands(curves, hold=[1])  # seed 1 stopped early: held at 3.0 at epoch 20
    assert held["n"] == [3, 3, 3] and held["q50"][2] == 1.0


def test_up_to_date_members_are_reused_and_stale_ones_reanalysed(ensemble, tmp_path):
    ens = _copy(ensemble, tmp_path)
    mtimes = {s: (ens / f"seed={s}/analysis.json").stat().st_mtime_ns for s in (0, 3, 5)}
    study, analysed = study_ensemble(ens, progress=False)
    assert analysed == []  # analysed once: never again
    assert {s: (ens / f"seed={s}/analysis.json").stat().st_mtime_ns for s in (0, 3, 5)} == mtimes
    # seed 3's run changed after its analysis (a newer last checkpoint): only it is re-analysed
    ckpt = ens / "seed=3/checkpoints/epoch_000040.safetensors"
    later = mtimes[3] + 10**9
    os.utime(ckpt, ns=(later, later))
    assert "changed" in stale_reason(ens / "seed=3", dict(study.options))
    _, analysed = study_ensemble(ens, progress=False)
    assert analysed == [3]
    assert (ens / "seed=0/analysis.json").stat().st_mtime_ns == mtimes[0]
    assert (ens / "seed=3/analysis.json").stat().st_mtime_ns > mtimes[3]
    # other options: every member again
    _, analysed = study_ensemble(ens, progress=False, threshold=0.7)
    assert analysed == [0, 3, 5] and load_study(ens).options["threshold"] == 0.7


def test_bad_folders_say_which(ensemble, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RunDirError, match=r"neither a run directory .* nor an ensemble folder"):
        ensemble_members(plain)
    ens = _copy(ensemble, tmp_path)
    (ens / "seed=3/checkpoints").rename(ens / "elsewhere")
    (ens / "seed=7").mkdir()
    with pytest.raises(RunDirError, match=r"member seed=3 cannot be studied: no checkpoints.*1 more"):
        study_ensemble(ens, progress=False)
    (ens / "seed=5/summary.json").unlink()
    with pytest.raises(RunDirError, match="seed=3"):
        ensemble_members(ens)
