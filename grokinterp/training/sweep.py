"""Grid sweeps over RunConfig fields, run in parallel and resumably, with a power-law fit.

    grokinterp sweep --preset nanda-p113-fast --grid train_frac=0.3,0.4,0.5 --grid model_seed=0,1,2 \\
        --set epochs=5000 --out sweeps/frac

Every grid point is a normal run directory ``OUT/runs/<field=value,...>`` written by ``Trainer``, so
``grokinterp analyze`` and ``load_run`` work on it. A sweep is resumable: a run whose
``summary.json`` says ``"finished": true`` is skipped, an unfinished one with a ``state.safetensors``
is resumed, anything else is (re)started. At the end (and after every finished run) the sweep writes
``OUT/results.csv``; then ``OUT/fit.json``: the fit ``grokking_epoch = A * train_frac ** -b``
(``grokinterp.analysis.powerlaw``). The figure (``OUT/grokking_vs_train_frac.html``) is drawn by the
function passed as ``plot`` (``grokinterp sweep`` passes ``grokinterp.viz.sweep_figure.write_sweep_figure``).
Parsing ``--grid``/``--set`` texts is ``RunConfig.parse_grid``/``parse_sets``; the command itself is
in ``grokinterp.cli``.

Backends: ``local`` (default) runs one process per run in a ``ProcessPoolExecutor`` (spawn, one
torch thread each); ``ray`` submits one remote task per run to ``ray.init(address)`` or to a local
Ray instance (with ``--address`` every node must see OUT at the same absolute path, e.g. a shared
filesystem). Both give identical results: training is deterministic on CPU.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from grokinterp import constants as C
from grokinterp.analysis.powerlaw import FitOn, fit_power_law, fit_sweep
from grokinterp.config import RunConfig

__all__ = [
    "RESULT_METRICS", "expand_grid", "fit_power_law", "parse_grid", "parse_sets", "parse_value",
    "run_name", "run_one", "run_sweep", "write_fit",
]  # fmt: skip

log = logging.getLogger(__name__)

Backend = Literal["local", "ray", "ensemble"]
#: ``plot(df, fit, out) -> paths``: draws the fit figure of a sweep into ``out``, e.g.
#: ``grokinterp.viz.sweep_figure.write_sweep_figure`` (training draws no figure itself).
PlotFit = Callable[[Any, dict[str, Any], Path], list[str]]
RESULT_METRICS = ["grokking_epoch", "grokking_step", "final_epoch", "train_acc", "test_acc", "train_loss", "test_loss"]
RESULT_TAIL = ["wall_clock_s", "status", "error", "run"]

# Text to values: one parser for every config (``JsonConfig.parse_field``); these names stay for users.
parse_value = RunConfig.parse_field
parse_grid = RunConfig.parse_grid
parse_sets = RunConfig.parse_sets


# ----------------------------------------------------------------------------------------------
# Grid expansion
# ----------------------------------------------------------------------------------------------


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
    names = [RunConfig.field_name(k) for k in grid]
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


def _existing_state(run_dir: Path, cfg: RunConfig, force: bool = False) -> str:
    """``new``, ``finished``, ``resume``, ``restart`` (nothing worth keeping, or ``force``),
    ``diverged`` or ``lost`` (unfinished, with checkpoints but no resume state) for a run
    directory; mismatches are errors."""
    from grokinterp.io import rundir

    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    if not (run_dir / C.CONFIG_FILE).is_file():
        raise ValueError(f"{run_dir} exists but is not a grokinterp run directory; move it away")
    old = rundir.read_run_config(run_dir)
    if old != cfg:
        diff = [k for k, v in cfg.to_dict().items() if k != "preset" and old.to_dict().get(k) != v]
        raise ValueError(
            f"{run_dir} was trained with a different config ({', '.join(diff)} differ); "
            "use a new --out or delete that run"
        )
    summary = rundir.read_summary(run_dir)
    if summary.get("finished"):
        return "finished"
    if summary.get("status") == "diverged":  # training is deterministic: it would diverge again
        return "restart" if force else "diverged"
    if (run_dir / C.STATE_FILE).is_file():
        return "resume"
    if rundir.checkpoint_epochs(run_dir) and not force:
        return "lost"  # restarting would delete its checkpoints: never without --force
    return "restart"


def _lost_row(run_dir: Path) -> dict[str, Any]:
    """The row of an unfinished run whose resume state is gone (left as it is)."""
    return {
        "status": "failed",
        "error": f"{run_dir} has checkpoints but no resume state ({C.STATE_FILE}); continue it with "
        f"grokinterp train --resume {run_dir} --from-checkpoint, or re-run the sweep with --force to restart it",
    }


def _diverged_row(run_dir: Path) -> dict[str, Any]:
    """The row of a run that diverged earlier (left as it is)."""
    from grokinterp.io import rundir

    summary = rundir.read_summary(run_dir)
    return {**_row_from_summary(summary), "status": "diverged", "error": summary.get("message") or ""}


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
    from grokinterp.io import rundir

    row = _row_from_summary(rundir.read_summary(run_dir))
    if row["grokking_step"] is None and row["grokking_epoch"] is not None:  # summaries before grokking_step
        rows = rundir.read_metrics(run_dir)
        row["grokking_step"] = next((r.get("step") for r in rows if r.get("epoch") == row["grokking_epoch"]), None)
    return {**row, "status": "skipped", "error": ""}


def _result_row(result, resumed: bool = False) -> dict[str, Any]:
    """The results row of a ``TrainResult``: status ``diverged`` (never ``done``) when the loss
    went non-finite, ``interrupted``, ``resumed`` or ``done``."""
    if result.diverged:
        status = "diverged"
    elif result.interrupted:
        status = "interrupted"
    else:
        status = "resumed" if resumed else "done"
    error = (result.summary.get("message") or "") if result.diverged else ""
    return {**_row_from_summary(result.summary), "status": status, "error": error}


#: Run states that train nothing, and the row each reports.
_NOT_TRAINED: dict[str, Callable[[Path], dict[str, Any]]] = {
    "finished": _skipped_row,
    "diverged": _diverged_row,
    "lost": _lost_row,
}


def run_one(cfg_dict: dict[str, Any], run_dir: str, single_thread: bool = True, force: bool = False) -> dict[str, Any]:
    """Train (or skip, or resume) one grid point; returns its results row. Never raises.
    ``force`` restarts a run that diverged or lost its resume state."""
    import torch

    path = Path(run_dir)
    threads = torch.get_num_threads()
    if single_thread:
        torch.set_num_threads(1)  # tiny matrices: one thread per run, one run per core
    try:
        cfg = RunConfig.from_dict(cfg_dict)
        state = _existing_state(path, cfg, force)
        if state in _NOT_TRAINED:
            return _NOT_TRAINED[state](path)
        from grokinterp.training.trainer import Trainer  # imports transformer_lens: only when training

        trainer = Trainer.resume(path) if state == "resume" else Trainer(cfg, path, force=state == "restart")
        return _result_row(trainer.run(progress=False), resumed=state == "resume")
    except Exception as e:  # one failing grid point must not end the sweep
        log.exception("run %s failed", run_dir)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    finally:
        if single_thread:
            torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# Executors
# ----------------------------------------------------------------------------------------------

Job = tuple[int, dict[str, Any], str, bool]  # (index, config, run folder, force)
Done = Callable[[int, dict[str, Any]], None]


def _run_local(jobs: list[Job], workers: int, done: Done) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for i, cfg_dict, run_dir, force in jobs:
            row = run_one(cfg_dict, run_dir, force=force)
            done(i, row)
            if row["status"] == "interrupted":  # Ctrl-C: the run saved its state; start no more
                raise KeyboardInterrupt
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"))
    try:
        futures = {pool.submit(run_one, cfg_dict, run_dir, force=force): i for i, cfg_dict, run_dir, force in jobs}
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
    forced = {i for i, _, _, force in jobs if force}
    for i, cfg_dict, run_dir, _ in jobs:
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
            done(i, run_one(cfg.to_dict(), run_dir, single_thread=False, force=i in forced))
            continue
        trainers = []
        try:
            for i, cfg, run_dir in members:
                state = _existing_state(Path(run_dir), cfg, i in forced)
                if state in _NOT_TRAINED:  # run_sweep reports these without a job
                    raise ValueError(f"{run_dir}: unexpected state {state}")
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
            done(i, _result_row(r))
        if any(r.interrupted for r in results):
            raise KeyboardInterrupt


def _start_ray(workers: int | None, address: str | None):
    """The ray module, connected (``address``) or with a local instance started, and whether this
    call started it (so the sweep shuts it down). Runs before the sweep folder is made: a missing
    Ray or an unreachable cluster is one line and leaves nothing behind."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray; install with pip install 'grokinterp[ray]'") from None
    if ray.is_initialized():
        return ray, False
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    except Exception as e:  # an unreachable or malformed address: Ray raises several kinds
        where = f"the Ray cluster at --address {address}" if address else "a local Ray instance"
        msg = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ValueError(f"could not start {where}: {msg}") from None
    return ray, True


