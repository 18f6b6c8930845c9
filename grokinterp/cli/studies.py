"""The commands over many runs: ``grokinterp sweep`` (a grid, ``grokinterp.training.sweep``, with its
power-law fit and figure) and ``grokinterp tune`` (an Optuna study, ``grokinterp.training.tune``).
``--grid``, ``--set`` and ``--search`` values are parsed by ``RunConfig.parse_field``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from grokinterp.constants import GROKKING_THRESHOLD

_SWEEP_HELP = "train a grid of configs (parallel, resumable) and fit grokking epoch against train fraction"
_SWEEP_DESCRIPTION = (
    "Train the cartesian product of --grid values into OUT/runs/<field=value,...>; write OUT/results.csv, "
    "OUT/fit.json and OUT/grokking_vs_train_frac.html. Re-running skips finished runs and resumes unfinished ones."
)
_TUNE_HELP = "Optuna search for the recipe that reaches a test accuracy in the fewest epochs"
_TUNE_DESCRIPTION = (
    "Minimise the epoch at which test accuracy reaches --target-acc (TPE sampler, median pruner). Writes "
    "OUT/trials.csv and OUT/best.json; re-running continues the study in OUT/study.db."
)


def _study_parser(sub, name: str, help: str, description: str, func) -> argparse.ArgumentParser:
    """The subparser of command ``name`` running ``func``, with ``--preset`` (the recipe every run
    or trial starts from)."""
    from grokinterp.presets import PRESETS

    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    p.add_argument("--preset", choices=list(PRESETS), default="nanda-p113-fast")
    return p


def _add_set_flag(p: argparse.ArgumentParser, each: str) -> None:
    """``--set FIELD=VALUE`` (repeatable), applied to ``each`` run or trial."""
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help=f"override one field of the preset for every {each} (repeatable)")  # fmt: skip


def _parse_sets(args: argparse.Namespace, taken: dict[str, Any], flag: str) -> dict[str, Any]:
    """The ``--set`` values; a field also in ``taken`` (from ``flag``) is an error."""
    from grokinterp.config import RunConfig

    sets = RunConfig.parse_sets(args.sets)
    both = sorted(set(taken) & set(sets))
    if both:
        raise ValueError(f"{', '.join(both)} given in both {flag} and --set")
    return sets


def _base_config(preset: str, sets: dict[str, Any]):
    """The preset's config with the ``--set`` values."""
    from grokinterp.presets import get_preset

    base = get_preset(preset)
    return base.replace(**sets) if sets else base


