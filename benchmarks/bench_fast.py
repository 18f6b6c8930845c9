"""nanda-p113-fast against the classic nanda-p113 recipe on seeds not used to tune it.

For each seed (model_seed = data_seed = seed) both recipes train until test accuracy >= 0.99
(first evaluation, every 10 epochs), one after the other in this process. It prints epochs and
wall-clock seconds per seed, the medians and the ratios, and checks that the fast models are still
the paper's circuit: key frequencies, fraction of neurons explained by one frequency, restricted
loss.

    python benchmarks/bench_fast.py                       # 5 seeds, fast and classic (~40 min)
    python benchmarks/bench_fast.py --classic-seeds 0     # fast preset only (~2 min)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from grokinterp import measures
from grokinterp.presets import get_preset
from grokinterp.training import Trainer

TUNING_SEEDS = (0, 1, 2)  # used while choosing the recipe; never benchmarked
EVAL_SEEDS = (10, 11, 12, 13, 14)


def run(cfg):
    start = time.perf_counter()
    res = Trainer(cfg).run(progress=False)
    return res, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(EVAL_SEEDS))
    parser.add_argument("--classic-seeds", type=int, default=None, help="how many seeds also run classic (default all)")
    parser.add_argument("--classic-max-epochs", type=int, default=25_000)
    args = parser.parse_args()
    assert not set(args.seeds) & set(TUNING_SEEDS), "benchmark seeds must not be tuning seeds"
    n_classic = len(args.seeds) if args.classic_seeds is None else args.classic_seeds

    fast_base = get_preset("nanda-p113-fast").replace(stop_patience=1)
    classic_base = get_preset("nanda-p113").replace(
        stop_acc=0.99, stop_patience=1, eval_every=10, epochs=args.classic_max_epochs
    )
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"fast recipe: lr {fast_base.lr}, wd {fast_base.wd}, warmup {fast_base.warmup_steps}, betas "
          f"({fast_base.beta1}, {fast_base.beta2}), grokfast {fast_base.grokfast}")  # fmt: skip
    header = f"{'seed':>4} {'fast ep':>8} {'fast s':>7} {'acc':>6} {'keys':>18} {'expl':>5} {'restr':>9}"
    print(header + f" {'classic ep':>10} {'classic s':>9} {'ep ratio':>8} {'s ratio':>7}")
    fast_ep, fast_s, cl_ep, cl_s = [], [], [], []
    for i, seed in enumerate(args.seeds):
        res, secs = run(fast_base.replace(model_seed=seed, data_seed=seed))
        m = measures.compute_all_measures(res.model.eval(), Trainer(res.config).dataset)
        keys = ",".join(map(str, m["key_freqs"]))
        line = (
            f"{seed:>4} {res.grokking_epoch!s:>8} {secs:7.1f} {res.metrics[-1]['test_acc']:6.3f} {keys:>18} "
            f"{m['frac_neurons_explained']:5.2f} {m['restricted_loss']:9.2e}"
        )
        fast_ep.append(res.grokking_epoch or float("inf"))
        fast_s.append(secs)
        if i < n_classic:
            cres, csecs = run(classic_base.replace(model_seed=seed, data_seed=seed))
            cl_ep.append(cres.grokking_epoch or float("inf"))
            cl_s.append(csecs)
            line += f" {cres.grokking_epoch!s:>10} {csecs:9.1f} {cl_ep[-1] / fast_ep[-1]:8.1f} {csecs / secs:7.1f}"
        print(line, flush=True)
    grokked = sum(e != float("inf") for e in fast_ep)
    print(f"fast: {grokked}/{len(args.seeds)} seeds reached test acc >= 0.99; median {statistics.median(fast_s):.1f} s, "
          f"max {max(fast_s):.1f} s; median {statistics.median(fast_ep)} epochs")  # fmt: skip
    if cl_ep:
        print(f"classic: median {statistics.median(cl_ep)} epochs, {statistics.median(cl_s):.1f} s")
        print(f"ratio (classic / fast) of medians over the same seeds: epochs "
              f"{statistics.median(cl_ep) / statistics.median(fast_ep[:n_classic]):.1f}x, seconds "
              f"{statistics.median(cl_s) / statistics.median(fast_s[:n_classic]):.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
