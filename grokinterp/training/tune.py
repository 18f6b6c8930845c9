"""Hyperparameter search for the fastest grokking: an Optuna study over RunConfig fields.

    grokinterp tune --preset nanda-p113-fast --trials 40 --target-acc 0.99 --max-epochs 3000 \\
        --out tune/fast --search lr,wd,grokfast

Each trial trains in memory and scores the first epoch (at ``eval_every`` resolution) at which test
accuracy reaches ``target_acc``; a trial that never reaches it scores ``max_epochs * (2 - final test
accuracy)``, always worse than any trial that does, and graded so the sampler still learns from it.
The sampler is TPE (seeded), the pruner ``MedianPruner`` on the test loss reported at every
evaluation. The study lives in ``OUT/study.db`` (SQLite), so re-running the same command continues
it up to ``--trials`` finished trials. Outputs: ``OUT/trials.csv`` and ``OUT/best.json``
(``{"config": RunConfig dict, ...}``, the same layout as a run's config.json: training that config
reproduces the best trial exactly).

Optuna is an optional extra (``pip install 'grokinterp[tune]'``); so is wandb (``--wandb`` logs every
trial offline under ``OUT/wandb``; ``wandb_callback(run)`` is the Trainer callback behind it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokinterp.config import RunConfig
from grokinterp.constants import GROKKING_THRESHOLD

log = logging.getLogger(__name__)

INSTALL_TUNE = "install with pip install 'grokinterp[tune]'"


@dataclass(frozen=True)
class Param:
    """One searchable field: a float/int range (optionally log-uniform) or a categorical choice."""

    kind: str  # "float", "int" or "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    when_grokfast: tuple[str, ...] = ()  # only sampled when grokfast is one of these

    def suggest(self, trial, name: str) -> Any:
        """The value the Optuna ``trial`` suggests for field ``name``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        """The range as text: ``LOW:HIGH`` (with `` (log)``) or ``A|B|C``."""
        if self.kind == "categorical":
            return "|".join(map(str, self.choices))
        return f"{self.low:g}:{self.high:g}{' (log)' if self.log else ''}"


SEARCH_SPACE: dict[str, Param] = {
    "lr": Param("float", 3e-4, 1e-2, log=True),
    "wd": Param("float", 0.1, 10.0, log=True),
    "grokfast": Param("categorical", choices=("none", "ema", "ma")),
    "grokfast_alpha": Param("float", 0.8, 0.99, when_grokfast=("ema",)),
    "grokfast_lamb": Param("float", 0.5, 5.0, log=True, when_grokfast=("ema", "ma")),
    "grokfast_window": Param("int", 10, 200, log=True, when_grokfast=("ma",)),
    "beta2": Param("float", 0.95, 0.999),
    "warmup_steps": Param("int", 0, 200),
    "dropout": Param("float", 0.0, 0.3),
}
DEFAULT_SEARCH = ("lr", "wd")


