"""Which recipe groks fastest? A race of the acceleration methods, each tuned with the same budget.

For each task (p, train fraction; the 1-layer model of Nanda et al., a + b) and each method, an
Optuna study (``grokinterp.training.tune.run_tune``) tunes the method's own hyperparameters on the
tuning seeds (the preset's: model 999, data 598; ``--trials`` trials, objective: epochs to test accuracy >= 0.99, capped at
``--max-epochs``); the best recipe is then trained on ``--eval-seeds`` other seeds (model, data and
train seed 0, 1, ...), each stopping ``--cleanup`` epochs after it first reaches 0.99, and its final
model is checked for the paper's circuit (key frequencies by the clustered rule, fraction of
neurons explained, restricted loss). Fixed recipes (the classic one and the fast preset) are not
tuned. Methods (``--methods``):

- ``classic``: nanda-p113's AdamW, lr 1e-3, wd 1 (not tuned);
- ``fast-preset``: nanda-p113-fast's lr 5e-3, wd 3, 10-step warm-up (not tuned);
- ``adamw``: AdamW, lr and wd tuned;
- ``grokfast-ema`` / ``grokfast-ma``: Grokfast's filters (Lee et al. 2024), lr, wd and the
  filter's alpha/window and lambda tuned;
- ``stablemax``: StableMax cross-entropy (Prieto et al. 2025), lr and wd tuned;
- ``orthograd``: perp-Grad (Prieto et al. 2025), lr and wd tuned;
- ``stablemax+orthograd``: both, as Prieto et al. combine them, lr and wd tuned.

Every tuned method keeps the fast preset's 10-step warm-up. Outputs in ``--out``: ``results.csv``
(one row per task, method and seed), ``summary.md`` (the tables) and ``race.png`` (epochs to
grok per method, seeds as points), all regenerated from the command line alone:

    python benchmarks/race.py --out benchmarks/results/race                       # both tasks, 20 trials, 16 seeds
    python benchmarks/race.py --tasks 97:0.5 --trials 8 --eval-seeds 6 --out /tmp/race   # a smaller race
    python benchmarks/race.py --methods adamw,fast-preset --eval-seeds 32 --tag top --out /tmp/race  # more seeds

``--ensemble`` trains the evaluation seeds of each method that allows it (plain AdamW with either
loss: classic, fast-preset, adamw, stablemax) as one ``EnsembleTrainer``; epochs and accuracies are
the single runs' up to float32 rounding, and a seed's seconds are its share of the ensemble's
clock (the table says so). On this project's 2-core CPU an ensemble of 16 saves little (about 7%
per model-epoch at p = 113, docs/benchmarks.md); on a GPU it is the way to run many seeds.

``--tag TAG`` writes ``results-TAG.csv``, ``summary-TAG.md`` and ``race-TAG.png`` instead, so a
second table (more seeds of fewer methods) sits beside the first, from the same studies.

Studies live in ``OUT/<task>/<method>/``, and every finished evaluation seed is kept there in
``seeds.jsonl`` (keyed by its full training config and cleanup), so an interrupted race, or one
rerun with more tasks or seeds, continues where it stopped and retrains nothing it already has.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from grokinterp.analysis import measures
from grokinterp.config import RunConfig
from grokinterp.presets import get_preset
from grokinterp.training.ensemble import EnsembleTrainer, check_ensemble_configs
from grokinterp.training.trainer import Trainer, TrainResult
from grokinterp.training.tune import run_tune

WARMUP = dict(warmup_steps=10)
#: name -> (fixed settings over nanda-p113, searched fields or None for a fixed recipe)
METHODS: dict[str, tuple[dict, str | None]] = {
    "classic": ({}, None),
    "fast-preset": ({"lr": 5e-3, "wd": 3.0, **WARMUP}, None),
    "adamw": (WARMUP, "lr,wd"),
    "grokfast-ema": ({**WARMUP, "grokfast": "ema"}, "lr,wd,grokfast_alpha,grokfast_lamb"),
    "grokfast-ma": ({**WARMUP, "grokfast": "ma"}, "lr,wd,grokfast_window,grokfast_lamb"),
    "stablemax": ({**WARMUP, "loss_fn": "stablemax"}, "lr,wd"),
    "orthograd": ({**WARMUP, "orthograd": True}, "lr,wd"),
    "stablemax+orthograd": ({**WARMUP, "loss_fn": "stablemax", "orthograd": True}, "lr,wd"),
}
THRESHOLD = 0.99


@dataclass
class SeedResult:
    """One evaluation seed of one method's best recipe."""

    task: str
    method: str
    seed: int
    grokked: bool
    epoch: int | None
    seconds: float | None
    n_keys: int
    frac_explained: float
    restricted_loss: float
    final_test_acc: float
    recipe: str
    #: 1: trained alone; M: one of an ensemble of M seeds (--ensemble), seconds its share
    members: int = 1