def _run_ray(ray, jobs: list[Job], done: Done) -> None:
    task = ray.remote(num_cpus=1, max_retries=0)(run_one)
    refs = {task.remote(cfg_dict, run_dir, force=force): i for i, cfg_dict, run_dir, force in jobs}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            row = ray.get(ready[0])
        except Exception as e:  # a task whose worker crashed
            row = {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
        done(refs[ready[0]], row)


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
    plot: PlotFit | None = None,
    fit_on: FitOn = "epoch",
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    force: bool = False,
):
    """Run every grid point into ``out/runs/NAME``; write results.csv and fit.json.

    Returns the results as a pandas DataFrame (one row per grid point, in grid order; the fit in
    ``df.attrs["fit"]``). ``checkpoints=False`` keeps only the first and last checkpoint of each
    run. ``plot(df, fit, out)`` draws the fit figure (e.g.
    ``grokinterp.viz.sweep_figure.write_sweep_figure``); None (or False) draws none. ``fit_on``
    picks what the power law fits: the grokking epoch or optimizer step. ``progress(name, row)``
    is called as each run ends. ``out`` must be new, empty or this sweep's folder;
    ``force=True`` replaces another sweep there (another base config or other grid fields) (removing only ``SWEEP_FILES`` and its run
    folders) and restarts runs that diverged or lost their resume state. Everything is checked,
    and a Ray cluster connected, before the first write.
    """
    if plot is not None and plot is not False and not callable(plot):
        raise ValueError(
            "plot takes a function plot(df, fit, out) such as grokinterp.viz.sweep_figure.write_sweep_figure, or None"
        )
    if backend not in ("local", "ray", "ensemble"):
        raise ValueError(f"backend must be 'local', 'ray' or 'ensemble' (got {backend!r})")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1 (got {workers})")
    if not checkpoints:
        base_cfg = base_cfg.replace(checkpoint_every=base_cfg.epochs, checkpoint_early_every=0)
    grid = {RunConfig.field_name(k): list(v) for k, v in grid.items()}
    points = expand_grid(base_cfg, grid)
    out = Path(out)
    runs = out / "runs"
    spec = json.loads(json.dumps({"base": base_cfg.to_dict(), "grid": grid}))
    replaced = _check_sweep_folder(out, spec, force)  # another sweep's run folders, removed below
    # Every run's state before the first write: mismatches fail here, early.
    states = ["new" if runs / name in replaced else _existing_state(runs / name, cfg, force) for name, _, cfg in points]
    needs_training = any(st not in _NOT_TRAINED for st in states)
    ray, ray_started = _start_ray(workers, address) if backend == "ray" and needs_training else (None, False)
    try:
        return _sweep(out, points, states, grid, spec, replaced, backend, workers, ray, plot, fit_on, progress, force)
    finally:
        if ray_started:
            ray.shutdown()