def require_optuna():
    """The optuna module, or a one-line ``ValueError`` saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ValueError(f"tune needs optuna; {INSTALL_TUNE}") from None
    return optuna


def _require_wandb():
    try:
        import wandb
    except ImportError:
        raise ValueError("--wandb needs wandb; install with pip install wandb") from None
    return wandb


# ----------------------------------------------------------------------------------------------
# Search space specs: "lr,wd,grokfast" or "lr=1e-4:1e-2,grokfast=none|ema"
# ----------------------------------------------------------------------------------------------


def parse_search(spec: str | Sequence[str] | None) -> dict[str, Param]:
    """Fields to search with their ranges; ``name=LOW:HIGH`` or ``name=A|B`` override the default."""
    if spec is None:
        items = list(DEFAULT_SEARCH)
    elif isinstance(spec, str):
        items = [s for s in spec.replace(" ", "").split(",") if s]
    else:
        items = list(spec)
    if not items:
        raise ValueError("--search needs at least one field, e.g. lr,wd")
    out: dict[str, Param] = {}
    for item in items:
        name, _, rng = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in SEARCH_SPACE:
            raise ValueError(f"cannot search {name!r}; searchable fields: {', '.join(SEARCH_SPACE)}")
        if name in out:
            raise ValueError(f"--search names {name} twice; give it once")
        param = SEARCH_SPACE[name]
        if rng:
            param = _override_range(name, param, rng)
        out[name] = param
    return out


def _override_range(name: str, param: Param, rng: str) -> Param:
    """``param`` with the range or choices of ``rng``; both ends must be values the field takes
    (``RunConfig.parse_field``: finite, within the field's limits)."""
    from dataclasses import replace

    if param.kind == "categorical":
        try:
            choices = tuple(RunConfig.parse_field(name, c) for c in rng.split("|") if c)
        except ValueError as e:
            raise ValueError(f"--search {name}: {e}") from None
        if not choices:
            raise ValueError(f"--search {name}= needs choices like none|ema")
        if len(set(choices)) != len(choices):
            raise ValueError(f"--search {name} repeats a choice ({rng})")
        return replace(param, choices=choices)
    lo_hi = rng.split(":")
    like = f"--search {name} range must be LOW:HIGH like {param.describe().split()[0]} (got {rng!r})"
    if len(lo_hi) != 2:
        raise ValueError(like)
    try:
        lo, hi = (float(RunConfig.parse_field(name, x)) for x in lo_hi)
    except ValueError as e:  # not a number, not finite, or outside the field's limits
        raise ValueError(f"{like}: {e}") from None
    if not lo < hi or (param.log and lo <= 0):
        raise ValueError(f"--search {name} range must have LOW < HIGH{' and LOW > 0 (log scale)' if param.log else ''}")
    return replace(param, low=lo, high=hi)


def check_search(space: dict[str, Param], base: RunConfig) -> None:
    """Every end of every range and every choice of ``space`` must give a valid config with
    ``base`` (RunConfig's validation, the task included); and a grokfast setting is searched only
    when grokfast can be on. Raises one line naming ``--search``."""
    grokfast = space["grokfast"].choices if "grokfast" in space else (base.grokfast,)
    for name, param in space.items():
        values = param.choices if param.kind == "categorical" else (param.low, param.high)
        for v in values:
            value = int(v) if param.kind == "int" else v
            try:
                base.replace(**{name: value})
            except ValueError as e:
                raise ValueError(f"--search {name}={param.describe()}: {e}") from None
        if param.when_grokfast and not set(param.when_grokfast) & set(grokfast):
            raise ValueError(
                f"--search {name} is used only with grokfast {' or '.join(param.when_grokfast)}; "
                f"add grokfast to --search or --set grokfast={param.when_grokfast[0]}"
            )


def sample_params(trial, space: dict[str, Param], base: RunConfig) -> dict[str, Any]:
    """Suggest a value for every field of ``space`` (grokfast settings only when grokfast is on)."""
    params: dict[str, Any] = {}
    if "grokfast" in space:
        params["grokfast"] = space["grokfast"].suggest(trial, "grokfast")
    grokfast = params.get("grokfast", base.grokfast)
    for name, param in space.items():
        if name == "grokfast" or (param.when_grokfast and grokfast not in param.when_grokfast):
            continue
        params[name] = param.suggest(trial, name)
    return params


# ----------------------------------------------------------------------------------------------
# Trainer callbacks
# ----------------------------------------------------------------------------------------------

Callback = Callable[[Any, dict[str, Any]], None]


def chain_callbacks(*callbacks: Callback | None) -> Callback | None:
    """One Trainer callback calling each of ``callbacks`` in order (None entries are dropped)."""
    cbs = [cb for cb in callbacks if cb is not None]
    if not cbs:
        return None
    if len(cbs) == 1:
        return cbs[0]

    def run_all(trainer, row):
        for cb in cbs:
            cb(trainer, row)

    return run_all


def prune_callback(trial, key: str = "test_loss") -> Callback:
    """Report ``row[key]`` to ``trial`` at every evaluation; raise ``optuna.TrialPruned`` when the
    pruner says so (``Trainer.run`` unwinds through its ``finally``: nothing half-written)."""
    optuna = require_optuna()

    def report(trainer, row: dict[str, Any]) -> None:
        trial.report(float(row[key]), step=int(row["epoch"]))
        if trial.should_prune():
            trial.set_user_attr("pruned_epoch", int(row["epoch"]))
            raise optuna.TrialPruned(f"pruned at epoch {row['epoch']} ({key} {row[key]:.4g})")

    return report


def wandb_callback(run, prefix: str = "") -> Callback:
    """A Trainer callback that logs every evaluation row to the wandb ``run`` (step = epoch).

    Usable for plain training too::

        run = wandb.init(project="grokinterp", config=cfg.to_dict(), mode="offline", dir=run_dir)
        Trainer(cfg, run_dir).run(callback=wandb_callback(run)); run.finish()
    """

    def log_row(trainer, row: dict[str, Any]) -> None:
        metrics = {f"{prefix}{k}": v for k, v in row.items() if k != "epoch" and isinstance(v, int | float)}
        run.log(metrics, step=int(row["epoch"]))

    return log_row


@contextlib.contextmanager
def _offline_env(wandb_dir: Path) -> Iterator[None]:
    """``WANDB_MODE=offline`` (no network) and a quiet wandb writing under ``wandb_dir``."""
    keys = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(wandb_dir)}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_wandb_run(wandb_dir: str | Path, project: str, name: str, config: dict[str, Any], group: str | None = None):
    """An offline wandb run writing under ``wandb_dir`` (``wandb_dir/wandb/offline-run-*``)."""
    wandb = _require_wandb()
    wandb_dir = Path(wandb_dir)
    wandb_dir.mkdir(parents=True, exist_ok=True)
    with _offline_env(wandb_dir):
        return wandb.init(
            project=project,
            name=name,
            group=group,
            config=config,
            dir=str(wandb_dir),
            mode="offline",
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------


@dataclass
class TuneResult:
    """What ``run_tune`` returns: the Optuna study, trials.csv as a DataFrame, and the best
    trial's config and best.json content (None when no trial completed)."""

    study: Any
    trials: Any  # pandas DataFrame (trials.csv)
    best_config: RunConfig | None
    best: dict[str, Any] | None = field(default=None)


def trial_config(base: RunConfig, params: dict[str, Any], target_acc: float, max_epochs: int) -> RunConfig:
    """The config a trial trains: ``base`` with ``params``, stopping at the first eval >= target."""
    return base.replace(**params, epochs=max_epochs, stop_acc=target_acc, stop_patience=1)


def score(grokking_epoch: int | None, final_test_acc: float, max_epochs: int) -> float:
    """The objective (lower is better): the epoch target accuracy was reached, else
    ``max_epochs * (2 - final_test_acc)`` (> max_epochs, so worse than any success)."""
    if grokking_epoch is not None:
        return float(grokking_epoch)
    return max_epochs * (2.0 - float(final_test_acc))


def run_tune(
    base_cfg: RunConfig,
    out: str | Path,
    trials: int = 20,
    target_acc: float = GROKKING_THRESHOLD,
    max_epochs: int | None = None,
    search: str | Sequence[str] | dict[str, Param] | None = None,
    seed: int = 0,
    *,
    use_wandb: bool = False,
    wandb_project: str = "grokinterp-tune",
    pruner: Any = None,
    prune: bool = True,
    on_trial: Callable[[Any], None] | None = None,
    force: bool = False,
) -> TuneResult:
    """Run (or continue) the study in ``out`` until it holds ``trials`` finished trials.

    Writes ``out/trials.csv`` and ``out/best.json`` (also when interrupted). ``pruner`` replaces the
    default ``MedianPruner(n_startup_trials=5, n_warmup_steps=max_epochs // 10)``; ``prune=False``
    turns pruning off. ``on_trial(frozen_trial)`` is called after each trial. A folder holding a
    study of other settings is refused; ``force=True`` removes that study's files (``STUDY_FILES``)
    and starts a new one. Every value is checked before ``out`` is created.
    """
    optuna = require_optuna()
    if use_wandb:
        _require_wandb()  # fail before any training
    max_epochs = base_cfg.epochs if max_epochs is None else max_epochs  # 0 is an error, not 'default'
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1 (got {max_epochs})")
    if not 0.0 < target_acc <= 1.0:
        raise ValueError(f"target_acc must be in (0, 1] (got {target_acc})")
    if trials < 1:
        raise ValueError(f"trials must be at least 1 (got {trials})")
    check_seed(seed)
    space = search if isinstance(search, dict) else parse_search(search)
    trial_config(base_cfg, {}, target_acc, max_epochs)  # validates the base before any trial
    check_search(space, base_cfg)
    out = Path(out)
    settings = {
        "base": base_cfg.to_dict(),
        "target_acc": target_acc,
        "max_epochs": max_epochs,
        "search": {k: v.describe() for k, v in space.items()},
        "seed": seed,
    }
    settings = json.loads(json.dumps(settings))
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    from grokinterp.io.lock import RunLock

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with RunLock(out):  # one process writes a study at a time: a RUNNING trial found now is stale
            study = _open_study(optuna, out, settings, force)
            result = _optimize(study, optuna, out, base_cfg, settings, space, trials, pruner, prune, on_trial, use_wandb,
                               wandb_project)  # fmt: skip
    finally:
        optuna.logging.set_verbosity(verbosity)
    return result


#: Sampler seeds are in ``[0, TUNE_SEED_LIMIT)``: a continued study seeds its sampler with
#: ``seed + len(trials)``, which numpy's ``RandomState`` must take (``< 2**32``).
TUNE_SEED_LIMIT = 2**31
#: The files a study folder holds; ``--force`` removes exactly these (and nothing else).
STUDY_FILES = ("study.db", "trials.csv", "best.json")


def check_seed(seed: int) -> int:
    """``seed`` if it is a valid sampler seed, else one ``ValueError`` line naming ``--seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < TUNE_SEED_LIMIT:
        raise ValueError(f"tune --seed must be an integer in [0, 2**31) (got {seed!r})")
    return seed


def _check_out(out: Path) -> None:
    """Refuse a non-empty folder that holds no study (``study.db``): tune writes only its own files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; tune --out takes a folder")
    if out.is_dir() and not (out / "study.db").is_file() and any(p.name != ".lock" for p in out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no study (no study.db); use a new or empty --out")


def _search_text(search: dict[str, str]) -> str:
    return "--search " + ",".join(f"{k}={v}".replace(" (log)", "") for k, v in search.items())


def _open_study(optuna, out: Path, settings: dict[str, Any], force: bool):
    """Create or continue the study in ``out/study.db``; a study of other settings is refused
    (``force``: its files are removed and a new one starts); RUNNING trials a killed process left
    are marked failed, with ``user_attrs["interrupted"]``, so trials.csv says so."""
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    name = out.name or "tune"
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True, direction="minimize")
    old = study.user_attrs.get("settings")
    if old is not None and old != settings:
        if not force:
            changed = [k for k in settings if old.get(k) != settings[k]]
            space = (
                f" (it searches {_search_text(old.get('search', {}))}, not {_search_text(settings['search'])})"
                if "search" in changed
                else ""
            )
            raise ValueError(
                f"{out} holds a study with different settings ({', '.join(changed)}); "
                f"use a new --out, or --force to replace that study{space}"
            )
        del study
        for f in STUDY_FILES:
            (out / f).unlink(missing_ok=True)
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    study.set_user_attr("settings", settings)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # Optuna has no public call for this; the lock guarantees no process is running the trial.
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)
    return study


