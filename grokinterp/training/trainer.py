"""Full-batch and minibatch AdamW training with checkpoints, exact resume and early stopping.

The forward pass is ``models.last_position_logits`` (only the final position, first-layer
attention from per-token tables), the loss is float64 cross-entropy on the answer classes, and the
full train and test sets are evaluated every ``eval_every`` epochs (not every epoch, as the demo
does). ``Trainer.run`` writes ``metrics.jsonl``, checkpoints and a resume state into the run
directory; ``Trainer.resume(run_dir)`` continues a run and reproduces the uninterrupted metrics
exactly, also with early stopping and after a Ctrl-C or kill -9 at any moment.

The run directory is written only through ``grokinterp.rundir`` (layout, lock, guard); the
trainer holds the run's lock from the moment it creates or reopens the run until ``run`` returns.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grokinterp import constants as C
from grokinterp.config import RunConfig
from grokinterp.forward import evaluate, last_position_logits
from grokinterp.io import checkpoints as ckpt
from grokinterp.io import rundir
from grokinterp.losses import cross_entropy
from grokinterp.models import build_model, load_weights
from grokinterp.tasks import Dataset, make_dataset
from grokinterp.training.methods import make_grad_filter, orthogonalize_gradients

logger = logging.getLogger(__name__)

#: Config fields ``--resume`` may change (recorded in config.json); any other change is refused,
#: since it would make the run a different experiment. ``epochs`` may only grow.
RESUMABLE_FIELDS = (
    "epochs", "stop_acc", "stop_patience", "eval_every", "checkpoint_every",
    "checkpoint_early_every", "checkpoint_early_until", "device",
)  # fmt: skip


def progress_enabled(progress: bool) -> bool:
    """A progress bar on a terminal or in Jupyter; none in a log file or CI, where each update
    would be one more line."""
    if not progress:
        return False
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None
    except ImportError:
        return False


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable explicit device is an error."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but MPS is not available; use --device cpu")
    return torch.device(device)


@dataclass
class TrainResult:
    run_dir: Path | None
    config: RunConfig
    model: nn.Module
    metrics: list[dict[str, Any]]
    final_epoch: int
    grokking_epoch: int | None
    stopped_early: bool
    interrupted: bool
    wall_clock_s: float
    summary: dict[str, Any] = field(default_factory=dict)
    status: rundir.Status = "finished"

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


class Trainer:
    """Trains one run. ``run_dir=None`` trains in memory (sweeps, notebooks, tests).

    With a ``run_dir`` the trainer creates it (``force`` replaces an earlier run, and nothing
    else) and holds its lock until ``run`` returns; ``Trainer.resume`` reopens one.
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path | None = None,
        *,
        force: bool = False,
        dataset: Dataset | None = None,
        _resuming: bool = False,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = resolve_device(cfg.device)
        if self.run_dir is not None and not _resuming:
            rundir.check_out_path(self.run_dir)
        # Everything that can fail on its own (memory for a huge p, the model) before the run
        # directory exists, so a failure leaves nothing behind.
        self.dataset = dataset or make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)
        self.model = build_model(cfg, self.device)
        self.params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [p for _, p in self.params],
            lr=cfg.lr,
            weight_decay=cfg.wd,
            betas=(cfg.beta1, cfg.beta2),
            # PyTorch picks the per-tensor loop on CPU; the multi-tensor update is the same
            # arithmetic in fewer kernel launches, which dominate for these tiny models.
            foreach=True,
        )
        self.grad_filter = make_grad_filter(cfg)
        self.batch_gen = torch.Generator().manual_seed(cfg.train_seed)
        self.dropout_gen = torch.Generator(device=self.device).manual_seed(cfg.train_seed + 1)
        self.tokens = self.dataset.tokens.to(self.device)
        self.labels = self.dataset.labels.to(self.device)
        self.train_tokens = self.tokens[self.dataset.train_indices.to(self.device)]
        self.train_labels = self.labels[self.dataset.train_indices.to(self.device)]
        self.epoch = 0
        self.step = 0
        self.streak = 0
        self.grokking_epoch: int | None = None
        self.elapsed = 0.0
        self.metrics: list[dict[str, Any]] = []
        self._stop_requested = False
        self._diverged = False
        self.lock: rundir.RunLock | None = None
        if self.run_dir is not None and not _resuming:
            self.lock = rundir.create_run_dir(self.run_dir, force)
            try:
                rundir.write_run_config(self.run_dir, cfg)
                rundir.write_split(self.run_dir, self.dataset.train_indices, self.dataset.test_indices)
                rundir.write_metrics(self.run_dir, [])
            except BaseException:
                self.lock.release()
                rundir.discard_new_run_dir(self.run_dir)
                raise

    # ------------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir: str | Path, *, from_checkpoint: bool = False, **overrides: Any) -> Trainer:
        """Continue a run exactly from its ``state.safetensors``.

        ``overrides`` may change only ``RESUMABLE_FIELDS`` (``epochs`` only upwards); each change is
        recorded in config.json. ``from_checkpoint=True`` continues from the last checkpoint
        instead, with a fresh optimizer (for a run whose state file was lost): not exact, and
        recorded as such.
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise rundir.RunDirError(f"{run_dir}: no such run directory")
        cfg = rundir.read_run_config(run_dir)
        lock = rundir.RunLock(run_dir).acquire()
        try:
            self = cls._reopen(run_dir, cfg, lock, from_checkpoint, overrides)
        except BaseException:
            lock.release()
            raise
        logger.info("resuming %s at epoch %d", run_dir, self.epoch)
        return self

    @classmethod
    def _reopen(cls, run_dir: Path, cfg: RunConfig, lock: rundir.RunLock, from_checkpoint: bool, overrides) -> Trainer:
        state_path = run_dir / C.STATE_FILE
        epochs = rundir.checkpoint_epochs(run_dir)
        hint = (
            f"continue from its last checkpoint (epoch {epochs[-1]}) with a fresh optimizer: "
            f"grokinterp train --resume {run_dir} --from-checkpoint"
            if epochs
            else "it has no checkpoint either; start a new run"
        )
        tensors = meta = None
        if not from_checkpoint:
            if not state_path.is_file():
                raise rundir.RunDirError(f"{run_dir} has no {C.STATE_FILE} (the exact resume point); {hint}")
            try:
                tensors, meta = ckpt.load_tensors(state_path)
                if meta.get("format") != C.STATE_FORMAT:
                    raise rundir.RunDirError(f"{state_path} is not a grokinterp resume state")
            except rundir.RunDirError as e:
                raise rundir.RunDirError(f"{e}; {hint}") from None
        elif not epochs:
            raise rundir.RunDirError(f"{run_dir} has no checkpoint to continue from; start a new run")
        at_epoch = int(json.loads(meta["trainer"])["epoch"]) if meta is not None else epochs[-1]
        new_cfg, changes = _apply_resume_overrides(cfg, at_epoch, overrides)
        train_idx, test_idx = rundir.read_split(run_dir)
        dataset = make_dataset(
            new_cfg.p, new_cfg.op, new_cfg.layout, new_cfg.train_frac, new_cfg.data_seed, split=(train_idx, test_idx)
        )
        self = cls(new_cfg, run_dir, dataset=dataset, _resuming=True)
        self.lock = lock
        rows = rundir.read_metrics(run_dir)
        if tensors is not None:
            self._load_state(tensors, meta)
        else:
            self._load_checkpoint_state(run_dir, epochs[-1], rows)
            note = (
                f"resumed from checkpoint epoch {epochs[-1]} without a resume state: optimizer moments, "
                "gradient-filter state and RNG restarted (not bit-identical to an uninterrupted run)"
            )
            rundir.record_config_change(run_dir, new_cfg, self.epoch, changes, note)
            logger.warning("%s: %s", run_dir, note)
        # Rows after the resume point were written after the state (a crash in between): drop them.
        self.metrics = [r for r in rows if r["epoch"] <= self.epoch]
        rundir.write_metrics(run_dir, self.metrics)
        if changes and tensors is not None:
            rundir.record_config_change(run_dir, new_cfg, self.epoch, changes, "changed on --resume")
        return self

    def _load_checkpoint_state(self, run_dir: Path, epoch: int, rows: list[dict[str, Any]]) -> None:
        """Weights from the checkpoint at ``epoch``; counters replayed from the metrics rows."""
        c = ckpt.load_checkpoint(rundir.checkpoint_path(run_dir, epoch))
        load_weights(self.model, c.state_dict, c.path)
        kept = [r for r in rows if r["epoch"] <= epoch]
        self.epoch = epoch
        self.step = next(
            (r["step"] for r in reversed(kept) if r.get("step") is not None), epoch * self.cfg.steps_per_epoch
        )
        self.elapsed = float(kept[-1].get("elapsed") or 0.0) if kept else 0.0
        threshold = self.cfg.stop_acc or C.GROKKING_THRESHOLD
        for r in kept:  # the same streak rule as _evaluate_and_log
            acc = r.get("test_acc")
            if acc is not None and acc >= threshold:
                self.streak += 1
                self.grokking_epoch = r["epoch"] if self.grokking_epoch is None else self.grokking_epoch
            else:
                self.streak = 0
        # Deterministic in the epoch, so two recoveries of the same run agree.
        self.batch_gen.manual_seed(self.cfg.train_seed + 1_000_003 * epoch)
        self.dropout_gen.manual_seed(self.cfg.train_seed + 1 + 1_000_003 * epoch)

    def _state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt = self.optimizer.state_dict()
        for idx, st in opt["state"].items():
            for key, val in st.items():
                tensors[f"optim.{idx}.{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
        tensors["rng.batch"] = self.batch_gen.get_state()
        tensors["rng.dropout"] = self.dropout_gen.get_state()
        if self.grad_filter is not None:
            tensors.update({f"filter.{k}": v for k, v in self.grad_filter.state_tensors().items()})
        meta = {
            "format": C.STATE_FORMAT,
            "config": self.cfg.to_dict(),
            "param_groups": opt["param_groups"],
            "trainer": {
                "epoch": self.epoch,
                "step": self.step,
                "streak": self.streak,
                "grokking_epoch": self.grokking_epoch,
                "elapsed": self.elapsed,
            },
        }
        return tensors, meta

    def _load_state(self, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
        load_weights(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, C.STATE_FILE)
        opt_state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                opt_state.setdefault(int(idx), {})[key] = v
        groups = json.loads(meta["param_groups"])
        trainer = json.loads(meta["trainer"])
        for g in groups:
            g["lr"] = self.cfg.lr * self.cfg.lr_multiplier(trainer["step"])
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        self.batch_gen.set_state(tensors["rng.batch"])
        self.dropout_gen.set_state(tensors["rng.dropout"].to(self.dropout_gen.device))
        if self.grad_filter is not None:
            self.grad_filter.load_state_tensors(
                {k[7:]: v.to(self.device) for k, v in tensors.items() if k.startswith("filter.")}
            )
        self.epoch, self.step, self.streak = trainer["epoch"], trainer["step"], trainer["streak"]
        self.grokking_epoch, self.elapsed = trainer["grokking_epoch"], trainer["elapsed"]

    def save_state(self) -> None:
        if self.run_dir is None:
            return
        tensors, meta = self._state_tensors()
        ckpt.save_tensors(self.run_dir / C.STATE_FILE, tensors, meta)

    # ------------------------------------------------------------------ training
    def _batches(self) -> list[tuple[Tensor, Tensor]]:
        cfg, n = self.cfg, len(self.train_labels)
        if cfg.batch_size is None or (cfg.batch_size >= n and not cfg.sample_with_replacement):
            return [(self.train_tokens, self.train_labels)]
        if cfg.sample_with_replacement:
            idx = torch.randint(n, (cfg.steps_per_epoch, cfg.batch_size), generator=self.batch_gen)
            chunks = list(idx.to(self.device))
        else:
            chunks = torch.randperm(n, generator=self.batch_gen).to(self.device).split(cfg.batch_size)
        return [(self.train_tokens[i], self.train_labels[i]) for i in chunks]

    def train_step(self, tokens: Tensor, labels: Tensor) -> float:
        cfg = self.cfg
        self.model.train()
        logits = last_position_logits(self.model, tokens, dropout=cfg.dropout, generator=self.dropout_gen)
        dtype = torch.float64 if cfg.loss_dtype == "float64" else torch.float32
        loss = cross_entropy(logits, labels, cfg.loss_fn, dtype)
        loss.backward()
        if cfg.orthograd:
            orthogonalize_gradients(p for _, p in self.params)
        if self.grad_filter is not None:
            self.grad_filter(self.params)
        lr = cfg.lr * cfg.lr_multiplier(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.item() if cfg.batch_size is not None else float("nan")

    def _evaluate_and_log(self) -> dict[str, Any]:
        self.model.eval()
        m = evaluate(self.model, self.dataset, self.cfg.loss_fn, tokens=self.tokens, labels=self.labels)
        return self.record_evaluation(m)

    def record_evaluation(self, m: dict[str, float]) -> dict[str, Any]:
        """Append the metrics row of an evaluation at the current epoch and update the
        early-stopping streak (an ensemble evaluates its members together and records each)."""
        row = {
            "epoch": self.epoch,
            "step": self.step,
            **m,
            "lr": self.cfg.lr * self.cfg.lr_multiplier(self.step),
            "elapsed": round(self.elapsed, 3),
        }
        if not (math.isfinite(m["train_loss"]) and math.isfinite(m["test_loss"])):
            self._diverged = True  # logged (as null losses) but neither checkpointed nor counted
        else:
            threshold = self.cfg.stop_acc or C.GROKKING_THRESHOLD
            if m["test_acc"] >= threshold:
                self.streak += 1
                if self.grokking_epoch is None:
                    self.grokking_epoch = self.epoch
            else:
                self.streak = 0
        self.metrics.append(row)
        if self.run_dir is not None:
            rundir.append_metrics_row(self.run_dir, row)
        return row

    def _is_eval_epoch(self, epoch: int) -> bool:
        return epoch % self.cfg.eval_every == 0 or self.cfg.is_checkpoint_epoch(epoch)

    def _should_stop_early(self) -> bool:
        return self.cfg.stop_acc is not None and self.streak >= self.cfg.stop_patience

    def run(
        self,
        progress: bool = True,
        callback: Callable[[Trainer, dict[str, Any]], None] | None = None,
        max_epochs: int | None = None,
    ) -> TrainResult:
        """Train to ``cfg.epochs`` (or early stop, or divergence). ``max_epochs`` pauses after that
        many more epochs, like an interruption (used to test resume). Releases the run's lock."""
        if self.run_dir is not None:
            if self.lock is None:
                self.lock = rundir.RunLock(self.run_dir)
            self.lock.acquire()
        try:
            return self._run(progress, callback, max_epochs)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _run(self, progress, callback, max_epochs) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.cfg
        stopped_early = interrupted = False
        if self.epoch == 0 and not self.metrics:
            self._log_and_checkpoint()
        target = cfg.epochs if max_epochs is None else min(cfg.epochs, self.epoch + max_epochs)
        bar = tqdm(
            total=cfg.epochs,
            initial=self.epoch,
            disable=not progress_enabled(progress),
            unit="epoch",
            dynamic_ncols=True,
            mininterval=0.5,
        )
        restore = self._install_sigint()
        start = time.perf_counter() - self.elapsed
        try:
            while self.epoch < target and not self._diverged:
                if self._should_stop_early():
                    stopped_early = True
                    break
                for tokens, labels in self._batches():
                    self.train_step(tokens, labels)
                self.epoch += 1
                self.elapsed = time.perf_counter() - start
                bar.update(1)
                if self._is_eval_epoch(self.epoch):
                    row = self._log_and_checkpoint()
                    bar.set_postfix_str(
                        f"train {row['train_loss']:.2e} test {row['test_loss']:.2e} "
                        f"acc {row['train_acc']:.3f}/{row['test_acc']:.3f}",
                        refresh=False,
                    )
                    if callback is not None:
                        callback(self, row)
                if self._stop_requested:
                    interrupted = True
                    break
            else:
                stopped_early = not self._diverged and self._should_stop_early()
        finally:
            restore()
            if stopped_early:  # the run is finished: the bar ends at 100%, not at n / cfg.epochs
                bar.total = bar.n
                if (widget := getattr(getattr(bar, "container", None), "pbar", None)) is not None:
                    widget.max = bar.n  # tqdm.notebook's progress widget
                bar.refresh()
            bar.close()
        self.elapsed = time.perf_counter() - start
        return self.finish(stopped_early, interrupted)

    def finish(self, stopped_early: bool, interrupted: bool) -> TrainResult:
        """Save the final checkpoint (if finished) and the resume state, write summary.json."""
        cfg = self.cfg
        finished = self.epoch >= cfg.epochs or stopped_early
        if self._diverged:
            status: rundir.Status = "diverged"
        elif stopped_early:
            status = "stopped_early"
        elif finished:
            status = "finished"
        else:
            status = "interrupted"
        if self.run_dir is not None and not self._diverged:
            if finished and not rundir.checkpoint_path(self.run_dir, self.epoch).exists():
                ckpt.save_checkpoint(self.run_dir, self.epoch, self.model, cfg, self.metrics[-1])
            # An interruption between evaluations saves the exact resume point but adds no
            # evaluation: an extra row would count toward the early-stopping streak, and the
            # resumed run would then differ from an uninterrupted one.
            self.save_state()
        good = [r for r in self.metrics if _finite_losses(r)]
        last_good = rundir.checkpoint_epochs(self.run_dir)[-1:] if self.run_dir is not None else []
        message = None
        if self._diverged:
            bad = self.metrics[-1]
            message = (
                f"training diverged: the loss is not finite at epoch {bad['epoch']} (lr {cfg.lr:g}); "
                + (f"the last good checkpoint is epoch {last_good[0]}; " if last_good else "")
                + "lower the learning rate"
            )
            logger.debug("%s", message)  # the caller reports it (the CLI prints one line)
        summary = rundir.RunSummary(
            final_epoch=self.epoch,
            status=status,
            grokking_epoch=self.grokking_epoch,
            grokking_step=self.grokking_step,
            grokking_threshold=cfg.stop_acc or C.GROKKING_THRESHOLD,
            wall_clock_s=round(self.elapsed, 3),
            final=good[-1] if good else {},
            last_good_epoch=last_good[0] if last_good else None,
            message=message,
        )
        if self.run_dir is not None:
            rundir.write_summary(self.run_dir, summary)
        if interrupted:
            logger.warning(
                "interrupted at epoch %d; resume with: grokinterp train --resume %s", self.epoch, self.run_dir
            )
        return TrainResult(
            self.run_dir, cfg, self.model, self.metrics, self.epoch, self.grokking_epoch,
            stopped_early, interrupted, self.elapsed, summary.to_dict(), status,
        )  # fmt: skip

    @property
    def grokking_step(self) -> int | None:
        """Optimizer steps taken by the grokking epoch (studies with minibatches count steps)."""
        return next((r["step"] for r in self.metrics if r["epoch"] == self.grokking_epoch), None)

    def _log_and_checkpoint(self) -> dict[str, Any]:
        row = self._evaluate_and_log()
        self.checkpoint_if_due(row)
        return row

    def checkpoint_if_due(self, row: dict[str, Any]) -> None:
        """At a checkpoint epoch: the checkpoint and the resume state (never non-finite weights)."""
        if self.run_dir is not None and not self._diverged and self.cfg.is_checkpoint_epoch(self.epoch):
            ckpt.save_checkpoint(self.run_dir, self.epoch, self.model, self.cfg, row)
            self.save_state()

    def _install_sigint(self) -> Callable[[], None]:
        """First Ctrl-C (or SIGTERM, as batch schedulers send): finish the epoch, save the exact
        resume point and return. A second Ctrl-C aborts at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self._stop_requested and signum == signal.SIGINT:
                signal.signal(signal.SIGINT, previous[signal.SIGINT])
                raise KeyboardInterrupt
            self._stop_requested = True
            logger.warning("%s: saving at the end of this epoch (Ctrl-C again to abort)", signal.Signals(signum).name)

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, h in previous.items():
                signal.signal(sig, h)

        return restore


def _finite_losses(row: dict[str, Any]) -> bool:
    return all(isinstance(row.get(k), int | float) and math.isfinite(row[k]) for k in ("train_loss", "test_loss"))


def _apply_resume_overrides(cfg: RunConfig, epoch: int, overrides: dict[str, Any]) -> tuple[RunConfig, dict]:
    """The config after ``--resume`` changes, and ``{field: [old, new]}`` for each real change."""
    changes = {k: [getattr(cfg, k), v] for k, v in overrides.items() if getattr(cfg, k, object()) != v}
    refused = sorted(set(changes) - set(RESUMABLE_FIELDS))
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_FIELDS)
        raise rundir.RunDirError(
            f"--resume continues the run with its own config; {flags} cannot change it "
            f"(allowed on --resume: {allowed}); start a new run with --out to change it"
        )
    if "epochs" in changes and changes["epochs"][1] < epoch:
        raise rundir.RunDirError(
            f"--epochs {changes['epochs'][1]} is below the run's current epoch {epoch}; a resumed run cannot go back"
        )
    return (cfg.replace(**{k: v for k, (_, v) in changes.items()}) if changes else cfg), changes


def train(
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    **kw,
) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (or in memory when ``run_dir`` is None)."""
    return Trainer(cfg, run_dir, force=force).run(progress=progress, **kw)
