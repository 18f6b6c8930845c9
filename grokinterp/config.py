"""The run configuration: one frozen dataclass describing task, model and training.

A ``RunConfig`` is stored (as JSON) in every run directory and in every checkpoint, so a
checkpoint alone rebuilds its model. ``__post_init__`` validates and raises ``ValueError`` with one
actionable line; it has no side effects.

Time is counted in epochs (passes over the train split). With ``batch_size=None`` the run is
full-batch and one epoch is one optimizer step, as in Nanda et al.; with a batch size an epoch is
``ceil(n_train / batch_size)`` steps. Warm-up and cool-down are counted in optimizer steps.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from grokinterp import tasks

Arch = Literal["transformer", "mlp"]
ActFn = Literal["relu", "gelu", "gelu_new", "silu"]
Norm = Literal["none", "LN", "LNPre"]
GrokfastKind = Literal["none", "ema", "ma"]
LossFn = Literal["cross_entropy", "stablemax"]
Device = Literal["auto", "cpu", "cuda", "mps"]


@dataclass(frozen=True)
class RunConfig:
    # --- task ---
    p: int = 113
    op: str = "add"
    layout: tasks.Layout = "a b ="
    train_frac: float = 0.3
    data_seed: int = 598
    # --- model ---
    arch: Arch = "transformer"
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act_fn: ActFn = "relu"
    normalization_type: Norm = "none"
    freeze_biases: bool = True
    model_seed: int = 999
    dropout: float = 0.0
    # --- optimisation (AdamW) ---
    lr: float = 1e-3
    wd: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    epochs: int = 25_000
    batch_size: int | None = None
    sample_with_replacement: bool = False
    warmup_steps: int = 0
    cooldown_steps: int = 0
    loss_dtype: Literal["float64", "float32"] = "float64"
    train_seed: int = 0
    # --- acceleration methods (see grokinterp.methods) ---
    grokfast: GrokfastKind = "none"
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 2.0
    grokfast_window: int = 100
    loss_fn: LossFn = "cross_entropy"
    orthograd: bool = False
    # --- schedule ---
    eval_every: int = 10
    checkpoint_every: int = 100
    checkpoint_early_every: int = 0
    checkpoint_early_until: int = 0
    stop_acc: float | None = None
    stop_patience: int = 5
    device: Device = "auto"
    preset: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        tasks.validate_task(self.p, self.op, self.layout)
        for name in fields(self):
            _check_choice(self, name.name)
        if not 0.0 < self.train_frac < 1.0:
            raise ValueError(f"train_frac must be in (0, 1) (got {self.train_frac})")
        positive = [
            "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "epochs",
            "eval_every", "checkpoint_every", "stop_patience", "grokfast_window",
        ]  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, or None for full batch (got {self.batch_size})")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive (got {self.lr})")
        if self.wd < 0:
            raise ValueError(f"wd must be non-negative (got {self.wd})")
        for name in ("beta1", "beta2", "grokfast_alpha"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (got {getattr(self, name)})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.warmup_steps < 0 or self.cooldown_steps < 0:
            raise ValueError("warmup_steps and cooldown_steps must be non-negative")
        if self.checkpoint_early_every < 0 or self.checkpoint_early_until < 0:
            raise ValueError("checkpoint_early_every and checkpoint_early_until must be non-negative")
        if self.stop_acc is not None and not 0.0 < self.stop_acc <= 1.0:
            raise ValueError(f"stop_acc must be in (0, 1] (got {self.stop_acc})")
        if self.arch == "mlp" and self.layout != "a b =":
            raise ValueError("arch 'mlp' reads only a and b; use layout 'a b ='")

    # --- derived quantities ---
    @property
    def d_vocab(self) -> int:
        return tasks.d_vocab(self.p, self.layout)

    @property
    def n_ctx(self) -> int:
        return tasks.n_ctx(self.layout)

    @property
    def n_train(self) -> int:
        n = self.p * (self.p - 1) if tasks.get_operation(self.op).b_nonzero else self.p * self.p
        return int(n * self.train_frac)

    @property
    def steps_per_epoch(self) -> int:
        if self.batch_size is None:
            return 1
        return max(1, math.ceil(self.n_train / self.batch_size))

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def lr_multiplier(self, step: int) -> float:
        """LR factor for the optimizer step with 0-based index ``step``.

        Linear warm-up as in the paper's code (``min(step / warmup, 1)``, so the first step has
        lr 0), then constant, then a cosine cool-down to 0 over the last ``cooldown_steps``.
        """
        mult = 1.0
        if self.warmup_steps:
            mult = min(step / self.warmup_steps, 1.0)
        if self.cooldown_steps:
            start = self.total_steps - self.cooldown_steps
            if step >= start:
                frac = (step - start) / self.cooldown_steps
                mult *= 0.5 * (1.0 + math.cos(math.pi * frac))
        return mult

    def is_checkpoint_epoch(self, epoch: int) -> bool:
        if epoch == 0 or epoch == self.epochs or epoch % self.checkpoint_every == 0:
            return True
        return bool(
            self.checkpoint_early_every
            and epoch <= self.checkpoint_early_until
            and epoch % self.checkpoint_early_every == 0
        )

    # --- serialisation ---
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


@functools.cache
def field_types() -> dict[str, Any]:
    """Resolved type hints of every RunConfig field (used by the CLI to build flags)."""
    return typing.get_type_hints(RunConfig)


def _check_choice(cfg: RunConfig, name: str) -> None:
    hint = field_types()[name]
    choices = _literal_choices(hint)
    if choices is not None and getattr(cfg, name) not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))} (got {getattr(cfg, name)!r})")


def _literal_choices(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return None
