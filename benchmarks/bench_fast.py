"""nanda-p113-fast against the classic nanda-p113 recipe on seeds not used to tune it.

For each seed (model_seed = data_seed = seed) the classic recipe trains until test accuracy >= 0.99
(first evaluation, every 10 epochs) and the fast preset runs as shipped (on past 0.99 through cleanup),
one after the other in this process. It prints epochs and seconds to grok per seed, the fast run's
whole wall-clock, the medians and the ratios, and checks that the fast models are still the paper's
circuit: key frequencies, fraction of neurons explained by one frequency, restricted loss.

    python benchmarks/bench_fast.py                       # 5 seeds, fast and classic (~40 min)
    python benchmarks/bench_fast.py --classic-seeds 0     # fast preset only (~4 min)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from grokinterp.analysis import measures
from grokinterp.presets import get_preset
from grokinterp.tasks import make_dataset
from grokinterp.training.trainer import Trainer

TUNING_SEEDS = (0, 1, 2)  # used while choosing the recipe; never benchmarked
EVAL_SEEDS = (10, 11, 12, 13, 14)


def run(cfg):
    start = time.perf_counter()
    res = Trainer(cfg).run(progress=False)
    return res, time.perf_counter() - start


def seconds_to_grok(res) -> float:
    """Training seconds until the first evaluation at test accuracy >= 0.99 (inf if never)."""
    return next((r["elapsed"] for r in res.metrics if r["epoch"] == res.grokking_epoch), float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(EVAL_SEEDS))
    parser.add_argument("--classic-seeds", type=int, default=None, help="how many seeds also run classic (default all)")
    parser.add_argument("--classic-max-epochs", type=int, default=25_000)
    args = parser.parse_args()
    assert not set(args.seeds) & set(TUNING_SEEDS), "benchmark seeds must not be tuning seeds"
    n_classic = len(args.seeds) if args.classic_seeds is None else args.classic_seeds

    fast_base = get_preset("nanda-p113-fast")  # as shipped: trains on past grokking through cleanup
    classic_base = get_preset("nanda-p113").replace(
        stop_acc=0.99, stop_patience=1, eval_every=10, epochs=args.classic_max_epochs
    )
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"fast recipe: lr {fast_base.lr}, wd {fast_base.wd}, warmup {fast_base.warmup_steps}, betas "
          f"({fast_base.beta1}, {fast_base.beta2}), stops {fast_base.eval_every * (fast_base.stop_patience - 1)} "
          f"epochs after test acc >= {fast_base.stop_acc}")  # fmt: skip
    print("grok = first evaluation with test acc >= 0.99; 'total' = the whole fast run, cleanup included")
    header = (
        f"{'seed':>4} {'grok ep':>7} {'grok s':>6} {'total ep':>8} {'total s':>7} {'acc':>5} {'keys':>18} "
        f"{'expl':>4} {'restr':>7}"
    )
    print(header + f" {'classic ep':>10} {'classic s':>9} {'ep ratio':>8} {'s ratio':>7}")
    fast_ep, fast_s, fast_total, expl, cl_ep, cl_s = [], [], [], [], [], []
    for i, seed in enumerate(args.seeds):
        res, secs = run(fast_base.replace(model_seed=seed, data_seed=seed))
        c = res.config
        m = measures.compute_all_measures(
            res.model.eval(), make_dataset(c.p, c.op, c.layout, c.train_frac, c.data_seed)
        )
        keys = ",".join(map(str, m["key_freqs"]))
        fast_ep.append(res.grokking_epoch or float("inf"))
        fast_s.append(seconds_to_grok(res))
        fast_total.append(secs)
        expl.append(m["frac_neurons_explained"])
        line = (
            f"{seed:>4} {res.grokking_epoch!s:>7} {fast_s[-1]:6.1f} {res.metrics[-1]['epoch']:>8} {secs:7.1f} "
            f"{res.metrics[-1]['test_acc']:5.3f} {keys:>18} {expl[-1]:4.2f} {m['restricted_loss']:7.1e}"
        )
        if i < n_classic:
            cres, _ = run(classic_base.replace(model_seed=seed, data_seed=seed))
            cl_ep.append(cres.grokking_epoch or float("inf"))
            cl_s.append(seconds_to_grok(cres))
            line += f" {cres.grokking_epoch!s:>10} {cl_s[-1]:9.1f} {cl_ep[-1] / fast_ep[-1]:8.1f} {cl_s[-1] / fast_s[-1]:7.1f}"
        print(line, flush=True)
    grokked = sum(e != float("inf") for e in fast_ep)
    med = statistics.median
    print(f"fast: {grokked}/{len(args.seeds)} seeds reached test acc >= 0.99; whole run median {med(fast_total):.1f} s, "
          f"max {max(fast_total):.1f} s; to grok median {med(fast_s):.1f} s, {med(fast_ep)} epochs; "
          f"neurons explained {min(expl):.2f}-{max(expl):.2f}")  # fmt: skip
    if cl_ep:
        k = len(cl_ep)
        print(f"classic: median {med(cl_ep)} epochs, {med(cl_s):.1f} s to grok")
        print(f"ratio (classic / fast) of medians over the same seeds: epochs to grok {med(cl_ep) / med(fast_ep[:k]):.1f}x, "
              f"seconds to grok {med(cl_s) / med(fast_s[:k]):.1f}x, classic to grok / whole fast run "
              f"{med(cl_s) / med(fast_total[:k]):.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
