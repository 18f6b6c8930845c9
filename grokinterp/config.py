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


class JsonConfig:
    """JSON round trip of a frozen config dataclass; unknown fields are refused (``ValueError``)."""

    _label = "config"  # names the config in error messages

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        if not isinstance(d, dict):
            raise ValueError(f"a {cls._label} is a JSON object (got {type(d).__name__})")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls._label} field(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Any:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cls._label} is not valid JSON ({e})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)


def _f(default: Any, doc: str, **kw: Any) -> Any:
    """A documented field: ``doc`` is shown by ``grokinterp train --help`` and ``RunConfig.doc``."""
    return field(default=default, metadata={"doc": doc}, **kw)


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """Task, model and training recipe of one run (see the module docstring).

    Every field is documented (``RunConfig.doc(name)``); the CLI builds ``--help`` from these docs.
    """

    # --- task ---
    p: int = _f(113, "modulus: inputs and answers are residues mod p (prime for div)")
    op: str = _f(
        "add", "the operation mod p: " + ", ".join(f"{o.name} ({o.formula})" for o in tasks.OPERATIONS.values())
    )
    layout: tasks.Layout = _f("a b =", "token layout: 'a b =' (Nanda et al.) or 'a op b =' (Power et al.)")
    train_frac: float = _f(0.3, "fraction of all (a, b) pairs in the train split")
    data_seed: int = _f(598, "seed of the train/test split (torch.randperm)")
    # --- model ---
    arch: Arch = _f("transformer", "HookedTransformer, or the MLP of a published grokking study")
    n_layers: int = _f(1, "transformer blocks (or hidden layers of the MLP)")
    d_model: int = _f(128, "residual stream width (embedding width of the MLP)")
    n_heads: int = _f(4, "attention heads per layer")
    d_head: int = _f(32, "width of each attention head")
    d_mlp: int = _f(512, "MLP hidden width")
    act_fn: ActFn = _f("relu", "MLP activation")
    normalization_type: Norm = _f("none", "LayerNorm: none, LN (with weights) or LNPre (without)")
    freeze_biases: bool = _f(True, "freeze every b_* parameter (Nanda et al.: biases stay 0)")
    model_seed: int = _f(999, "seed of the initial weights")
    dropout: float = _f(0.0, "residual dropout during training, in [0, 1)")
    # --- optimisation (AdamW) ---
    lr: float = _f(1e-3, "AdamW learning rate")
    wd: float = _f(1.0, "AdamW weight decay")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.98, "AdamW beta2")
    epochs: int = _f(25_000, "passes over the train split")
    batch_size: int | None = _f(None, "minibatch size; none = full batch (one step per epoch)")
    sample_with_replacement: bool = _f(False, "draw minibatches with replacement")
    warmup_steps: int = _f(0, "linear lr warm-up, in optimizer steps")
    cooldown_steps: int = _f(0, "cosine lr cool-down to 0 over the last N optimizer steps")
    loss_dtype: Literal["float64", "float32"] = _f("float64", "precision of the training loss")
    dtype: Literal["float32", "float64"] = _f(
        "float32", "precision of the weights and forward pass (float64 for exactness tests; same initial values)"
    )
    train_seed: int = _f(0, "seed of minibatch order and dropout")
    # --- acceleration methods (see grokinterp.methods) ---
    grokfast: GrokfastKind = _f("none", "Grokfast gradient filter (Lee et al. 2024)")
    grokfast_alpha: float = _f(0.98, "Grokfast-EMA decay, in [0, 1)")
    grokfast_lamb: float = _f(2.0, "Grokfast amplification of the slow gradient")
    grokfast_window: int = _f(100, "Grokfast-MA window, in steps")
    loss_fn: LossFn = _f("cross_entropy", "cross_entropy, or stablemax (Prieto et al. 2025)")
    orthograd: bool = _f(False, "perp-Grad: remove the gradient's component along the weights")
    # --- schedule ---
    eval_every: int = _f(10, "evaluate train and test loss every N epochs")
    checkpoint_every: int = _f(100, "save a checkpoint every N epochs")
    checkpoint_early_every: int = _f(0, "also checkpoint every N epochs up to --checkpoint-early-until")
    checkpoint_early_until: int = _f(0, "last epoch of the denser early checkpoints")
    stop_acc: float | None = _f(None, "stop once test accuracy stays at or above this; none = never")
    stop_patience: int = _f(5, "evaluations in a row at or above stop_acc before stopping")
    device: Device = _f("auto", "auto picks cuda, then mps, then cpu")
    preset: str | None = _f(None, "the preset this config started from (a label)", compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(self, f.name)
            _check_choice(self, f.name)
        tasks.validate_task(self.p, self.op, self.layout)
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

    @classmethod
    def doc(cls, name: str) -> str:
        """The documentation of field ``name``."""
        return cls.__dataclass_fields__[name].metadata.get("doc", "")

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


@functools.cache
def field_types() -> dict[str, Any]:
    """Resolved type hints of every RunConfig field (used by the CLI to build flags)."""
    return typing.get_type_hints(RunConfig)


def _check_type(cfg: RunConfig, name: str) -> None:
    """int fields take ints (not 23.5, not True), floats take finite numbers, bools take bools."""
    hint = field_types()[name]
    value = getattr(cfg, name)
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        ok = isinstance(value, bool)
        want = "true or false"
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer"
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        want = "a finite number"
        if ok and isinstance(value, int):  # 1 -> 1.0, so JSON round trips keep the type
            object.__setattr__(cfg, name, float(value))
    elif hint is str or _literal_choices(hint) is not None:
        ok = isinstance(value, str)
        want = "a string"
    else:  # pragma: no cover - every field is one of the above
        return
    if not ok:
        raise ValueError(f"{name} must be {want} (got {value!r})")


def _check_choice(cfg: RunConfig, name: str) -> None:
    hint = field_types()[name]
    choices = _literal_choices(hint)
    if choices is not None and getattr(cfg, name) not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))} (got {getattr(cfg, name)!r})")


def _literal_choices(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return None
