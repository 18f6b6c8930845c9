"""``analyze``, ``plot`` and ``report`` on an ensemble folder (``train --seeds``): the ensemble as one
study (``grokinterp.analysis.study``). ``cmd_analyze``, ``cmd_plot`` and ``cmd_report`` hand their
arguments here when ``is_study_target`` says the path is an ensemble folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grokinterp.cli.common import CLIError, one_line

__all__ = ["analyze_study", "is_study_target", "plot_study", "report_study"]


def is_study_target(path: Path) -> bool:
    """Whether ``path`` is an ensemble folder (True) or should be read as a run (False: a run
    directory, or a path that does not exist, which the run command reports); one line when it is
    a folder that is neither a run nor an ensemble."""
    from grokinterp import constants as C
    from grokinterp.io.ensembles import is_ensemble_dir

    if not path.is_dir() or (path / C.CONFIG_FILE).is_file():
        return False
    if is_ensemble_dir(path):
        return True
    raise CLIError(
        f"{path} is neither a run directory (no {C.CONFIG_FILE}) nor an ensemble folder (no seed=N member "
        "runs); give a folder written by grokinterp train --out RUN or --seeds ... --out ENS"
    )


def _study(path: Path, args: argparse.Namespace, options: dict | None = None):
    """``study_ensemble`` with ``options`` (default: the ones study.json was made with, else the
    defaults); one line for a member that cannot be studied or a bad option."""
    from grokinterp.analysis.study import load_study, study_ensemble

    if options is None:
        try:
            old = load_study(path)
        except ValueError:  # an unreadable study.json is rewritten
            old = None
        known = ("threshold", "key_rule", "key_freqs", "layer")
        options = {k: v for k, v in (old.options if old is not None else {}).items() if k in known}
    try:
        return study_ensemble(path, progress=not getattr(args, "no_progress", False), **options)
    except ValueError as e:  # a member that cannot be studied, a layer or key frequency that does not exist
        raise CLIError(one_line(e)) from None


def analyze_study(args: argparse.Namespace) -> int:
    """``grokinterp analyze ENS``: every member analysed (reused where up to date), then
    ENS/study.json; prints a line per seed and the spread over seeds."""
    from grokinterp import constants as C

    if args.llc or args.llc_config:
        raise CLIError(f"--llc estimates one run at a time; run grokinterp analyze --llc {args.run}/seed=S")
    if not 0.0 < args.threshold <= 1.0:
        raise CLIError(f"--threshold must be in (0, 1] (got {args.threshold})")
    options = {"key_freqs": args.key_freqs, "threshold": args.threshold, "layer": args.layer, "key_rule": args.key_rule}
    study, analysed = _study(args.run, args, options)
    reused = len(study.members) - len(analysed)
    print(f"{args.run}: {len(study.members)} members ({len(analysed)} analysed, {reused} up to date and reused)")
    for m in study.members:
        grok = f"grokked at {m.grokking_epoch}" if m.grokking_epoch is not None else "not grokked"
        ends = ", ".join("-" if b is None else str(b) for b in m.phase_boundaries)
        expl = "n/a" if m.frac_explained is None else f"{m.frac_explained:.0%}"
        test = m.final.get("test_loss")
        print(f"  seed={m.seed}: {m.status} at {m.final_epoch}, {grok}; phases end {ends}; keys {list(m.key_freqs)}, "
              f"{expl} of neurons explained; {m.verdict_text.split(';')[0]}; test loss {'n/a' if test is None else f'{test:.2e}'}")  # fmt: skip
    agg = study.aggregates()
    q = agg["grokking_epoch"]
    spread = f"median {q['median']:.0f}, 25-75% {q['q25']:.0f}-{q['q75']:.0f}" if q else "none grokked"
    print(f"  grokking epoch over {agg['n_grokked']} of {agg['n_members']} seeds: {spread}")
    print(
        "  key frequencies (seeds): " + (", ".join(f"{k} ({n})" for k, n in agg["key_freq_counts"].items()) or "none")
    )
    print("  verdicts: " + ", ".join(f"{v} {n}" for v, n in agg["verdict_counts"].items()))
    print(f"  wrote {args.run / C.STUDY_FILE}")
    return 0


def plot_study(args: argparse.Namespace) -> int:
    """``grokinterp plot ENS``: the study's figures (grokking epochs, key frequencies, loss bands)."""
    from grokinterp.io.ensembles import is_ensemble_dir
    from grokinterp.viz.study_figures import write_study_figures

    if args.epoch is not None:
        raise CLIError(f"--epoch picks a checkpoint of one run; run grokinterp plot {args.run}/seed=S --epoch E")
    if is_ensemble_dir(args.out) or args.out.resolve() == args.run.resolve():
        raise CLIError(f"--out {args.out} is an ensemble folder; write the figures elsewhere")
    study, _ = _study(args.run, args)
    paths = write_study_figures(args.run, study, args.out, args.format, style=args.style, column=args.width)
    print(f"wrote {len(paths)} study figures to {args.out}")
    return 0


def report_study(args: argparse.Namespace) -> int:
    """``grokinterp report ENS``: one HTML page with the per-seed table and the study's figures."""
    from grokinterp.viz.report import check_out_path
    from grokinterp.viz.study_figures import write_study_report

    if args.layer is not None:
        raise CLIError(f"--layer picks the neurons of one run's report; run grokinterp analyze {args.run} --layer L")
    check_out_path(args.out, force=args.force)  # before any work
    study, _ = _study(args.run, args)
    out = write_study_report(args.run, study, args.out, force=args.force)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser (no network needed)")
    return 0
