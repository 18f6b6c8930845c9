"""The ensemble trainer: every member equals its separately trained run (in float64, where the
batched and single kernels agree to rounding), resumes exactly, and writes standard run
directories."""

from __future__ import annotations

import math

import pytest
import torch

from grokinterp.config import RunConfig
from grokinterp.forward import stacked_last_position_logits
from grokinterp.io import rundir
from grokinterp.training import ensemble
from grokinterp.training.ensemble import EnsembleTrainer, StackedAdamW, check_ensemble_configs, parse_seeds
from grokinterp.training.trainer import Trainer

BASE = RunConfig(
    p=13, d_model=32, n_heads=2, d_head=16, d_mlp=64, epochs=40, eval_every=5, checkpoint_every=20,
    lr=3e-3, wd=1.0, dtype="float64",
)  # fmt: skip
MEMBERS = [
    BASE,
    BASE.replace(model_seed=1, data_seed=7, train_seed=3),
    BASE.replace(model_seed=2, lr=1e-3, wd=0.3, beta2=0.99, warmup_steps=5),
]


def _close_rows(a, b):
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k in ("train_loss", "test_loss", "train_acc", "test_acc", "lr", "step"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-9, abs=1e-12), (ra["epoch"], k)


def _close_weights(m1, m2):
    for (n, a), (_, b) in zip(m1.named_parameters(), m2.named_parameters(), strict=True):
        if a.requires_grad:
            scale = max(1.0, a.abs().max().item())
            assert (a - b).abs().max().item() <= 1e-9 * scale, n


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sep")
    return [Trainer(cfg, root / str(i)).run(progress=False) for i, cfg in enumerate(MEMBERS)], root


def test_every_member_equals_its_separate_run(tmp_path, separate):
    results, root = separate
    ens = EnsembleTrainer.create(MEMBERS, [tmp_path / str(i) for i in range(3)]).run(progress=False)
    for i, (e, s) in enumerate(zip(ens, results, strict=True)):
        _close_rows(rundir.read_metrics(tmp_path / str(i)), rundir.read_metrics(root / str(i)))
        _close_weights(e.model, s.model)
        assert rundir.checkpoint_epochs(tmp_path / str(i)) == [0, 20, 40]
        assert rundir.read_summary(tmp_path / str(i))["status"] == "finished"


