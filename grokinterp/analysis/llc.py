"""The local learning coefficient (LLC) as a progress measure, estimated with devinterp.

The LLC ``lambda(w*)`` of Lau et al. 2023 ("The local learning coefficient: a singularity-aware
complexity measure", arXiv 2308.12108) measures how degenerate the loss landscape is around a
trained point ``w*``: ``d/2`` for a regular minimum with ``d`` parameters, less where directions
are degenerate. devinterp (the optional extra ``grokinterp[llc]``) samples the tempered, localised
posterior ``exp(-n*beta*L_n(w) - gamma/2 |w - w*|^2)`` with SGLD and estimates

    lambda_hat = n*beta * (E_posterior[L_n(w)] - L_n(w*)).

Here ``L_n`` is the loss the model is trained on: the float64 cross-entropy at the final position
(``grokinterp.forward.last_position_logits``) over the TRAIN split, and the sampler moves only the
trainable parameters (frozen biases stay at 0, as in training).

- ``LLCConfig``: the sampler's hyperparameters (frozen, validated, JSON round trip);
- ``estimate_llc(model, dataset, cfg)``: one ``LLCEstimate`` (mean and spread over chains, the
  per-chain loss and LLC traces, devinterp's per-step SGLD metrics, and a loss-trace check);
- ``llc_over_run(run_dir, cfg)``: every checkpoint, written to ``RUN/llc/epoch_XXXXXX.json`` with
  the config in ``RUN/llc/config.json``.

devinterp (2.x) is imported only here, inside the functions, so nothing else needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from grokinterp.config import JsonConfig, documented
from grokinterp.errors import RunDirError
from grokinterp.io import rundir
from grokinterp.io.files import strict_json
from grokinterp.io.lock import locks_run_when_writing
from grokinterp.progress import progress_enabled

if TYPE_CHECKING:
    from torch import nn

    from grokinterp.tasks import Dataset

__all__ = [
    "NBETA_RULES",
    "LLCConfig",
    "LLCDivergedError",
    "LLCEstimate",
    "estimate_llc",
    "llc_over_run",
    "load_llc",
    "nbeta_of",
]

logger = logging.getLogger(__name__)

Sampler = Literal["sgld", "rmsprop_sgld"]
#: grokinterp's sampler names -> devinterp's ``sampling_method``.
_DEVINTERP_SAMPLERS = {"sgld": "sgmcmc_sgld", "rmsprop_sgld": "rmsprop_sgld"}
_INSTALL = "the LLC needs devinterp: pip install 'grokinterp[llc]'"
#: Relative drift of the loss trace (second half of the draws against the first) above which a
#: chain is reported as not stationary (a heuristic: short chains of a few slow directions drift
#: this much by chance too).
DRIFT_TOLERANCE = 0.25


#: The largest SGLD step size (``LLCConfig.epsilon``): larger steps make the chains diverge.
MAX_EPSILON = 0.1
#: The largest ``LLCConfig.seed`` (chain c seeds torch with seed + c, which must stay below 2**32).
MAX_SEED = 2**31 - 1


#: Named rules for ``LLCConfig.nbeta``: "train" = n/log n of the n train examples (grokinterp's
#: default, also None), "devinterp" = B/log B of the SGLD batch size B (devinterp's
#: ``default_nbeta(dataloader)``).
NBETA_RULES = ("train", "devinterp")


def nbeta_of(x: int) -> float:
    """``x / log(x)``, and 1 for ``x <= 1``: devinterp's ``default_nbeta`` of a count (or of a
    DataLoader's batch size)."""
    return float(x) / math.log(x) if x > 1 else 1.0


@dataclass(frozen=True)
class LLCConfig(JsonConfig):
    """Hyperparameters of the SGLD estimate of the LLC (``LLCConfig.doc(name)`` documents each).

    The defaults are those of the measurement on the shipped nanda-p113 run (a few minutes for 32
    checkpoints on one CPU thread); docs/guide/llc.md says how they were chosen and
    docs/reproductions.md gives the measurement.
    """

    _label = "LLC config"

    sampler: Sampler = documented("sgld", "devinterp sampler: sgld (Lau et al. 2023) or rmsprop_sgld (preconditioned)")
    epsilon: float = documented(3e-5, "SGLD step size (devinterp's lr)")
    gamma: float = documented(1000.0, "localization: strength of the pull back to the checkpoint's weights")
    nbeta: float | str | None = documented(
        None,
        "inverse temperature n*beta: a number; 'train' or none = n/log(n) for the n train examples "
        "(grokinterp's default); 'devinterp' = B/log(B) for the SGLD batch size B (devinterp's "
        "default_nbeta of its DataLoader)",
    )
    num_chains: int = documented(2, "independent SGLD chains (llc_std is their spread)")
    num_draws: int = documented(150, "draws per chain that enter the estimate")
    num_burnin_steps: int = documented(100, "SGLD steps per chain before the first draw (kept in the traces)")
    num_steps_bw_draws: int = documented(1, "SGLD steps per draw")
    batch_size: int = documented(128, "minibatch size of the SGLD gradient (train examples per step)")
    seed: int = documented(
        0, "seed of the chains: chain c uses seed + c (noise and minibatch order); the same seed, the same estimate"
    )
    save_metrics: bool = documented(
        False, "also save devinterp's per-step SGLD metrics (distance from w*, norms); slower"
    )

    def __post_init__(self) -> None:
        """Check every field's type (``JsonConfig``), then the ranges."""
        super().__post_init__()
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be positive (got {self.epsilon})")
        if self.epsilon > MAX_EPSILON:
            raise ValueError(
                f"epsilon must be at most {MAX_EPSILON:g} (got {self.epsilon:g}); SGLD diverges with larger steps"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED} (got {self.seed})")
        if self.gamma < 0:
            raise ValueError(f"gamma must be non-negative (got {self.gamma})")
        for name in ("num_chains", "num_draws", "num_steps_bw_draws", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.num_burnin_steps < 0:
            raise ValueError(f"num_burnin_steps must be non-negative (got {self.num_burnin_steps})")

    @property
    def num_steps(self) -> int:
        """SGLD steps per chain."""
        return self.num_burnin_steps + self.num_draws * self.num_steps_bw_draws

    def _check_type(self, name: str) -> None:
        """``JsonConfig``'s type check; nbeta (a number or a rule): a positive finite number (an int
        is stored as a float), a rule of ``NBETA_RULES``, or None."""
        if name != "nbeta":
            super()._check_type(name)
            return
        v = self.nbeta
        if v is None or v in NBETA_RULES:
            return
        if isinstance(v, str):
            raise ValueError(f"nbeta must be a positive number, {' or '.join(map(repr, NBETA_RULES))} (got {v!r})")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"nbeta must be a finite number (got {v!r})")
        if v <= 0:
            raise ValueError(f"nbeta must be positive, or a rule ({', '.join(NBETA_RULES)}) (got {v})")
        object.__setattr__(self, "nbeta", float(v))

    @classmethod
    def parse_field(cls, name: str, text: str) -> Any:
        """``JsonConfig.parse_field``, and for ``nbeta``: a number, a rule of ``NBETA_RULES``
        (any case) or none."""
        if name != "nbeta":
            return super().parse_field(name, text)
        t = text.strip().lower()
        if t in NBETA_RULES:
            return t
        if t in ("none", "null", ""):
            return None
        try:
            value = float(t)
        except ValueError:
            raise ValueError(f"nbeta takes a number, {' or '.join(NBETA_RULES)} (got {text!r})") from None
        cls(nbeta=value)  # its limits, named
        return value

    @property
    def nbeta_rule(self) -> str:
        """How n*beta is set: "given" (a number), "train" (n/log n of the train split; also None) or
        "devinterp" (B/log B of the SGLD batch size)."""
        return "given" if isinstance(self.nbeta, float) else (self.nbeta or "train")

    def resolved_nbeta(self, n_train: int) -> float:
        """n*beta for a train split of ``n_train`` examples: the number given, or
        ``x/log(x)`` (``nbeta_of``) of x = ``n_train`` ("train", None: grokinterp's default) or
        x = ``batch_size`` ("devinterp": what devinterp's ``default_nbeta`` returns for the SGLD
        DataLoader)."""
        rule = self.nbeta_rule
        if rule == "given":
            return float(self.nbeta)  # type: ignore[arg-type]
        return nbeta_of(self.batch_size if rule == "devinterp" else n_train)

    @classmethod
    def load(cls, path: str | Path) -> LLCConfig:
        """The config in a JSON file (``to_json``)."""
        return cls.from_json(Path(path).read_text())


