from pathlib import Path

import pytest
import torch

import grokinterp
from grokinterp.errors import RunDirError
from grokinterp.forward import evaluate

SHIPPED = Path(__file__).parents[2] / "checkpoints" / "nanda-p113"


def test_shipped_run_loads_and_is_grokked():
    run = grokinterp.load_run(SHIPPED)
    assert run.config.preset == "nanda-p113" and run.config.p == 113
    assert run.checkpoint_epochs[0] == 0 and run.checkpoint_epochs[-1] == 25_000
    model = run.model()
    m = evaluate(model, run.dataset)  # recomputed from the weights, not read from metrics
    assert m["test_acc"] >= 0.99 and m["train_acc"] == 1.0
    assert m["test_loss"] == pytest.approx(run.metrics.iloc[-1]["test_loss"], rel=1e-3)
    # the model is a HookedTransformer ready for run_with_cache
    logits, cache = model.run_with_cache(run.dataset.tokens[:5])
    assert cache["blocks.0.mlp.hook_post"].shape == (5, 3, 512)
    assert torch.equal(logits[:, -1].argmax(-1), run.dataset.labels[:5])


def test_shipped_run_checkpoint_sizes():
    total = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert total < 32 * 2**20
    assert not list(SHIPPED.rglob("*.pt")) and not list(SHIPPED.rglob("*.pth"))


def test_missing_epoch_names_the_nearest(tmp_path):
    run = grokinterp.load_run(SHIPPED)
    with pytest.raises(RunDirError, match="nearest: 10000"):
        run.model(epoch=10_010)
    with pytest.raises(RunDirError, match="no such run directory"):
        grokinterp.load_run(tmp_path / "nope")
