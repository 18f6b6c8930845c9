"""The ``grokinterp`` command line: a thin layer over the library.

``main(argv)`` returns an exit code, so tests call it directly. Heavy imports (torch,
transformer_lens, plotly) happen inside the commands that need them. Any bad input ends in one line
``grokinterp: error: ...`` on stderr and exit code 2, never a traceback.

- ``common``: the one-line ``CLIError``, the parser class, flags built from config fields;
- ``commands``: ``train``, ``presets``, ``analyze``, ``import``, ``export``, ``plot``, ``report``;
- ``studies``: ``sweep`` and ``tune``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from grokinterp.cli.commands import add_run_commands
from grokinterp.cli.common import (
    CLIError,
    Parser,
    add_config_flags,
    config_from_args,
    config_overrides,
    one_line,
    os_error_line,
)
from grokinterp.cli.studies import add_sweep_parser, add_tune_parser

__all__ = ["CLIError", "add_config_flags", "build_parser", "config_from_args", "config_overrides", "main"]

log = logging.getLogger("grokinterp")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The ``grokinterp`` argument parser with every command; ``argv`` (the command line to come)
    picks the preset whose values ``train --help`` shows."""
    from grokinterp import __version__

    parser = Parser(prog="grokinterp", description="Train and analyse grokking models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"grokinterp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_run_commands(sub, argv)
    add_sweep_parser(sub)
    add_tune_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``grokinterp ARGV`` and return its exit code: 0, 2 for bad input (one line on stderr),
    130 when interrupted, or the command's own code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
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
        print(f"grokinterp: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that is a file, unwritable, missing
        print(f"grokinterp: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        text = one_line(e) if str(e) else type(e).__name__
        if isinstance(e, MemoryError) or "alloc" in text or "out of memory" in text:
            print(f"grokinterp: error: not enough memory ({text}); try a smaller p, d_model or d_mlp", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("grokinterp: interrupted", file=sys.stderr)
        return 130
