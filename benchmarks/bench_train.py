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
    python benchmarks/bench_train.py --ensemble 8 --only-ensemble --compile   # ensembles, eager and compiled
    python benchmarks/bench_train.py --ensemble 8 --profile --ensemble-p 31 113  # where the time goes
    python benchmarks/bench_train.py --profile-compiled   # the compiled step's kernels, Inductor's included

The ensemble comparison times 10 epochs of M models as one ``EnsembleTrainer`` (batched forward,
backward and AdamW; evaluation every 10 epochs) against 10 epochs of each of M single ``Trainer``
runs one after the other, at p = 31, 59 and 113, in alternating blocks, each round of blocks followed
by the matmul probe; with ``--compile`` both sides also run compiled.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from grokinterp.config import RunConfig
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


def seed_configs(p: int, m: int, compile: bool = False) -> tuple[RunConfig, list[RunConfig]]:
    """nanda-p113 at ``p`` (no epoch limit: blocks run ``max_epochs``) and its ``m`` seeds 0..m-1."""
    cfg = get_preset("nanda-p113").replace(p=p, compile=compile, epochs=10**6)
    return cfg, [cfg.replace(model_seed=s, data_seed=s) for s in range(m)]


def ensemble_vs_sequential(
    p: int, m: int, blocks: int, epochs: int, compile: bool = False
) -> dict[str, dict[str, float]]:
    """An ensemble of ``m`` seeds against ``m`` sequential runs, both trained in memory through
    their public ``run(max_epochs=...)`` (evaluation every 10 epochs, as ``grokinterp train``), in
    alternating blocks of ``epochs`` epochs, with the matmul probe (``arithmetic_limit``) after
    every round of blocks; with ``compile`` also both sides with ``RunConfig.compile``.

    Returns, for each side ("sequential", "ensemble", and "compiled sequential", "compiled
    ensemble"), the medians over the blocks of its seconds per model-epoch (``time``), of its
    share of the block's arithmetic limit (``share``) and of the sequential runs' time over its own
    in the same round (``ratio``: paired, so a drift of the host between rounds cancels); and
    under "limit" the limit's ``time``."""
    from grokinterp.training.ensemble import EnsembleTrainer

    sides = {}
    for compiled in (False, True) if compile else (False,):
        cfg, cfgs = seed_configs(p, m, compiled)
        singles = [Trainer(c) for c in cfgs]
        ens = EnsembleTrainer([Trainer(c) for c in cfgs])
        prefix = "compiled " if compiled else ""
        sides[prefix + "sequential"] = lambda singles=singles: [
            t.run(progress=False, max_epochs=epochs) for t in singles
        ]
        sides[prefix + "ensemble"] = lambda ens=ens: ens.run(progress=False, max_epochs=epochs)
    dataset = singles[0].dataset
    for fn in sides.values():
        fn()  # warm up (and compile)
    times: dict[str, list[float]] = {name: [] for name in sides}
    limits = []
    for _ in range(blocks):
        for name, fn in sides.items():
            times[name].append(time_block(fn, 1) / (m * epochs))
        limits.append(arithmetic_limit(cfg, dataset)[0])
    med = statistics.median
    seq = times["sequential"]
    out = {
        name: {"time": med(t), "share": median_ratio(limits, t), "ratio": median_ratio(seq, t)}
        for name, t in times.items()
    }
    out["limit"] = {"time": med(limits)}
    return out


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profiled_ms(fn, per: float, keep=lambda key: key.startswith("aten::")) -> tuple[float, float, list]:
    """Run ``fn`` under ``torch.profiler`` (CPU, shapes recorded) and return the self CPU time of
    the events whose name ``keep`` accepts, in ms per ``per`` (profiler microseconds / ``per``):
    (all of them, the matmul kernels among them, the events grouped by input shape)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    events = [e for e in prof.key_averages(group_by_input_shape=True) if keep(e.key)]
    total = sum(e.self_cpu_time_total for e in events) / per
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / per
    return total, mm, events


def print_top(events, per: float, top: int, epochs: int | None = None) -> None:
    """The ``top`` events by self CPU time, ms per ``per``, with their input shapes (and, given
    ``epochs``, their calls per epoch)."""
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        shapes = ", ".join(str(tuple(x)) for x in e.input_shapes if x)
        calls = f"{e.count / epochs:4.1f}x  " if epochs else ""
        print(f"    {e.self_cpu_time_total / per:6.2f} ms  {calls}{e.key[:70]:22s} {shapes}")


def profile_ensemble(p: int, m: int, epochs: int = 20, top: int = 8) -> None:
    """Where a model-epoch's time goes, single run against an ensemble of ``m`` (``torch.profiler``,
    self CPU time of each ATen op, per model-epoch): the matmul kernels and everything else, and
    the ``top`` ops of each side. The profiler's own overhead inflates the small ops."""
    from grokinterp.training.ensemble import EnsembleTrainer

    _, cfgs = seed_configs(p, m)
    single = Trainer(cfgs[0])
    ens = EnsembleTrainer([Trainer(c) for c in cfgs])
    print(f"p={p}: profile of {epochs} epochs, ms per model-epoch (self CPU time; the profiler inflates small ops)")
    for name, fn, models in (
        ("single run", lambda: single.run(progress=False, max_epochs=epochs), 1),
        (f"ensemble of {m}", lambda: ens.run(progress=False, max_epochs=epochs), m),
    ):
        fn()  # warm up
        per = epochs * models * 1e3  # profiler microseconds -> ms per model-epoch
        total, mm, events = profiled_ms(fn, per)
        print(f"  {name}: {total:.2f} ms in ATen ops, {mm:.2f} ms ({mm / total:.0%}) in matmul kernels")
        print_top(events, per, top)