#: The files a sweep writes in its folder (besides ``runs/``); ``--force`` removes exactly these.
SWEEP_FILES = (
    "sweep.json", "results.csv", "fit.json", "grokking_vs_train_frac.html", "grokking_vs_train_frac.png",
)  # fmt: skip


def _check_sweep_folder(out: Path, spec: dict[str, Any], force: bool) -> list[Path]:
    """Refuse an ``out`` that is not this sweep's: a file, a run directory, a non-empty folder
    without ``sweep.json``, or another sweep (unless ``force``). Returns the run folders of the
    other sweep that ``force`` replaces (checked here: each holds only what grokinterp wrote)."""
    from grokinterp.io import rundir

    rundir.check_out_path(out)
    if not out.is_dir() or not any(e.name != C.LOCK_FILE for e in out.iterdir()):
        return []
    if (out / C.CONFIG_FILE).is_file():
        raise ValueError(f"{out} is a run directory, not a sweep folder; give --out a new or empty folder")
    if not (out / "sweep.json").is_file():
        if all(e.name == C.LOCK_FILE or (e.name == "runs" and e.is_dir()) for e in out.iterdir()):
            return []  # only run folders: each is checked against its grid point on its own
        raise ValueError(f"{out} is not empty and holds no sweep (no sweep.json); give --out a new or empty folder")
    try:
        old = json.loads((out / "sweep.json").read_text())
        old_grid = old["grid"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{out / 'sweep.json'} is not a sweep description; move it away or use a new --out") from None
    old_base = old.get("base") if isinstance(old.get("base"), dict) else {}
    if old_base == spec["base"] and set(old_grid) == set(spec["grid"]):
        return []  # this sweep, or it with values added or dropped: each run is checked on its own
    if not force:
        if set(old_grid) != set(spec["grid"]):
            what = f"another sweep (--grid {_grid_text(old_grid)}, not --grid {_grid_text(spec['grid'])})"
        else:
            diff = [k for k, v in spec["base"].items() if k != "preset" and old_base.get(k) != v]
            what = f"a sweep trained with a different config ({', '.join(diff)} differ)"
        raise ValueError(f"{out} holds {what}; use a new --out, or --force to replace that sweep")
    old_names = [name for name, _, _ in expand_grid(RunConfig.from_dict(old["base"]), old_grid)]
    replaced = [out / "runs" / n for n in old_names if (out / "runs" / n).exists()]
    for run in replaced:
        if not (run / C.CONFIG_FILE).is_file():
            raise ValueError(f"--force replaces only the other sweep's runs, but {run} is not a run; move it away")
        rundir.refuse_foreign(run)
    return replaced


def _grid_text(grid: dict[str, Any]) -> str:
    return " --grid ".join(f"{k}={','.join(map(str, v))}" for k, v in grid.items())


def _remove_sweep(out: Path, replaced: list[Path]) -> None:
    """Delete another sweep's own files and run folders (``--force``; each run under its lock)."""
    from grokinterp.io import rundir

    for run in replaced:
        lock = rundir.lock_run(run)
        try:
            rundir.remove_run_files(run)
        finally:
            lock.release()
        rundir.discard_new_run_dir(run)
    for name in SWEEP_FILES:
        (out / name).unlink(missing_ok=True)


def _sweep(out, points, states, grid, spec, replaced, backend, workers, ray, plot, fit_on, progress, force):
    """The writing half of ``run_sweep``: everything has been checked; the folder is locked."""
    from grokinterp.io import rundir
    from grokinterp.io.files import atomic_write_text

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = rundir.lock_run(out)  # one process writes a sweep folder at a time
    except BaseException:
        if created:
            out.rmdir()
        raise
    try:
        _remove_sweep(out, replaced)
        atomic_write_text(out / "sweep.json", json.dumps(spec, indent=2) + "\n")
        runs = out / "runs"
        rows: list[dict[str, Any] | None] = [None] * len(points)

        def done(i: int, row: dict[str, Any]) -> None:
            name, params, _ = points[i]
            rows[i] = {**params, **{k: row.get(k) for k in RESULT_METRICS}, **{k: row.get(k) for k in RESULT_TAIL}}
            rows[i]["run"] = name
            if row["status"] in ("failed", "diverged"):
                log.warning("%s %s: %s", name, row["status"], row.get("error"))
            if progress is not None:
                progress(name, rows[i])
            _write_results(out, grid, rows)

        jobs: list[Job] = []
        for i, ((name, _, cfg), state) in enumerate(zip(points, states, strict=True)):
            if state in _NOT_TRAINED:  # no worker needed
                done(i, _NOT_TRAINED[state](runs / name))
            else:
                jobs.append((i, cfg.to_dict(), str((runs / name).resolve()), force))
        if jobs:
            if backend == "local":
                _run_local(jobs, workers or os.cpu_count() or 1, done)
            elif backend == "ensemble":
                _run_ensemble(jobs, done)
            else:
                _run_ray(ray, jobs, done)
        df = _write_results(out, grid, rows)
        df.attrs["fit"] = write_fit(df, out, plot=plot, fit_on=fit_on)
        return df
    finally:
        lock.release()


def _write_results(out: Path, grid: dict[str, list[Any]], rows: list[dict[str, Any] | None]):
    import pandas as pd

    from grokinterp.io.files import atomic_write_text

    columns = [*grid, *RESULT_METRICS, *RESULT_TAIL]
    df = pd.DataFrame([r for r in rows if r is not None], columns=columns)
    df["grokking_epoch"] = df["grokking_epoch"].astype("Int64")
    df["grokking_step"] = df["grokking_step"].astype("Int64")
    df["final_epoch"] = df["final_epoch"].astype("Int64")
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    return df


# ----------------------------------------------------------------------------------------------
# The power-law fit: grokking_epoch = A * f ** -b (grokinterp.analysis.powerlaw)
# ----------------------------------------------------------------------------------------------


def write_fit(
    df, out: str | Path, *, plot: PlotFit | None = None, bootstrap: int = 1000, fit_on: FitOn = "epoch"
) -> dict[str, Any]:
    """Fit the grokking epoch (or optimizer step, ``fit_on="step"``: minibatch studies count
    steps, and steps per epoch change with the train fraction) against train_frac over the sweep's
    results (``fit_sweep``); write ``out/fit.json``, then the figure with ``plot(df, fit, out)``
    when given (its paths in ``fit["figures"]``; a failing figure is logged, never raised)."""
    from grokinterp.io.files import atomic_write_text, strict_json

    out = Path(out)
    fit = fit_sweep(df, bootstrap=bootstrap, fit_on=fit_on)
    atomic_write_text(out / "fit.json", strict_json(fit, indent=2) + "\n")
    if plot and "train_frac" in df.columns:
        try:
            fit["figures"] = plot(df, fit, out)
        except Exception as e:  # a figure must never fail a finished sweep
            log.warning("could not write the plot: %s", e)
    return fit
