"""Shared fixtures."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
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


def train_one_thread(cfg: RunConfig, path=None):
    """Train ``cfg`` (into ``path``, or in memory) on one thread: the test models are tiny, and one
    thread is faster and robust to a busy machine. Returns the TrainResult."""
    from grokinterp.training.trainer import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Trainer(cfg, path).run(progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_p23() -> TrainedModel:
    """A one-layer transformer trained in memory on p=23 addition until it has grokked."""
    result = train_one_thread(GROK_P23)
    cfg = GROK_P23
    dataset = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)
    result.model.eval()
    return TrainedModel(cfg, result.model, dataset)


def png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA PNG without an imaging library: (h, w, channels) uint8 (shared by
    the figure and browser tests)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w * bpp + 1)
    out = np.zeros((h, w * bpp), np.int64)
    prev = np.zeros(w * bpp, np.int64)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: running sum per channel
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) % 256
        elif f == 2:  # Up
            cur = (line + prev) % 256
        else:  # Average, Paeth: sequential
            cur = np.zeros_like(line)
            for i in range(len(line)):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                if f == 3:
                    cur[i] = (line[i] + (a + b) // 2) % 256
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[i] = (line[i] + pred) % 256
        out[y] = prev = cur
    return out.reshape(h, w, bpp).astype(np.uint8)
