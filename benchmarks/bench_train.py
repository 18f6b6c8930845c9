"""Per-epoch training speed: grokinterp's trainer against the TransformerLens demo loop.

Both run nanda-p113 (full batch, 3,830 train pairs) side by side in one process, in alternating
blocks so that machine noise hits both alike. The demo loop is the Grokking demo's: ``model(tokens)``,
float64 loss on the last position, AdamW step, and the test loss every epoch. grokinterp's epoch is
``Trainer`` as used by ``grokinterp train``: fused last-position forward and a full train+test
evaluation every 10 epochs.

It also estimates the arithmetic limit: matmul FLOPs per grokinterp epoch divided by the measured
float32 matmul throughput of this machine at the same shapes.

    python benchmarks/bench_train.py            # per-epoch ratio (about a minute)
    python benchmarks/bench_train.py --full     # plus a full nanda-p113 run to test acc >= 0.99
    python benchmarks/bench_train.py --ensemble 8   # also: an ensemble of 8 against 8 sequential runs

The ensemble comparison (issue 12) times one epoch of M models as one ``EnsembleTrainer`` group
(batched forward, backward and AdamW; evaluation every 10 epochs) against one epoch of each of M
single ``Trainer`` runs one after the other, at p=31 and p=113, in alternating blocks.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from grokinterp.losses import cross_entropy
from grokinterp.models import build_model
from grokinterp.presets import get_preset
from grokinterp.training.trainer import Trainer


def demo_epoch_fn(cfg, dataset):
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd, betas=(cfg.beta1, cfg.beta2))
    train_x, train_y = dataset.train_tokens, dataset.train_labels
    test_x, test_y = dataset.test_tokens, dataset.test_labels

    def epoch():
        loss = cross_entropy(model(train_x)[:, -1], train_y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        with torch.inference_mode():
            cross_entropy(model(test_x)[:, -1], test_y).item()

    return epoch


def grokinterp_epoch_fn(cfg):
    trainer = Trainer(cfg)
    # One "epoch" as in Trainer.run: a full-batch step, and the evaluation every eval_every epochs.
    state = {"epoch": 0}

    def epoch():
        trainer.train_step(trainer.train_tokens, trainer.train_labels)
        state["epoch"] += 1
        if state["epoch"] % cfg.eval_every == 0:
            trainer.evaluate_and_record()

    return epoch


def ensemble_vs_sequential(p: int, m: int, blocks: int, epochs: int) -> tuple[float, float]:
    """Seconds per model-epoch: an ensemble of ``m`` seeds against ``m`` sequential runs."""
    from grokinterp.training.ensemble import EnsembleTrainer

    cfg = get_preset("nanda-p113").replace(p=p)
    cfgs = [cfg.replace(model_seed=s, data_seed=s) for s in range(m)]
    singles = [grokinterp_epoch_fn(c) for c in cfgs]
    ens = EnsembleTrainer([Trainer(c) for c in cfgs])
    group = ens.members
    params, fixed, module, opt = ens._stack(group)
    labels = torch.stack([t.train_labels for t in group])
    tokens = torch.stack([t.train_tokens for t in group])
    hyper = [
        torch.tensor([getattr(t.cfg, k) for t in group], dtype=torch.float64) for k in ("lr", "wd", "beta1", "beta2")
    ]
    count = {"epoch": 0}

    def ensemble_epoch():
        logits = ens._logits(params, fixed, module, tokens)
        loss = -logits.double().log_softmax(-1).gather(-1, labels[..., None])[..., 0].mean(-1)
        loss.sum().backward()
        opt.step(*hyper)
        count["epoch"] += 1
        if count["epoch"] % cfg.eval_every == 0:
            ens._evaluate(group, params, fixed, module)

    def sequential_epoch():
        for fn in singles:
            fn()

    for fn in (ensemble_epoch, sequential_epoch):
        time_block(fn, 2)
    e_t, s_t = [], []
    for _ in range(blocks):
        e_t.append(time_block(ensemble_epoch, epochs) / m)
        s_t.append(time_block(sequential_epoch, epochs) / m)
    return statistics.median(e_t), statistics.median(s_t)


def time_block(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def matmul_gflops(m, k, n, reps=50):
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9


def flops_per_epoch(cfg, n_train, n_all):
    """Matmul FLOPs of one grokinterp epoch: forward+backward (3x forward) on the train split,
    plus one forward over all pairs every eval_every epochs."""
    d, d_mlp, p = cfg.d_model, cfg.d_mlp, cfg.p
    per_example = 2 * (d * d + 2 * d * d_mlp + d * p)  # W_O, W_in, W_out, W_U at the last position
    tables = 2 * 4 * cfg.n_ctx * cfg.d_vocab * d * d  # Q/K/V tables and W_O-sized work per step
    return 3 * (per_example * n_train + tables) + per_example * n_all / cfg.eval_every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6, help="alternating timing blocks per method")
    parser.add_argument("--epochs-per-block", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="also time a full run to test acc >= 0.99")
    parser.add_argument("--ensemble", type=int, default=0, metavar="M", help="also time an ensemble of M models")
    args = parser.parse_args()
    if args.ensemble:
        for p in (31, 113):
            e, s = ensemble_vs_sequential(p, args.ensemble, args.blocks, max(2, args.epochs_per_block // 4))
            print(
                f"p={p}: ensemble of {args.ensemble}: {e * 1e3:6.2f} ms per model-epoch; {args.ensemble} sequential "
                f"runs: {s * 1e3:6.2f} ms per model-epoch; throughput ratio {s / e:.2f}x"
            )

    cfg = get_preset("nanda-p113")
    trainer_probe = Trainer(cfg)
    dataset = trainer_probe.dataset
    demo, ours = demo_epoch_fn(cfg, dataset), grokinterp_epoch_fn(cfg)
    for fn in (demo, ours):  # warm up
        time_block(fn, 3)
    demo_t, ours_t = [], []
    for _ in range(args.blocks):
        demo_t.append(time_block(demo, args.epochs_per_block))
        ours_t.append(time_block(ours, args.epochs_per_block))
    d, o = statistics.median(demo_t), statistics.median(ours_t)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, nanda-p113 full batch")
    print(f"TransformerLens demo loop : {d * 1e3:7.1f} ms/epoch (median of {args.blocks} blocks)")
    print(f"grokinterp trainer        : {o * 1e3:7.1f} ms/epoch")
    print(f"speed-up                  : {d / o:7.2f}x")

    n_train = len(dataset.train_indices)
    flops = flops_per_epoch(cfg, n_train, len(dataset.labels))
    gflops = statistics.median(
        [matmul_gflops(n_train, cfg.d_model, cfg.d_mlp), matmul_gflops(n_train, cfg.d_mlp, cfg.d_model)]
    )
    limit = flops / (gflops * 1e9)
    print(f"matmul FLOPs per epoch    : {flops / 1e9:7.2f} GFLOP; measured matmul throughput {gflops:.1f} GFLOP/s")
    print(f"arithmetic limit          : {limit * 1e3:7.1f} ms/epoch; grokinterp is at {limit / o:.0%} of it")

    if args.full:
        full_cfg = cfg.replace(stop_acc=0.99, stop_patience=1)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            res = Trainer(full_cfg, f"{tmp}/run").run(progress=True)
            wall = time.perf_counter() - start
        print(f"full nanda-p113 run: test acc >= 0.99 at epoch {res.grokking_epoch}, wall-clock {wall:.0f} s")


if __name__ == "__main__":
    main()
