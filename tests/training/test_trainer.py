import json
import math

import pytest
import torch

from grokinterp.config import RunConfig
from grokinterp.io import rundir
from grokinterp.io.checkpoints import load_checkpoint
from grokinterp.training.trainer import Trainer, train

SMALL = RunConfig(p=23, epochs=60, eval_every=10, checkpoint_every=20, lr=3e-3, wd=1.0)


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]


@pytest.mark.parametrize(
    "cfg",
    [
        SMALL,
        # minibatch without replacement, dropout, warm-up/cool-down, Grokfast-MA: all RNG/state paths
        SMALL.replace(
            layout="a op b =",
            n_layers=2,
            normalization_type="LN",
            batch_size=64,
            dropout=0.1,
            warmup_steps=5,
            cooldown_steps=20,
            grokfast="ma",
            grokfast_window=3,
            freeze_biases=False,
        ),
        SMALL.replace(
            batch_size=50,
            sample_with_replacement=True,
            grokfast="ema",
            orthograd=True,
            loss_fn="stablemax",
        ),
    ],
    ids=["fullbatch", "minibatch-dropout-ma", "replacement-ema-orthograd-stablemax"],
)
def test_resume_gives_exactly_the_uninterrupted_metrics(tmp_path, cfg):
    full = Trainer(cfg, tmp_path / "full").run(progress=False)
    part = Trainer(cfg, tmp_path / "part").run(progress=False, max_epochs=30)
    assert part.final_epoch == 30
    resumed = Trainer.resume(tmp_path / "part").run(progress=False)
    assert resumed.final_epoch == cfg.epochs
    a = _strip(rundir.read_metrics(tmp_path / "full"))
    b = _strip(rundir.read_metrics(tmp_path / "part"))
    assert a == b  # bit-identical losses and accuracies
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_resume_discards_rows_after_the_saved_state(tmp_path):
    run = tmp_path / "r"
    Trainer(SMALL, run).run(progress=False, max_epochs=40)  # state saved at epoch 40
    with open(run / "metrics.jsonl", "a") as f:  # a crash after logging epoch 50, before saving
        f.write(json.dumps({"epoch": 50, "step": 50, "train_loss": 0}) + "\n")
        f.write('{"epoch": 6')  # and a torn line
    t = Trainer.resume(run)
    assert t.epoch == 40 and t.metrics[-1]["epoch"] == 40
    t.run(progress=False)
    epochs = [r["epoch"] for r in rundir.read_metrics(run)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 60


def test_same_seed_same_run_and_seeds_matter():
    a = train(SMALL.replace(epochs=20), progress=False).metrics
    b = train(SMALL.replace(epochs=20), progress=False).metrics
    c = train(SMALL.replace(epochs=20, model_seed=1), progress=False).metrics
    assert _strip(a) == _strip(b)
    assert _strip(a) != _strip(c)


def test_small_model_groks_and_stops_early(tmp_path):
    from tests.conftest import GROK_P23

    # float64 and 4x the ~700 epochs it needs: whether it groks in time does not hang on rounding
    cfg = GROK_P23.replace(
        epochs=3000, eval_every=10, checkpoint_every=1000, stop_acc=0.99, stop_patience=3, dtype="float64"
    )
    res = Trainer(cfg, tmp_path / "g").run(progress=False)
    assert res.stopped_early, "GROK_P23 (float64) did not grok within 3000 epochs"
    assert res.grokking_epoch is not None and res.grokking_epoch < res.final_epoch < 3000
    # stopped after 3 consecutive evaluations at or above the threshold
    assert all(r["test_acc"] >= 0.99 for r in res.metrics[-3:])
    assert res.metrics[-4]["test_acc"] < 0.99 or res.final_epoch == res.grokking_epoch + 20
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["grokking_epoch"] == res.grokking_epoch and summary["stopped_early"]
    assert summary["grokking_step"] == res.grokking_epoch  # full batch: one step per epoch
    # the final model is checkpointed and reloads to the same accuracy
    last = load_checkpoint(rundir.checkpoint_path(tmp_path / "g", res.final_epoch))
    assert last.epoch == res.final_epoch and last.metrics["test_acc"] == res.metrics[-1]["test_acc"]


def test_loss_is_float64_below_float32_floor():
    # float32 log_softmax cannot go below ~1.2e-7; the trainer's float64 loss does.
    from grokinterp.losses import cross_entropy

    logits = torch.tensor([[40.0, 0.0, 0.0]])
    assert cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(
        2 * torch.exp(torch.tensor(-40.0, dtype=torch.float64)).item(), rel=1e-6
    )
    assert cross_entropy(logits, torch.tensor([0]), dtype=torch.float32).item() == 0.0


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run = tmp_path / "r"
    Trainer(SMALL.replace(epochs=10), run).run(progress=False)
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="--force"):
        Trainer(SMALL, run)
    assert (run / "metrics.jsonl").read_text() == before
    Trainer(SMALL.replace(epochs=20), run, force=True).run(progress=False)
    assert rundir.read_run_config(run).epochs == 20


def test_sigint_saves_and_exits_cleanly(tmp_path):
    import os
    import signal

    def interrupt(trainer, row):
        if row["epoch"] == 20:
            os.kill(os.getpid(), signal.SIGINT)

    res = Trainer(SMALL, tmp_path / "r").run(progress=False, callback=interrupt)
    assert res.interrupted and res.final_epoch == 20
    t = Trainer.resume(tmp_path / "r")
    assert t.epoch == 20
    assert t.run(progress=False).final_epoch == 60


