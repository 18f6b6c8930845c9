"""Shared fixtures, and the rule for tests that train.

Float rounding is not portable: float32 results differ between CPUs (Intel vs AMD BLAS kernels,
AVX-512 vs AVX2 vector code), between thread counts, and between batched (vmap, bmm) and unbatched
kernels. Grokking amplifies a last-bit difference into a different grokking epoch within a few
hundred epochs. So:

* No test compares float32 training trajectories computed along different paths (ensemble vs
  single run, fused vs reference forward, sweep worker vs direct run with other settings). Such
  comparisons train in float64 (``RunConfig(dtype="float64")``: weights, forward and optimizer
  state in float64), where the two paths agree to rounding on one machine, or assert what holds
  whatever the rounding (a sweep's results equal its own runs' summaries; a fit on planted data).
  Comparing a run with itself (same config, same code path, same thread count), e.g. resume
  exactness, is fine in float32.
* No test assumes that a run groks (or does not) by a fixed epoch without a wide margin: give it
  at least twice the epochs it needs, stop early (``stop_acc``), and assert that it grokked with a
  message that names the budget. This holds in float64 too: the initial weights are drawn in
  float32 (so both precisions start from the same values), and torch's vectorised random draws
  differ by ~1e-7 between CPU instruction sets (``ATEN_CPU_CAPABILITY=default`` vs ``avx512``),
  which moves even a float64 grokking epoch by an evaluation or two. A test never pins a
  grokking epoch to a number.
* Check a change with ``OMP_NUM_THREADS=1`` and ``ATEN_CPU_CAPABILITY=default`` (and ``avx2``):
  both change float32 rounding on one machine.
"""

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


# A small transformer that groks p=23 addition in about 600-700 epochs (the exact epoch depends on the
# CPU's rounding, see the module docstring; a few seconds on one core).
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


# Trained until test accuracy has stayed >= 0.99 for 12 evaluations (about 600 epochs past grokking,
# like GROK_P23's 1200 epochs), with a budget of several times that.
TRAINED_P23 = GROK_P23.replace(epochs=5000, eval_every=50, checkpoint_every=5000, stop_acc=0.99, stop_patience=12)


@pytest.fixture(scope="session")
def trained_p23() -> TrainedModel:
    """A one-layer transformer trained in memory on p=23 addition until it has grokked and cleaned
    up (test accuracy >= 0.99 for 12 evaluations in a row)."""
    result = train_one_thread(TRAINED_P23)
    assert result.stopped_early, (
        f"GROK_P23 did not grok within {TRAINED_P23.epochs} epochs (it takes about 700): "
        f"final test accuracy {result.metrics[-1]['test_acc']:.3f}"
    )
    cfg = TRAINED_P23
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


@pytest.fixture
def bag_calls(monkeypatch):
    """A list that grows by one at every ``F.embedding_bag`` call (the tabulated evaluation's bags),
    to tell which path a forward took."""
    calls: list[int] = []
    real = torch.nn.functional.embedding_bag
    monkeypatch.setattr(torch.nn.functional, "embedding_bag", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls
