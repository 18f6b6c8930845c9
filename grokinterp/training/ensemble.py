"""Many runs of one shape in one process: an ensemble trained with batched weights.

Grokking questions are questions about many runs (seeds, weight decay, train fraction). The
``EnsembleTrainer`` trains M runs whose models have the same shape together: their parameters
are stacked along a leading model axis and the trainer's fused forward, run once on the stacked
weights (``grokinterp.forward.stacked_last_position_logits``: the one fused forward, not a copy,
with ``baddbmm`` where a single run has ``addmm``), computes every member's logits in batched
kernels; one backward gives every member's gradient (the members' losses are independent, so the
gradient of their sum is each member's own gradient), and a batched
AdamW (``StackedAdamW``, the arithmetic of ``torch.optim.AdamW``'s multi-tensor update with a
learning rate, weight decay and betas per member) updates them all.

Each member is an ordinary ``Trainer`` for everything but the step, driven through the public
protocol documented on ``Trainer`` (``batches``, ``is_eval_epoch``, ``record_evaluation``,
``checkpoint_if_due``, ``should_stop_early``, ``diverged``, ``stop_requested``, ``finish``): it owns
its writer and so its run directory (config, split, metrics.jsonl, checkpoints, state.safetensors,
summary: the standard format, so ``analyze``, ``plot``, ``sweep`` and ``load_run`` work unchanged
and ``grokinterp train --resume`` continues a member alone), its lock, its early stopping and its
divergence check. A member that stops leaves the ensemble; the rest go on. ``run(on_event=...)``
tells each member event as one line (reaching the grokking threshold, stopping, and the progress of
the whole ensemble); ``grokinterp train --seeds`` prints them when no progress bar is shown.

Members may differ in model seed, data seed, train seed, train fraction (when the splits have the
same size), lr, wd, betas, warm-up, cool-down and early stopping. Everything that sets the shape or
the schedule must agree (``SHARED_FIELDS``). Grokfast, perp-Grad and dropout are not batched: train
those runs separately.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grokinterp import constants as C
from grokinterp.backend import functional_state
from grokinterp.config import SEED_LIMIT, RunConfig
from grokinterp.errors import RunDirError
from grokinterp.forward import even_chunks, split_metrics, stacked_last_position_logits
from grokinterp.io import rundir
from grokinterp.io.writer import RunDirWriter
from grokinterp.losses import log_probs
from grokinterp.memory import keep_freed_memory
from grokinterp.progress import progress_enabled
from grokinterp.training.compiled import compile_evaluation, compile_step, compiles_update
from grokinterp.training.resume import open_run
from grokinterp.training.trainer import Trainer, TrainResult

logger = logging.getLogger(__name__)

#: Fields every member must share: the model's shape, the task's shape, the schedule of steps,
#: evaluations and checkpoints, and the device.
SHARED_FIELDS = (
    "p", "op", "layout", "arch", "mlp_embed", "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "act_fn",
    "normalization_type", "attention_dir", "attention_rate", "freeze_biases", "epochs", "batch_size", "sample_with_replacement", "loss_dtype",
    "loss_fn", "dtype", "eval_every", "checkpoint_every", "checkpoint_early_every", "checkpoint_early_until",
    "device", "compile",
)  # fmt: skip

#: On a CPU, the most bytes one activation of a batched step may take: members train in chunks
#: that keep their widest activation below it, so a large ensemble's step memory stays bounded.
#: It was chosen when glibc still served blocks of 32 MiB and more from fresh mmaps (every step
#: faulting their pages in again: at p = 113 one chunk of 8 ran its element-wise passes 3-4x
#: slower than 8 single runs). Since ``keep_freed_memory`` the chunk size hardly matters for
#: speed: at p = 113, 8 members, 8 MiB to 1 GiB chunks all measured within 5% of 8 single runs.
CPU_CHUNK_BYTES = 30 * 2**20

#: Fraction of the epochs between two "epoch E/N" progress events of ``EnsembleTrainer.run``.
PROGRESS_EVERY = 0.1

#: The words of a member's end in its event line, by ``TrainResult.status``.
_ENDED = {"finished": "finished", "stopped_early": "stopped early", "diverged": "diverged", "interrupted": "paused"}

#: The most members one ``--seeds`` ensemble may have (each is a run directory and a model).
MAX_SEEDS = 4096
#: The largest seed ``--seeds`` accepts: the seeds become model, data and train seeds, so the
#: limit is RunConfig's (``grokinterp.config.SEED_LIMIT``).
MAX_SEED = SEED_LIMIT - 1


def check_ensemble_configs(cfgs: Sequence[RunConfig]) -> None:
    """Raise ``ValueError`` (one line) unless ``cfgs`` can train as one ensemble."""
    if not cfgs:
        raise ValueError("an ensemble needs at least one member")
    first = cfgs[0]
    for cfg in cfgs:
        differ = [f for f in SHARED_FIELDS if getattr(cfg, f) != getattr(first, f)]
        if differ:
            raise ValueError(
                f"ensemble members must share {', '.join(differ)} (they set the shape or schedule); "
                "train such runs separately or in another ensemble"
            )
        if cfg.grokfast != "none" or cfg.orthograd or cfg.dropout > 0:
            raise ValueError(
                "ensembles train plain AdamW without dropout; train Grokfast, perp-Grad or dropout runs separately"
            )
        if cfg.n_train != first.n_train:
            raise ValueError(
                f"ensemble members need train splits of one size (train_frac {first.train_frac} gives "
                f"{first.n_train} pairs, {cfg.train_frac} gives {cfg.n_train})"
            )


class StackedAdamW:
    """AdamW over parameters stacked along a leading model axis, hyperparameters per member.

    The update is ``torch.optim.AdamW``'s (decoupled weight decay, bias corrections, eps added to
    the corrected square root), member by member; coefficients are formed in float64 and cast to
    the parameters' dtype as PyTorch does with its Python-float scalars.
    """

    def __init__(self, params: dict[str, Tensor], eps: float = 1e-8) -> None:
        self.params = params
        self.eps = eps
        self.exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in params.items()}
        first = next(iter(params.values()))
        self.steps = torch.zeros(first.shape[0], dtype=torch.float64, device=first.device)

    @torch.no_grad()
    def step(self, lr: Tensor, wd: Tensor, beta1: Tensor, beta2: Tensor) -> None:
        """One update; ``lr``, ``wd``, ``beta1``, ``beta2``: float64 tensors of shape (M,)."""
        self.steps += 1
        bc1 = 1 - beta1**self.steps
        bc2_sqrt = (1 - beta2**self.steps).sqrt()
        for name, p in self.params.items():
            g = p.grad
            shape = (-1,) + (1,) * (p.dim() - 1)

            def c(x: Tensor, p: Tensor = p, shape: tuple = shape) -> Tensor:
                return x.to(p.dtype).view(shape)

            p.mul_(c(1 - lr * wd))
            self.exp_avg[name].lerp_(g, c(1 - beta1))
            self.exp_avg_sq[name].mul_(c(beta2)).addcmul_(g * c(1 - beta2), g)
            denom = (self.exp_avg_sq[name].sqrt() / c(bc2_sqrt)).add_(self.eps)
            # (exp_avg / denom) * step: the operands and order of AdamW's addcdiv, so the update
            # rounds as PyTorch's does.
            p.add_((self.exp_avg[name] / denom).mul_(c(-lr / bc1)))
            p.grad = None


class EnsembleTrainer:
    """Train ``members`` (Trainers of one shape) together; see the module docstring."""

    def __init__(self, members: Sequence[Trainer]) -> None:
        """``members``: trainers of one shape (``check_ensemble_configs``), new or resumed."""
        check_ensemble_configs([m.cfg for m in members])
        self.members = list(members)
        self._elapsed0: dict[int, float] = {}  # each member's elapsed time when ``run`` began
        self._on_event: Callable[[str], None] | None = None
        self._next_progress = 0
        self._told_end: set[int] = set()
        # The evaluation's batched forward, compiled with cfg.compile as a single run's is (the
        # train step's parts compile in ``_train_group``); the model axis shrinks as members stop.
        self._eval_forward: Callable[..., Tensor] = self._logits
        if self.members[0].cfg.compile:
            self._eval_forward = compile_evaluation(self._logits, self.members[0].device, dynamic=True)

    def _event(self, line: str) -> None:
        """One member event: logged (debug) and handed to ``run``'s ``on_event``."""
        logger.debug("%s", line)
        if self._on_event is not None:
            self._on_event(line)

    def member_name(self, i: int) -> str:
        """Member ``i``'s name in event lines: its folder's name (``seed=3``), or ``member i``."""
        run_dir = self.members[i].run_dir
        return run_dir.name if run_dir is not None else f"member {i}"

    @classmethod
    def create(
        cls, cfgs: Sequence[RunConfig], run_dirs: Sequence[str | Path | None], *, force: bool = False
    ) -> EnsembleTrainer:
        """New members ``cfgs`` writing into ``run_dirs`` (None: in memory); ``force`` replaces
        earlier runs there and nothing else.

        Every member is checked (configs, paths, existing folders) and built (data, model) before
        the first file is written; a failure after that removes exactly the member folders this
        call created and releases every lock taken, so nothing is left half-made.
        """
        check_ensemble_configs(cfgs)
        if len(run_dirs) != len(cfgs):
            raise ValueError("one run directory per member (or None for in-memory members)")
        paths = [None if d is None else rundir.check_out_path(d) for d in run_dirs]
        named = [d.resolve() for d in paths if d is not None]
        if len(set(named)) != len(named):
            raise ValueError("every ensemble member needs a run directory of its own")
        existed = {d for d in paths if d is not None and d.exists()}
        for d in existed:
            _check_replaceable(d, force)
        members = [
            Trainer(cfg, writer=_LateWriter(d, force) if d else None) for cfg, d in zip(cfgs, paths, strict=True)
        ]
        started: list[Trainer] = []
        try:
            for m in members:
                if isinstance(m.writer, _LateWriter):
                    started.append(m)
                    m.writer.start()
        except BaseException:
            for m in started:  # release what was taken, remove what was made
                m.writer.release()
                if m.run_dir not in existed:
                    rundir.discard_new_run_dir(m.run_dir)
            raise
        return cls(members)

    @classmethod
    def resume(cls, run_dirs: Sequence[str | Path], **overrides: Any) -> EnsembleTrainer:
        """Reopen the members' run directories (``Trainer.resume`` with ``overrides`` each).

        Every member is opened and checked (its resume state, the overrides, the shared shape)
        and rebuilt before any member's config.json or metrics are rewritten: a refusal changes
        nothing.
        """
        points = []
        try:
            for d in run_dirs:
                points.append(open_run(d, overrides=overrides))
            check_ensemble_configs([pt.config for pt in points])
            members = [Trainer(pt.config, dataset=pt.dataset, writer=pt.writer) for pt in points]
            for m, pt in zip(members, points, strict=True):
                if pt.state is not None:
                    m.load_state(*pt.state)  # a state that does not fit fails here, before any write
            for m, pt in zip(members, points, strict=True):
                pt.restore(m)
        except BaseException:
            for pt in points:
                pt.writer.release()
            raise
        return cls(members)

    # ------------------------------------------------------------------ the loop
    def run(
        self, progress: bool = True, max_epochs: int | None = None, on_event: Callable[[str], None] | None = None
    ) -> list[TrainResult]:
        """Train every member to its end (epochs, early stop, divergence) or for ``max_epochs``
        more epochs; returns each member's ``TrainResult`` in order. ``on_event`` gets one line per
        event: a member reaching the grokking threshold (``seed=3: test acc 0.990 at epoch 310``), a
        member ending (``seed=3: stopped early at epoch 410``), and every ``PROGRESS_EVERY`` of
        the epochs ``epoch 300/3000: 8 running, 2 grokked``; each is also logged (debug)."""
        from tqdm.auto import tqdm

        self._on_event = on_event

        results: dict[int, TrainResult] = {}
        todo = list(range(len(self.members)))
        for i in todo:  # finished before (resumed a finished run) or stopped already
            if self.members[i].epoch >= self.members[i].cfg.epochs or self.members[i].should_stop_early():
                results[i] = self._finish(i, stopped_early=self.members[i].should_stop_early(), interrupted=False)
        todo = [i for i in todo if i not in results]
        for m in (self.members[i] for i in todo):
            m.writer.acquire()
        total = self.members[0].cfg.epochs
        step = self._progress_step()
        self._next_progress = (min((m.epoch for m in self.members), default=0) // step + 1) * step
        bar = tqdm(total=total, disable=not progress_enabled(progress), unit="epoch", desc=f"{len(todo)} runs")
        if self.members[0].device.type == "cpu":
            keep_freed_memory()  # stacked activations are reused, not re-faulted, every step
        start = time.perf_counter()
        self._elapsed0 = {id(m): m.elapsed for m in self.members}  # a resumed member's time goes on
        interrupted = False
        try:
            first = [i for i in todo if self.members[i].epoch == 0 and not self.members[i].metrics]
            if first:  # the epoch-0 evaluation and checkpoint, as a single Trainer makes them
                group = [self.members[i] for i in first]
                restore = group[0].install_signal_handlers()  # Ctrl-C here pauses after it
                try:
                    for m, row in zip(group, self._evaluate(group, *self._stack(group)[:3]), strict=True):
                        m.checkpoint_if_due(row)
                finally:
                    restore()
                interrupted = any(m.stop_requested for m in self.members)
            while todo and not interrupted:
                # Members resumed from different epochs (a kill between their saves) catch up first.
                low = min(self.members[i].epoch for i in todo)
                group = [i for i in todo if self.members[i].epoch == low]
                ahead = [self.members[i].epoch for i in todo if self.members[i].epoch > low]
                target = min([*ahead, total] + ([low + max_epochs] if max_epochs is not None else []))
                if target <= low:
                    break
                done, interrupted = self._train_group(group, target, bar, start)
                for i, (stopped, diverged) in done.items():
                    results[i] = self._finish(i, stopped_early=stopped and not diverged, interrupted=False)
                todo = [i for i in todo if i not in done]
                if interrupted or (max_epochs is not None and all(self.members[i].epoch >= target for i in todo)):
                    break
        finally:
            bar.close()
        for i in todo:  # at the end of their epochs, or paused (max_epochs, Ctrl-C) before it
            done = self.members[i].epoch >= total
            results[i] = self._finish(i, stopped_early=False, interrupted=not done)
        return [results[i] for i in range(len(self.members))]

    def _finish(self, i: int, stopped_early: bool, interrupted: bool) -> TrainResult:
        m = self.members[i]
        try:
            result = m.finish(stopped_early, interrupted)
        finally:
            m.writer.release()
        self._ended_event(i, result.status)
        return result

    def _ended_event(self, i: int, status: str) -> None:
        """The ``seed=3: stopped early at epoch 410`` event, once per member."""
        if i not in self._told_end:
            self._told_end.add(i)
            self._event(f"{self.member_name(i)}: {_ENDED.get(status, status)} at epoch {self.members[i].epoch}")

    def _stack(self, group: list[Trainer]):
        """Stacked (M, ...) copies of the group's trainable parameters, frozen parameters and
        buffers, and a StackedAdamW holding their optimizer moments."""
        base = group[0].model
        trainable = {n for n, p in base.named_parameters() if p.requires_grad}
        states = [functional_state(m.model) for m in group]
        params = {n: torch.stack([s[n].detach() for s in states]).requires_grad_() for n in trainable}
        fixed = {n: torch.stack([s[n].detach() for s in states]) for n in states[0] if n not in trainable}
        opt = StackedAdamW(params)
        for j, m in enumerate(group):
            named = dict(m.model.named_parameters())
            for n in trainable:
                st = m.optimizer.state.get(named[n])
                if st:
                    opt.exp_avg[n][j] = st["exp_avg"]
                    opt.exp_avg_sq[n][j] = st["exp_avg_sq"]
                    opt.steps[j] = float(st["step"])
        return params, fixed, base, opt

    def _logits(self, params, fixed, model: nn.Module, tokens: Tensor) -> Tensor:
        """(M, n, d_vocab_out) logits of every member on its (M, n, ctx) tokens."""
        return stacked_last_position_logits(model, {**params, **fixed}, tokens)

    def _chunks(self, m: int, rows: int) -> list[slice]:
        """The member chunks of a step on ``rows`` rows for ``m`` members: one on a GPU (its
        caching allocator reuses blocks), on a CPU as many members as keep the widest activation
        under ``CPU_CHUNK_BYTES``."""
        cfg, device = self.members[0].cfg, self.members[0].device
        if device.type != "cpu":
            return [slice(None)]
        item = 8 if cfg.dtype == "float64" else 4
        loss_item = 8 if cfg.loss_dtype == "float64" else 4
        n_ctx = self.members[0].tokens.shape[-1]
        # The widest per-example activations: the MLP's hidden layer, the attention's (ctx, heads,
        # d_head) products and multi-layer residuals, and the logits in the loss dtype.
        width = max(cfg.d_mlp * item, n_ctx * max(cfg.d_model, cfg.n_heads * cfg.d_head) * item, cfg.p * loss_item)
        per_chunk = max(1, CPU_CHUNK_BYTES // max(1, rows * width))
        if per_chunk >= m:
            return [slice(None)]
        return [slice(a, min(a + per_chunk, m)) for a in range(0, m, per_chunk)]

    def _member_losses(self, params, fixed, model, tokens: Tensor, labels: Tensor) -> Tensor:
        """(M,) each member's mean training loss on its (M, n, ctx) minibatch (``cfg.loss_fn`` in
        ``cfg.loss_dtype``); the gradient of their sum is each member's own gradient."""
        cfg = self.members[0].cfg
        dtype = torch.float64 if cfg.loss_dtype == "float64" else torch.float32
        logp = log_probs(self._logits(params, fixed, model, tokens).to(dtype), cfg.loss_fn)
        return -logp.gather(-1, labels[..., None])[..., 0].mean(-1)

    def _unstack(self, group: list[Trainer], params, opt: StackedAdamW) -> None:
        """Write each member's slice back into its own model and optimizer (before saving)."""
        with torch.no_grad():
            for j, m in enumerate(group):
                named = dict(m.model.named_parameters())
                for n, stacked in params.items():
                    named[n].copy_(stacked[j])
                    m.optimizer.state[named[n]] = {
                        "step": torch.tensor(float(opt.steps[j]), dtype=torch.float32),
                        "exp_avg": opt.exp_avg[n][j].clone(),
                        "exp_avg_sq": opt.exp_avg_sq[n][j].clone(),
                    }

    def _train_group(self, idx: list[int], target: int, bar, start: float) -> tuple[dict[int, tuple[bool, bool]], bool]:
        """Train members ``idx`` (all at one epoch) up to ``target``; returns {member: (stopped
        early, diverged)} for those that ended, and whether Ctrl-C asked to stop."""
        group = [self.members[i] for i in idx]
        params, fixed, model, opt = self._stack(group)
        ended: dict[int, tuple[bool, bool]] = {}
        restore = group[0].install_signal_handlers()
        cfg = group[0].cfg
        loss_of, update = self._member_losses, StackedAdamW.step
        if cfg.compile:
            # Members leave as they stop: the model axis is dynamic, so that is not a recompile.
            loss_of = compile_step(self._member_losses, group[0].device, dynamic=True)
            if compiles_update(cfg):
                update = compile_step(StackedAdamW.step, group[0].device, dynamic=True)
        device = group[0].device
        hyper = {
            k: torch.tensor([getattr(m.cfg, k) for m in group], dtype=torch.float64, device=device)
            for k in ("wd", "beta1", "beta2")
        }
        lrs: list[float] = []  # the learning rates of the last step, and their tensor on the device
        lr: Tensor | None = None  # made at the first step (lrs is empty until then)
        try:
            while group and group[0].epoch < target:
                if any(m.should_stop_early() for m in group):
                    break
                batches = list(zip(*(m.batches() for m in group), strict=True))
                for step_batches in batches:
                    tokens = torch.stack([t for t, _ in step_batches])
                    labels = torch.stack([y for _, y in step_batches])
                    for sl in self._chunks(len(group), tokens.shape[1]):
                        # A chunk's backward accumulates into the slice of the stacked gradients.
                        p, f = (params, fixed) if sl == slice(None) else _slices(params, fixed, sl)
                        loss_of(p, f, model, tokens[sl], labels[sl]).sum().backward()
                    now = [m.cfg.lr * m.cfg.lr_multiplier(m.step) for m in group]
                    if now != lrs:  # a copy to the device only when a learning rate changed
                        lrs, lr = now, torch.tensor(now, dtype=torch.float64, device=device)
                    update(opt, lr, hyper["wd"], hyper["beta1"], hyper["beta2"])
                    for m in group:
                        m.step += 1
                for m in group:
                    m.epoch += 1
                    m.elapsed = self._elapsed0.get(id(m), 0.0) + time.perf_counter() - start
                bar.update(1)
                epoch = group[0].epoch
                if group[0].is_eval_epoch(epoch):
                    self._unstack(group, params, opt)
                    rows = self._evaluate(group, params, fixed, model)
                    for m, row in zip(group, rows, strict=True):
                        m.checkpoint_if_due(row)
                    gone = [j for j, m in enumerate(group) if m.diverged or m.should_stop_early()]
                    for j in gone:
                        ended[idx[j]] = (group[j].should_stop_early(), group[j].diverged)
                        self._ended_event(idx[j], "diverged" if group[j].diverged else "stopped_early")
                    if epoch >= self._next_progress:
                        self._progress_event(epoch, len(group) - len(gone))
                    if gone:
                        keep = [j for j in range(len(group)) if j not in gone]
                        idx = [idx[j] for j in keep]
                        group = [group[j] for j in keep]
                        if not group:
                            break
                        params, fixed, model, opt = self._stack(group)
                        hyper = {k: v[keep] for k, v in hyper.items()}
                if any(m.stop_requested for m in self.members):  # the handler is group[0]'s
                    self._unstack(group, params, opt)
                    return ended, True
            self._unstack(group, params, opt)
        finally:
            restore()
        for m in group:  # members whose streak ended the loop at its top
            if m.should_stop_early():
                ended[self.members.index(m)] = (True, False)
        return ended, False

    @torch.no_grad()
    def _evaluate(self, group: list[Trainer], params, fixed, model) -> list[dict[str, Any]]:
        """Every member on all its inputs in one batched pass; records each member's row."""
        tokens = torch.stack([m.tokens for m in group])
        parts = []
        for sl in self._chunks(len(group), min(tokens.shape[1], 32_768)):
            p, f = (params, fixed) if sl == slice(None) else _slices(params, fixed, sl)
            parts.append(
                torch.cat([self._eval_forward(p, f, model, t) for t in even_chunks(tokens[sl], 32_768, dim=1)], dim=1)
            )
        logits = torch.cat(parts)
        rows = []
        for j, m in enumerate(group):
            splits = {"train": m.dataset.train_indices, "test": m.dataset.test_indices}
            before = m.grokking_epoch
            rows.append(m.record_evaluation(split_metrics(logits[j], m.labels, splits, m.cfg.loss_fn)))
            if before is None and m.grokking_epoch is not None:
                name = self.member_name(self.members.index(m))
                self._event(f"{name}: test acc {rows[-1]['test_acc']:.3f} at epoch {m.grokking_epoch}")
        return rows

    def _progress_step(self) -> int:
        """Epochs between progress events: about ``PROGRESS_EVERY`` of the epochs, a multiple of
        the evaluation interval (progress is told at evaluations)."""
        cfg = self.members[0].cfg
        return cfg.eval_every * max(1, round(cfg.epochs * PROGRESS_EVERY / cfg.eval_every))

    def _progress_event(self, epoch: int, running: int) -> None:
        """The ``epoch E/N: R running, G grokked`` event; the next one comes ``PROGRESS_EVERY`` later."""
        total = self.members[0].cfg.epochs
        step = self._progress_step()
        self._next_progress = (epoch // step + 1) * step
        grokked = sum(m.grokking_epoch is not None for m in self.members)
        self._event(f"epoch {epoch}/{total}: {running} running, {grokked} grokked")


def _slices(params: dict[str, Tensor], fixed: dict[str, Tensor], sl: slice) -> tuple[dict, dict]:
    """The members ``sl`` of the stacked parameters and fixed tensors (views)."""
    return {n: v[sl] for n, v in params.items()}, {n: v[sl] for n, v in fixed.items()}


class _LateWriter(RunDirWriter):
    """A ``RunDirWriter`` whose ``begin`` only records its arguments; ``start`` creates the run
    directory. The ensemble builds every member (data, model) before it writes anything."""

    def __init__(self, path: Path, force: bool) -> None:
        super().__init__(path, force=force)
        self._begin_args: tuple | None = None

    def begin(self, cfg: RunConfig, train_indices: Tensor, test_indices: Tensor) -> None:
        """Remember what ``start`` writes."""
        self._begin_args = (cfg, train_indices, test_indices)

    def start(self) -> None:
        """Create the run directory and write config, split and empty metrics (``RunDirWriter.begin``)."""
        if self._begin_args is None:
            raise RuntimeError("start() before begin()")
        super().begin(*self._begin_args)


def _check_replaceable(path: Path, force: bool) -> None:
    """Refuse (one line, nothing written) a member folder that holds anything, unless ``force``
    and it holds an earlier grokinterp run and nothing else."""
    if not rundir.refuse_occupied(path, force, f"use --resume {path.parent} to continue the ensemble"):
        return
    if not (path / C.CONFIG_FILE).is_file():
        raise RunDirError(
            f"--force refuses to clear {path}: it is not a grokinterp run; move it away or choose another --out"
        )
    rundir.refuse_foreign(path)


def train_ensemble(
    cfgs: Sequence[RunConfig], run_dirs: Sequence[str | Path | None], *, force: bool = False, progress: bool = True
) -> list[TrainResult]:
    """Train ``cfgs`` as one ensemble into ``run_dirs`` (None: in memory)."""
    return EnsembleTrainer.create(cfgs, run_dirs, force=force).run(progress=progress)


def parse_seeds(text: str) -> list[int]:
    """``"0-63"``, ``"1,5,9"`` or ``"0-3,10"`` -> the seeds, in order; ``ValueError`` naming
    ``--seeds`` for empty text or parts, reversed ranges, repeats, seeds outside [0, MAX_SEED] and
    more than ``MAX_SEEDS`` seeds (checked before any range is expanded)."""
    usage = "--seeds takes ranges and lists like 0-63 or 1,5,9"
    parts = text.replace(" ", "").split(",")
    if not text.strip() or any(not part for part in parts):
        raise ValueError(f"{usage} (got {text!r}: an empty seed)")
    bounds = []
    for part in parts:
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"{usage}, seeds non-negative (got {part!r})") from None
        if b < a:
            raise ValueError(f"--seeds range {part} runs backwards; write {b}-{a}")
        if b > MAX_SEED:
            raise ValueError(f"--seeds takes seeds from 0 to {MAX_SEED} (got {b})")
        bounds.append((a, b))
    count = sum(b - a + 1 for a, b in bounds)
    if count > MAX_SEEDS:
        raise ValueError(f"--seeds gives {count} seeds; one ensemble takes at most {MAX_SEEDS}")
    seeds = [s for a, b in bounds for s in range(a, b + 1)]
    if len(set(seeds)) != len(seeds):
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        raise ValueError(f"--seeds repeats seed {repeated[0]} (got {text!r}); each seed trains one member")
    return seeds


__all__ = [
    "CPU_CHUNK_BYTES",
    "MAX_SEED",
    "MAX_SEEDS",
    "PROGRESS_EVERY",
    "SHARED_FIELDS",
    "EnsembleTrainer",
    "StackedAdamW",
    "check_ensemble_configs",
    "parse_seeds",
    "train_ensemble",
]
