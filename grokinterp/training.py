"""Full-batch and minibatch AdamW training with checkpoints, exact resume and early stopping.

The forward pass is ``models.last_position_logits`` (only the final position, first-layer
attention from per-token tables), the loss is float64 cross-entropy on the answer classes, and the
full train and test sets are evaluated every ``eval_every`` epochs (not every epoch, as the demo
does). ``Trainer.run`` writes ``metrics.jsonl``, checkpoints and a resume state into the run
directory; ``Trainer.resume(run_dir)`` continues a run and reproduces the uninterrupted metrics
exactly.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grokinterp import checkpoints as ckpt
from grokinterp.config import RunConfig
from grokinterp.methods import cross_entropy, make_grad_filter, orthogonalize_gradients
from grokinterp.models import build_model, last_position_logits
from grokinterp.tasks import Dataset, make_dataset

logger = logging.getLogger(__name__)

GROKKING_THRESHOLD = 0.99


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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: str = "cross_entropy",
    chunk: int = 32_768,
    tokens: Tensor | None = None,
    labels: Tensor | None = None,
) -> dict[str, float]:
    """Loss (float64) and accuracy on the train and test splits, from one pass over all inputs."""
    tokens = dataset.tokens if tokens is None else tokens
    labels = dataset.labels if labels is None else labels
    logits = torch.cat([last_position_logits(model, t) for t in tokens.split(chunk)])
    # Per-example loss and correctness once, then split: indexing the (n, d_vocab) logits per split
    # would copy them.
    if loss_fn == "cross_entropy":
        nll = -logits.double().log_softmax(-1).gather(-1, labels[:, None])[:, 0]
    correct = (logits.argmax(-1) == labels).double()
    out = {}
    for split, idx in (("train", dataset.train_indices), ("test", dataset.test_indices)):
        idx = idx.to(logits.device)
        if loss_fn == "cross_entropy":
            out[f"{split}_loss"] = nll[idx].mean().item()
        else:
            out[f"{split}_loss"] = cross_entropy(logits[idx], labels[idx], loss_fn).item()
        out[f"{split}_acc"] = correct[idx].mean().item()
    return out


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


class Trainer:
    """Trains one run. ``run_dir=None`` trains in memory (sweeps, notebooks, tests)."""

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
            _prepare_run_dir(self.run_dir, force)
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
        if self.run_dir is not None and not _resuming:
            ckpt.write_run_config(self.run_dir, cfg)
            ckpt.write_split(self.run_dir, self.dataset.train_indices, self.dataset.test_indices)
            ckpt.write_metrics(self.run_dir, [])

    # ------------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir: str | Path, **overrides: Any) -> Trainer:
        """Continue a run from its ``state.safetensors`` (``overrides`` may extend ``epochs``)."""
        run_dir = Path(run_dir)
        cfg = ckpt.read_run_config(run_dir)
        if overrides:
            cfg = cfg.replace(**overrides)
        train_idx, test_idx = ckpt.read_split(run_dir)
        dataset = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed, split=(train_idx, test_idx))
        self = cls(cfg, run_dir, dataset=dataset, _resuming=True)
        state_path = run_dir / "state.safetensors"
        if not state_path.is_file():
            raise ckpt.RunDirError(f"{run_dir}: no state.safetensors to resume from; start it again with --force")
        tensors, meta = ckpt.load_tensors(state_path)
        self._load_state(tensors, meta)
        # Drop metrics written after the resume point (a crash between a row and the state save).
        self.metrics = [r for r in ckpt.read_metrics(run_dir) if r["epoch"] <= self.epoch]
        ckpt.write_metrics(run_dir, self.metrics)
        if overrides:
            ckpt.write_run_config(run_dir, cfg)
        logger.info("resuming %s at epoch %d", run_dir, self.epoch)
        return self

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
            "format": ckpt.STATE_FORMAT,
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
        if meta.get("format") != ckpt.STATE_FORMAT:
            raise ckpt.RunDirError("state.safetensors is not a grokinterp resume state")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                opt_state.setdefault(int(idx), {})[key] = v
        groups = json.loads(meta["param_groups"])
        for g in groups:
            g["lr"] = self.cfg.lr * self.cfg.lr_multiplier(json.loads(meta["trainer"])["step"])
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        self.batch_gen.set_state(tensors["rng.batch"])
        self.dropout_gen.set_state(tensors["rng.dropout"].to(self.dropout_gen.device))
        if self.grad_filter is not None:
            self.grad_filter.load_state_tensors(
                {k[7:]: v.to(self.device) for k, v in tensors.items() if k.startswith("filter.")}
            )
        trainer = json.loads(meta["trainer"])
        self.epoch, self.step, self.streak = trainer["epoch"], trainer["step"], trainer["streak"]
        self.grokking_epoch, self.elapsed = trainer["grokking_epoch"], trainer["elapsed"]

    def save_state(self) -> None:
        if self.run_dir is None:
            return
        tensors, meta = self._state_tensors()
        ckpt.save_tensors(self.run_dir / "state.safetensors", tensors, meta)

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
        row = {
            "epoch": self.epoch,
            "step": self.step,
            **m,
            "lr": self.cfg.lr * self.cfg.lr_multiplier(self.step),
            "elapsed": round(self.elapsed, 3),
        }
        threshold = self.cfg.stop_acc or GROKKING_THRESHOLD
        if m["test_acc"] >= threshold:
            self.streak += 1
            if self.grokking_epoch is None:
                self.grokking_epoch = self.epoch
        else:
            self.streak = 0
        self.metrics.append(row)
        if self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(_json_row(row))
        return row

    def _is_eval_epoch(self, epoch: int) -> bool:
        return epoch % self.cfg.eval_every == 0 or self.cfg.is_checkpoint_epoch(epoch)

    def run(
        self,
        progress: bool = True,
        callback: Callable[[Trainer, dict[str, Any]], None] | None = None,
        max_epochs: int | None = None,
    ) -> TrainResult:
        """Train to ``cfg.epochs`` (or early stop). ``max_epochs`` stops after that many more
        epochs, like an interruption (used to test resume)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        stopped_early = interrupted = False
        if self.epoch == 0 and not self.metrics:
            self._log_and_checkpoint()
        target = cfg.epochs if max_epochs is None else min(cfg.epochs, self.epoch + max_epochs)
        bar = tqdm(
            total=cfg.epochs,
            initial=self.epoch,
            disable=not progress,
            unit="epoch",
            dynamic_ncols=True,
        )
        restore = self._install_sigint()
        start = time.perf_counter() - self.elapsed
        try:
            while self.epoch < target:
                if self.streak >= cfg.stop_patience and cfg.stop_acc is not None:
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
                if self.streak >= cfg.stop_patience and cfg.stop_acc is not None:
                    stopped_early = True
        finally:
            restore()
            bar.close()
        self.elapsed = time.perf_counter() - start
        finished = self.epoch >= cfg.epochs or stopped_early
        if self.run_dir is not None:
            if not self.metrics or self.metrics[-1]["epoch"] != self.epoch:
                self._log_and_checkpoint(force_checkpoint=True)
            elif not ckpt.checkpoint_path(self.run_dir, self.epoch).exists():
                ckpt.save_checkpoint(self.run_dir, self.epoch, self.model, cfg, self.metrics[-1])
            self.save_state()
        summary = {
            "final_epoch": self.epoch,
            "finished": finished,
            "grokking_epoch": self.grokking_epoch,
            "grokking_step": self.grokking_step,
            "grokking_threshold": cfg.stop_acc or GROKKING_THRESHOLD,
            "stopped_early": stopped_early,
            "wall_clock_s": round(self.elapsed, 3),
            "final": self.metrics[-1] if self.metrics else {},
        }
        if self.run_dir is not None:
            ckpt.atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        if interrupted:
            logger.warning(
                "interrupted at epoch %d; resume with: grokinterp train --resume %s",
                self.epoch,
                self.run_dir,
            )
        return TrainResult(
            self.run_dir, cfg, self.model, self.metrics, self.epoch, self.grokking_epoch,
            stopped_early, interrupted, self.elapsed, summary,
        )  # fmt: skip

    @property
    def grokking_step(self) -> int | None:
        """Optimizer steps taken by the grokking epoch (studies with minibatches count steps)."""
        return next((r["step"] for r in self.metrics if r["epoch"] == self.grokking_epoch), None)

    def _log_and_checkpoint(self, force_checkpoint: bool = False) -> dict[str, Any]:
        row = self._evaluate_and_log()
        if self.run_dir is not None and (force_checkpoint or self.cfg.is_checkpoint_epoch(self.epoch)):
            ckpt.save_checkpoint(self.run_dir, self.epoch, self.model, self.cfg, row)
            self.save_state()
        return row

    def _install_sigint(self) -> Callable[[], None]:
        """First Ctrl-C: finish the epoch, save and exit cleanly. Second: abort at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._stop_requested:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self._stop_requested = True
            logger.warning("Ctrl-C: saving at the end of this epoch (press again to abort)")

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)


def _json_row(row: dict[str, Any]) -> str:
    return json.dumps(row) + "\n"


def _prepare_run_dir(run_dir: Path, force: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise ckpt.RunDirError(
                f"run directory {run_dir} already exists; use --resume {run_dir} to continue it "
                "or --force to overwrite it"
            )
        if not (run_dir / "config.json").is_file():
            raise ckpt.RunDirError(f"{run_dir} is not a grokinterp run directory; refusing to overwrite it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


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