def test_grokking_step_counts_minibatch_steps():
    t = Trainer(SMALL.replace(batch_size=64))
    t.metrics = [{"epoch": 10, "step": 40}, {"epoch": 20, "step": 80}]
    assert t.grokking_step is None
    t.grokking_epoch = 20
    assert t.grokking_step == 80


def test_train_step_equals_plain_hooked_transformer_adamw_loop():
    # Independent reference: the TransformerLens demo's loop (model(tokens)[:, -1], float64 loss,
    # PyTorch's default per-tensor AdamW). The trainer's fused forward and multi-tensor AdamW must
    # give the same parameters. In float64: Adam divides by sqrt(v), so in float32 an entry whose
    # gradient is at rounding level moves by up to lr either way, differently on each CPU; in
    # float64 the two loops agree to ~1e-14 (five steps of ~lr = 3e-3 each).
    from grokinterp.losses import cross_entropy
    from grokinterp.models import build_model

    cfg = SMALL.replace(wd=0.5, dtype="float64")
    trainer = Trainer(cfg)
    assert all(g["foreach"] for g in trainer.optimizer.param_groups)
    ref = build_model(cfg)
    params = [p for p in ref.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.wd, betas=(cfg.beta1, cfg.beta2), foreach=False)
    for _ in range(5):
        trainer.train_step(trainer.train_tokens, trainer.train_labels)
        cross_entropy(ref(trainer.train_tokens)[:, -1], trainer.train_labels).backward()
        opt.step()
        opt.zero_grad()
    init = dict(build_model(cfg).named_parameters())
    ours = dict(trainer.model.named_parameters())
    for name, p in ref.named_parameters():
        if not p.requires_grad:
            assert torch.equal(ours[name], p), name
            continue
        moved = (p - init[name]).abs().mean().item()
        off = (ours[name] - p).abs().max().item()
        assert moved > cfg.lr, f"{name} did not move"  # five steps of ~lr each
        assert off < 1e-9 * cfg.lr, f"{name}: {off:.1e} from the reference loop"


def test_trainer_writes_through_the_writer_it_is_handed(tmp_path):
    from grokinterp.io.writer import MemoryWriter, RunWriter

    writer = MemoryWriter()
    res = Trainer(SMALL.replace(epochs=20), writer=writer).run(progress=False)
    assert isinstance(writer, RunWriter) and res.run_dir is None
    assert writer.rows == res.metrics and writer.summary.to_dict() == res.summary
    assert writer.checkpoint_epochs() == [] and res.summary["last_good_epoch"] is None
    with pytest.raises(ValueError, match="not both"):
        Trainer(SMALL, tmp_path / "r", writer=MemoryWriter())
    assert not (tmp_path / "r").exists()


def _planted_loss(epoch: int) -> float:
    """A train loss falling from 3 to 0.01, with a spike to 1.0 at epoch 40 (baseline: 3 e^-6 +
    0.01 at 30; back below twice that at 50)."""
    return 1.0 if epoch == 40 else 3.0 * math.exp(-epoch / 5) + 0.01


@pytest.fixture
def planted_spike(monkeypatch):
    """Every evaluation (single run or ensemble member) records ``_planted_loss`` as its train loss."""
    record = Trainer.record_evaluation

    def planted(self, m):
        return record(self, {**m, "train_loss": _planted_loss(self.epoch)})

    monkeypatch.setattr(Trainer, "record_evaluation", planted)


def test_summary_and_train_name_every_loss_spike(tmp_path, planted_spike, capsys):
    """Why "A loss spike makes a phase boundary": neither train nor summary.json named the
    instability. Now both do, with its epochs (the rule of grokinterp.analysis.instabilities)."""
    from grokinterp.cli import main

    baseline = 3.0 * math.exp(-6) + 0.01
    want = {"start": 40, "end": 50, "peak_epoch": 40, "peak_loss": 1.0, "recovered": True}
    res = Trainer(SMALL, tmp_path / "r").run(progress=False)
    (spike,) = rundir.read_summary(tmp_path / "r")["instabilities"]
    assert spike == {**want, "baseline": pytest.approx(baseline)} and res.summary["instabilities"] == [spike]
    assert main(["train", "--p", "23", "--epochs", "60", "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "instability" in line]
    assert len(lines) == 1 and "epoch 40" in lines[0] and "back by 50" in lines[0]
    assert (
        main(["train", "--p", "23", "--epochs", "60", "--seeds", "0-1", "--out", str(tmp_path / "e"), "--no-progress"])
        == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if "instability" in line]
    assert len(lines) == 2 and all("epoch 40" in line for line in lines)
    for s in (0, 1):
        assert rundir.read_summary(tmp_path / "e" / f"seed={s}")["instabilities"][0]["end"] == 50


def test_a_run_without_spikes_says_so():
    res = train(SMALL.replace(epochs=20), progress=False)
    assert res.summary["instabilities"] == []


def test_cyclic_group_run_is_the_addition_run():
    """op C<n> trains exactly the run of op add at p = n: same dataset, model and steps (one code
    path on one machine, so the float32 metrics agree bit for bit)."""
    base = RunConfig(p=13, d_model=32, n_heads=2, d_head=16, d_mlp=64, epochs=40, eval_every=10, checkpoint_every=40)
    add = Trainer(base).run(progress=False)
    cyc = Trainer(base.replace(op="C13")).run(progress=False)
    assert _strip(cyc.metrics) == _strip(add.metrics) and len(add.metrics) == 5