def _optimize(study, optuna, out, base_cfg, settings, space, trials, pruner, prune, on_trial, use_wandb,
              wandb_project):  # fmt: skip
    """Run trials until the study holds ``trials`` finished ones; write trials.csv and best.json."""
    target_acc, max_epochs, seed = settings["target_acc"], settings["max_epochs"], settings["seed"]
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = [t for t in study.trials if t.state in done_states]  # failed/interrupted ones run again
    # A fresh seed per continuation, so a resumed study does not replay its first trials.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    if not prune:
        study.pruner = optuna.pruners.NopPruner()
    else:
        study.pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max_epochs // 10)
    objective = _make_objective(base_cfg, space, target_acc, max_epochs, out, use_wandb, wandb_project, study)
    callbacks = [lambda study, t: on_trial(t)] if on_trial else []
    try:
        remaining = trials - len(finished)
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, callbacks=callbacks, gc_after_trial=False)
    finally:
        result = _write_outputs(study, out, base_cfg, target_acc, max_epochs)
    return result


def _make_objective(base, space, target_acc, max_epochs, out: Path, use_wandb, wandb_project, study):
    optuna = require_optuna()

    def objective(trial) -> float:
        from grokinterp.training.trainer import Trainer

        params = sample_params(trial, space, base)
        cfg = trial_config(base, params, target_acc, max_epochs)
        run = None
        if use_wandb:
            run = start_wandb_run(out, wandb_project, f"trial-{trial.number}", cfg.to_dict(), group=study.study_name)
        status = "failed"
        try:
            trainer = Trainer(cfg)
            result = trainer.run(progress=False, callback=chain_callbacks(wandb_callback(run) if run else None,
                                                                          prune_callback(trial)))  # fmt: skip
            if result.interrupted:
                raise KeyboardInterrupt
            final = result.metrics[-1] if result.metrics else {}
            value = score(result.grokking_epoch, final.get("test_acc", 0.0), max_epochs)
            attrs = {
                "grokking_epoch": result.grokking_epoch,
                "reached": result.grokking_epoch is not None,
                "final_epoch": result.final_epoch,
                "final_test_acc": final.get("test_acc"),
                "final_test_loss": final.get("test_loss"),
                "wall_clock_s": round(result.wall_clock_s, 3),
            }
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            if run is not None:
                run.summary.update({**attrs, "score": value})
            status = "complete"
            return value
        except optuna.TrialPruned:
            status = "pruned"
            raise
        finally:
            if run is not None:
                run.summary["status"] = status
                with _offline_env(out):
                    run.finish(exit_code=0 if status != "failed" else 1)

    return objective


def _write_outputs(study, out: Path, base: RunConfig, target_acc: float, max_epochs: int) -> TuneResult:
    import optuna

    from grokinterp.io.files import atomic_write_text

    df = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    if "duration" in df:
        df["duration"] = df["duration"].dt.total_seconds()
    atomic_write_text(out / "trials.csv", df.to_csv(index=False))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return TuneResult(study, df, None, None)
    best_trial = min(complete, key=lambda t: (t.value, t.number))
    cfg = trial_config(base, best_trial.params, target_acc, max_epochs)
    best = {
        "config": cfg.to_dict(),
        "trial": best_trial.number,
        "value": best_trial.value,
        "params": best_trial.params,
        "reached_target": bool(best_trial.user_attrs.get("reached")),
        "grokking_epoch": best_trial.user_attrs.get("grokking_epoch"),
        "target_acc": target_acc,
        "max_epochs": max_epochs,
        "n_trials": len(study.trials),
        "n_complete": len(complete),
        "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
    }
    atomic_write_text(out / "best.json", json.dumps(best, indent=2) + "\n")
    return TuneResult(study, df, cfg, best)