@dataclass(frozen=True)
class LLCEstimate:
    """One LLC estimate with its diagnostics (lists are per chain; traces have one value per SGLD
    step, burn-in included).

    ``llc_mean``/``llc_std``: mean and spread (ddof 0, as devinterp) over the chains of
    ``nbeta * (mean draw loss - init_loss)``. ``llc_mean_all_steps``: devinterp's ``compute_llc``,
    which averages every step including burn-in (equal to ``llc_mean`` without burn-in and with one
    step per draw). ``checks``: the loss-trace check (``drift`` per chain: the mean of the second
    half of the draws minus the first half's, relative to ``mean - init_loss``; ``stationary`` when every
    ``|drift| <= DRIFT_TOLERANCE``), ``negative`` (an estimate below 0: the checkpoint is not at a
    local minimum of the train loss, or the step is too large), ``failed_chains`` (NaN/Inf).
    devinterp 2.x has no MALA acceptance check; its per-step SGLD metrics (``metrics``, with
    ``save_metrics``) show how far each chain moved from w* (``distance``) and the size of the
    gradient, localization and noise terms.
    """

    llc_mean: float
    llc_std: float
    llc_per_chain: list[float]
    llc_mean_all_steps: float
    init_loss: float
    nbeta: float
    n_train: int
    n_params: int
    loss_traces: list[list[float]]
    llc_traces: list[list[float]]
    draw_losses: list[list[float]]
    checks: dict[str, Any]
    metrics: dict[str, list[list[float]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain Python values (the JSON document of ``llc/epoch_*.json``)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Strict JSON (NaN written as null)."""
        return strict_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LLCEstimate:
        """The estimate of a JSON document (unknown keys ignored; null read back as NaN)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        for k in ("llc_mean", "llc_std", "llc_mean_all_steps", "init_loss"):  # JSON null = NaN
            if values.get(k) is None:
                values[k] = math.nan
        return cls(**values)


# ----------------------------------------------------------------------------------------------
# One estimate
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _keep_global_rng() -> Iterator[None]:
    """devinterp seeds the global torch, numpy and random RNGs per chain; restore the caller's."""
    import random

    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def _quiet_chains(progress: bool) -> Iterator[None]:
    """devinterp draws a tqdm bar per chain and logs each store at INFO; hide both unless ``progress``."""
    if progress:
        yield
        return
    import functools
    from unittest import mock

    import devinterp.slt.sampler as dv_sampler
    from tqdm.auto import trange

    dv_log = logging.getLogger("devinterp")
    level = dv_log.level
    dv_log.setLevel(max(logging.WARNING, level))  # it logs every zarr store and timing at INFO
    try:
        with mock.patch.object(dv_sampler, "trange", functools.partial(trange, disable=True)):
            yield
    finally:
        dv_log.setLevel(level)


def _device_of(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return "cpu" if param is None else str(param.device)


def estimate_llc(
    model: nn.Module, dataset: Dataset, cfg: LLCConfig | None = None, *, progress: bool = False
) -> LLCEstimate:
    """Estimate the LLC of ``model`` at its current weights on the train split of ``dataset``.

    The loss is the float64 cross-entropy at the final position, as in training; the sampler is
    devinterp's (``cfg.sampler``), seeded with ``cfg.seed`` (the same seed, model and data give the
    same estimate). ``model`` is not changed (devinterp samples a copy) and the global RNGs are
    restored afterwards."""
    try:
        from devinterp.slt.llc import compute_llc
        from devinterp.slt.sampling import sample
    except ImportError as e:
        raise ImportError(f"{_INSTALL} ({e})") from None
    import tempfile

    import numpy as np
    import torch
    import torch.nn.functional as F
    from datasets import Dataset as HFDataset

    from grokinterp.forward import last_position_logits

    cfg = cfg or LLCConfig()
    device = _device_of(model)
    tokens = dataset.train_tokens.to(device)
    labels = dataset.train_labels
    n_train = len(labels)
    if n_train < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the train split ({n_train} examples)")
    nbeta = cfg.resolved_nbeta(n_train)
    # devinterp's data are "input_ids" rows of a causal LM; here a row is (train row, label), and
    # the loss function returns one loss per row: shape (batch, 1) = (batch, seq_len - 1).
    rows = torch.stack([torch.arange(n_train), labels.to(torch.int64)], dim=1)
    hf = HFDataset.from_dict({"input_ids": rows.tolist()})
    hf.set_format("torch", columns=["input_ids"])

    def loss_fn(m: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        logits = last_position_logits(m, tokens[input_ids[:, 0]])
        return F.cross_entropy(logits.double(), input_ids[:, 1].to(logits.device), reduction="none")[:, None]

    trainable = {name: None for name, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("the model has no trainable parameters to sample")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    was_training = model.training
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grokinterp-llc-") as tmp, _keep_global_rng(), _quiet_chains(progress):
        samples = sample(
            model=model,
            dataset=hf,
            observables={},
            lr=cfg.epsilon,
            n_beta=nbeta,
            param_masks=trainable,
            num_chains=cfg.num_chains,
            num_draws=cfg.num_draws,
            batch_size=cfg.batch_size,
            num_burnin_steps=cfg.num_burnin_steps,
            num_steps_bw_draws=cfg.num_steps_bw_draws,
            num_init_loss_batches=max(1, n_train // cfg.batch_size),  # one pass over the train split
            init_seed=cfg.seed,
            localization=cfg.gamma,
            sampling_method=_DEVINTERP_SAMPLERS[cfg.sampler],
            device=device,
            save_metrics=cfg.save_metrics,
            output_path=Path(tmp) / "samples.zarr",
            loss_fn=loss_fn,
        )
        summary = compute_llc(samples).load()
        ds = samples.dataset
        init_per_chain = np.asarray(ds.init_loss.values, dtype=np.float64).mean(axis=-1)  # (chain,)
        draws = np.asarray(ds.sampling_loss.values, dtype=np.float64).mean(axis=(-2, -1))  # (chain, draw)
        traces = np.asarray(summary.loss_trace.values, dtype=np.float64)  # (chain, step)
        metrics = {}
        if cfg.save_metrics:
            for name in ("distance", "scaled_grad", "localization", "noise"):
                key = f"metrics_{name}"
                if key in ds:
                    metrics[name] = np.asarray(ds[key].values, dtype=np.float64).tolist()
        all_steps = float(summary.llc_mean)
    model.train(was_training)
    seconds = time.perf_counter() - start

    init_loss = float(init_per_chain.mean())
    per_chain = nbeta * (draws.mean(axis=1) - init_loss)
    finite = np.isfinite(per_chain) & np.isfinite(traces).all(axis=1)
    warnings: list[str] = []
    failed = int((~finite).sum())
    if failed:
        warnings.append(f"{failed} of {cfg.num_chains} chains failed (NaN/Inf loss); try a smaller epsilon")
    good = per_chain[finite]
    llc_mean = float(good.mean()) if len(good) else math.nan
    llc_std = float(good.std()) if len(good) else math.nan
    drift = [_drift(row, init_loss) for row in draws]
    stationary = all(d is not None and abs(d) <= DRIFT_TOLERANCE for d in drift)
    if not stationary:
        warnings.append(
            f"loss trace not stationary (drift {', '.join('n/a' if d is None else f'{d:+.2f}' for d in drift)}); "
            "try more burn-in steps or a larger epsilon"
        )
    if llc_mean < 0:
        warnings.append(
            "negative LLC: the weights are not at a local minimum of the train loss, or epsilon is too large"
        )
    for w in warnings:
        logger.debug("LLC: %s", w)
    return LLCEstimate(
        llc_mean=llc_mean,
        llc_std=llc_std,
        llc_per_chain=per_chain.tolist(),
        llc_mean_all_steps=all_steps,
        init_loss=init_loss,
        nbeta=nbeta,
        n_train=n_train,
        n_params=n_params,
        loss_traces=traces.tolist(),
        llc_traces=(nbeta * (traces - init_loss)).tolist(),
        draw_losses=draws.tolist(),
        checks={
            "drift": drift,
            "drift_tolerance": DRIFT_TOLERANCE,
            "stationary": stationary,
            "negative": bool(llc_mean < 0),
            "failed_chains": failed,
            "init_loss_per_chain": init_per_chain.tolist(),
        },
        metrics=metrics,
        warnings=warnings,
        seconds=round(seconds, 3),
        config=cfg.to_dict(),
    )


def _drift(draws: Sequence[float], init_loss: float) -> float | None:
    """(mean of the second half - mean of the first half) / (mean - init_loss), or None when there
    are fewer than 4 draws or the chain did not move."""
    import numpy as np

    x = np.asarray(draws, dtype=np.float64)
    h = len(x) // 2
    if h < 2 or not np.isfinite(x).all():
        return None
    scale = abs(float(x.mean()) - init_loss)
    if scale == 0.0:
        return None
    return float((x[-h:].mean() - x[:h].mean()) / scale)


# ----------------------------------------------------------------------------------------------
# Every checkpoint of a run
# ----------------------------------------------------------------------------------------------


@locks_run_when_writing  # holds the run's lock while it writes RUN/llc/
def llc_over_run(
    run_dir: str | Path,
    cfg: LLCConfig | None = None,
    epochs: Sequence[int] | None = None,
    *,
    progress: bool = True,
    write: bool = True,
    reuse: bool = True,
) -> dict[int, LLCEstimate]:
    """Estimate the LLC at every checkpoint (or ``epochs``) of a run; return {epoch: estimate}.

    With ``write``, each estimate with its diagnostics goes to ``RUN/llc/epoch_XXXXXX.json`` and
    the config to ``RUN/llc/config.json`` (atomic writes). Estimates written before with the same
    config are reused (``reuse``); a different config removes the old files first."""
    import torch
    from tqdm.auto import tqdm

    from grokinterp.io.runs import Run
    from grokinterp.models import build_model, load_weights

    cfg = cfg or LLCConfig()
    run = Run(run_dir)
    all_epochs = run.checkpoint_epochs
    if not all_epochs:
        raise RunDirError(f"{run.path}: no checkpoints to estimate the LLC of")
    epochs = all_epochs if epochs is None else [run.resolve_epoch(e) for e in epochs]
    previous = _read_config(run.path)
    model = build_model(run.config)
    results: dict[int, LLCEstimate] = {}
    for epoch in tqdm(epochs, desc="LLC", unit="ckpt", disable=not progress_enabled(progress)):
        saved = rundir.read_llc_estimate(run.path, epoch) if reuse and previous == cfg else None
        if saved is not None:
            est = LLCEstimate.from_dict(saved)
            if est.config == cfg.to_dict():
                results[epoch] = est
                continue
        ckpt = run.checkpoint(epoch)  # checked: its epoch and its run identity
        with torch.no_grad():
            load_weights(model, ckpt.state_dict, ckpt.path)
        est = dataclasses.replace(estimate_llc(model, run.dataset, cfg), epoch=epoch)
        for w in est.warnings:
            logger.info("%s epoch %d: %s", run.path, epoch, w)
        results[epoch] = est
    diverged = [e for e, est in results.items() if not math.isfinite(est.llc_mean)]
    if diverged:  # nothing written: the earlier estimates (if any) stay as they were
        shown = ", ".join(map(str, diverged[:5])) + (" ..." if len(diverged) > 5 else "")
        raise LLCDivergedError(
            f"{run.path}: every SGLD chain diverged at epoch(s) {shown} (epsilon {cfg.epsilon:g}); "
            "nothing written; lower --llc-epsilon or raise --llc-gamma"
        )
    if write:
        if previous is not None and previous != cfg:
            removed = rundir.remove_llc_estimates(run.path)
            logger.info("%s: LLC config changed; removed %d earlier estimates", run.path, removed)
        rundir.write_llc_config(run.path, cfg)
        for epoch, est in results.items():
            rundir.write_llc_estimate(run.path, epoch, est)
    return results


class LLCDivergedError(RunDirError):
    """Every SGLD chain of some checkpoint diverged: no estimate, nothing written."""


def _read_config(run_dir: Path) -> LLCConfig | None:
    """The config of the estimates in ``RUN/llc/`` (None when there is none or it is unreadable)."""
    try:
        return LLCConfig.load(rundir.llc_config_path(run_dir))
    except (OSError, ValueError):
        return None


def load_llc(run_dir: str | Path) -> dict[int, LLCEstimate]:
    """The LLC estimates written by ``llc_over_run`` (or ``grokinterp analyze --llc``), by epoch."""
    return {e: LLCEstimate.from_dict(rundir.read_llc_estimate(run_dir, e)) for e in rundir.llc_epochs(run_dir)}
