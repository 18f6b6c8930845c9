"""The trainer on a GPU, side by side in one process: the TransformerLens demo loop, the eager and
the compiled trainer (``--compile``: Inductor kernels captured as CUDA graphs), and ensembles of
1, 8, 64 and 256 members, in ms per model-epoch; then the classic run to test accuracy 0.99 and
64 seeds of the classic recipe to grokking.

    python benchmarks/bench_gpu.py                  # on the CUDA GPU (refused, one line, without one)
    python benchmarks/bench_gpu.py --quick          # the per-epoch table only (a few minutes)
    python benchmarks/bench_gpu.py --device cpu --p 23 --sizes 1,4 --quick --no-compile   # on a CPU

An epoch of nanda-p113 is a few hundred tiny kernels, so one model on a GPU is launch-bound: the
compiled step (fewer, fused kernels, replayed as CUDA graphs) and ensembles (one batched kernel
for many models) are the two ways to fill the GPU. Every timing synchronises the device at the end
of its block; methods alternate block by block so that clock and thermal drift hit all alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import demo_epoch_fn

from grokinterp.presets import get_preset
from grokinterp.training.ensemble import EnsembleTrainer
from grokinterp.training.trainer import Trainer


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], None], n: int, device: str) -> float:
    """Seconds per call of ``fn`` over ``n`` calls, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / n


def trainer_epoch_fn(cfg) -> Callable[[], None]:
    """One epoch of ``Trainer.run``: the full-batch step, the evaluation every ``eval_every``."""
    trainer = Trainer(cfg)
    count = {"epoch": 0}

    def epoch() -> None:
        trainer.train_step(trainer.train_tokens, trainer.train_labels)
        count["epoch"] += 1
        if count["epoch"] % cfg.eval_every == 0:
            trainer.evaluate_and_record()

    return epoch


def ensemble_block_fn(cfg, members: int, epochs: int) -> Callable[[], None]:
    """``epochs`` epochs of an in-memory ensemble of ``members`` seeds (``EnsembleTrainer.run``)."""
    ens = EnsembleTrainer([Trainer(cfg.replace(model_seed=s, data_seed=s)) for s in range(members)])
    return lambda: ens.run(progress=False, max_epochs=epochs)


