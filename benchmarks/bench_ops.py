"""Other operations with the fast recipe, against the reference numbers of issue 11.

For each operation (default sub, mul, div) this trains ``nanda-p113-fast`` with ``--p 59 --op OP``
(1 layer; lr 5e-3, wd 3, warm-up 10, stops 100 epochs after test accuracy first reaches 0.99) with
one thread into ``OUT/OP-p59``, one run after the other, analyses each run as ``grokinterp analyze``
does (``analyze_run``: measures.csv and analysis.json in the run directory), and prints one row per
run: grokking epoch (first evaluation with test accuracy >= 0.99), the key frequencies (rule and
MLP layer), the fraction of neurons explained per MLP layer, the restricted loss (logit level, all
pairs of the grid), the excluded loss (logit level, train), the final train loss, and the
clock/pizza measures of Zhong et al. 2023 with their verdict. The reference numbers of issue 11
(docs/measures.md, "Reference numbers for other operations") are printed below the table.

    python benchmarks/bench_ops.py                            # sub, mul, div at p=59 (a few minutes)
    python benchmarks/bench_ops.py --ops add sub mul div --p 59
    python benchmarks/bench_ops.py --runs benchmarks/results/reproductions/*   # table of existing runs

``--runs`` reads each run's analysis.json (``--reanalyse`` recomputes it first) and trains nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from grokinterp.analysis.run_analysis import Analysis, analyze_run
from grokinterp.io.runs import load_run
from grokinterp.presets import get_preset
from grokinterp.training.trainer import Trainer

#: Issue 11's reference numbers at p = 59 with the fast recipe (an independent implementation).
REFERENCE = {
    "mul": "84% explained, keys 2, 3, 10 (g = 2), restricted 2.9e-3, excluded 5.4, train loss 3.6e-3",
    "div": "57% explained, keys 7, 8, 12, 17, restricted 2.1e-3, excluded 12.1",
    "sub": "85% explained, keys 20, 21, 26, restricted 5.6e-4, excluded 6.65",
}

HEADER = (
    f"{'run':<16} {'op':<4} {'p':>3} {'basis':<28} {'grok ep':>7} {'last ep':>7} {'keys (rule, layer)':<30} "
    f"{'explained per layer':<20} {'restricted':>10} {'excluded':>8} {'train loss':>10} {'s_g':>5} {'q':>5} "
    f"{'verdict':<8} {'s':>6}"
)


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def row(path: Path, seconds: float | None = None) -> str:
    """One table row from a run directory's metrics and analysis.json."""
    run = load_run(path)
    a = Analysis.load(path)
    if a is None:
        raise SystemExit(f"{path}: no analysis.json; run grokinterp analyze {path} (or pass --reanalyse)")
    cfg = run.config
    grok = next((int(r["epoch"]) for r in run.metrics_rows if (r.get("test_acc") or 0.0) >= 0.99), None)
    kf = a.key_frequencies
    if kf is None:
        keys = "not defined"
    else:
        where = f"L{kf.layer}" if kf.layer is not None else "W_E"
        keys = f"{','.join(map(str, kf.freqs)) or '-'} ({kf.rule}, {where})"
    per_layer = "/".join(f"{d['frac_explained']:.0%}" for d in a.layers) or "n/a"
    basis = a.basis.get("name", "none") if a.basis_defined else "none"
    cp = a.clock_pizza or {}
    final = a.final
    return (
        f"{path.name:<16} {cfg.op:<4} {cfg.p:>3} {basis[:28]:<28} {grok!s:>7} {final.get('epoch')!s:>7} "
        f"{keys[:30]:<30} {per_layer:<20} {_fmt(final.get('restricted_loss'), '.2e'):>10} "
        f"{_fmt(final.get('excluded_loss'), '.3g'):>8} {_fmt(final.get('train_loss'), '.2e'):>10} "
        f"{_fmt(cp.get('gradient_symmetricity'), '.2f'):>5} {_fmt(cp.get('distance_irrelevance'), '.2f'):>5} "
        f"{cp.get('verdict') or 'n/a':<8} {_fmt(seconds, '.0f'):>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=["sub", "mul", "div"])
    parser.add_argument("--p", type=int, default=59)
    parser.add_argument("--preset", default="nanda-p113-fast")
    parser.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the preset's)")
    parser.add_argument("--train-frac", type=float, default=None, help="default: the preset's")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_ops"), help="where the runs are trained")
    parser.add_argument("--runs", type=Path, nargs="+", help="existing run directories: print their rows only")
    parser.add_argument("--reanalyse", action="store_true", help="with --runs: recompute analysis.json first")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.runs:
        print(HEADER)
        for path in args.runs:
            if args.reanalyse:
                analyze_run(path, progress=False)
            print(row(path), flush=True)
        return
    base = get_preset(args.preset)
    if args.epochs is not None:
        base = base.replace(epochs=args.epochs)
    if args.train_frac is not None:
        base = base.replace(train_frac=args.train_frac)
    print(
        f"recipe: {args.preset} at p={args.p} (lr {base.lr}, wd {base.wd}, warm-up {base.warmup_steps}, "
        f"stop {base.eval_every * (base.stop_patience - 1)} epochs after test acc >= {base.stop_acc}, "
        f"train fraction {base.train_frac}, at most {base.epochs} epochs, model seed {base.model_seed}, "
        f"data seed {base.data_seed}); 's' = training seconds"
    )
    print(HEADER)
    for op in args.ops:
        cfg = base.replace(p=args.p, op=op)
        path = args.out / f"{op}-p{args.p}"
        start = time.perf_counter()
        Trainer(cfg, path, force=True).run(progress=False)
        seconds = time.perf_counter() - start
        analyze_run(path, progress=False)
        print(row(path, seconds), flush=True)
    print("\nissue 11 reference (p = 59, fast recipe, an independent implementation):")
    for op in args.ops:
        if op in REFERENCE:
            print(f"  {op}: {REFERENCE[op]}")


if __name__ == "__main__":
    main()
