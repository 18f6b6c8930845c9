"""The distribution of grokking epochs over many seeds (issue 12), trained as batched ensembles.

Each seed sets the model, data and train seed (as ``grokinterp train --seeds``); every run stops at
its first evaluation with test accuracy >= 0.99 (its grokking epoch). Seeds train in ensembles of
``--chunk`` members; each member is a standard run directory under OUT/seed=S, so the study resumes
(re-run the same command) and every run can be analysed.

    python benchmarks/seed_study.py --preset nanda-p113-fast --seeds 0-63 --out /tmp/seeds-fast
    python benchmarks/seed_study.py --preset nanda-p113 --p 59 --seeds 0-63 --out /tmp/seeds-classic-p59

Prints the grokking epochs, their median and quartiles, and the wall-clock; writes OUT/results.csv
and OUT/grokking_epochs.png (a histogram).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from grokinterp.io.rundir import read_summary
from grokinterp.presets import get_preset
from grokinterp.training.ensemble import EnsembleTrainer, parse_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nanda-p113-fast")
    parser.add_argument("--p", type=int, default=None, help="override the preset's p (e.g. a smaller p on CPU)")
    parser.add_argument("--seeds", default="0-63")
    parser.add_argument("--epochs", type=int, default=None, help="cap (default: the preset's epochs)")
    parser.add_argument("--chunk", type=int, default=16, help="members per ensemble")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    cfg = get_preset(args.preset)
    cfg = cfg.replace(
        stop_acc=0.99, stop_patience=1, checkpoint_every=cfg.epochs if args.epochs is None else args.epochs
    )
    if args.p is not None:
        cfg = cfg.replace(p=args.p)
    if args.epochs is not None:
        cfg = cfg.replace(epochs=args.epochs)
    seeds = parse_seeds(args.seeds)
    start = time.perf_counter()
    for i in range(0, len(seeds), args.chunk):
        chunk = seeds[i : i + args.chunk]
        dirs = [args.out / f"seed={s}" for s in chunk]
        if all((d / "summary.json").is_file() and read_summary(d).get("finished") for d in dirs):
            continue
        if all((d / "state.safetensors").is_file() for d in dirs):
            trainer = EnsembleTrainer.resume(dirs)
        else:
            cfgs = [cfg.replace(model_seed=s, data_seed=s, train_seed=s) for s in chunk]
            trainer = EnsembleTrainer.create(cfgs, dirs, force=True)
        trainer.run(progress=True)
    wall = time.perf_counter() - start

    rows = [(s, read_summary(args.out / f"seed={s}")) for s in seeds]
    epochs = [r["grokking_epoch"] for _, r in rows if r.get("grokking_epoch") is not None]
    lines = ["seed,grokking_epoch,final_epoch,status"]
    lines += [f"{s},{r.get('grokking_epoch') or ''},{r.get('final_epoch')},{r.get('status')}" for s, r in rows]
    (args.out / "results.csv").write_text("\n".join(lines) + "\n")
    print(f"{args.preset} p={cfg.p}, {len(seeds)} seeds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"grokked (test acc >= 0.99): {len(epochs)}/{len(seeds)} within {cfg.epochs} epochs; wall-clock {wall:.0f} s")
    if epochs:
        q = statistics.quantiles(epochs, n=4) if len(epochs) > 1 else [epochs[0]] * 3
        print(f"grokking epoch: median {statistics.median(epochs):.0f}, quartiles {q[0]:.0f}-{q[2]:.0f}, "
              f"min {min(epochs)}, max {max(epochs)}")  # fmt: skip
        import plotly.graph_objects as go

        from grokinterp.viz.export import export_figures

        fig = go.Figure(go.Histogram(x=epochs, nbinsx=20))
        fig.update_layout(
            template="grokinterp",
            title_text=f"Grokking epoch over {len(epochs)} seeds ({args.preset}, p={cfg.p})",
            xaxis_title="first epoch with test accuracy >= 0.99",
            yaxis_title="runs",
        )
        export_figures({"grokking_epochs": fig}, args.out, "png")


if __name__ == "__main__":
    main()
