"""The run configuration: one frozen dataclass describing task, model and training.

``JsonConfig`` is the base of every config dataclass (``RunConfig`` here, ``LLCConfig`` in
``grokinterp.analysis.llc``): field docs, type checks, the one parser from text to a field's value
(``parse_field``, used by the CLI flags, ``--set``/``--grid`` and ``tune --search``) and JSON.

A ``RunConfig`` is stored (as JSON) in every run directory and in every checkpoint, so a
checkpoint alone rebuilds its model. ``__post_init__`` validates and raises ``ValueError`` with one
actionable line; it has no side effects.

Time is counted in epochs (passes over the train split). With ``batch_size=None`` the run is
full-batch and one epoch is one optimizer step, as in Nanda et al.; with a batch size an epoch is
``ceil(n_train / batch_size)`` steps. Warm-up and cool-down are counted in optimizer steps.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from grokinterp import tasks

Arch = Literal["transformer", "mlp"]
ActFn = Literal["relu", "gelu", "gelu_new", "silu"]
Norm = Literal["none", "LN", "LNPre"]
AttentionDir = Literal["causal", "bidirectional"]
GrokfastKind = Literal["none", "ema", "ma"]
LossFn = Literal["cross_entropy", "stablemax"]
Device = Literal["auto", "cpu", "cuda", "mps"]
MLPEmbed = Literal["shared", "separate"]


#: Texts that mean None for an optional field.
NONE_WORDS = ("none", "null", "")
#: Texts that mean True / False for a bool field.
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
_COUNTS = {2: "two", 3: "three", 4: "four"}


def documented(default: Any, doc: str, *, aliases: dict[str, Any] | None = None, **kw: Any) -> Any:
    """A documented config field: ``doc`` is shown by ``--help`` and ``Config.doc(name)``;
    ``aliases`` are extra texts ``parse_field`` accepts (lower case), e.g. ``{"full": None}``."""
    metadata = {"doc": doc, "aliases": aliases or {}}
    return field(default=default, metadata=metadata, **kw)


@dataclass(frozen=True)
class FieldGroup:
    """Several fields set by one text, e.g. ``betas`` = ``"0.9,0.98"`` for ``beta1`` and ``beta2``."""

    fields: tuple[str, ...]
    doc: str


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(hint, False)``."""
    args = typing.get_args(hint)
    if type(None) in args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in args if a is not type(None)), True
    return hint, False


def _parses(cls: Any, name: str, text: str) -> bool:
    try:
        cls.parse_field(name, text)
    except ValueError:
        return False
    return True