# ----------------------------------------------------------------------------------------------
# sweep
# ----------------------------------------------------------------------------------------------


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    """Add the ``sweep`` command to an argparse subparsers object."""
    p = _study_parser(sub, "sweep", _SWEEP_HELP, _SWEEP_DESCRIPTION, cmd_sweep)
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="a RunConfig field and its values (repeat for more fields)")  # fmt: skip
    _add_set_flag(p, "run")
    p.add_argument("--out", type=Path, required=True, help="sweep folder, e.g. sweeps/NAME")
    p.add_argument(
        "--workers", type=_positive_int("workers"), default=None, help="parallel runs, at least 1 (default: CPU count)"
    )
    p.add_argument(
        "--backend",
        choices=["local", "ray", "ensemble"],
        default="local",
        help="local: one process per run; ray: one task per run; ensemble: runs of one shape batched in one process",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    p.add_argument("--no-checkpoints", action="store_true", help="keep only each run's first and last checkpoint")
    p.add_argument("--force", action="store_true",
                   help="replace another sweep in --out (removes only its own files and run folders), and restart "
                        "runs that cannot be continued (lost resume state, diverged)")  # fmt: skip
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    p.add_argument("--fit-on", choices=["epoch", "step"], default="epoch",
                   help="fit the grokking epoch (default) or optimizer step against train_frac")  # fmt: skip
    return p


def _print_sweep_row(name: str, row: dict[str, Any]) -> None:
    """One line per finished grid point."""
    extra = f" ({row['error']})" if row["status"] in ("failed", "diverged") and row.get("error") else ""
    wall = row.get("wall_clock_s")
    wall_text = f", {wall:.1f} s" if wall is not None else ""
    grok = f"grokking epoch {row['grokking_epoch']} (step {row['grokking_step']})"
    print(f"  {name}: {row['status']}{extra}, {grok}{wall_text}", flush=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    """``grokinterp sweep``: train the grid (``run_sweep``) into ``--out``, writing results.csv,
    fit.json and the fit figure (``grokinterp.viz.sweep_figure``, unless ``--no-plot``); print one
    line per run and the fit. Exit 1 when a run failed (re-running retries it), else 3 when a run
    diverged (as ``train`` does)."""
    from grokinterp.config import RunConfig
    from grokinterp.training.sweep import run_sweep

    if not args.grid:
        raise ValueError("sweep needs at least one --grid FIELD=V1,V2,...")
    grid = RunConfig.parse_grid(args.grid)
    sets = _parse_sets(args, grid, "--grid")
    if args.address and args.backend != "ray":
        raise ValueError("--address needs --backend ray")
    base = _base_config(args.preset, sets)
    plot = None
    if not args.no_plot:
        from grokinterp.viz.sweep_figure import write_sweep_figure

        plot = write_sweep_figure
    n = math.prod(len(v) for v in grid.values())
    print(f"sweep: {n} runs into {args.out / 'runs'} ({args.backend} backend)", flush=True)
    start = time.perf_counter()
    try:
        df = run_sweep(
            base, grid, args.out, workers=args.workers, backend=args.backend, address=args.address,
            checkpoints=not args.no_checkpoints, plot=plot, fit_on=args.fit_on, progress=_print_sweep_row,
            force=args.force,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume the sweep", flush=True)
        raise
    fit = df.attrs.get("fit", {})
    print(f"wrote {args.out / 'results.csv'} ({len(df)} runs, {time.perf_counter() - start:.1f} s)")
    if "A" in fit:
        lo, hi = fit["b_ci"]
        ci = "no CI from 2 fractions" if math.isnan(lo) else f"b 95% CI [{lo:.3f}, {hi:.3f}]"
        print(f"fit: {fit['y']} = {fit['A']:.4g} * train_frac^{-fit['b']:.3f} ({ci}, R^2 {fit['r2']:.3f}, "
              f"{fit['n']} fractions, {fit['n_runs']} grokked runs) -> {args.out / 'fit.json'}")  # fmt: skip
    else:
        print(f"fit: {fit.get('error', 'none')}")
    failed = int((df["status"] == "failed").sum())
    diverged = int((df["status"] == "diverged").sum())
    if diverged:
        print(f"{diverged} run(s) diverged (the loss is not finite); lower the learning rate for them")
    if failed:
        print(f"{failed} run(s) failed; see the log above, fix, and re-run the same command to retry them")
        return 1
    return 3 if diverged else 0


# ----------------------------------------------------------------------------------------------
# tune
# ----------------------------------------------------------------------------------------------


def add_tune_parser(sub) -> argparse.ArgumentParser:
    """Add the ``tune`` command to an argparse subparsers object."""
    from grokinterp.training.tune import DEFAULT_SEARCH, SEARCH_SPACE

    searchable = ", ".join(f"{k} {v.describe()}" for k, v in SEARCH_SPACE.items())
    p = _study_parser(sub, "tune", _TUNE_HELP, f"{_TUNE_DESCRIPTION} Searchable: {searchable}.", cmd_tune)
    p.add_argument(
        "--trials", type=_positive_int("trials"), default=20, help="finished trials the study should hold (default 20)"
    )
    p.add_argument(
        "--target-acc",
        type=float,
        default=GROKKING_THRESHOLD,
        help=f"test accuracy to reach (default {GROKKING_THRESHOLD})",
    )
    p.add_argument("--max-epochs", type=int, default=None, help="epochs per trial (default: the preset's epochs)")
    p.add_argument("--out", type=Path, required=True, help="study folder, e.g. tune/NAME")
    p.add_argument("--search", default=",".join(DEFAULT_SEARCH),
                   help="fields to search, e.g. lr,wd,grokfast or lr=1e-4:1e-2,grokfast=none|ema (default lr,wd)")  # fmt: skip
    _add_set_flag(p, "trial")
    p.add_argument("--seed", type=_tune_seed, default=0, help="sampler seed, in [0, 2**31) (default 0)")
    p.add_argument("--force", action="store_true",
                   help="replace a study of other settings in --out (removes its study.db, trials.csv, best.json)")  # fmt: skip
    p.add_argument("--no-prune", action="store_true", help="train every trial to the end")
    p.add_argument("--wandb", action="store_true", help="log every trial to wandb, offline, under OUT/wandb")
    p.add_argument("--wandb-project", default="grokinterp-tune")
    return p


def _tune_seed(text: str) -> int:
    """``tune --seed``: an integer the sampler takes (argparse names the flag when it is not)."""
    from grokinterp.training.tune import check_seed

    return check_seed(int(text))


def _positive_int(name: str):
    """The argparse type of an integer flag of at least 1 (``--workers``, ``--trials``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes an integer (got {text!r})") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1 (got {value})")
        return value

    return parse


def _trial_printer(target_acc: float):
    """``on_trial(frozen_trial)``: one line per finished, pruned or failed trial."""

    def on_trial(t) -> None:
        state = t.state.name.lower()
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        if state == "complete":
            ge = t.user_attrs.get("grokking_epoch")
            what = f"reached {target_acc} at epoch {ge}" if ge is not None else "did not reach the target"
            print(f"  trial {t.number}: {what} (score {t.value:.1f}) [{params}]", flush=True)
        else:
            print(
                f"  trial {t.number}: {state} at epoch {t.user_attrs.get('pruned_epoch', '?')} [{params}]", flush=True
            )

    return on_trial


def cmd_tune(args: argparse.Namespace) -> int:
    """``grokinterp tune``: run (or continue) the Optuna study in ``--out`` (``run_tune``), print
    one line per trial and the best; writes trials.csv and best.json. Exit 1 when no trial
    completed."""
    from grokinterp.training.tune import parse_search, require_optuna, run_tune

    require_optuna()
    space = parse_search(args.search)
    base = _base_config(args.preset, _parse_sets(args, space, "--search"))
    max_epochs = base.epochs if args.max_epochs is None else args.max_epochs
    print(f"tune: up to {args.trials} trials of at most {max_epochs} epochs, search {', '.join(space)} -> {args.out}")
    res = run_tune(
        base, args.out, trials=args.trials, target_acc=args.target_acc, max_epochs=max_epochs, search=space,
        seed=args.seed, use_wandb=args.wandb, wandb_project=args.wandb_project, prune=not args.no_prune,
        on_trial=_trial_printer(args.target_acc), force=args.force,
    )  # fmt: skip
    print(f"wrote {args.out / 'trials.csv'} ({len(res.study.trials)} trials)")
    if res.best is None:
        print("no trial completed (all pruned or failed); no best.json")
        return 1
    b = res.best
    what = f"epoch {b['grokking_epoch']}" if b["reached_target"] else f"not reached (score {b['value']:.1f})"
    print(f"best: trial {b['trial']}, {what}, {b['params']} -> {args.out / 'best.json'}")
    if args.wandb:
        print(f"wandb (offline): {args.out / 'wandb'}; upload with: wandb sync {args.out / 'wandb'}/offline-run-*")
    return 0
