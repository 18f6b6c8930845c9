"""Grid sweeps over RunConfig fields, run in parallel and resumably, with a power-law fit.

    grokinterp sweep --preset nanda-p113-fast --grid train_frac=0.3,0.4,0.5 --grid model_seed=0,1,2 \\
        --set epochs=5000 --out sweeps/frac

Every grid point is a normal run directory ``OUT/runs/<field=value,...>`` written by ``Trainer``, so
``grokinterp analyze`` and ``load_run`` work on it. A sweep is resumable: a run whose
``summary.json`` says ``"finished": true`` is skipped, an unfinished one with a ``state.safetensors``
is resumed, anything else is (re)started. At the end (and after every finished run) the sweep writes
``OUT/results.csv``; then ``OUT/fit.json`` and ``OUT/grokking_vs_train_frac.html`` (and ``.png``
when static export works): the fit ``grokking_epoch = A * train_frac ** -b``.

Backends: ``local`` (default) runs one process per run in a ``ProcessPoolExecutor`` (spawn, one
torch thread each); ``ray`` submits one remote task per run to ``ray.init(address)`` or to a local
Ray instance (with ``--address`` every node must see OUT at the same absolute path, e.g. a shared
filesystem). Both give identical results: training is deterministic on CPU.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import logging
import math
import os
import time
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from grokinterp import constants as C
from grokinterp.config import RunConfig, field_types

log = logging.getLogger(__name__)

FitOn = Literal["epoch", "step"]
Backend = Literal["local", "ray", "ensemble"]
RESULT_METRICS = ["grokking_epoch", "grokking_step", "final_epoch", "train_acc", "test_acc", "train_loss", "test_loss"]
RESULT_TAIL = ["wall_clock_s", "status", "error", "run"]
_NO_GRID = {"preset"}  # compare=False metadata, not a hyperparameter


# ----------------------------------------------------------------------------------------------
# Parsing grid and override specs with the field's type
# ----------------------------------------------------------------------------------------------


def _field_name(name: str) -> str:
    name = name.strip().replace("-", "_")
    hints = field_types()
    if name not in hints or name in _NO_GRID:
        known = [n for n in hints if n not in _NO_GRID]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown config field {name!r}{hint}")
    return name


def parse_value(name: str, text: str) -> Any:
    """Parse ``text`` as a value of RunConfig field ``name`` (int, float, bool, Literal, ``| None``)."""
    hint = field_types()[name]
    text = text.strip()
    args = typing.get_args(hint)
    optional = type(None) in args and typing.get_origin(hint) in (typing.Union, types.UnionType)
    if optional:
        if text.lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if text not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))} (got {text!r})")
        return text
    kind = getattr(hint, "__name__", str(hint))
    bad = ValueError(f"{name} takes {kind} values (got {text!r})")
    if hint is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise bad
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise bad from None
    if hint is str:
        if not text:
            raise bad
        return text
    raise ValueError(f"{name} cannot be set from the command line")  # pragma: no cover


def _split_spec(spec: str, flag: str) -> tuple[str, str]:
    if "=" not in spec:
        raise ValueError(f"{flag} takes FIELD=VALUE (got {spec!r})")
    name, _, values = spec.partition("=")
    return _field_name(name), values


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["train_frac=0.3,0.5", "model_seed=0,1"]`` -> ``{"train_frac": [0.3, 0.5], "model_seed": [0, 1]}``."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, values = _split_spec(spec, "--grid")
        if name in grid:
            raise ValueError(f"--grid {name} given twice; list all its values in one --grid {name}=V1,V2")
        parsed = [parse_value(name, v) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ValueError(f"--grid {name} has no values (use {name}=V1,V2,...)")
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValueError(f"--grid {name} repeats a value ({values})")
        grid[name] = parsed
    return grid


def parse_sets(specs: Sequence[str]) -> dict[str, Any]:
    """``["epochs=500", "lr=3e-3"]`` -> ``{"epochs": 500, "lr": 0.003}``."""
    out: dict[str, Any] = {}
    for spec in specs:
        name, value = _split_spec(spec, "--set")
        out[name] = parse_value(name, value)
    return out


def _format_value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    text = repr(v) if isinstance(v, float) else str(v)
    return text.replace(os.sep, "_").replace(" ", "_")


def run_name(params: dict[str, Any]) -> str:
    """The run directory name of one grid point, e.g. ``train_frac=0.3,model_seed=0``."""
    return ",".join(f"{k}={_format_value(v)}" for k, v in params.items())


def expand_grid(base_cfg: RunConfig, grid: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any], RunConfig]]:
    """The cartesian product of ``grid`` as (name, params, config); every config is validated."""
    if not grid:
        raise ValueError("a sweep needs at least one --grid FIELD=V1,V2,...")
    names = [_field_name(k) for k in grid]
    points = []
    for values in itertools.product(*(grid[k] for k in grid)):
        params = dict(zip(names, values, strict=True))
        try:
            cfg = base_cfg.replace(**params)
        except ValueError as e:
            raise ValueError(f"grid point {run_name(params)}: {e}") from None
        points.append((run_name(params), params, cfg))
    seen = [p[0] for p in points]
    if len(set(seen)) != len(seen):
        raise ValueError("two grid points map to the same run directory name; make the values distinct")
    return points


# ----------------------------------------------------------------------------------------------
# One run (executed in a worker process, a Ray task, or in-process)
# ----------------------------------------------------------------------------------------------


def _existing_state(run_dir: Path, cfg: RunConfig) -> str:
    """``new``, ``finished``, ``resume`` or ``restart`` for a run directory; mismatches are errors."""
    from grokinterp.io import checkpoints as ckpt

    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    if not (run_dir / C.CONFIG_FILE).is_file():
        raise ValueError(f"{run_dir} exists but is not a grokinterp run directory; move it away")
    old = ckpt.read_run_config(run_dir)
    if old != cfg:
        diff = [k for k, v in cfg.to_dict().items() if k != "preset" and old.to_dict().get(k) != v]
        raise ValueError(
            f"{run_dir} was trained with a different config ({', '.join(diff)} differ); "
            "use a new --out or delete that run"
        )
    if ckpt.read_summary(run_dir).get("finished"):
        return "finished"
    if (run_dir / C.STATE_FILE).is_file():
        return "resume"
    return "restart"


def _row_from_summary(summary: dict[str, Any]) -> dict[str, Any]:
    final = summary.get("final", {})
    return {
        "grokking_epoch": summary.get("grokking_epoch"),
        "grokking_step": summary.get("grokking_step"),
        "final_epoch": summary.get("final_epoch"),
        "train_acc": final.get("train_acc"),
        "test_acc": final.get("test_acc"),
        "train_loss": final.get("train_loss"),
        "test_loss": final.get("test_loss"),
        "wall_clock_s": summary.get("wall_clock_s"),
    }


def _skipped_row(run_dir: Path) -> dict[str, Any]:
    from grokinterp.io import checkpoints as ckpt

    row = _row_from_summary(ckpt.read_summary(run_dir))
    if row["grokking_step"] is None and row["grokking_epoch"] is not None:  # summaries before grokking_step
        rows = ckpt.read_metrics(run_dir)
        row["grokking_step"] = next((r.get("step") for r in rows if r.get("epoch") == row["grokking_epoch"]), None)
    return {**row, "status": "skipped", "error": ""}


def run_one(cfg_dict: dict[str, Any], run_dir: str, single_thread: bool = True) -> dict[str, Any]:
    """Train (or skip, or resume) one grid point; returns its results row. Never raises."""
    import torch

    path = Path(run_dir)
    threads = torch.get_num_threads()
    if single_thread:
        torch.set_num_threads(1)  # tiny matrices: one thread per run, one run per core
    try:
        cfg = RunConfig.from_dict(cfg_dict)
        state = _existing_state(path, cfg)
        if state == "finished":
            return _skipped_row(path)
        from grokinterp.training.trainer import Trainer  # imports transformer_lens: only when training

        trainer = Trainer.resume(path) if state == "resume" else Trainer(cfg, path, force=state == "restart")
        result = trainer.run(progress=False)
        status = "resumed" if state == "resume" else "interrupted" if result.interrupted else "done"
        return {**_row_from_summary(result.summary), "status": status, "error": ""}
    except Exception as e:  # one failing grid point must not end the sweep
        log.exception("run %s failed", run_dir)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    finally:
        if single_thread:
            torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# Executors
# ----------------------------------------------------------------------------------------------

Job = tuple[int, dict[str, Any], str]
Done = Callable[[int, dict[str, Any]], None]


def _run_local(jobs: list[Job], workers: int, done: Done) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for i, cfg_dict, run_dir in jobs:
            row = run_one(cfg_dict, run_dir)
            done(i, row)
            if row["status"] == "interrupted":  # Ctrl-C: the run saved its state; start no more
                raise KeyboardInterrupt
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"))
    try:
        futures = {pool.submit(run_one, cfg_dict, run_dir): i for i, cfg_dict, run_dir in jobs}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except Exception as e:  # a worker that died (out of memory, killed)
                row = {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
            done(futures[fut], row)
    except BaseException:  # Ctrl-C: running workers save and stop (their own handler); start no more
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_ensemble(jobs: list[Job], done: Done) -> None:
    """Grid points of one shape train together as a batched ensemble (``grokinterp.ensemble``);
    a point that cannot join one (Grokfast, dropout, another split size) trains on its own."""
    from grokinterp.training.ensemble import SHARED_FIELDS, EnsembleTrainer, check_ensemble_configs
    from grokinterp.training.trainer import Trainer

    groups: dict[tuple, list[tuple[int, RunConfig, str]]] = {}
    for i, cfg_dict, run_dir in jobs:
        cfg = RunConfig.from_dict(cfg_dict)
        key = (*(getattr(cfg, f) for f in SHARED_FIELDS), cfg.n_train)
        try:
            check_ensemble_configs([cfg])
        except ValueError:
            key = ("alone", i)
        groups.setdefault(key, []).append((i, cfg, run_dir))
    for members in groups.values():
        if len(members) == 1:
            i, cfg, run_dir = members[0]
            done(i, run_one(cfg.to_dict(), run_dir, single_thread=False))
            continue
        trainers = []
        try:
            for _, cfg, run_dir in members:
                state = _existing_state(Path(run_dir), cfg)
                trainers.append(
                    Trainer.resume(run_dir) if state == "resume" else Trainer(cfg, run_dir, force=state == "restart")
                )
            results = EnsembleTrainer(trainers).run(progress=False)
        except Exception as e:  # the group fails together, the sweep goes on
            log.exception("ensemble of %d runs failed", len(members))
            for t in trainers:
                if t.lock is not None:
                    t.lock.release()
            for i, _, _ in members:
                done(i, {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]})
            continue
        for (i, _, _), r in zip(members, results, strict=True):
            status = "interrupted" if r.interrupted else "done"
            done(i, {**_row_from_summary(r.summary), "status": status, "error": ""})
        if any(r.interrupted for r in results):
            raise KeyboardInterrupt


def _run_ray(jobs: list[Job], workers: int | None, address: str | None, done: Done) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray; install with pip install 'grokinterp[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_one)
        refs = {task.remote(cfg_dict, run_dir): i for i, cfg_dict, run_dir in jobs}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                row = ray.get(ready[0])
            except Exception as e:  # a task whose worker crashed
                row = {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
            done(refs[ready[0]], row)
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------


def run_sweep(
    base_cfg: RunConfig,
    grid: dict[str, list[Any]],
    out: str | Path,
    workers: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
    *,
    checkpoints: bool = True,
    plot: bool = True,
    fit_on: FitOn = "epoch",
    progress: Callable[[str, dict[str, Any]], None] | None = None,
):
    """Run every grid point into ``out/runs/NAME``; write results.csv, fit.json and the plot.

    Returns the results as a pandas DataFrame (one row per grid point, in grid order).
    ``checkpoints=False`` keeps only the first and last checkpoint of each run.
    ``fit_on`` picks what the power law fits: the grokking epoch or optimizer step.
    ``progress(name, row)`` is called as each run ends.
    """
    from grokinterp.io.checkpoints import atomic_write_text

    if backend not in ("local", "ray", "ensemble"):
        raise ValueError(f"backend must be 'local', 'ray' or 'ensemble' (got {backend!r})")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1 (got {workers})")
    if not checkpoints:
        base_cfg = base_cfg.replace(checkpoint_every=base_cfg.epochs, checkpoint_early_every=0)
    grid = {_field_name(k): list(v) for k, v in grid.items()}
    points = expand_grid(base_cfg, grid)
    out = Path(out)
    runs = out / "runs"
    states = [_existing_state(runs / name, cfg) for name, _, cfg in points]  # mismatches fail here, early
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps({"base": base_cfg.to_dict(), "grid": grid}, indent=2) + "\n")

    rows: list[dict[str, Any] | None] = [None] * len(points)

    def done(i: int, row: dict[str, Any]) -> None:
        name, params, _ = points[i]
        rows[i] = {**params, **{k: row.get(k) for k in RESULT_METRICS}, **{k: row.get(k) for k in RESULT_TAIL}}
        rows[i]["run"] = name
        if row["status"] == "failed":
            log.warning("%s failed: %s", name, row.get("error"))
        if progress is not None:
            progress(name, rows[i])
        _write_results(out, grid, rows)

    jobs: list[Job] = []
    for i, ((name, _, cfg), state) in enumerate(zip(points, states, strict=True)):
        if state == "finished":  # no worker needed
            done(i, _skipped_row(runs / name))
        else:
            jobs.append((i, cfg.to_dict(), str((runs / name).resolve())))
    if jobs:
        n_workers = workers or os.cpu_count() or 1
        if backend == "local":
            _run_local(jobs, n_workers, done)
        elif backend == "ensemble":
            _run_ensemble(jobs, done)
        else:
            _run_ray(jobs, workers, address, done)
    df = _write_results(out, grid, rows)
    df.attrs["fit"] = write_fit(df, out, plot=plot, fit_on=fit_on)
    return df


def _write_results(out: Path, grid: dict[str, list[Any]], rows: list[dict[str, Any] | None]):
    import pandas as pd

    from grokinterp.io.checkpoints import atomic_write_text

    columns = [*grid, *RESULT_METRICS, *RESULT_TAIL]
    df = pd.DataFrame([r for r in rows if r is not None], columns=columns)
    df["grokking_epoch"] = df["grokking_epoch"].astype("Int64")
    df["grokking_step"] = df["grokking_step"].astype("Int64")
    df["final_epoch"] = df["final_epoch"].astype("Int64")
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    return df


# ----------------------------------------------------------------------------------------------
# Power-law fit: grokking_epoch = A * f ** -b
# ----------------------------------------------------------------------------------------------


def _t_quantile(q: float, df: int) -> float:
    try:
        from scipy import stats

        return float(stats.t.ppf(q, df))
    except ImportError:  # normal approximation
        from statistics import NormalDist

        return NormalDist().inv_cdf(q)


def fit_power_law(
    fracs: Sequence[float],
    epochs: Sequence[float | None],
    *,
    aggregate: Literal["median", "none"] = "median",
    confidence: float = 0.95,
    bootstrap: int = 0,
    seed: int = 0,
    name: str = "grokking_epoch",
) -> dict[str, Any]:
    """Fit ``epochs = A * fracs ** -b`` by least squares on ``log epochs = log A - b log f``.

    Runs that did not grok (None/NaN/non-positive epochs) are dropped. With ``aggregate="median"``
    the points are the median epoch of the runs at each fraction (seeds), else every run is a point.
    Returns ``A``, ``b``, ``r2`` (in log-log), ``A_ci`` and ``b_ci`` (``confidence`` intervals from
    the standard errors with a t distribution; NaN with fewer than three points), ``n`` (points) and
    ``n_runs``. ``bootstrap=B`` adds ``bootstrap_A_ci``/``bootstrap_b_ci``: percentile intervals from
    resampling the runs within each fraction (seeds) B times.
    """
    import numpy as np

    f = np.asarray(fracs, dtype=float)
    y = np.asarray([np.nan if e is None else e for e in epochs], dtype=float)
    if f.shape != y.shape or f.ndim != 1:
        raise ValueError("fracs and epochs must be 1-D sequences of the same length")
    keep = np.isfinite(f) & np.isfinite(y) & (f > 0) & (y > 0)
    f, y = f[keep], y[keep]
    if aggregate not in ("median", "none"):
        raise ValueError(f"aggregate must be 'median' or 'none' (got {aggregate!r})")
    groups = {float(u): y[f == u] for u in np.unique(f)}
    if aggregate == "median":
        px = np.array(list(groups))
        py = np.array([np.median(v) for v in groups.values()])
    else:
        px, py = f, y
    if len(np.unique(px)) < 2:
        raise ValueError("a power-law fit needs grokked runs at two or more train fractions")
    x, z = np.log(px), np.log(py)
    n = len(x)
    slope, intercept, se_slope, se_intercept, r2 = _ols(x, z)
    tq = _t_quantile(0.5 + confidence / 2, n - 2) if n > 2 else math.nan
    b, log_a = -slope, intercept
    out: dict[str, Any] = {
        "A": float(math.exp(log_a)),
        "b": float(b),
        "r2": r2,
        "A_ci": [float(math.exp(log_a - tq * se_intercept)), float(math.exp(log_a + tq * se_intercept))],
        "b_ci": [float(b - tq * se_slope), float(b + tq * se_slope)],
        "se_b": se_slope,
        "se_log_A": se_intercept,
        "confidence": confidence,
        "n": n,
        "n_runs": len(y),
        "aggregate": aggregate,
        "points": {"train_frac": px.tolist(), name: py.tolist()},
    }
    if bootstrap and any(len(v) > 1 for v in groups.values()):
        rng = np.random.default_rng(seed)
        bs_b, bs_a = [], []
        for _ in range(bootstrap):
            rx, ry = [], []
            for u, v in groups.items():
                s = rng.choice(v, size=len(v), replace=True)
                if aggregate == "median":
                    rx.append(u)
                    ry.append(np.median(s))
                else:
                    rx.extend([u] * len(s))
                    ry.extend(s)
            sl, ic, *_ = _ols(np.log(rx), np.log(ry))
            bs_b.append(-sl)
            bs_a.append(math.exp(ic))
        lo, hi = 50 * (1 - confidence), 50 * (1 + confidence)
        out["bootstrap"] = bootstrap
        out["bootstrap_b_ci"] = [float(np.percentile(bs_b, lo)), float(np.percentile(bs_b, hi))]
        out["bootstrap_A_ci"] = [float(np.percentile(bs_a, lo)), float(np.percentile(bs_a, hi))]
    return out


def _ols(x, z) -> tuple[float, float, float, float, float]:
    """Slope, intercept, their standard errors and R^2 of z ~ x (NaN errors with < 3 points)."""
    import numpy as np

    n = len(x)
    xm, zm = x.mean(), z.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (z - zm)).sum() / sxx)
    intercept = float(zm - slope * xm)
    resid = z - (intercept + slope * x)
    sse = float((resid**2).sum())
    sst = float(((z - zm) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    if n > 2:
        s2 = sse / (n - 2)
        se_slope = math.sqrt(s2 / sxx)
        se_intercept = math.sqrt(s2 * (1.0 / n + xm**2 / sxx))
    else:
        se_slope = se_intercept = math.nan
    return slope, intercept, se_slope, se_intercept, float(np.clip(r2, -np.inf, 1.0))


def write_fit(
    df, out: str | Path, *, plot: bool = True, bootstrap: int = 1000, fit_on: FitOn = "epoch"
) -> dict[str, Any]:
    """Fit the grokking epoch (or optimizer step, ``fit_on="step"``: minibatch studies count
    steps, and steps per epoch change with the train fraction) against train_frac over the sweep's
    results; write fit.json and the plot."""
    from grokinterp.io.files import atomic_write_text, strict_json

    out = Path(out)
    y = f"grokking_{fit_on}"
    if "train_frac" not in df.columns:
        fit: dict[str, Any] = {"error": "train_frac is not a grid field: no power-law fit"}
    else:
        grokked = df[df[y].notna()]
        try:
            fit = fit_power_law(
                grokked["train_frac"].astype(float).tolist(),
                grokked[y].astype(float).tolist(),
                bootstrap=bootstrap,
                name=y,
            )
        except ValueError as e:
            fit = {"error": str(e)}
        fit["n_runs_total"] = len(df)
        fit["n_runs_grokked"] = len(grokked)
    fit["y"] = y
    fit["model"] = f"{y} = A * train_frac ** -b (least squares in log-log)"
    atomic_write_text(out / "fit.json", strict_json(fit, indent=2) + "\n")
    if plot and "train_frac" in df.columns:
        try:
            fit["figures"] = _plot_fit(df, fit, out, y)
        except Exception as e:  # a figure must never fail a finished sweep
            log.warning("could not write the plot: %s", e)
    return fit


def _plot_fit(df, fit: dict[str, Any], out: Path, y: str = "grokking_epoch") -> list[str]:
    import numpy as np
    import plotly.graph_objects as go

    grokked = df[df[y].notna()]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=grokked["train_frac"].astype(float),
            y=grokked[y].astype(float),
            mode="markers",
            name="runs",
            marker={"opacity": 0.5},
            text=grokked["run"],
        )
    )
    label = y.replace("_", " ")
    title = f"{label.capitalize()} against train fraction"
    if "A" in fit:
        pts = fit["points"]
        fig.add_trace(go.Scatter(x=pts["train_frac"], y=pts[y], mode="markers", name="median",
                                 marker={"size": 10, "symbol": "diamond"}))  # fmt: skip
        xs = np.geomspace(min(pts["train_frac"]), max(pts["train_frac"]), 100)
        fig.add_trace(go.Scatter(x=xs, y=fit["A"] * xs ** -fit["b"], mode="lines", name="fit"))
        lo, hi = fit["b_ci"]
        ci = "" if math.isnan(lo) else f" (b {fit['confidence']:.0%} CI [{lo:.2f}, {hi:.2f}])"
        title += f": {fit['A']:.4g} · f^{-fit['b']:.3f}{ci}, R² {fit['r2']:.3f}"
    fig.update_layout(title=title, xaxis_title="train fraction", yaxis_title=label, template="plotly_white")
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return [str(path) for path in _export(fig, out, "grokking_vs_train_frac")]


def _export(fig, out: Path, name: str) -> list[Path]:
    """HTML always; PNG when kaleido and a Chromium work. Uses ``grokinterp.plots.export_figures``
    (offline HTML, quiet kaleido) when available, else plotly directly."""
    try:
        from grokinterp.viz.plots import export_figures
    except ImportError:
        export_figures = None
    html, png = out / f"{name}.html", out / f"{name}.png"
    if export_figures is not None:
        paths = list(export_figures({name: fig}, out, "html"))
    else:
        fig.write_html(html, include_plotlyjs="cdn")
        paths = [html]
    try:
        if export_figures is not None:
            export_figures({name: fig}, out, "png")  # without a Chromium: HTML again, one warning
        else:
            fig.write_image(png)
    except Exception as e:  # kaleido or Chromium broken: the HTML is enough
        log.info("no PNG (%s); wrote %s", str(e).splitlines()[0] if str(e) else type(e).__name__, html)
    if png.is_file():
        paths.append(png)
    return paths


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    """Add the ``sweep`` command to an argparse subparsers object."""
    from grokinterp.presets import PRESETS

    p = sub.add_parser(
        "sweep",
        help="train a grid of configs (parallel, resumable) and fit grokking epoch against train fraction",
        description="Train the cartesian product of --grid values into OUT/runs/<field=value,...>; "
        "write OUT/results.csv, OUT/fit.json and OUT/grokking_vs_train_frac.html. Re-running skips "
        "finished runs and resumes unfinished ones.",
    )
    p.add_argument("--preset", choices=list(PRESETS), default="nanda-p113-fast")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="a RunConfig field and its values (repeat for more fields)")  # fmt: skip
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one field of the preset for every run (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="sweep folder, e.g. sweeps/NAME")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: CPU count)")
    p.add_argument(
        "--backend",
        choices=["local", "ray", "ensemble"],
        default="local",
        help="local: one process per run; ray: one task per run; ensemble: runs of one shape batched in one process",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    p.add_argument("--no-checkpoints", action="store_true", help="keep only each run's first and last checkpoint")
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    p.add_argument("--fit-on", choices=["epoch", "step"], default="epoch",
                   help="fit the grokking epoch (default) or optimizer step against train_frac")  # fmt: skip
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    from grokinterp.presets import get_preset

    if not args.grid:
        raise ValueError("sweep needs at least one --grid FIELD=V1,V2,...")
    grid = parse_grid(args.grid)
    sets = parse_sets(args.sets)
    both = sorted(set(grid) & set(sets))
    if both:
        raise ValueError(f"{', '.join(both)} given in both --grid and --set")
    if args.address and args.backend != "ray":
        raise ValueError("--address needs --backend ray")
    base = get_preset(args.preset)
    base = base.replace(**sets) if sets else base
    n = math.prod(len(v) for v in grid.values())
    print(f"sweep: {n} runs into {args.out / 'runs'} ({args.backend} backend)", flush=True)
    start = time.perf_counter()

    def progress(name: str, row: dict[str, Any]) -> None:
        extra = f" ({row['error']})" if row["status"] == "failed" else ""
        wall = row.get("wall_clock_s")
        wall_text = f", {wall:.1f} s" if wall is not None else ""
        grok = f"grokking epoch {row['grokking_epoch']} (step {row['grokking_step']})"
        print(f"  {name}: {row['status']}{extra}, {grok}{wall_text}", flush=True)

    try:
        df = run_sweep(
            base, grid, args.out, workers=args.workers, backend=args.backend, address=args.address,
            checkpoints=not args.no_checkpoints, plot=not args.no_plot, fit_on=args.fit_on, progress=progress,
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
    if failed:
        print(f"{failed} run(s) failed; see the log above, fix, and re-run the same command to retry them")
        return 1
    return 0
