"""Full-batch and minibatch AdamW training with checkpoints, exact resume and early stopping.

The forward pass is ``forward.last_position_logits`` (only the final position, first-layer
attention from per-token tables), the loss is float64 cross-entropy on the answer classes, and the
full train and test sets are evaluated every ``eval_every`` epochs (not every epoch, as the demo
does). ``Trainer.run`` writes ``metrics.jsonl``, checkpoints and a resume state into the run
directory; ``Trainer.resume(run_dir)`` continues a run and reproduces the uninterrupted metrics
exactly, also with early stopping and after a Ctrl-C or kill -9 at any moment.

The trainer writes through the ``RunWriter`` it is handed (``grokinterp.io.writer``): a
``RunDirWriter`` writes the run directory through ``grokinterp.io.rundir`` and holds the run's lock
from the moment it creates or reopens the run until ``run`` returns; a ``MemoryWriter`` keeps an
in-memory run. Reopening a run to continue it lives in ``grokinterp.training.resume``.

summary.json, written when training stops, lists the train-loss spikes of the whole run
(``instabilities``, by the rule of ``grokinterp.analysis.instabilities``).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grokinterp import constants as C
from grokinterp.analysis.instabilities import instabilities_of_run
from grokinterp.backend import from_3x_layout, named_parameters_3x, state_dict_3x, to_3x_layout
from grokinterp.config import RunConfig
from grokinterp.forward import evaluate, last_position_logits
from grokinterp.io.checkpoints import Checkpoint
from grokinterp.io.lock import RunLock
from grokinterp.io.rundir import RunSummary, Status
from grokinterp.io.writer import MemoryWriter, RunDirWriter, RunWriter
from grokinterp.losses import cross_entropy
from grokinterp.memory import keep_freed_memory
from grokinterp.models import build_model, load_weights
from grokinterp.progress import progress_enabled
from grokinterp.tasks import Dataset, make_dataset
from grokinterp.training.compiled import compile_evaluation, compile_step, compiles_update
from grokinterp.training.methods import make_grad_filter, orthogonalize_gradients
from grokinterp.training.resume import RESUMABLE_FIELDS as RESUMABLE_FIELDS  # its home before resume.py
from grokinterp.training.resume import open_run

logger = logging.getLogger(__name__)


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
    """What ``Trainer.run`` returns: the trained model, its metrics rows and how the run ended
    (``summary``: summary.json as a dict, also for a run kept in memory)."""

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
    status: Status = "finished"

    @property
    def diverged(self) -> bool:
        """A non-finite loss ended the run."""
        return self.status == "diverged"


class Trainer:
    """Trains one run. ``run_dir=None`` trains in memory (sweeps, notebooks, tests).

    With a ``run_dir`` the trainer creates it (``force`` replaces an earlier run, and nothing
    else) and holds its lock until ``run`` returns; ``Trainer.resume`` reopens one. Output goes
    through ``writer`` (``grokinterp.io.writer``): by default a ``RunDirWriter`` for ``run_dir`` or a
    ``MemoryWriter``; pass ``writer=`` instead of ``run_dir`` to send it elsewhere.

    ``run`` is the loop. An ``EnsembleTrainer`` replaces only its step and drives its members
    through this public protocol, one epoch at a time:

    - ``batches()``: the epoch's (tokens, labels) minibatches, drawn from the trainer's generator;
    - ``is_eval_epoch(epoch)``: whether the epoch ends with an evaluation;
    - ``record_evaluation(metrics)``: log an evaluation's row and update the early-stopping streak,
      then ``checkpoint_if_due(row)``: the checkpoint and resume state at checkpoint epochs;
    - ``should_stop_early()``, ``diverged`` and ``stop_requested``: whether to stop (the early-stopping
      rule, a non-finite loss, Ctrl-C or SIGTERM through ``install_signal_handlers()``, or
      ``request_stop()``);
    - ``finish(stopped_early, interrupted)``: the final checkpoint, resume state and summary.
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path | None = None,
        *,
        force: bool = False,
        dataset: Dataset | None = None,
        writer: RunWriter | None = None,
    ) -> None:
        if writer is not None and (run_dir is not None or force):
            raise ValueError("give the Trainer a run_dir (and force) or a writer, not both")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if writer is None:
            writer = RunDirWriter(run_dir, force=force) if run_dir is not None else MemoryWriter()
        self.writer: RunWriter = writer
        # Everything that can fail on its own (memory for a huge p, the model) before the run
        # directory exists, so a failure leaves nothing behind.
        self.dataset = dataset or make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)
        self.model = build_model(cfg, self.device)
        self.params = [(n, p) for n, p in named_parameters_3x(self.model) if p.requires_grad]
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
        # The step's parts, compiled with cfg.compile (grokinterp.training.compiled).
        self._loss_of: Callable[[Tensor, Tensor], Tensor] = self.minibatch_loss
        self._update: Callable[[], Any] = self.optimizer.step
        self._eval_forward: Callable[[Tensor], Tensor] = self._eval_logits
        if cfg.compile:
            self._loss_of = compile_step(self.minibatch_loss, self.device)
            if compiles_update(cfg):
                self._update = compile_step(self.optimizer.step, self.device)
            self._eval_forward = compile_evaluation(self._eval_logits, self.device)
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
        writer.begin(cfg, self.dataset.train_indices, self.dataset.test_indices)

    @property
    def compiled_parts(self) -> tuple[str, ...]:
        """The parts of the step that ``cfg.compile`` compiled: ``"loss"`` (forward, loss and
        backward), ``"update"`` (AdamW; ``grokinterp.training.compiled.compiles_update``) and
        ``"evaluation"``; empty without ``compile``."""
        parts = {"loss": self._loss_of != self.minibatch_loss, "update": self._update != self.optimizer.step}
        parts["evaluation"] = self._eval_forward != self._eval_logits
        return tuple(k for k, v in parts.items() if v)

    @property
    def run_dir(self) -> Path | None:
        """The run directory (None for a run kept in memory)."""
        return self.writer.path

    @property
    def lock(self) -> RunLock | None:
        """The run directory's lock (None in memory); ``writer.release()`` releases it."""
        return self.writer.lock

    # ------------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir: str | Path, *, from_checkpoint: bool = False, **overrides: Any) -> Trainer:
        """Continue a run exactly from its ``state.safetensors`` (``grokinterp.training.resume``).

        ``overrides`` may change only ``RESUMABLE_FIELDS`` (``epochs`` only upwards); each change is
        recorded in config.json. ``from_checkpoint=True`` continues from the last checkpoint
        instead, with a fresh optimizer (for a run whose state file was lost): not exact, and
        recorded as such.
        """
        point = open_run(run_dir, from_checkpoint=from_checkpoint, overrides=overrides)
        try:
            self = cls(point.config, dataset=point.dataset, writer=point.writer)
            point.restore(self)
        except BaseException:
            point.writer.release()
            raise
        logger.info("resuming %s at epoch %d", point.run_dir, self.epoch)
        return self

    def load_checkpoint_state(self, c: Checkpoint, epoch: int, rows: list[dict[str, Any]]) -> None:
        """Weights from the checkpoint ``c`` of ``epoch``; counters replayed from the metrics
        ``rows`` (a resume without its state file: not bit-identical, the optimizer restarts)."""
        load_weights(self.model, c.state_dict, c.path)
        kept = [r for r in rows if r["epoch"] <= epoch]
        self.epoch = epoch
        self.step = next(
            (r["step"] for r in reversed(kept) if r.get("step") is not None), epoch * self.cfg.steps_per_epoch
        )
        self.elapsed = float(kept[-1].get("elapsed") or 0.0) if kept else 0.0
        for r in kept:  # the streak rule of record_evaluation
            self._count_toward_stop(r["epoch"], r.get("test_acc"))
        # Deterministic in the epoch, so two recoveries of the same run agree.
        self.batch_gen.manual_seed(self.cfg.train_seed + 1_000_003 * epoch)
        self.dropout_gen.manual_seed(self.cfg.train_seed + 1 + 1_000_003 * epoch)

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The exact resume point as ``(tensors, metadata)``: weights, optimizer moments, RNG and
        gradient-filter state, counters (what state.safetensors holds; ``load_state`` reads it)."""
        tensors = {f"model.{k}": v for k, v in state_dict_3x(self.model).items()}
        opt = self.optimizer.state_dict()
        for idx, st in opt["state"].items():
            for key, val in st.items():
                tensors[f"optim.{idx}.{key}"] = to_3x_layout(self.model, self.params[idx][0], torch.as_tensor(val))
        tensors["rng.batch"] = self.batch_gen.get_state()
        tensors["rng.dropout"] = self.dropout_gen.get_state()
        if self.grad_filter is not None:
            view = partial(to_3x_layout, self.model)
            tensors.update({f"filter.{k}": v for k, v in self.grad_filter.state_tensors(view).items()})
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

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
        """Continue exactly from ``state_tensors``' output (as read back from state.safetensors)."""
        load_weights(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, C.STATE_FILE)
        opt_state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                opt_state.setdefault(int(idx), {})[key] = from_3x_layout(self.model, self.params[int(idx)][0], v)
        groups = json.loads(meta["param_groups"])
        trainer = json.loads(meta["trainer"])
        for g in groups:
            g["lr"] = self.cfg.lr * self.cfg.lr_multiplier(trainer["step"])
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        self.batch_gen.set_state(tensors["rng.batch"])
        self.dropout_gen.set_state(tensors["rng.dropout"].to(self.dropout_gen.device))
        if self.grad_filter is not None:
            self.grad_filter.load_state_tensors(
                {k[7:]: v.to(self.device) for k, v in tensors.items() if k.startswith("filter.")},
                partial(from_3x_layout, self.model),
            )
        self.epoch, self.step, self.streak = trainer["epoch"], trainer["step"], trainer["streak"]
        self.grokking_epoch, self.elapsed = trainer["grokking_epoch"], trainer["elapsed"]

    def save_state(self) -> None:
        """Hand the resume point to the writer (state.safetensors; an in-memory run keeps none)."""
        self.writer.save_state(self.state_tensors)

    # ------------------------------------------------------------------ training
    def batches(self) -> list[tuple[Tensor, Tensor]]:
        """One epoch's ``(tokens, labels)`` minibatches (the whole train split, full batch); draws
        from the trainer's batch generator, so call it once per epoch."""
        cfg, n = self.cfg, len(self.train_labels)
        if cfg.batch_size is None or (cfg.batch_size >= n and not cfg.sample_with_replacement):
            return [(self.train_tokens, self.train_labels)]
        if cfg.sample_with_replacement:
            idx = torch.randint(n, (cfg.steps_per_epoch, cfg.batch_size), generator=self.batch_gen)
            chunks = list(idx.to(self.device))
        else:
            chunks = torch.randperm(n, generator=self.batch_gen).to(self.device).split(cfg.batch_size)
        return [(self.train_tokens[i], self.train_labels[i]) for i in chunks]

    def minibatch_loss(self, tokens: Tensor, labels: Tensor) -> Tensor:
        """The training loss of a minibatch (the fused forward with the run's dropout, then
        ``cfg.loss_fn`` in ``cfg.loss_dtype``): the function ``train_step`` differentiates."""
        cfg = self.cfg
        logits = last_position_logits(self.model, tokens, dropout=cfg.dropout, generator=self.dropout_gen)
        dtype = torch.float64 if cfg.loss_dtype == "float64" else torch.float32
        return cross_entropy(logits, labels, cfg.loss_fn, dtype)

    def _eval_logits(self, tokens: Tensor) -> Tensor:
        return last_position_logits(self.model, tokens)

    def train_step(self, tokens: Tensor, labels: Tensor) -> float:
        """One optimizer step on a minibatch; returns its loss (NaN when full batch or compiled:
        not read, so the step never waits for the device)."""
        cfg = self.cfg
        if not self.model.training:  # a no-op otherwise, and 4.x's bridge walks hundreds of modules
            self.model.train()
        loss = self._loss_of(tokens, labels)
        loss.backward()
        if cfg.orthograd:
            orthogonalize_gradients(
                self.params, view=partial(to_3x_layout, self.model), unview=partial(from_3x_layout, self.model)
            )
        if self.grad_filter is not None:
            self.grad_filter(self.params)
        lr = cfg.lr * cfg.lr_multiplier(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.item() if cfg.batch_size is not None and not cfg.compile else float("nan")

    def evaluate_and_record(self) -> dict[str, Any]:
        """Evaluate the full train and test sets now and record the row (``record_evaluation``)."""
        self.model.eval()
        m = evaluate(
            self.model,
            self.dataset,
            self.cfg.loss_fn,
            tokens=self.tokens,
            labels=self.labels,
            forward=self._eval_forward,
        )
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
            self._count_toward_stop(self.epoch, m["test_acc"])
        self.metrics.append(row)
        self.writer.append_metrics_row(row)
        return row

    def _count_toward_stop(self, epoch: int, test_acc: float | None) -> None:
        """The early-stopping streak and the grokking epoch after an evaluation at ``epoch``."""
        if test_acc is not None and test_acc >= (self.cfg.stop_acc or C.GROKKING_THRESHOLD):
            self.streak += 1
            if self.grokking_epoch is None:
                self.grokking_epoch = epoch
        else:
            self.streak = 0

    def is_eval_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` ends with an evaluation (every ``eval_every`` and every checkpoint)."""
        return epoch % self.cfg.eval_every == 0 or self.cfg.is_checkpoint_epoch(epoch)

    def should_stop_early(self) -> bool:
        """The early-stopping rule: ``stop_patience`` evaluations in a row at ``stop_acc``."""
        return self.cfg.stop_acc is not None and self.streak >= self.cfg.stop_patience

    @property
    def diverged(self) -> bool:
        """An evaluation found a non-finite loss: training stops, nothing more is checkpointed."""
        return self._diverged

    @property
    def stop_requested(self) -> bool:
        """Ctrl-C, SIGTERM or ``request_stop`` asked to stop at the end of this epoch."""
        return self._stop_requested

    def request_stop(self) -> None:
        """Stop at the end of this epoch and save the exact resume point (what Ctrl-C does)."""
        self._stop_requested = True

    def run(
        self,
        progress: bool = True,
        callback: Callable[[Trainer, dict[str, Any]], None] | None = None,
        max_epochs: int | None = None,
    ) -> TrainResult:
        """Train to ``cfg.epochs`` (or early stop, or divergence). ``max_epochs`` pauses after that
        many more epochs, like an interruption (used to test resume). Releases the run's lock."""
        self.writer.acquire()
        try:
            return self._run(progress, callback, max_epochs)
        finally:
            self.writer.release()

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
        if self.device.type == "cpu":
            keep_freed_memory()  # each step's activations reuse freed blocks instead of faulting in new pages
        restore = self.install_signal_handlers()
        start = time.perf_counter() - self.elapsed
        try:
            while self.epoch < target and not self._diverged:
                if self.should_stop_early():
                    stopped_early = True
                    break
                for tokens, labels in self.batches():
                    self.train_step(tokens, labels)
                self.epoch += 1
                self.elapsed = time.perf_counter() - start
                bar.update(1)
                if self.is_eval_epoch(self.epoch):
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
                stopped_early = not self._diverged and self.should_stop_early()
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
            status: Status = "diverged"
        elif stopped_early:
            status = "stopped_early"
        elif finished:
            status = "finished"
        else:
            status = "interrupted"
        if not self._diverged:
            if finished and not self.writer.has_checkpoint(self.epoch):
                self.writer.save_checkpoint(self.epoch, self.model, cfg, self.metrics[-1])
            # An interruption between evaluations saves the exact resume point but adds no
            # evaluation: an extra row would count toward the early-stopping streak, and the
            # resumed run would then differ from an uninterrupted one.
            self.save_state()
        good = [r for r in self.metrics if _finite_losses(r)]
        last_good = self.writer.checkpoint_epochs()[-1:]
        message = None
        if self._diverged:
            bad = self.metrics[-1]
            message = (
                f"training diverged: the loss is not finite at epoch {bad['epoch']} (lr {cfg.lr:g}); "
                + (f"the last good checkpoint is epoch {last_good[0]}; " if last_good else "")
                + "lower the learning rate"
            )
            logger.debug("%s", message)  # the caller reports it (the CLI prints one line)
        summary = RunSummary(
            final_epoch=self.epoch,
            status=status,
            grokking_epoch=self.grokking_epoch,
            grokking_step=self.grokking_step,
            grokking_threshold=cfg.stop_acc or C.GROKKING_THRESHOLD,
            wall_clock_s=round(self.elapsed, 3),
            final=good[-1] if good else {},
            last_good_epoch=last_good[0] if last_good else None,
            message=message,
            instabilities=instabilities_of_run(self.metrics, cfg.p),
        )
        self.writer.write_summary(summary)
        if interrupted and self.run_dir is not None:
            logger.warning(
                "interrupted at epoch %d; resume with: grokinterp train --resume %s", self.epoch, self.run_dir
            )
        elif interrupted:  # in memory: the caller paused it (max_epochs) and holds the trainer
            logger.debug("paused at epoch %d", self.epoch)
        return TrainResult(
            self.run_dir, cfg, self.model, self.metrics, self.epoch, self.grokking_epoch,
            stopped_early, interrupted, self.elapsed, summary.to_dict(), status,
        )  # fmt: skip

    @property
    def grokking_step(self) -> int | None:
        """Optimizer steps taken by the grokking epoch (studies with minibatches count steps)."""
        return next((r["step"] for r in self.metrics if r["epoch"] == self.grokking_epoch), None)

    def _log_and_checkpoint(self) -> dict[str, Any]:
        row = self.evaluate_and_record()
        self.checkpoint_if_due(row)
        return row

    def checkpoint_if_due(self, row: dict[str, Any]) -> None:
        """At a checkpoint epoch: the checkpoint and the resume state (never non-finite weights)."""
        if not self._diverged and self.cfg.is_checkpoint_epoch(self.epoch):
            self.writer.save_checkpoint(self.epoch, self.model, self.cfg, row)
            self.save_state()

    def install_signal_handlers(self) -> Callable[[], None]:
        """Until the returned ``restore()`` is called, the first Ctrl-C (or SIGTERM, as batch
        schedulers send) sets ``stop_requested``: finish the epoch, save the exact resume point and
        return. A second Ctrl-C aborts at once. Outside the main thread: nothing is installed."""
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
