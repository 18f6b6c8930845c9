"""Per-epoch training speed: grokinterp's trainer against the TransformerLens demo loop.

Both run nanda-p113 (full batch, 3,830 train pairs) side by side in one process, in alternating
blocks so that machine noise hits both alike. The demo loop is the Grokking demo's: ``model(tokens)``,
float64 loss on the last position, AdamW step, and the test loss every epoch. grokinterp's epoch is
``Trainer`` as used by ``grokinterp train``: fused last-position forward and a full train+test
evaluation every 10 epochs.

It also estimates the arithmetic limit: matmul FLOPs per grokinterp epoch divided by the measured
float32 matmul throughput of this machine at the same shapes, probed after every timing block (the
machine drifts), and prints the median over the blocks of the block's limit over its epoch time.

    python benchmarks/bench_train.py            # per-epoch ratio (about a minute)
    python benchmarks/bench_train.py --full     # plus a full nanda-p113 run to test acc >= 0.99
    python benchmarks/bench_train.py --ensemble 8   # also: an ensemble of 8 against 8 sequential runs
    python benchmarks/bench_train.py --ensemble 8 --only-ensemble --ensemble-p 113   # only that
    python benchmarks/bench_train.py --compile      # also: the compiled step (--compile)

The ensemble comparison times 10 epochs of M models as one ``EnsembleTrainer`` (batched forward,
backward and AdamW; evaluation every 10 epochs) against 10 epochs of each of M single ``Trainer``
runs one after the other, at p = 31, 59 and 113, in alternating blocks.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from grokinterp.losses import cross_entropy
from grokinterp.memory import keep_freed_memory
from grokinterp.models import build_model
from grokinterp.presets import get_preset
from grokinterp.training.trainer import Trainer


def demo_epoch_fn(cfg, dataset, device="cpu"):
    model = build_model(cfg, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd, betas=(cfg.beta1, cfg.beta2))
    train_x, train_y = dataset.train_tokens.to(device), dataset.train_labels.to(device)
    test_x, test_y = dataset.test_tokens.to(device), dataset.test_labels.to(device)

    def epoch():
        loss = cross_entropy(model(train_x)[:, -1], train_y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        with torch.inference_mode():
            cross_entropy(model(test_x)[:, -1], test_y).item()

    return epoch


def grokinterp_epoch_fn(cfg):
    trainer = Trainer(cfg)  # with cfg.compile, the first epochs compile (warm-up, not timed)
    # One "epoch" as in Trainer.run: a full-batch step, and the evaluation every eval_every epochs.
    state = {"epoch": 0}

    def epoch():
        trainer.train_step(trainer.train_tokens, trainer.train_labels)
        state["epoch"] += 1
        if state["epoch"] % cfg.eval_every == 0:
            trainer.evaluate_and_record()

    return epoch


def ensemble_vs_sequential(p: int, m: int, blocks: int, epochs: int, compile: bool = False) -> tuple[float, float]:
    """Seconds per model-epoch: an ensemble of ``m`` seeds against ``m`` sequential runs, both
    trained in memory through their public ``run(max_epochs=...)`` (evaluation every 10 epochs,
    as ``grokinterp train``), in alternating blocks of ``epochs`` epochs."""
    from grokinterp.training.ensemble import EnsembleTrainer

    cfg = get_preset("nanda-p113").replace(p=p, compile=compile, epochs=10**6)
    cfgs = [cfg.replace(model_seed=s, data_seed=s) for s in range(m)]
    singles = [Trainer(c) for c in cfgs]
    ens = EnsembleTrainer([Trainer(c) for c in cfgs])

    def ensemble_block():
        ens.run(progress=False, max_epochs=epochs)

    def sequential_block():
        for t in singles:
            t.run(progress=False, max_epochs=epochs)

    for fn in (ensemble_block, sequential_block):
        fn()  # warm up (and compile)
    e_t, s_t = [], []
    for _ in range(blocks):
        e_t.append(time_block(ensemble_block, 1) / (m * epochs))
        s_t.append(time_block(sequential_block, 1) / (m * epochs))
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


def arithmetic_limit(cfg, dataset) -> tuple[float, float, float]:
    """(seconds, FLOPs, measured GFLOP/s): the matmul FLOPs of one epoch of ``cfg`` on ``dataset``
    at this machine's float32 matmul throughput for the MLP's shapes."""
    n_train = len(dataset.train_indices)
    flops = flops_per_epoch(cfg, n_train, len(dataset.labels))
    gflops = statistics.median(
        [matmul_gflops(n_train, cfg.d_model, cfg.d_mlp), matmul_gflops(n_train, cfg.d_mlp, cfg.d_model)]
    )
    return flops / (gflops * 1e9), flops, gflops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6, help="alternating timing blocks per method")
    parser.add_argument("--epochs-per-block", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="also time a full run to test acc >= 0.99")
    parser.add_argument("--ensemble", type=int, default=0, metavar="M", help="also time an ensemble of M models")
    parser.add_argument("--compile", action="store_true", help="also time the compiled step (RunConfig.compile)")
    parser.add_argument(
        "--only-ensemble", action="store_true", help="time only the ensemble comparison (with --ensemble M)"
    )
    parser.add_argument(
        "--ensemble-p", type=int, nargs="+", default=[31, 59, 113], metavar="P", help="the ensemble comparison's p"
    )
    args = parser.parse_args()
    if args.only_ensemble and not args.ensemble:
        parser.error("--only-ensemble needs --ensemble M")
    # As Trainer.run does on the CPU (it is process-wide: the demo loop and the matmul probe of the
    # arithmetic limit reuse freed memory too, so every figure is measured under the same allocator).
    keep_freed_memory()
    if args.ensemble:
        for p in args.ensemble_p:
            e, s = ensemble_vs_sequential(p, args.ensemble, args.blocks, 10)
            p_cfg = get_preset("nanda-p113").replace(p=p)
            limit = arithmetic_limit(p_cfg, Trainer(p_cfg).dataset)[0]
            print(
                f"p={p}: ensemble of {args.ensemble}: {e * 1e3:6.2f} ms per model-epoch; {args.ensemble} sequential "
                f"runs: {s * 1e3:6.2f} ms per model-epoch; throughput ratio {s / e:.2f}x; arithmetic limit "
                f"{limit * 1e3:.2f} ms per model-epoch (ensemble at {limit / e:.0%}, sequential at {limit / s:.0%})",
                flush=True,
            )
        if args.only_ensemble:
            return

    cfg = get_preset("nanda-p113")
    trainer_probe = Trainer(cfg)
    dataset = trainer_probe.dataset
    fns = {"demo": demo_epoch_fn(cfg, dataset), "eager": grokinterp_epoch_fn(cfg)}
    if args.compile:
        fns["compiled"] = grokinterp_epoch_fn(cfg.replace(compile=True))
    for name, fn in fns.items():  # warm up; the compiled step compiles here
        start = time.perf_counter()
        time_block(fn, 3 if name != "compiled" else 2 * cfg.eval_every)
        if name == "compiled":
            print(f"compiling the step and the evaluation: {time.perf_counter() - start:.0f} s (once per process)")
    times: dict[str, list[float]] = {name: [] for name in fns}
    limits: list[tuple[float, float, float]] = []  # the matmul probe, in the same alternation
    for _ in range(args.blocks):
        for name, fn in fns.items():
            times[name].append(time_block(fn, args.epochs_per_block))
        limits.append(arithmetic_limit(cfg, dataset))
    med = {name: statistics.median(t) for name, t in times.items()}
    d, o = med["demo"], med["eager"]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, nanda-p113 full batch")
    print(f"TransformerLens demo loop : {d * 1e3:7.1f} ms/epoch (median of {args.blocks} blocks)")
    print(f"grokinterp trainer        : {o * 1e3:7.1f} ms/epoch")
    print(f"speed-up                  : {d / o:7.2f}x")
    if "compiled" in med:
        c = med["compiled"]
        print(f"compiled trainer          : {c * 1e3:7.1f} ms/epoch; {o / c:.2f}x the eager trainer")

    limit = statistics.median(x[0] for x in limits)
    flops, gflops = limits[0][1], statistics.median(x[2] for x in limits)
    # Block by block: the machine's speed drifts, so each block's epochs meet that block's probe.
    share = statistics.median(x[0] / t for x, t in zip(limits, times["eager"], strict=True))
    print(f"matmul FLOPs per epoch    : {flops / 1e9:7.2f} GFLOP; measured matmul throughput {gflops:.1f} GFLOP/s")
    print(f"arithmetic limit          : {limit * 1e3:7.1f} ms/epoch; grokinterp is at {share:.0%} of it "
          f"(median over the blocks of each block's limit / epoch)")  # fmt: skip

    if args.full:
        full_cfg = cfg.replace(stop_acc=0.99, stop_patience=1)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            res = Trainer(full_cfg, f"{tmp}/run").run(progress=True)
            wall = time.perf_counter() - start
        print(f"full nanda-p113 run: test acc >= 0.99 at epoch {res.grokking_epoch}, wall-clock {wall:.0f} s")


if __name__ == "__main__":
    main()