def test_members_trained_in_chunks_equal_their_separate_runs(tmp_path, separate, monkeypatch):
    """With a chunk budget too small for two members, every step and evaluation runs member by
    member (the stacked forward sees one member at a time) and the runs are unchanged."""
    results, root = separate
    seen = []

    def spy(model, params, tokens):
        seen.append(tokens.shape[0])
        return stacked_last_position_logits(model, params, tokens)

    monkeypatch.setattr(ensemble, "CPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(ensemble, "stacked_last_position_logits", spy)
    ens = EnsembleTrainer.create(MEMBERS, [tmp_path / str(i) for i in range(3)]).run(progress=False)
    assert set(seen) == {1}
    for i, (e, s) in enumerate(zip(ens, results, strict=True)):
        _close_rows(rundir.read_metrics(tmp_path / str(i)), rundir.read_metrics(root / str(i)))
        _close_weights(e.model, s.model)


def test_ensemble_resumes_exactly_and_a_member_resumes_alone(tmp_path):
    dirs = [tmp_path / str(i) for i in range(3)]
    full = EnsembleTrainer.create(MEMBERS, [tmp_path / f"f{i}" for i in range(3)]).run(progress=False)
    part = EnsembleTrainer.create(MEMBERS, dirs).run(progress=False, max_epochs=15)
    assert all(r.interrupted and r.final_epoch == 15 for r in part)
    resumed = EnsembleTrainer.resume(dirs).run(progress=False)
    for i in range(3):
        a = rundir.read_metrics(tmp_path / f"f{i}")
        b = rundir.read_metrics(dirs[i])
        assert [{k: v for k, v in r.items() if k != "elapsed"} for r in a] == [
            {k: v for k, v in r.items() if k != "elapsed"} for r in b
        ]
        for (n, x), (_, y) in zip(
            full[i].model.state_dict().items(), resumed[i].model.state_dict().items(), strict=True
        ):
            assert torch.equal(x, y), n
    # a member's state is a standard resume state: the single trainer continues it
    t = Trainer.resume(dirs[0], epochs=50)
    assert t.epoch == 40
    assert t.run(progress=False).final_epoch == 50


def test_members_stop_early_on_their_own(tmp_path):
    from tests.conftest import GROK_P23

    # float64: the batched and single kernels agree to rounding, so the member stops where its
    # separate run does (in float32 they round differently, and grokking moves the stop by
    # evaluations). GROK_P23 groks in about 700 epochs; 1500 leaves a 2x margin.
    fast = GROK_P23.replace(
        epochs=1500, eval_every=10, checkpoint_every=500, stop_acc=0.99, stop_patience=3, dtype="float64"
    )
    cfgs = [fast, fast.replace(model_seed=5, lr=1e-4)]  # the second learns too slowly to grok here
    res = EnsembleTrainer.create(cfgs, [tmp_path / "a", tmp_path / "b"]).run(progress=False)
    assert res[0].stopped_early and res[0].final_epoch < 1500, "GROK_P23 (float64) did not grok in 1500 epochs"
    assert not res[1].stopped_early and res[1].final_epoch == 1500
    alone = Trainer(fast).run(progress=False)
    assert alone.final_epoch == res[0].final_epoch and alone.grokking_epoch == res[0].grokking_epoch
    # the whole trajectory, not just the stop: ~1e-7 apart after 700 float64 epochs, far below 1e-4
    rows = rundir.read_metrics(tmp_path / "a")
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in alone.metrics]
    for ra, rb in zip(rows, alone.metrics, strict=True):
        assert (ra["train_loss"], ra["test_loss"]) == pytest.approx((rb["train_loss"], rb["test_loss"]), rel=1e-4)


def test_stacked_adamw_equals_torch_adamw_bitwise():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(4, 3, generator=g) for _ in range(3)]
    hyper = [(1e-3, 1.0, 0.9, 0.98), (3e-3, 0.1, 0.8, 0.999), (1e-2, 0.0, 0.95, 0.9)]
    refs = [w.clone().requires_grad_() for w in ws]
    opts = [
        torch.optim.AdamW([r], lr=lr, weight_decay=wd, betas=(b1, b2), foreach=True)
        for r, (lr, wd, b1, b2) in zip(refs, hyper, strict=True)
    ]
    stacked = {"w": torch.stack(ws).requires_grad_()}
    opt = StackedAdamW(stacked)
    h = {k: torch.tensor([x[i] for x in hyper], dtype=torch.float64) for i, k in enumerate(("lr", "wd", "b1", "b2"))}
    for _ in range(5):
        grads = [torch.randn(4, 3, generator=g) for _ in range(3)]
        for r, o, gr in zip(refs, opts, grads, strict=True):
            r.grad = gr.clone()
            o.step()
        stacked["w"].grad = torch.stack(grads)
        opt.step(h["lr"], h["wd"], h["b1"], h["b2"])
    for i, r in enumerate(refs):
        assert torch.equal(stacked["w"][i].detach(), r.detach()), i


def test_configs_that_cannot_share_an_ensemble_give_one_line():
    for other, needle in [
        (BASE.replace(d_mlp=32), "must share d_mlp"),
        (BASE.replace(train_frac=0.5), "train splits of one size"),
        (BASE.replace(grokfast="ema"), "train Grokfast"),
    ]:
        with pytest.raises(ValueError, match=needle):
            check_ensemble_configs([BASE, other])
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    for bad in ("", "3-1", "1,1", "x"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    assert math.isfinite(BASE.lr)