def literal_choices(hint: Any) -> tuple[Any, ...] | None:
    """The choices of a ``Literal[...]`` hint, else None."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return None


def _not_a_choice(name: str, choices: tuple[Any, ...], value: Any) -> ValueError:
    return ValueError(f"{name} must be one of {', '.join(map(repr, choices))} (got {value!r})")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


class JsonConfig:
    """Base of the frozen config dataclasses (``RunConfig``, ``LLCConfig``): one place for

    - field docs (``doc(name)``, from ``documented(default, doc)``) and types (``field_types()``);
    - type checks in ``__post_init__`` (ints are ints, floats finite, bools bools, strings and
      ``Literal`` choices; an int for a float field is stored as a float);
    - parsing a text to a field's value (``parse_field``), which the CLI flags, ``--set``/``--grid``
      and ``tune --search`` use;
    - the JSON round trip; unknown fields are refused (``ValueError``).
    """

    _label = "config"  # names the config in error messages
    #: Names that set several fields from one text (``parse_field``), e.g. ``betas``. Subclasses
    #: assign it without an annotation, so the dataclass does not take it for a field.
    groups: typing.Mapping[str, FieldGroup] = types.MappingProxyType({})

    def __post_init__(self) -> None:
        """Check the type and the limits (``check_value``) of every field (subclasses call this
        first, then check what involves several fields)."""
        for f in fields(self):
            self._check_type(f.name)
            self.check_value(f.name, getattr(self, f.name))

    @classmethod
    def check_value(cls, name: str, value: Any) -> None:
        """Raise ``ValueError`` (one line naming ``name``) when ``value`` is outside field
        ``name``'s own limits; the base class has none (``RunConfig`` sets them)."""

    def _check_type(self, name: str) -> None:
        hint, optional = unwrap_optional(self.field_types()[name])
        value = getattr(self, name)
        if optional and value is None:
            return
        choices = literal_choices(hint)
        if hint is bool:
            ok, want = isinstance(value, bool), "true or false"
        elif hint is int:
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif hint is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            want = "a finite number"
            if ok and isinstance(value, int):  # 1 -> 1.0, so JSON round trips keep the type
                object.__setattr__(self, name, float(value))
        elif hint is str or choices is not None:
            ok, want = isinstance(value, str), "a string"
        else:  # pragma: no cover - every field is one of the above
            return
        if not ok:
            raise ValueError(f"{name} must be {want} (got {value!r})")
        if choices is not None and value not in choices:
            raise _not_a_choice(name, choices, value)

    # --- fields ---
    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Resolved type hints of every field, ``{name: hint}``."""
        return _type_hints(cls)

    @classmethod
    def doc(cls, name: str) -> str:
        """The documentation of field (or field group) ``name``."""
        if name in cls.groups:
            return cls.groups[name].doc
        return cls.__dataclass_fields__[name].metadata.get("doc", "")

    @classmethod
    def field_name(cls, text: str) -> str:
        """The field ``text`` names (``-`` or ``_``, spaces around ignored); labels that are not
        settings (``compare=False``, e.g. ``preset``) and unknown names are refused, with the
        closest field name as a hint."""
        name = text.strip().replace("-", "_")
        known = [f.name for f in fields(cls) if f.compare]
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {cls._label} field {name!r}{hint}")
        return name

    # --- text -> value ---
    @classmethod
    def parse_field(cls, name: str, text: str) -> Any:
        """Parse ``text`` as a value of field ``name``: int, float, bool (true/false, yes/no, on/off,
        1/0), a ``Literal`` choice, a string, ``none`` (or null, or nothing) for an optional field;
        a field group (``groups``) takes comma-separated numbers and gives a tuple. Raises
        ``ValueError`` with one line naming the field."""
        if name in cls.groups:
            return cls._parse_group(name, text)
        text = text.strip()
        aliases = cls.__dataclass_fields__[name].metadata.get("aliases", {})
        if text.lower() in aliases:
            return aliases[text.lower()]
        hint, optional = unwrap_optional(cls.field_types()[name])
        if optional and text.lower() in NONE_WORDS:
            return None
        choices = literal_choices(hint)
        if choices is not None:
            if text not in choices:
                raise _not_a_choice(name, choices, text)
            return text
        bad = ValueError(f"{name} takes {getattr(hint, '__name__', str(hint))} values (got {text!r})")
        if hint is bool:
            if text.lower() in TRUE_WORDS + FALSE_WORDS:
                return text.lower() in TRUE_WORDS
            raise bad
        if hint in (int, float):
            try:
                value = hint(text)
            except ValueError:
                raise bad from None
            if hint is float and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number (got {text!r})")
            cls.check_value(name, value)  # limits fail where the text is parsed, naming the field
            return value
        if hint is str:
            if not text:
                raise bad
            return text
        raise ValueError(f"{name} cannot be set from text")  # pragma: no cover

    @classmethod
    def _parse_group(cls, name: str, text: str) -> tuple[Any, ...]:
        members = cls.groups[name].fields
        parts = text.split(",")
        try:
            if len(parts) != len(members):
                raise ValueError
            return tuple(cls.parse_field(m, part) for m, part in zip(members, parts, strict=True))
        except ValueError:
            count = _COUNTS.get(len(members), str(len(members)))
            example = ",".join(str(cls.__dataclass_fields__[m].default) for m in members)
            raise ValueError(f"{name} must be {count} numbers like {example} (got {text!r})") from None

    @classmethod
    def parse_sets(cls, specs: Sequence[str], flag: str = "--set") -> dict[str, Any]:
        """``["epochs=500", "lr=3e-3"]`` -> ``{"epochs": 500, "lr": 0.003}`` (``flag`` names the
        option in error messages)."""
        out: dict[str, Any] = {}
        for spec in specs:
            name, value = cls._split_spec(spec, flag)
            out[name] = cls.parse_field(name, value)
        return out

    @classmethod
    def parse_grid(cls, specs: Sequence[str], flag: str = "--grid") -> dict[str, list[Any]]:
        """``["train_frac=0.3,0.5", "model_seed=0,1"]`` -> ``{"train_frac": [0.3, 0.5], "model_seed":
        [0, 1]}``; a field given twice, without values or with a value twice is refused."""
        grid: dict[str, list[Any]] = {}
        for spec in specs:
            name, values = cls._split_spec(spec, flag)
            if name in grid:
                raise ValueError(f"{flag} {name} given twice; list all its values in one {flag} {name}=V1,V2")
            try:
                parsed = [cls.parse_field(name, v) for v in values.split(",") if v.strip()]
            except ValueError as e:  # a value outside the field's limits: name the grid point
                bad = next(v.strip() for v in values.split(",") if v.strip() and not _parses(cls, name, v))
                raise ValueError(f"grid point {name}={bad}: {e}") from None
            if not parsed:
                raise ValueError(f"{flag} {name} has no values (use {name}=V1,V2,...)")
            if len(set(map(repr, parsed))) != len(parsed):
                raise ValueError(f"{flag} {name} repeats a value ({values})")
            grid[name] = parsed
        return grid

    @classmethod
    def _split_spec(cls, spec: str, flag: str) -> tuple[str, str]:
        if "=" not in spec:
            raise ValueError(f"{flag} takes FIELD=VALUE (got {spec!r})")
        name, _, value = spec.partition("=")
        return cls.field_name(name), value

    # --- JSON ---
    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The fields as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The config of a dict of fields (validated; unknown fields are refused)."""
        if not isinstance(d, dict):
            raise ValueError(f"a {cls._label} is a JSON object (got {type(d).__name__})")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls._label} field(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Any:
        """The config of a JSON text (``to_json``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cls._label} is not valid JSON ({e})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


#: RunConfig's default p (a group task left at it gets its group's order).
_DEFAULT_P = 113

#: Seeds are in ``[0, SEED_LIMIT)``: ``torch.Generator.manual_seed`` takes them (and the trainer's
#: per-epoch seeds ``train_seed + 1_000_003 * epoch``) for any realistic number of epochs.
SEED_LIMIT = 2**63


def _at_least(low: int) -> tuple[Any, str]:
    return (lambda v: v >= low), f"at least {low}"


def _unit(text: str, low_open: bool, high_open: bool) -> tuple[Any, str]:
    def ok(v: float) -> bool:
        return (v > 0.0 if low_open else v >= 0.0) and (v < 1.0 if high_open else v <= 1.0)

    return ok, f"in {text}"


_COUNT_FIELDS = (
    "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "epochs", "eval_every",
    "checkpoint_every", "stop_patience", "grokfast_window", "batch_size",
)  # fmt: skip
#: Field -> (predicate, "what it must be"): the limits ``RunConfig.check_value`` enforces.
_LIMITS: dict[str, tuple[Any, str]] = {
    **{n: _at_least(1) for n in _COUNT_FIELDS},
    **{n: _at_least(0) for n in ("warmup_steps", "cooldown_steps", "checkpoint_early_every", "checkpoint_early_until")},
    **{n: ((lambda v: 0 <= v < SEED_LIMIT), "in [0, 2**63)") for n in ("model_seed", "data_seed", "train_seed")},
    "train_frac": _unit("(0, 1)", True, True),
    "attention_rate": _unit("[0, 1]", False, False),
    "stop_acc": _unit("(0, 1]", True, False),
    **{n: _unit("[0, 1)", False, True) for n in ("beta1", "beta2", "grokfast_alpha", "dropout")},
    "lr": ((lambda v: v > 0), "positive"),
    "wd": ((lambda v: v >= 0), "non-negative"),
}


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """Task, model and training recipe of one run (see the module docstring).

    Every field is documented (``RunConfig.doc(name)``); the CLI builds ``--help`` from these docs.
    ``betas`` sets ``beta1`` and ``beta2`` from one text (``RunConfig.parse_field("betas", "0.9,0.98")``).
    """

    groups = types.MappingProxyType({"betas": FieldGroup(("beta1", "beta2"), "AdamW betas as 'b1,b2'")})

    # --- task ---
    p: int = documented(
        _DEFAULT_P,
        "modulus: inputs and answers are residues mod p (prime for div); for a group op, the group's order "
        "(set from the group when left at its default)",
    )
    op: str = documented(
        "add",
        "the operation mod p: "
        + ", ".join(f"{o.name} ({o.formula})" for o in tasks.OPERATIONS.values())
        + "; or a finite group, the task its multiplication table: S<n> (n <= 6), A<n> (n <= 6), D<n> "
        "(2n elements), C<n> (addition mod n)",
    )
    layout: tasks.Layout = documented(
        "a b =", "token layout: 'a b =' (Nanda et al.), 'a op b =' (Power et al.) or 'a b' (Zhong et al.: no '=' token)"
    )
    train_frac: float = documented(0.3, "fraction of all (a, b) pairs in the train split")
    data_seed: int = documented(598, "seed of the train/test split (torch.randperm)")
    # --- model ---
    arch: Arch = documented("transformer", "HookedTransformer, or the MLP of a published grokking study")
    mlp_embed: MLPEmbed = documented(
        "shared",
        "the MLP's embeddings: shared (one W_E for a and b, nn.Linear's init and biases) or separate (Chughtai "
        "et al. 2023: W_E for a and W_E_b for b, every matrix randn / sqrt(fan-in), biases 0 and frozen with "
        "freeze_biases)",
    )
    n_layers: int = documented(1, "transformer blocks (or hidden layers of the MLP)")
    d_model: int = documented(128, "residual stream width (embedding width of the MLP)")
    n_heads: int = documented(4, "attention heads per layer")
    d_head: int = documented(32, "width of each attention head")
    d_mlp: int = documented(512, "MLP hidden width")
    act_fn: ActFn = documented("relu", "MLP activation")
    normalization_type: Norm = documented("none", "LayerNorm: none, LN (with weights) or LNPre (without)")
    attention_dir: AttentionDir = documented(
        "causal", "attention mask: causal (each position sees itself and earlier ones) or bidirectional (no mask)"
    )
    attention_rate: float = documented(
        1.0,
        "Zhong et al.'s attention rate r, in [0, 1]: attention = r * softmax(scores) + (1 - r), as in their "
        "train-main.py; 1 = ordinary attention, 0 = constant attention (every position weighted 1: a pizza's "
        "recipe); below 1 needs --attention-dir bidirectional",
    )
    freeze_biases: bool = documented(True, "freeze every b_* parameter (Nanda et al.: biases stay 0)")
    model_seed: int = documented(999, "seed of the initial weights")
    dropout: float = documented(0.0, "residual dropout during training, in [0, 1)")
    # --- optimisation (AdamW) ---
    lr: float = documented(1e-3, "AdamW learning rate")
    wd: float = documented(1.0, "AdamW weight decay")
    beta1: float = documented(0.9, "AdamW beta1")
    beta2: float = documented(0.98, "AdamW beta2")
    epochs: int = documented(25_000, "passes over the train split")
    batch_size: int | None = documented(
        None, "minibatch size; none = full batch (one step per epoch)", aliases={"full": None}
    )
    sample_with_replacement: bool = documented(False, "draw minibatches with replacement")
    warmup_steps: int = documented(0, "linear lr warm-up, in optimizer steps")
    cooldown_steps: int = documented(0, "cosine lr cool-down to 0 over the last N optimizer steps")
    loss_dtype: Literal["float64", "float32"] = documented("float64", "precision of the training loss")
    dtype: Literal["float32", "float64"] = documented(
        "float32", "precision of the weights and forward pass (float64 for exactness tests; same initial values)"
    )
    train_seed: int = documented(0, "seed of minibatch order and dropout")
    # --- acceleration methods (see grokinterp.methods) ---
    grokfast: GrokfastKind = documented("none", "Grokfast gradient filter (Lee et al. 2024)")
    grokfast_alpha: float = documented(0.98, "Grokfast-EMA decay, in [0, 1)")
    grokfast_lamb: float = documented(2.0, "Grokfast amplification of the slow gradient")
    grokfast_window: int = documented(100, "Grokfast-MA window, in steps")
    loss_fn: LossFn = documented("cross_entropy", "cross_entropy, or stablemax (Prieto et al. 2025)")
    orthograd: bool = documented(False, "perp-Grad: remove the gradient's component along the weights")
    # --- schedule ---
    eval_every: int = documented(10, "evaluate train and test loss every N epochs")
    checkpoint_every: int = documented(100, "save a checkpoint every N epochs")
    checkpoint_early_every: int = documented(0, "also checkpoint every N epochs up to --checkpoint-early-until")
    checkpoint_early_until: int = documented(0, "last epoch of the denser early checkpoints")
    stop_acc: float | None = documented(None, "stop once test accuracy stays at or above this; none = never")
    stop_patience: int = documented(5, "evaluations in a row at or above stop_acc before stopping")
    device: Device = documented("auto", "auto picks cuda, then mps, then cpu")
    compile: bool = documented(
        False,
        "torch.compile the train step (forward, loss and backward; the AdamW update when the lr is constant) and "
        "the evaluation forward; on CUDA as CUDA graphs (mode reduce-overhead). The first steps compile (tens of "
        "seconds); off by default: on a CPU it pays only for long runs",
    )
    preset: str | None = documented(None, "the preset this config started from (a label)", compare=False)

    def __post_init__(self) -> None:
        """Check every field's type and limits (``JsonConfig``, ``check_value``), then the task."""
        super().__post_init__()
        order = tasks.group_order(self.op)  # one line for an unknown or too large group
        if order is not None:
            # A group task's p is the group's order: filled in when p was left at its default.
            object.__setattr__(self, "op", tasks.canonical_op(self.op))
            if self.p == _DEFAULT_P:
                object.__setattr__(self, "p", order)
        tasks.validate_task(self.p, self.op, self.layout)
        if self.mlp_embed != "shared" and self.arch != "mlp":
            raise ValueError("mlp_embed 'separate' needs arch 'mlp' (a transformer has one W_E)")
        if self.arch == "mlp" and self.layout not in ("a b =", "a b"):
            raise ValueError("arch 'mlp' reads only a and b; use layout 'a b =' or 'a b'")
        if self.compile and self.dropout > 0:
            raise ValueError(
                "compile does not support dropout (its masks come from a torch.Generator); set one of them off"
            )
        if self.attention_rate < 1.0:
            if self.arch != "transformer":
                raise ValueError("attention_rate below 1 needs arch 'transformer' (the MLP has no attention)")
            if self.attention_dir != "bidirectional":
                raise ValueError(
                    "attention_rate below 1 needs attention_dir 'bidirectional': the (1 - rate) term would undo "
                    "the causal mask (Zhong et al.'s models apply no mask)"
                )

    @classmethod
    def check_value(cls, name: str, value: Any) -> None:
        """The limits of one field (``JsonConfig.check_value``): counts at least 1, seeds in
        ``[0, SEED_LIMIT)``, rates and fractions in their ranges. ``parse_field`` runs it, so a
        bad ``--lr``, ``--seed``, ``--set``, ``--grid`` or ``tune --search`` value fails as it is
        parsed; a value of the wrong type is left to the type check."""
        if isinstance(value, bool) or not isinstance(value, int | float):  # None, or a type error
            return
        limits = _LIMITS.get(name)
        if limits is not None and not limits[0](value):
            raise ValueError(f"{name} must be {limits[1]} (got {value})")

    # --- derived quantities ---
    @property
    def d_vocab(self) -> int:
        """Vocabulary size of the task's tokens."""
        return tasks.d_vocab(self.p, self.layout)

    @property
    def n_ctx(self) -> int:
        """Tokens per input sequence."""
        return tasks.n_ctx(self.layout)

    @property
    def n_train(self) -> int:
        """Examples in the train split."""
        n = self.p * (self.p - 1) if tasks.get_operation(self.op).b_nonzero else self.p * self.p
        return int(n * self.train_frac)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (1 when full batch)."""
        if self.batch_size is None:
            return 1
        return max(1, math.ceil(self.n_train / self.batch_size))

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run."""
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
        """Whether the run saves a checkpoint at ``epoch`` (the first, the last, every
        ``checkpoint_every``, and the early ones)."""
        if epoch == 0 or epoch == self.epochs or epoch % self.checkpoint_every == 0:
            return True
        return bool(
            self.checkpoint_early_every
            and epoch <= self.checkpoint_early_until
            and epoch % self.checkpoint_early_every == 0
        )


def field_types() -> dict[str, Any]:
    """Resolved type hints of every RunConfig field (``RunConfig.field_types()``)."""
    return RunConfig.field_types()