def profile_compiled(p: int, epochs: int = 20, top: int = 14) -> None:
    """Where a compiled single run's epoch goes (``RunConfig.compile``, ``torch.profiler``): the
    ATen ops Inductor calls and, with Inductor's kernel profile on, each C++ kernel it generated
    (``graph_N_cpp_fused_...``), in ms per epoch."""
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True
    cfg = get_preset("nanda-p113").replace(p=p, compile=True, epochs=10**6)
    trainer = Trainer(cfg)
    trainer.run(progress=False, max_epochs=epochs)  # compiles
    total, mm, events = profiled_ms(
        lambda: trainer.run(progress=False, max_epochs=epochs),
        epochs * 1e3,
        keep=lambda key: key.startswith("aten::") or "cpp_fused" in key,
    )
    print(f"p={p}, compiled: {epochs} epochs, ms per epoch (self CPU time; the profiler inflates small ops)")
    print(
        f"  {total:.2f} ms in ATen ops and Inductor's kernels, {mm:.2f} ms ({mm / total:.0%}) in matmul kernels; the rest:"
    )
    print_top([e for e in events if e.key not in MATMULS], epochs * 1e3, top, epochs)


def median_ratio(tops: list[float], times: list[float]) -> float:
    """The median over the blocks of ``tops[i] / times[i]``: a block's arithmetic limit over its
    time (its share of the limit), or another side's time in the same round over the block's (a
    paired speed ratio). The machine's speed drifts, so each block's time meets the probe, or the
    other side, measured right beside it."""
    return statistics.median(x / t for x, t in zip(tops, times, strict=True))


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
    plus one forward over all pairs every eval_every epochs. The evaluation of a 1-layer model
    without LayerNorm is tabulated (``grokinterp.tables.tabulated_mlp_in``): per example only
    W_out and W_U, plus the tables' W_O and W_in work once."""
    d, d_mlp, p = cfg.d_model, cfg.d_mlp, cfg.p
    per_example = 2 * (d * d + 2 * d * d_mlp + d * p)  # W_O, W_in, W_out, W_U at the last position
    tables = 2 * 4 * cfg.n_ctx * cfg.d_vocab * d * d  # Q/K/V tables and W_O-sized work per step
    eval_flops = per_example * n_all + tables
    table_rows = cfg.n_ctx * cfg.d_vocab * cfg.n_heads + cfg.d_vocab
    if cfg.n_layers == 1 and cfg.normalization_type == "none" and n_all > table_rows:
        eval_flops = 2 * (d * d_mlp + d * p) * n_all + 2 * table_rows * d * (cfg.d_head + d_mlp) + tables
    return 3 * (per_example * n_train + tables) + eval_flops / cfg.eval_every


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
    parser.add_argument(
        "--profile", action="store_true", help="with --ensemble M: only profile a single run and the ensemble at each p"
    )
    parser.add_argument(
        "--profile-compiled",
        action="store_true",
        help="only profile a compiled single run's kernels at each --ensemble-p",
    )
    args = parser.parse_args()
    if (args.only_ensemble or args.profile) and not args.ensemble:
        parser.error("--only-ensemble and --profile need --ensemble M")
    if args.profile_compiled:
        for p in args.ensemble_p:
            profile_compiled(p)
        return
    if args.profile:
        for p in args.ensemble_p:
            profile_ensemble(p, args.ensemble)
        return
    # As Trainer.run does on the CPU (it is process-wide: the demo loop and the matmul probe of the
    # arithmetic limit reuse freed memory too, so every figure is measured under the same allocator).
    keep_freed_memory()
    if args.compile:
        # Dynamo compiles AdamW's update once per optimizer object and keeps at most recompile_limit
        # (8) versions, then runs the update eagerly: here 8 compiled runs per p stay alive at once.
        torch._dynamo.config.recompile_limit = 64
    if args.ensemble:
        for p in args.ensemble_p:
            r = ensemble_vs_sequential(p, args.ensemble, args.blocks, 10, compile=args.compile)
            print(f"p={p}: {args.ensemble} models, ms per model-epoch (share of each block's arithmetic limit, "
                  f"{r['limit']['time'] * 1e3:.2f} ms); ratio = sequential / this, median over the rounds",
                  flush=True)  # fmt: skip
            for name, v in r.items():
                if name != "limit":
                    print(f"  {name:20s} {v['time'] * 1e3:7.2f} ms ({v['share']:.0%}); {v['ratio']:.2f}x", flush=True)
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
            print(
                f"compiling the step and the evaluation: {time.perf_counter() - start:.0f} s "
                "(once per process; less where it compiled the same graphs before)"
            )
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
    # Ratios are medians over the blocks of each block's pair, so a drift of the host cancels.
    print(f"speed-up                  : {median_ratio(times['demo'], times['eager']):7.2f}x")
    if "compiled" in med:
        c = med["compiled"]
        ratio = median_ratio(times["eager"], times["compiled"])
        print(f"compiled trainer          : {c * 1e3:7.1f} ms/epoch; {ratio:.2f}x the eager trainer")

    limit = statistics.median(x[0] for x in limits)
    flops, gflops = limits[0][1], statistics.median(x[2] for x in limits)
    share = median_ratio([x[0] for x in limits], times["eager"])
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
