"""What every ``grokinterp`` command shares: the one-line error, the parser class, and flags built
from a config's fields (``RunConfig``, ``LLCConfig``): their types, docs and text parsing come from
``grokinterp.config.JsonConfig``, so ``--help`` and the error messages say what the config says.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence
from typing import Any

from grokinterp.config import JsonConfig, literal_choices, unwrap_optional


class CLIError(Exception):
    """A user error with a one-line message."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one ``CLIError`` line, not usage + message."""

    def error(self, message: str) -> typing.NoReturn:
        """Raise ``CLIError`` naming the problem and the command's ``--help``."""
        raise CLIError(f"{message} (see '{self.prog} --help')")


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name without one)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def os_error_line(e: OSError) -> str:
    """An OSError as one line: its reason, then the file(s) it names once (``No space left on
    device: RUN/metrics.jsonl``); a message of our own that already names the file is kept."""
    reason = e.strerror or one_line(e)
    files = [str(f) for f in (e.filename, getattr(e, "filename2", None)) if f is not None]
    files = [f for f in files if f not in reason]
    return f"{reason}: {' -> '.join(files)}" if files else reason


def key_freq_list(text: str) -> list[int]:
    """argparse ``type=`` of ``--key-freqs``: distinct positive integers like 14,35,41 (at least
    one); argparse names the flag in the error."""
    try:
        freqs = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated integers like 14,35,41 (got {text!r})") from None
    if not freqs:
        raise argparse.ArgumentTypeError(f"needs at least one frequency like 14,35,41 (got {text!r})")
    if min(freqs) < 1:
        raise argparse.ArgumentTypeError(f"frequencies are at least 1 (got {min(freqs)})")
    repeated = sorted({f for f in freqs if freqs.count(f) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"frequency {repeated[0]} is given twice")
    return freqs


# ----------------------------------------------------------------------------------------------
# Flags generated from a config's fields
# ----------------------------------------------------------------------------------------------


def field_type(cls: type[JsonConfig], name: str) -> Any:
    """The argparse ``type=`` of a flag setting field (or field group) ``name`` of ``cls``:
    ``cls.parse_field``. argparse names the flag in its errors: ``argument --lr: invalid float
    value: 'abc'``; a field group's message says the expected form (``betas must be two numbers
    like 0.9,0.98``)."""

    def parse(text: str) -> Any:
        try:
            return cls.parse_field(name, text)
        except ValueError as e:
            if name in cls.groups or " takes " not in str(e):  # a limit, not a malformed value: say which
                raise argparse.ArgumentTypeError(str(e)) from None
            raise

    hint = None if name in cls.groups else unwrap_optional(cls.field_types()[name])[0]
    parse.__name__ = getattr(hint, "__name__", name)  # argparse's "invalid float value"
    return parse


def field_flag(cls: type[JsonConfig], name: str) -> dict[str, Any]:
    """argparse keyword arguments for a flag setting field ``name`` of ``cls``: ``--x/--no-x`` for
    a bool, the choices of a ``Literal``, else ``type=field_type(cls, name)`` (metavar
    ``INT|none`` for an optional field)."""
    hint, optional = unwrap_optional(cls.field_types()[name])
    if hint is bool and not optional:
        return {"action": argparse.BooleanOptionalAction}
    choices = literal_choices(hint)
    if choices is not None and not optional:
        return {"choices": choices}
    kw: dict[str, Any] = {"type": field_type(cls, name)}
    if optional:
        kw["metavar"] = f"{getattr(hint, '__name__', 'value').upper()}|none"
    return kw


def shown(value: Any) -> Any:
    """A default as ``--help`` shows it: none, true/false, or the value."""
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else value


_ALIASES = {
    "warmup_steps": ["--warmup"],
    "cooldown_steps": ["--cooldown"],
    "n_layers": ["--layers"],
    "train_frac": ["--frac"],
}
_SEED_FIELDS = ("model_seed", "data_seed", "train_seed")


def preset_in(argv: Sequence[str]) -> str | None:
    """The --preset value in ``argv`` (before parsing), so --help can show that preset's defaults."""
    for i, arg in enumerate(argv):
        if arg == "--preset" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--preset="):
            return arg.split("=", 1)[1]
    return None


def _config_flag_names() -> list[str]:
    """RunConfig fields with a flag of their own: not labels (``preset``), not group members."""
    from grokinterp.config import RunConfig

    grouped = {m for g in RunConfig.groups.values() for m in g.fields}
    return [f for f in RunConfig.field_types() if RunConfig.__dataclass_fields__[f].compare and f not in grouped]


def add_config_flags(parser: argparse.ArgumentParser, preset: str = "nanda-p113") -> None:
    """One flag per RunConfig field (``--train-frac``, ``--lr``, ...) and field group (``--betas``),
    documented from the field's doc, showing ``preset``'s value; an unset flag keeps the preset's
    value (argparse.SUPPRESS), so ``--stop-acc none`` can clear a preset's value."""
    from grokinterp.config import RunConfig
    from grokinterp.presets import PRESETS

    base = PRESETS.get(preset, RunConfig())
    group = parser.add_argument_group(f"config (each flag overrides the preset; shown: {preset}'s values)")
    for name in _config_flag_names():
        flags = [f"--{name.replace('_', '-')}", *_ALIASES.get(name, [])]
        kw = field_flag(RunConfig, name)
        value = shown(getattr(base, name))
        group.add_argument(*flags, dest=name, default=argparse.SUPPRESS, help=f"{RunConfig.doc(name)} [{value}]", **kw)
    for name, g in RunConfig.groups.items():
        value = ",".join(str(getattr(base, m)) for m in g.fields)
        group.add_argument(
            f"--{name}", type=field_type(RunConfig, name), default=argparse.SUPPRESS, help=f"{g.doc} [{value}]"
        )
    group.add_argument(
        "--seed",
        type=field_type(RunConfig, "model_seed"),
        default=argparse.SUPPRESS,
        help="set --model-seed, --data-seed and --train-seed at once (each of those flags still wins)",
    )


def config_overrides(args: argparse.Namespace) -> dict:
    """The config fields set on the command line, as {field: value}."""
    from grokinterp.config import RunConfig

    changes = {name: getattr(args, name) for name in _config_flag_names() if hasattr(args, name)}
    if hasattr(args, "seed"):
        for name in _SEED_FIELDS:
            changes.setdefault(name, args.seed)
    for name, g in RunConfig.groups.items():
        if hasattr(args, name):
            changes.update(zip(g.fields, getattr(args, name), strict=True))
    return changes


def config_from_args(args: argparse.Namespace, base=None):
    """The RunConfig of ``args``: ``base`` (default: ``--preset``'s, else nanda-p113) with the
    config flags given on the command line."""
    from grokinterp.presets import get_preset
    from grokinterp.tasks import group_order

    cfg = base if base is not None else get_preset(getattr(args, "preset", None) or "nanda-p113")
    changes = config_overrides(args)
    if "op" in changes and "p" not in changes:  # --op S5 alone: p is the group's order
        order = group_order(changes["op"])
        if order is not None:
            changes["p"] = order
    return cfg.replace(**changes) if changes else cfg