def per_epoch_table(cfg, device: str, sizes: list[int], blocks: int, epochs: int, compile: bool = True) -> None:
    """ms per model-epoch of every method, medians of alternating blocks (``compile=False``
    leaves the compiled methods out)."""
    dataset = Trainer(cfg).dataset
    methods: dict[str, tuple[Callable[[], None], int, int]] = {  # fn, epochs per call, models
        "TransformerLens demo loop": (demo_epoch_fn(cfg, dataset, device), 1, 1),
        "grokinterp trainer, eager": (trainer_epoch_fn(cfg), 1, 1),
    }
    if compile:
        methods["grokinterp trainer, compiled"] = (trainer_epoch_fn(cfg.replace(compile=True)), 1, 1)
    for m in sizes:
        for compiled in (False, True) if compile else (False,):
            name = f"ensemble of {m}, {'compiled' if compiled else 'eager'}"
            methods[name] = (ensemble_block_fn(cfg.replace(compile=compiled, epochs=10**6), m, 10), 10, m)
    for name, (fn, per_call, _) in list(methods.items()):  # warm up: allocations, compilation, CUDA graphs
        start = time.perf_counter()
        try:
            timed(fn, max(1, 2 * cfg.eval_every // per_call), device)
        except Exception as err:  # a GPU hour is scarce: report the method, time the rest
            print(f"{name}: left out, it failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}", flush=True)
            del methods[name]
            continue
        print(f"warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(blocks):
        for name, (fn, per_call, models) in methods.items():
            calls = max(1, epochs // per_call)
            times[name].append(timed(fn, calls, device) / (per_call * models))
    base = statistics.median(times["TransformerLens demo loop"])
    print(f"\n{'method':36s} {'ms per model-epoch':>18s} {'vs demo loop':>13s}")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:36s} {med * 1e3:18.3f} {base / med:12.2f}x")


def to_grokking(cfg, device: str, seeds: int, max_epochs: int | None = None) -> None:
    """The classic run to test accuracy 0.99, then ``seeds`` seeds of it as one ensemble, each
    run stopping at 0.99 or at ``max_epochs`` (default the preset's epochs)."""
    stop = dict(stop_acc=0.99, stop_patience=1, epochs=max_epochs or cfg.epochs)
    start = time.perf_counter()
    res = Trainer(cfg.replace(**stop)).run(progress=False)
    synchronize(device)
    reached = f"at epoch {res.grokking_epoch}" if res.grokking_epoch else f"not reached by epoch {stop['epochs']}"
    print(f"{cfg.preset} run: test acc >= 0.99 {reached}, {time.perf_counter() - start:.0f} s", flush=True)
    if seeds == 0:
        return
    cfgs = [cfg.replace(**stop, model_seed=s, data_seed=s) for s in range(seeds)]
    start = time.perf_counter()
    results = EnsembleTrainer([Trainer(c) for c in cfgs]).run(progress=False)
    synchronize(device)
    wall = time.perf_counter() - start
    epochs = sorted(r.grokking_epoch for r in results if r.grokking_epoch is not None)
    if epochs:
        q = statistics.quantiles(epochs, n=4) if len(epochs) > 1 else [epochs[0]] * 3
        spread = f"median {q[1]:.0f}, quartiles {q[0]:.0f}-{q[2]:.0f}, range {epochs[0]}-{epochs[-1]}"
    else:
        spread = "none grokked"
    print(f"{seeds} seeds as one ensemble: {len(epochs)} grokked by epoch {stop['epochs']} ({spread}); "
          f"{wall:.0f} s wall-clock")  # fmt: skip


def check_against_cpu(cfg, device: str, epochs: int = 30) -> None:
    """The device's training against the CPU's, in float64 at p = 23: the eager step, the compiled
    step (CUDA graphs) and an ensemble of 2, each compared with CPU runs of the same seeds by the
    largest weight difference over the weights' largest magnitude (float64 agrees to ~1e-12; a
    wrong kernel or index shows as 1e-3 or more)."""
    small = cfg.replace(p=23, dtype="float64", loss_dtype="float64", epochs=epochs, eval_every=10)

    def weights(c, members: int) -> list[dict[str, torch.Tensor]]:
        trainers = [Trainer(c.replace(model_seed=s, data_seed=s)) for s in range(1, members + 1)]
        if members == 1:
            trainers[0].run(progress=False)
        else:
            EnsembleTrainer(trainers).run(progress=False)
        states = [t.model.state_dict() for t in trainers]
        return [
            {k: v.detach().cpu().double() for k, v in st.items() if v.is_floating_point() and v.numel()}
            for st in states
        ]

    cpu = {m: weights(small.replace(device="cpu"), m) for m in (1, 2)}
    for name, c, members in (("eager", small, 1), ("ensemble of 2", small, 2),
                             ("compiled", small.replace(compile=True), 1)):  # fmt: skip
        try:
            got = weights(c.replace(device=device), members)
        except Exception as err:  # report and go on, as in the tables
            print(f"check {name}: failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}", flush=True)
            continue
        worst = max(
            float((g[k] - r[k]).abs().max() / r[k].abs().max().clamp_min(1e-30))
            for g, r in zip(got, cpu[members], strict=True) for k in r
        )  # fmt: skip
        print(f"check {name} on {device} vs CPU, float64, {epochs} epochs: largest relative weight difference "
              f"{worst:.1e}", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (to try the script)")
    parser.add_argument("--preset", default="nanda-p113")
    parser.add_argument("--p", type=int, default=None, help="another modulus (default the preset's)")
    parser.add_argument("--sizes", default="1,8,64,256", help="ensemble sizes, comma-separated")
    parser.add_argument("--blocks", type=int, default=5, help="alternating timing blocks per method")
    parser.add_argument("--epochs-per-block", type=int, default=50)
    parser.add_argument(
        "--seeds",
        type=int,
        default=64,
        help="seeds of the recipe trained to grokking as one ensemble (0: the single run only)",
    )
    parser.add_argument("--quick", action="store_true", help="only the per-epoch table")
    parser.add_argument("--grok-only", action="store_true", help="only the runs to grokking")
    parser.add_argument("--check", action="store_true", help="only the float64 check against the CPU")
    parser.add_argument("--grok-max-epochs", type=int, default=None, help="cap of the runs to grokking")
    parser.add_argument(
        "--no-compile", action="store_true", help="leave the compiled step out (it compiles slowly on a CPU)"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu.py: no CUDA GPU here; it measures the GPU (--device cpu runs the same code on the CPU)")
        return 2
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"bench_gpu.py: --sizes takes whole numbers like 1,8,64 (got {args.sizes!r})")
        return 2
    cfg = get_preset(args.preset).replace(device=args.device)
    if args.p is not None:
        cfg = cfg.replace(p=args.p)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {name}, {args.preset} p={cfg.p}, full batch", flush=True)
    if args.check:
        check_against_cpu(cfg, args.device)
        return 0
    if not args.grok_only:
        per_epoch_table(cfg, args.device, sizes, args.blocks, args.epochs_per_block, compile=not args.no_compile)
    if not args.quick:
        to_grokking(cfg, args.device, args.seeds, args.grok_max_epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