def task_config(p: int, train_frac: float) -> RunConfig:
    """nanda-p113's model, a + b mod p, ``train_frac`` of the pairs for training, eval every 10."""
    return get_preset("nanda-p113").replace(p=p, train_frac=train_frac, device="cpu", preset=None)


def best_recipe(method: str, base: RunConfig, out: Path, trials: int, max_epochs: int) -> RunConfig:
    """The method's recipe: fixed, or the best trial of its study (tuned on ``base``'s seeds)."""
    fixed, search = METHODS[method]
    cfg = base.replace(**fixed)
    if search is None:
        return cfg
    result = run_tune(cfg, out, trials=trials, target_acc=THRESHOLD, max_epochs=max_epochs, search=search, seed=0)
    if result.best_config is None:
        return cfg
    best = result.best_config
    return cfg.replace(**{k: getattr(best, k) for k in search.split(",")})


def eval_config(cfg: RunConfig, seed: int, max_epochs: int, cleanup: int) -> RunConfig:
    """``cfg`` on seed ``seed`` (model, data and train seed), stopping ``cleanup`` epochs past the
    first test accuracy 0.99, or at ``max_epochs``."""
    return cfg.replace(
        model_seed=seed, data_seed=seed, train_seed=seed, epochs=max_epochs, stop_acc=THRESHOLD,
        stop_patience=max(1, cleanup // cfg.eval_every + 1), checkpoint_every=max_epochs,
    )  # fmt: skip


def seed_result(task: str, method: str, cfg: RunConfig, seed: int, res: TrainResult, dataset, seconds) -> SeedResult:
    """One trained seed's row: when it first reached 0.99 (``seconds``: the wall-clock to that
    epoch), its final test accuracy, and the circuit of its final model (key frequencies by the
    clustered rule, fraction of neurons explained, restricted loss)."""
    model = res.model.eval()
    with torch.no_grad():
        chosen, _, _ = measures.select_key_frequencies(model, dataset, rule="clustered")
        m = measures.compute_all_measures(model, dataset, list(chosen.freqs))
    names = ["lr", "wd", "warmup_steps", "loss_fn", "orthograd", "grokfast"]
    names += {"ema": ["grokfast_alpha", "grokfast_lamb"], "ma": ["grokfast_window", "grokfast_lamb"]}.get(
        cfg.grokfast, []
    )
    recipe = {k: getattr(cfg, k) for k in names}
    return SeedResult(
        task, method, seed, res.grokking_epoch is not None, res.grokking_epoch, seconds,
        len(chosen.freqs), float(m["frac_neurons_explained"]), float(m["restricted_loss"]),
        float(res.metrics[-1]["test_acc"]), json.dumps(recipe),
    )  # fmt: skip


def evaluate_seed(task: str, method: str, cfg: RunConfig, seed: int, max_epochs: int, cleanup: int) -> SeedResult:
    """Train ``cfg`` on seed ``seed`` alone until ``cleanup`` epochs past test accuracy 0.99 (or
    ``max_epochs``), then check the final model for the circuit."""
    trainer = Trainer(eval_config(cfg, seed, max_epochs, cleanup))
    res = trainer.run(progress=False)
    if res.status == "interrupted":  # SIGINT/SIGTERM, which the trainer turns into a clean stop: no result
        raise KeyboardInterrupt(f"{method} seed {seed} interrupted at epoch {trainer.epoch}")
    row = next((r for r in res.metrics if r["epoch"] == res.grokking_epoch), None)
    return seed_result(task, method, cfg, seed, res, trainer.dataset, None if row is None else row["elapsed"])


def ensemble_shares(metrics: list[list[dict]]) -> list[dict[int, float]]:
    """Each member's share of an ensemble's wall-clock up to each of its evaluation epochs.

    ``metrics``: the members' metrics rows (epoch, elapsed: the ensemble's clock). Between two
    evaluation epochs the ensemble trained the members that have a row at the later one, so each
    of them is charged the interval divided by their number; members that stopped early make the
    later intervals cheaper for the rest, as they did for the clock.
    """
    clock: dict[int, float] = {}
    running: dict[int, int] = {}
    for rows in metrics:
        for r in rows:
            clock[r["epoch"]] = max(clock.get(r["epoch"], 0.0), float(r["elapsed"]))
            running[r["epoch"]] = running.get(r["epoch"], 0) + 1
    share: dict[int, float] = {}
    total, before = 0.0, 0.0
    for epoch in sorted(clock):
        total += (clock[epoch] - before) / running[epoch]
        share[epoch], before = total, clock[epoch]
    return [{r["epoch"]: share[r["epoch"]] for r in rows} for rows in metrics]


def evaluate_ensemble(
    task: str, method: str, cfg: RunConfig, seeds: list[int], max_epochs: int, cleanup: int
) -> list[SeedResult]:
    """Train ``cfg`` on ``seeds`` as one ensemble (each member stops ``cleanup`` epochs past its
    own first 0.99); a member's seconds are its share of the ensemble's wall-clock
    (``ensemble_shares``), what one seed cost when trained with the others."""
    ens = EnsembleTrainer.create([eval_config(cfg, s, max_epochs, cleanup) for s in seeds], [None] * len(seeds))
    results = ens.run(progress=False)
    if any(r.status == "interrupted" for r in results):  # SIGINT/SIGTERM: no seed of it is kept
        raise KeyboardInterrupt(f"{method} ensemble of seeds {seeds[0]}-{seeds[-1]} interrupted")
    shares = ensemble_shares([r.metrics for r in results])
    rows = [
        seed_result(task, method, cfg, s, r, m.dataset, None if r.grokking_epoch is None else sh[r.grokking_epoch])
        for s, r, m, sh in zip(seeds, results, ens.members, shares, strict=True)
    ]
    for row in rows:
        row.members = len(seeds)
    return rows


def cached_seed(cache: Path, key: str) -> SeedResult | None:
    """The evaluation stored under ``key`` in the method's ``seeds.jsonl``, if any."""
    if not cache.exists():
        return None
    for line in cache.read_text().splitlines():
        entry = json.loads(line)
        if entry["key"] == key:
            return SeedResult(**entry["result"])
    return None


def seed_key(cfg: RunConfig, seed: int, max_epochs: int, cleanup: int, ensemble: bool = False) -> str:
    """What makes one evaluation: the recipe's whole config, the seed, the cap, the cleanup, and
    (only when set, so single-run keys stay as they were) that it trains in an ensemble, whose
    float32 rounding and seconds differ from a single run's."""
    key = {"config": cfg.to_dict(), "seed": seed, "max_epochs": max_epochs, "cleanup": cleanup}
    if ensemble:
        key["ensemble"] = True
    return json.dumps(key, sort_keys=True, default=str)


def ensemble_allows(cfg: RunConfig) -> bool:
    """Whether the recipe can train in an ensemble (plain AdamW with either loss; not Grokfast or
    perp-Grad, which ``EnsembleTrainer`` does not implement)."""
    try:
        check_ensemble_configs([cfg])
    except ValueError:
        return False
    return True


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """(25%, median, 75%) of ``xs`` (inclusive method; one value: itself three times)."""
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def kept(r: SeedResult) -> bool:
    """Whether the seed reached test accuracy 0.99 and still had it when its run ended (a seed can
    lose it again within the cleanup epochs; its final model then no longer generalises)."""
    return r.grokked and r.final_test_acc >= THRESHOLD


def circuit_cells(done: list[SeedResult], why: str = "none grokked") -> str:
    """The key frequencies, fraction explained and restricted loss cells: medians over ``done``
    (the seeds whose final model still generalises: the circuit is a generalising model's), with
    the reason (``why``) where there are none."""
    if not done:
        return f"n/a: {why} | n/a | n/a"
    keys = statistics.median(r.n_keys for r in done)
    frac = statistics.median(r.frac_explained for r in done)
    with_keys = [r.restricted_loss for r in done if r.n_keys > 0]
    rl = f"{statistics.median(with_keys):.2g}" if with_keys else "n/a: no key frequencies"
    return f"{keys:g} | {frac:.2f} | {rl}"


def summary_table(rows: list[SeedResult], task: str) -> str:
    """The Markdown table of one task: per method the epochs and seconds to 0.99 (median and
    quartiles over the seeds that grokked; for seeds trained in an ensemble, their share of its
    clock, and the cell says so), the fraction grokked, how many of those still had test
    accuracy >= 0.99 at the end, and the circuit at the end (medians over those)."""
    lines = [
        f"### {task}",
        "",
        "| method | grokked | still >= 0.99 at the end | epochs to 0.99: median (25-75%) | seconds: median (25-75%) "
        "| key freqs | neurons explained | restricted loss | recipe |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    methods = list(dict.fromkeys(r.method for r in rows if r.task == task))
    for method in methods:
        rs = [r for r in rows if r.task == task and r.method == method]
        done = [r for r in rs if r.grokked]
        if done:
            e = quartiles([float(r.epoch) for r in done])
            s = quartiles([float(r.seconds) for r in done])
            ep, sec = f"{e[1]:.0f} ({e[0]:.0f}-{e[2]:.0f})", f"{s[1]:.1f} ({s[0]:.1f}-{s[2]:.1f})"
        else:
            ep = sec = "none grokked"
        shared = sorted({r.members for r in rs if r.members > 1})
        if shared and done:  # seconds charged as a share of an ensemble's clock, not a run's own
            sec += f", share of ensembles of {'/'.join(map(str, shared))}"
        held = [r for r in done if kept(r)]  # the circuit is measured on models that still generalise
        circuit = circuit_cells(held, "none grokked" if not done else "none still at 0.99")
        recipe = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in json.loads(rs[0].recipe).items()
                           if v not in (None, False, "none", "cross_entropy"))  # fmt: skip
        lines.append(
            f"| {method} | {len(done)}/{len(rs)} | {len(held)}/{len(done)} | {ep} | {sec} | {circuit} | {recipe} |"
        )
    return "\n".join(lines)


def verdict(rows: list[SeedResult], task: str) -> str:
    """Which method wins: most seeds that reached 0.99 and still had it at the end first, then the
    median epochs to the first 0.99 over the seeds that grokked; and by how much against the
    best-tuned plain AdamW, the fast preset and the classic recipe."""
    med = {}
    for method in dict.fromkeys(r.method for r in rows if r.task == task):
        rs = [r for r in rows if r.task == task and r.method == method]
        done = [float(r.epoch) for r in rs if r.grokked]
        held = [r for r in rs if kept(r)]
        if done:
            med[method] = (len(held) / len(rs), statistics.median(done))
    if not med:
        return f"{task}: no method grokked."
    best = min(med, key=lambda k: (-med[k][0], med[k][1]))
    out = [f"{task}: the winner is **{best}** (median {med[best][1]:.0f} epochs to 0.99, {med[best][0]:.0%} of "
           "seeds grokked and still at 0.99 at the end)"]  # fmt: skip
    for ref in ("adamw", "fast-preset", "classic"):
        if ref in med and ref != best:
            out.append(f"{med[ref][1] / med[best][1]:.2f}x fewer epochs than {ref} ({med[ref][1]:.0f})")
    faster = [k for k in med if med[k][1] < med[best][1]]
    if faster:
        out.append("reaching 0.99 sooner but keeping it on fewer seeds: " + ", ".join(
            f"{k} ({med[k][1]:.0f} epochs, {med[k][0]:.0%} kept)" for k in sorted(faster, key=lambda k: med[k][1])))  # fmt: skip
    return "; ".join(out) + "."


def figure(rows: list[SeedResult], path: Path, cap: int) -> None:
    """Epochs to test accuracy 0.99 per method, one panel per task, seeds as points: filled
    circles for seeds that still had 0.99 at the end, open circles for seeds that reached it and
    lost it again, crosses at the cap (``cap``: the race's --max-epochs) for seeds that never
    reached it. Methods keep one order and each kind of point one colour in every panel."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from grokinterp.viz.export import export_figures

    kinds = {  # name -> (rows of that kind, marker)
        "reached 0.99 and kept it": (kept, dict(symbol="circle", color="#1f77b4")),
        "reached 0.99, lost it by the end": (
            lambda r: r.grokked and not kept(r), dict(symbol="circle-open", color="#ff7f0e", line=dict(width=2))
        ),
        f"never reached 0.99 by {cap} (drawn at the cap)": (lambda r: not r.grokked, dict(symbol="x", color="#d62728")),
    }  # fmt: skip
    tasks = list(dict.fromkeys(r.task for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, shared_yaxes=True)
    for i, task in enumerate(tasks, start=1):
        for name, (which, marker) in kinds.items():
            rs = [r for r in rows if r.task == task and which(r)]
            if not rs:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r.method for r in rs], y=[r.epoch if r.grokked else cap for r in rs], mode="markers",
                    marker=dict(size=7, opacity=0.75, **marker), name=name,
                    showlegend=not any(t.name == name for t in fig.data),
                ),
                row=1, col=i,
            )  # fmt: skip
    ticks = [t for t in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000) if t <= cap] + [cap]
    fig.update_xaxes(categoryorder="array", categoryarray=methods)
    fig.update_yaxes(type="log", tickvals=sorted(set(ticks)), showticklabels=True)
    fig.update_yaxes(title_text="epochs to test accuracy 0.99", col=1)
    fig.update_layout(
        title="Epochs to grok per method, seeds as points", width=520 * len(tasks) + 160, height=480,
        legend=dict(orientation="h", yanchor="top", y=-0.3, x=0),
    )  # fmt: skip
    export_figures({path.stem: fig}, path.parent, "png")


def parse_tasks(text: str) -> list[tuple[int, float]]:
    """``"97:0.5,113:0.3"`` -> [(97, 0.5), (113, 0.3)]; one line naming --tasks otherwise."""
    out = []
    for part in text.split(","):
        p, _, frac = part.partition(":")
        try:
            out.append((int(p), float(frac)))
        except ValueError:
            raise SystemExit(f"race.py: --tasks takes P:TRAIN_FRAC pairs like 97:0.5,113:0.3 (got {part!r})") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="97:0.5,113:0.3", help="P:TRAIN_FRAC pairs (a + b, the 1-layer model)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--trials", type=int, default=20, help="Optuna trials per tuned method and task")
    parser.add_argument("--eval-seeds", type=int, default=16, help="seeds the best recipe is evaluated on")
    parser.add_argument("--max-epochs", type=int, default=5000, help="cap of every run")
    parser.add_argument("--cleanup", type=int, default=500, help="epochs trained past the first test acc 0.99")
    parser.add_argument("--out", required=True, help="folder for studies, results.csv, summary.md, race.png")
    parser.add_argument(
        "--ensemble", action="store_true", help="train the evaluation seeds of each method that allows it (plain "
        "AdamW, either loss) as one ensemble; a seed's seconds are then its share of the ensemble's wall-clock",
    )  # fmt: skip
    parser.add_argument(
        "--tag", default="", help="name the outputs results-TAG.csv, summary-TAG.md, race-TAG.png (another table "
        "from the same studies and seeds, e.g. more seeds of fewer methods)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"race.py: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        return 2
    if args.tag and not args.tag.replace("-", "").replace("_", "").isalnum():
        print(f"race.py: --tag takes letters, digits, - and _ (got {args.tag!r})")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.tag}" if args.tag else ""
    rows: list[SeedResult] = []
    start = time.perf_counter()
    for p, frac in parse_tasks(args.tasks):
        task = f"a + b mod {p}, {frac:.0%} train"
        base = task_config(p, frac)
        for method in methods:
            folder = out / f"p{p}-{frac:g}" / method
            cfg = best_recipe(method, base, folder, args.trials, args.max_epochs)
            folder.mkdir(parents=True, exist_ok=True)
            together = args.ensemble and ensemble_allows(cfg)  # else these seeds train alone
            keys = {
                seed: seed_key(cfg, seed, args.max_epochs, args.cleanup, together) for seed in range(args.eval_seeds)
            }
            found = {seed: cached_seed(folder / "seeds.jsonl", key) for seed, key in keys.items()}
            todo = [seed for seed, r in found.items() if r is None]
            if todo and together:
                trained = evaluate_ensemble(task, method, cfg, todo, args.max_epochs, args.cleanup)
            else:
                trained = (evaluate_seed(task, method, cfg, seed, args.max_epochs, args.cleanup) for seed in todo)
            for r in trained:  # each seed is kept as soon as it is known: an interruption loses no other
                with open(folder / "seeds.jsonl", "a") as f:
                    f.write(json.dumps({"key": keys[r.seed], "result": asdict(r)}) + "\n")
                found[r.seed] = r
            for seed, r in found.items():
                rows.append(r)
                print(f"{task} {method} seed {seed}: " + (f"0.99 at epoch {r.epoch} ({r.seconds:.1f} s)" if r.grokked
                      else f"not grokked by {args.max_epochs}") + f"; {r.n_keys} keys, {r.frac_explained:.2f} "
                      f"explained, restricted loss {r.restricted_loss:.2g}", flush=True)  # fmt: skip
    with open(out / f"results{suffix}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    tasks = list(dict.fromkeys(r.task for r in rows))
    command = "python benchmarks/race.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [f"Regenerate with `{command}` (this call {time.perf_counter() - start:.0f} s, seeds reused from "
            f"seeds.jsonl included; torch {torch.__version__}, {torch.get_num_threads()} threads).", ""]  # fmt: skip
    for task in tasks:
        text += [summary_table(rows, task), "", verdict(rows, task), ""]
    (out / f"summary{suffix}.md").write_text("\n".join(text))
    figure(rows, out / f"race{suffix}.png", args.max_epochs)
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM mid-seed: that seed is not written
        print(f"race.py: {e or 'interrupted'}; finished seeds are kept in seeds.jsonl, a rerun continues")
        sys.exit(130)
