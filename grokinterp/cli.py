"""The ``grokinterp`` command line: a thin layer over the library.

``main(argv)`` returns an exit code, so tests call it directly. Heavy imports (torch,
transformer_lens, plotly) happen inside the commands that need them. Any bad input ends in one line
``grokinterp: error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("grokinterp")


class CLIError(Exception):
    """A user error with a one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, not usage + message
        raise CLIError(f"{message} (see '{self.prog} --help')")


# ----------------------------------------------------------------------------------------------
# Config flags generated from RunConfig's fields
# ----------------------------------------------------------------------------------------------

_ALIASES = {
    "warmup_steps": ["--warmup"],
    "cooldown_steps": ["--cooldown"],
    "n_layers": ["--layers"],
    "train_frac": ["--frac"],
}
_SKIP = {"preset", "beta1", "beta2"}


def _parse_optional_int(text: str) -> int | None:
    if text.lower() in ("none", "full"):
        return None
    return int(text)


def _parse_optional_float(text: str) -> float | None:
    if text.lower() == "none":
        return None
    return float(text)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (``--train-frac``, ``--lr``, ...); unset flags keep the preset."""
    from grokinterp.config import RunConfig, field_types

    group = parser.add_argument_group("config overrides (default: the preset's value)")
    hints = field_types()
    for f in RunConfig.__dataclass_fields__.values():
        if f.name in _SKIP:
            continue
        flags = [f"--{f.name.replace('_', '-')}", *_ALIASES.get(f.name, [])]
        hint = hints[f.name]
        kw: dict = {"dest": f.name, "default": None}
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is typing.Literal:
            kw["choices"] = typing.get_args(hint)
        elif hint == (int | None):
            kw["type"] = _parse_optional_int
            kw["metavar"] = "INT|none"
        elif hint == (float | None):
            kw["type"] = _parse_optional_float
            kw["metavar"] = "FLOAT|none"
        elif hint in (int, float, str):
            kw["type"] = hint
        group.add_argument(*flags, help=f"(default {f.default!r})", **kw)
    group.add_argument("--betas", type=str, default=None, help="AdamW betas as 'b1,b2' (default 0.9,0.98)")


def config_from_args(args: argparse.Namespace, base=None):
    from grokinterp.config import RunConfig
    from grokinterp.presets import get_preset

    cfg = base if base is not None else get_preset(args.preset) if args.preset else RunConfig()
    changes = {
        name: getattr(args, name)
        for name in RunConfig.__dataclass_fields__
        if name not in _SKIP and getattr(args, name, None) is not None
    }
    if getattr(args, "betas", None):
        try:
            b1, b2 = (float(x) for x in args.betas.split(","))
        except ValueError:
            raise CLIError(f"--betas must be two numbers like 0.9,0.98 (got {args.betas!r})") from None
        changes.update(beta1=b1, beta2=b2)
    return cfg.replace(**changes) if changes else cfg


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from grokinterp.training import Trainer

    if args.resume:
        overrides = {}
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        trainer = Trainer.resume(args.resume, **overrides)
    else:
        if args.out is None:
            raise CLIError("train needs --out RUN_DIR (or --resume RUN_DIR)")
        cfg = config_from_args(args)
        trainer = Trainer(cfg, args.out, force=args.force)
    result = trainer.run(progress=not args.no_progress)
    s = result.summary
    final = s.get("final", {})
    print(
        f"{result.run_dir}: epoch {result.final_epoch}, train loss {final.get('train_loss', float('nan')):.3e}, "
        f"test loss {final.get('test_loss', float('nan')):.3e}, test acc {final.get('test_acc', float('nan')):.4f}, "
        f"grokking epoch {result.grokking_epoch}, {result.wall_clock_s:.1f} s"
    )
    if result.interrupted:
        print(f"interrupted; resume with: grokinterp train --resume {result.run_dir}")
        return 130
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from grokinterp.presets import PRESETS

    for name, cfg in PRESETS.items():
        if args.show and name != args.show:
            continue
        if args.show:
            print(cfg.to_json())
        else:
            print(f"{name:18s} p={cfg.p} op={cfg.op} layout='{cfg.layout}' layers={cfg.n_layers} "
                  f"lr={cfg.lr} wd={cfg.wd} frac={cfg.train_frac} epochs={cfg.epochs}")  # fmt: skip
    if args.show and args.show not in PRESETS:
        raise CLIError(f"unknown preset {args.show!r}; choose one of: {', '.join(PRESETS)}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from grokinterp.analysis import analyze_run

    keys = _int_list(args.key_freqs, "--key-freqs") if args.key_freqs else None
    _, s = analyze_run(args.run, key_freqs=keys, threshold=args.threshold, progress=not args.no_progress)
    f = s["final"]
    print(f"{args.run}: {s['n_checkpoints']} checkpoints analysed in {s['analysis_seconds']:.1f} s")
    print(f"  key frequencies {s['key_freqs']} ({s['key_freqs_source']}); neurons explained "
          f"{s['n_neurons_explained_final']} ({s['frac_neurons_explained_final']:.1%})")  # fmt: skip
    print(f"  phase boundaries {s['phases']['boundaries']} (rule: {s['phases']['rule']})")
    print(f"  final: test loss {f['test_loss']:.3e}, restricted loss {f['restricted_loss']:.3e} (logit, all), "
          f"excluded loss {f['excluded_loss']:.3e} (logit, train)")  # fmt: skip
    print(f"  wrote {Path(args.run) / 'measures.csv'} and {Path(args.run) / 'analysis.json'}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from grokinterp.interop import import_tl_demo

    run_dir = import_tl_demo(args.file, args.out, trust=args.trust, force=args.force)
    print(f"imported {args.file} -> {run_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from grokinterp.interop import export_tl_demo

    out = export_tl_demo(args.run, args.out, force=args.force)
    print(f"exported {args.run} -> {out} (TransformerLens Grokking demo layout)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from grokinterp.plots import write_all_figures

    paths = write_all_figures(args.run, args.out, fmt=args.format, epoch=args.epoch)
    print(f"wrote {len(paths)} figures to {args.out}")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise CLIError(f"{flag} takes comma-separated integers like 14,35,41 (got {text!r})") from None


def build_parser() -> argparse.ArgumentParser:
    from grokinterp.presets import PRESETS

    parser = _Parser(prog="grokinterp", description="Train and analyse grokking models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a model into a run directory")
    p.add_argument("--preset", choices=list(PRESETS), default="nanda-p113")
    p.add_argument("--out", type=Path, help="run directory to create")
    p.add_argument("--resume", type=Path, help="continue the run in this directory")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("show", nargs="?", help="print one preset's full config as JSON")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("analyze", help="compute every progress measure for every checkpoint of a run")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--key-freqs", help="comma-separated key frequencies (default: the final checkpoint's)")
    p.add_argument("--threshold", type=float, default=0.85, help="fraction explained for a neuron's cluster")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("import", help="import a TransformerLens Grokking demo .pth into a run directory")
    p.add_argument("file", type=Path)
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--trust", action="store_true", help="the file is a pickle: confirm you trust its source")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a run to another layout")
    p.add_argument("run", type=Path)
    p.add_argument("--format", choices=["tl-demo"], default="tl-demo")
    p.add_argument("--out", type=Path, required=True, help="output file (.pth)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plot", help="write every figure of a run")
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, default=Path("figures"))
    p.add_argument("--format", choices=["png", "pdf", "svg", "html"], default="png")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint for per-model figures (default: last)")
    p.set_defaults(func=cmd_plot)

    from grokinterp.sweep import add_sweep_parser
    from grokinterp.tune import add_tune_parser

    add_sweep_parser(sub)
    add_tune_parser(sub)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return args.func(args)
    except CLIError as e:
        print(f"grokinterp: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # config validation, run-directory and file errors
        print(f"grokinterp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grokinterp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
