"""Shared fixtures."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from grokinterp.config import RunConfig
from grokinterp.tasks import Dataset, make_dataset


@dataclass
class TrainedModel:
    cfg: RunConfig
    model: torch.nn.Module
    dataset: Dataset


# A small transformer that groks p=23 addition in about 700 epochs (a few seconds on one core).
GROK_P23 = RunConfig(
    p=23,
    train_frac=0.5,
    d_model=64,
    n_heads=4,
    d_head=16,
    d_mlp=256,
    lr=3e-3,
    wd=3.0,
    epochs=1200,
    eval_every=100,
    checkpoint_every=1200,
    device="cpu",
)


@pytest.fixture(scope="session")
def trained_p23() -> TrainedModel:
    """A one-layer transformer trained in memory on p=23 addition until it has grokked."""
    from grokinterp.training import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster and robust to a busy machine
    try:
        result = train(GROK_P23, None, progress=False)
    finally:
        torch.set_num_threads(threads)
    cfg = GROK_P23
    dataset = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)
    result.model.eval()
    return TrainedModel(cfg, result.model, dataset)
