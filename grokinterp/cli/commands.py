"""The commands on one run: ``train``, ``presets``, ``analyze``, ``import``, ``export``, ``plot`` and
``report`` (their parsers: ``add_run_commands``). Heavy imports (torch, transformer_lens, plotly)
happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from grokinterp.cli.common import (
    CLIError,
    add_config_flags,
    config_from_args,
    config_overrides,
    field_type,
    key_freq_list,
    one_line,
    preset_in,
    shown,
)
from grokinterp.cli.ensembles import analyze_study, is_study_target, plot_study, report_study

#: The member folders of a ``train --seeds`` ensemble: exactly ``seed=N`` (N as written by it).
_MEMBER_NAME = re.compile(r"seed=(0|[1-9][0-9]*)")


def _is_member(d: Path) -> bool:
    """Whether ``d`` is a ``seed=N`` folder holding a grokinterp run (an ensemble member)."""
    from grokinterp import constants as C

    return bool(_MEMBER_NAME.fullmatch(d.name)) and d.is_dir() and not d.is_symlink() and (d / C.CONFIG_FILE).is_file()


def _ensemble_members(folder: Path) -> list[Path]:
    """The member run directories of an ensemble folder written by ``train --seeds``: its
    ``seed=N`` folders, in seed order; one line naming a ``seed=N`` folder that is not a run."""
    found = [d for d in folder.iterdir() if _MEMBER_NAME.fullmatch(d.name)]
    broken = [d for d in found if not _is_member(d)]
    if broken:
        raise CLIError(
            f"{broken[0]} is not a grokinterp run (no config.json), so the ensemble {folder} cannot be "
            "resumed as a whole; move it away, or resume each member with --resume DIR/seed=S"
        )
    return sorted(found, key=lambda d: int(d.name[5:]))


def _earlier_ensemble(out: Path, seeds: list[int], force: bool) -> list:
    """Check ``--out`` for a new ensemble before anything is written: it must be new, empty, or
    (with ``--force``) hold an earlier ensemble's members and nothing else. Returns the held locks
    of the earlier members whose seeds are not in ``seeds`` (``--force`` removes them once the new
    members exist; the others are replaced in place)."""
    from grokinterp import constants as C
    from grokinterp.io import rundir

    if not out.is_dir() or not any(out.iterdir()):
        return []
    if (out / C.CONFIG_FILE).is_file():
        raise CLIError(
            f"--out {out} is a single run, not an ensemble folder; choose an empty or new folder for --seeds"
        )
    from grokinterp.io.ensembles import ENSEMBLE_FILES

    others = sorted(e.name for e in out.iterdir() if not _is_member(e) and e.name not in ENSEMBLE_FILES)
    if others:
        raise CLIError(
            f"--out {out} holds {others[0]}"
            + (f" and {len(others) - 1} more" if len(others) > 1 else "")
            + ", which is not a member run (seed=N) of a grokinterp ensemble; choose an empty or new folder"
        )
    if not force:
        raise CLIError(
            f"--out {out} already holds an ensemble; continue it with --resume {out} or replace it with --force"
        )
    locks = []
    try:
        for d in sorted(e for e in out.iterdir() if _is_member(e)):
            if int(d.name[5:]) not in set(seeds):
                rundir.refuse_foreign(d)
                locks.append(rundir.lock_run(d))
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def _remove_members(locks: list) -> None:
    """Delete the earlier members whose locks are held (their files only, then the folders)."""
    from grokinterp.io import rundir

    for lock in locks:
        try:
            rundir.remove_run_files(lock.run_dir)
        finally:
            lock.release()
        rundir.discard_new_run_dir(lock.run_dir)


def _print_flushed(line: str) -> None:
    """Print ``line`` at once (an ensemble's event lines reach a redirected output as they happen)."""
    print(line, flush=True)


def cmd_train_seeds(args: argparse.Namespace) -> int:
    """``train --seeds 0-63 --out DIR``: one ensemble, members in DIR/seed=S (each a standard run).
    Everything is checked before the first write; a failed start removes what it made."""
    from grokinterp.analysis.instabilities import Instability
    from grokinterp.io.rundir import check_out_path
    from grokinterp.training.ensemble import EnsembleTrainer, parse_seeds

    if args.from_checkpoint:
        raise CLIError("--from-checkpoint resumes one run; use --resume DIR/seed=S --from-checkpoint")
    if args.resume:
        members = _ensemble_members(args.resume) if args.resume.is_dir() else []
        if not members:
            raise CLIError(f"{args.resume}: no member runs (seed=S folders) to resume")
        trainer = EnsembleTrainer.resume(members, **config_overrides(args))
    else:
        seeds = parse_seeds(args.seeds)
        given = {k for k in ("model_seed", "data_seed", "train_seed") if hasattr(args, k)} | (
            {"seed"} if hasattr(args, "seed") else set()
        )
        if given:
            raise CLIError("--seeds sets each member's model, data and train seed; drop --seed and --*-seed")
        if args.out is None:
            raise CLIError("--seeds needs --out DIR: the ensemble's folder (its members go to DIR/seed=S)")
        out = check_out_path(args.out)
        base = config_from_args(args)
        cfgs = [base.replace(model_seed=s, data_seed=s, train_seed=s) for s in seeds]
        new_out = not out.exists()
        earlier = _earlier_ensemble(out, seeds, args.force)
        try:
            trainer = EnsembleTrainer.create(cfgs, [out / f"seed={s}" for s in seeds], force=args.force)
        except BaseException:
            for lock in earlier:
                lock.release()
            if new_out and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise
        _remove_members(earlier)
        if not new_out:  # the study of the ensemble replaced (--force) no longer describes it
            from grokinterp.io.ensembles import remove_study

            remove_study(out)
    quiet = sys.stdout.isatty() and not args.no_progress  # the bar shows progress; else one line per event
    results = trainer.run(progress=not args.no_progress, on_event=None if quiet else _print_flushed)
    grokked = [r.grokking_epoch for r in results if r.grokking_epoch is not None]
    for r in results:
        tail = r.summary.get("message") or f"grokking epoch {r.grokking_epoch}"
        print(f"{r.run_dir}: {r.status} at epoch {r.final_epoch}, {tail}")
        for spike in r.summary.get("instabilities") or []:
            print(f"  instability: {Instability.from_dict(spike).describe()}")
    print(
        f"{len(results)} runs, {len(grokked)} grokked"
        + (f" (median epoch {statistics.median(grokked):.0f})" if grokked else "")  # as in the study (analyze ENS)
    )
    if any(r.interrupted for r in results):
        print(f"interrupted; resume with: grokinterp train --resume {args.resume or args.out}")
        return 130
    return 3 if any(r.diverged for r in results) else 0


def cmd_train(args: argparse.Namespace) -> int:
    """``grokinterp train``: train a preset (flags override its fields) into ``--out``, or continue
    ``--resume RUN``; ``--seeds`` trains an ensemble (``cmd_train_seeds``). Exit 3 when the run
    diverged, 130 when interrupted."""
    from grokinterp.analysis.instabilities import Instability
    from grokinterp.training.trainer import Trainer

    if args.resume:  # a run or an ensemble
        flags = (("--out", args.out), ("--force", args.force), ("--preset", args.preset), ("--seeds", args.seeds))
        given = [flag for flag, on in flags if on is not None and on is not False]
        if given:
            raise CLIError(f"--resume continues {args.resume} as it is; drop {', '.join(given)}")
    if args.seeds is not None or (args.resume and args.resume.is_dir() and not (args.resume / "config.json").is_file()):
        if args.seeds is None and not _ensemble_members(args.resume):
            raise CLIError(f"{args.resume} has no config.json: it is not a run directory (nor an ensemble folder)")
        return cmd_train_seeds(args)
    if args.resume:
        trainer = Trainer.resume(args.resume, from_checkpoint=args.from_checkpoint, **config_overrides(args))
    else:
        if args.out is None:
            raise CLIError("train needs --out RUN_DIR (or --resume RUN_DIR)")
        if args.from_checkpoint:
            raise CLIError("--from-checkpoint goes with --resume RUN_DIR")
        cfg = config_from_args(args)
        trainer = Trainer(cfg, args.out, force=args.force)
    result = trainer.run(progress=not args.no_progress)
    if result.diverged:
        print(f"grokinterp: error: {result.summary['message']}", file=sys.stderr)
        return 3
    final = result.summary.get("final", {})

    def num(key: str, fmt: str) -> str:
        value = final.get(key)
        return "n/a" if value is None else format(value, fmt)

    print(
        f"{result.run_dir}: epoch {result.final_epoch}, train loss {num('train_loss', '.3e')}, "
        f"test loss {num('test_loss', '.3e')}, test acc {num('test_acc', '.4f')}, "
        f"grokking epoch {result.grokking_epoch}, {result.wall_clock_s:.1f} s"
    )
    for spike in result.summary.get("instabilities") or []:
        print(f"  instability: {Instability.from_dict(spike).describe()}")
    if result.interrupted:
        print(f"interrupted; resume with: grokinterp train --resume {result.run_dir}")
        return 130
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """``grokinterp presets [NAME]``: list the presets, or print one as JSON."""
    from grokinterp.presets import PRESETS

    for name, cfg in PRESETS.items():
        if args.show and name != args.show:
            continue
        if args.show:
            print(cfg.to_json())
        else:
            rate = f" attention_rate={cfg.attention_rate:g}" if cfg.attention_rate != 1.0 else ""
            print(f"{name:18s} p={cfg.p} op={cfg.op} layout='{cfg.layout}' layers={cfg.n_layers}{rate} "
                  f"lr={cfg.lr} wd={cfg.wd} frac={cfg.train_frac} epochs={cfg.epochs}")  # fmt: skip
    if args.show and args.show not in PRESETS:
        raise CLIError(f"unknown preset {args.show!r}; choose one of: {', '.join(PRESETS)}")
    return 0


def _name_list(text: str) -> list[str]:
    """``--key-irreps sign,standard`` -> ["sign", "standard"] (irrep names hold commas inside
    parentheses, as in "(3,2)": those stay together)."""
    names = [n.strip() for n in re.split(r",(?![^()]*\))", text) if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected irrep names like sign,standard (got {text!r})")
    return names


def _print_irreps(entry: dict) -> None:
    """``analyze``'s lines for a group task: its irreps, key irreps and the final irrep measures."""
    names = ", ".join(f"{r['name']} ({r['dim']})" for r in entry["irreps"])
    print(f"  group {entry['group']} ({entry['order']} elements), irreps (dim): {names}")
    rule = entry["key_rule"]
    print(f"  key irreps {entry['key_irreps'] or 'none'} ({rule['rule']}: {rule['why']})")
    f = entry.get("final") or {}

    def pct(key: str) -> str:
        return "n/a" if f.get(key) is None else f"{f[key]:.2%}"

    def num(key: str) -> str:
        return "n/a" if f.get(key) is None else f"{f[key]:.3e}"

    print(f"  final FVE by the key irreps: W_a {pct('fve_W_a')}, W_b {pct('fve_W_b')}, W_U {pct('fve_W_U')}, "
          f"MLP {pct('fve_mlp')} (rho(ab) {pct('fve_mlp_ab')}); restricted loss {num('restricted_loss_irrep')} "
          f"(neurons, all), excluded loss {num('excluded_loss_irrep')} (neurons, train); coset neurons "
          f"{pct('frac_coset_neurons')}")  # fmt: skip


def cmd_analyze(args: argparse.Namespace) -> int:
    """``grokinterp analyze RUN``: every progress measure of every checkpoint (``analyze_run``;
    ``--llc`` adds the LLC); writes measures.csv and analysis.json and prints a summary."""
    from grokinterp.analysis.instabilities import Instability
    from grokinterp.analysis.run_analysis import analyze_run, clock_pizza_verdict

    if is_study_target(args.run):  # an ensemble folder (train --seeds): one study
        return analyze_study(args)
    if not 0.0 < args.threshold <= 1.0:
        raise CLIError(f"--threshold must be in (0, 1] (got {args.threshold})")
    keys = args.key_freqs
    llc = _llc_config(args)
    try:
        table, s = analyze_run(
            args.run,
            key_freqs=keys,
            threshold=args.threshold,
            progress=not args.no_progress,
            layer=args.layer,
            key_rule=args.key_rule,
            llc=llc,
            key_irreps=args.key_irreps,
        )
    except ValueError as e:  # a layer, key frequency or irrep that does not exist
        flag = "--key-freqs: " if keys and str(e).startswith("key frequency") else ""
        raise CLIError(f"{flag}{one_line(e)}") from None
    f = s["final"]
    print(f"{args.run}: {s['n_checkpoints']} checkpoints analysed in {s['analysis_seconds']:.1f} s")
    basis = s["basis"]
    if basis["family"] == "none":
        print(f"  Fourier measures not defined: {basis['reason']}")
    else:
        print(f"  basis {basis['name']}; key frequencies {s['key_freqs']} ({s['key_freqs_source']})")
        rule = s.get("key_rule") or {}
        if rule.get("requested") == "auto":
            print(f"    key rule auto -> {rule['used']}: {rule['why']}")
        for d in s["layers"]:
            print(f"  layer {d['layer']}: {d['n_explained']}/{d['d_mlp']} neurons explained "
                  f"({d['frac_explained']:.1%}), clustered keys {d['key_freqs_clustered']}")  # fmt: skip
        print("  key frequencies by rule: "
              + "; ".join(f"{r} {k['freqs']}" for r, k in s["key_freqs_by_rule"].items()))  # fmt: skip
    irreps = s.get("irreps") or {}
    if irreps.get("defined"):
        _print_irreps(irreps)
    print(f"  phase boundaries {s['phases']['boundaries']} (resolution {s['phases']['resolution']})")
    for name, why in zip(("memorisation", "circuit formation", "cleanup"), s["phases"]["reasons"], strict=True):
        if why:
            print(f"    end of {name} not reached: {why}")
    for spike in s["phases"].get("instabilities") or []:
        print(f"    instability (not a phase boundary): {Instability.from_dict(spike).describe()}")

    def num(x):
        return "n/a" if x is None else f"{x:.3e}"

    print(f"  final: test loss {num(f['test_loss'])}, restricted loss {num(f['restricted_loss'])} (logit, all), "
          f"excluded loss {num(f['excluded_loss'])} (logit, train)")  # fmt: skip
    cp = s.get("clock_pizza") or {}
    if cp:
        _, verdict = clock_pizza_verdict(cp)
        values = [f"{name.replace('_', ' ')} {cp[name]:.3f}" for name in ("gradient_symmetricity",
                  "distance_irrelevance", "circularity") if isinstance(cp.get(name), float)]  # fmt: skip
        print(f"  clock/pizza (Zhong et al. 2023): {', '.join(values) + ' -> ' if values else ''}{verdict}")
    for w in s["warnings"]:
        print(f"  warning: {w}")
    if llc is not None:
        last = table.iloc[-1]
        print(f"  LLC (devinterp, train split): final {last['llc_mean']:.3g} +- {last['llc_std']:.3g}, "
              f"max {table['llc_mean'].max():.3g} at epoch {int(table.loc[table['llc_mean'].idxmax(), 'epoch'])}; "
              f"chain traces in {Path(args.run) / 'llc'}")  # fmt: skip
    print(f"  wrote {Path(args.run) / 'measures.csv'} and {Path(args.run) / 'analysis.json'}")
    return 0


#: --llc-* flags of ``grokinterp analyze`` -> (LLCConfig field, metavar).
_LLC_FLAGS = {
    "llc_epsilon": ("epsilon", "EPS"),
    "llc_gamma": ("gamma", "GAMMA"),
    "llc_nbeta": ("nbeta", "NBETA"),
    "llc_chains": ("num_chains", "N"),
    "llc_draws": ("num_draws", "N"),
    "llc_burnin": ("num_burnin_steps", "N"),
    "llc_batch_size": ("batch_size", "N"),
    "llc_seed": ("seed", "SEED"),
}


def _llc_flag_type(name: str):
    """argparse ``type=`` of the ``--llc-*`` flag of LLCConfig field ``name``: parsed, then checked
    against the field's limits (``LLCConfig``), so a bad value fails at parse time naming its flag."""
    from grokinterp.analysis.llc import LLCConfig

    parse = field_type(LLCConfig, name)

    def check(text: str):
        try:
            value = parse(text)
        except ValueError as e:  # nbeta takes a number or a rule: say which rules, not "invalid float"
            if name != "nbeta":
                raise
            raise argparse.ArgumentTypeError(one_line(e)) from None
        try:
            LLCConfig(**{name: value})
        except ValueError as e:
            raise argparse.ArgumentTypeError(one_line(e)) from None
        return value

    check.__name__ = parse.__name__
    return check


def _llc_config(args: argparse.Namespace):
    """The LLCConfig of ``--llc`` (None without it): ``--llc-config FILE.json``, then the
    ``--llc-*`` flags; either of those alone also turns the LLC on."""
    changes = {field: getattr(args, dest) for dest, (field, _) in _LLC_FLAGS.items() if hasattr(args, dest)}
    if not (args.llc or args.llc_config or changes):
        return None
    from grokinterp.analysis.llc import LLCConfig

    try:
        base = LLCConfig.load(args.llc_config) if args.llc_config else LLCConfig()
        return base.replace(**changes) if changes else base
    except ValueError as e:
        where = f"{args.llc_config}: " if args.llc_config else ""
        raise CLIError(f"{where}{one_line(e)}") from None


def cmd_import(args: argparse.Namespace) -> int:
    """``grokinterp import FILE --out RUN``: a TransformerLens Grokking demo .pth (``--from tl-demo``)
    or a checkpoint Zhong et al. 2023 released (``--from pizza``: model_<id>.pt or .safetensors,
    config_<id>.json beside it) as a run directory."""
    from grokinterp.io.interop import import_pizza, import_tl_demo

    if args.source == "pizza":
        run_dir = import_pizza(args.file, args.out, force=args.force)
        print(f"imported {args.file} -> {run_dir} (Zhong et al. 2023; the train/test split is not the authors')")
        return 0
    run_dir = import_tl_demo(args.file, args.out, trust=args.trust, force=args.force)
    print(f"imported {args.file} -> {run_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``grokinterp export RUN --out FILE``: a run in the TransformerLens Grokking demo layout."""
    from grokinterp.io.interop import export_tl_demo
    from grokinterp.io.rundir import read_summary
    from grokinterp.viz.report import check_out_path

    if args.out.is_dir():
        raise CLIError(f"--out {args.out} is a folder; give a file name such as {args.out / 'grokking_demo.pth'}")
    check_out_path(args.out, force=args.force)  # not under a file, not a run's file, not kept without --force
    out = export_tl_demo(args.run, args.out, force=args.force)
    print(f"exported {args.run} -> {out} (TransformerLens Grokking demo layout)")
    summary = read_summary(args.run)
    if summary.get("status") == "diverged":
        print(f"  the run diverged at epoch {summary.get('final_epoch')}: exported up to its last good "
              f"checkpoint, epoch {summary.get('last_good_epoch')}, without the non-finite losses")  # fmt: skip
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``grokinterp plot RUN``: every figure of a run (``write_all_figures``), screen or paper style."""
    from grokinterp.viz.figures import write_all_figures

    if args.width is not None and args.style != "paper":
        raise CLIError("--width sets the column width of the paper style; add --style paper")
    if is_study_target(args.run):
        return plot_study(args)
    from grokinterp.viz.report import is_run_file

    if (args.out / "config.json").is_file() or is_run_file(args.out / "config.json"):
        raise CLIError(f"--out {args.out} is a run directory (or inside one); write the figures elsewhere")
    paths = write_all_figures(
        args.run, args.out, fmt=args.format, epoch=args.epoch, style=args.style, column=args.width
    )
    captions = " and captions.md" if args.style == "paper" else ""
    print(f"wrote {len(paths)} figures{captions} to {args.out}")
    for name, why in getattr(paths, "skipped", {}).items():
        print(f"  not drawn: {name}: {why}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``grokinterp report RUN``: the self-contained HTML checkpoint explorer (``write_report``)."""
    from grokinterp.viz.report import check_out_path, write_report

    if is_study_target(args.run):
        return report_study(args)
    if args.max_checkpoints < 2:
        raise CLIError(f"--max-checkpoints must be at least 2 (got {args.max_checkpoints})")
    check_out_path(args.out, force=args.force)  # before any work: not a folder, not a run's file, not kept
    if not args.run.is_dir():
        raise CLIError(f"{args.run}: no such run directory")
    out = write_report(
        args.run,
        args.out,
        layer=args.layer,
        max_checkpoints=args.max_checkpoints,
        progress=not args.no_progress,
        force=args.force,
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser (no network needed)")
    return 0


def add_run_commands(sub, argv: Sequence[str] = ()) -> None:
    """Add ``train``, ``presets``, ``analyze``, ``import``, ``export``, ``plot`` and ``report`` to an
    argparse subparsers object; ``argv`` picks the preset whose values ``train --help`` shows."""
    from grokinterp.presets import PRESETS

    p = sub.add_parser(
        "train",
        help="train a model into a run directory",
        description="Train a preset (with any field overridden) into a new run directory, or continue one. "
        "--resume continues exactly and accepts only --epochs (more), --stop-acc, --stop-patience, "
        "--eval-every, --checkpoint-* and --device; each change is recorded in config.json.",
    )
    preset = preset_in(argv)
    p.add_argument("--preset", choices=list(PRESETS), default=None, help="the recipe to start from [nanda-p113]")
    p.add_argument("--out", type=Path, help="run directory to create")
    p.add_argument("--resume", type=Path, help="continue the run in this directory")
    p.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="with --resume: continue from the last checkpoint with a fresh optimizer (when state.safetensors is lost)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace an earlier run in --out (deletes only grokinterp's files)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="0-63",
        help="train one run per seed (model, data and train seed) as one batched ensemble into OUT/seed=S "
        "(needs --out; at most 4096 seeds, each in [0, 2**63))",
    )
    add_config_flags(p, preset if preset in PRESETS else "nanda-p113")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("show", nargs="?", help="print one preset's full config as JSON")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("analyze", help="compute every progress measure for every checkpoint of a run")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--key-freqs", type=key_freq_list, metavar="14,35,41",
                   help="comma-separated key frequencies (default: the final checkpoint's)")  # fmt: skip
    p.add_argument("--key-rule", choices=["auto", "clustered", "paper_code", "embedding", "logits"], default="auto",
                   help="rule for the key frequencies at the final checkpoint (default auto: clustered for a 1-layer "
                        "transformer and the MLP, logits for a transformer with more layers; docs/measures.md)")  # fmt: skip
    p.add_argument("--layer", type=int, default=None,
                   help="MLP layer of the neuron rules (default: the layer with the most neurons explained)")  # fmt: skip
    p.add_argument("--key-irreps", type=_name_list, default=None, metavar="sign,standard",
                   help="a group task's key irreps by name (default: logit trace similarity above 0.005 at the "
                        "final checkpoint, Chughtai et al. 2023)")  # fmt: skip
    p.add_argument("--threshold", type=float, default=0.85, help="fraction explained for a neuron's cluster, in (0, 1]")
    p.add_argument("--no-progress", action="store_true")
    from grokinterp.analysis.llc import LLCConfig  # light: devinterp is imported only when sampling

    g = p.add_argument_group("local learning coefficient (needs: pip install 'grokinterp[llc]')")
    g.add_argument("--llc", action="store_true",
                   help="also estimate the LLC per checkpoint with devinterp (columns llc_mean, llc_std; traces in RUN/llc/)")  # fmt: skip
    g.add_argument("--llc-config", type=Path, default=None, metavar="FILE.json",
                   help="LLCConfig as JSON (fields: grokinterp.analysis.llc.LLCConfig); the --llc-* flags override it")  # fmt: skip
    for dest, (field, metavar) in _LLC_FLAGS.items():
        g.add_argument(f"--{dest.replace('_', '-')}", type=_llc_flag_type(field), default=argparse.SUPPRESS,
                       metavar=metavar, help=f"{LLCConfig.doc(field)} [{shown(getattr(LLCConfig(), field))}]")  # fmt: skip
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "import",
        help="import a TransformerLens Grokking demo .pth or a Zhong et al. 2023 checkpoint into a run directory",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--from", dest="source", choices=["tl-demo", "pizza"], default="tl-demo",
                   help="tl-demo: the TransformerLens Grokking demo's .pth (needs --trust); pizza: a "
                   "model_<id>.pt of github.com/fjzzq2002/pizza code/save/ (or that state dict as "
                   "model_<id>.safetensors) with config_<id>.json beside it (no --trust needed) [tl-demo]")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--trust", action="store_true", help="tl-demo: the file is a pickle: confirm you trust its source")
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
    p.add_argument("--style", choices=["screen", "paper"], default="screen",
                   help="screen (titles, 900 px wide) or paper: print-ready, no titles (captions.md), "
                   "3.25/6.75 in wide, 8-10 pt, Okabe-Ito colours")  # fmt: skip
    p.add_argument("--width", choices=["single", "double"], default=None,
                   help="paper style: every figure single (3.25 in) or double (6.75 in) column wide "
                   "(default: each figure's own)")  # fmt: skip
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "report",
        help="write a self-contained HTML checkpoint explorer of a run",
        description="One HTML file (plotly.js inlined, opens offline) with a slider over the checkpoints: "
        "embedding spectrum, neuron clusters and heatmaps, attention, and a cursor on the progress-measure "
        "curves. Open report.html#checkpoint=N or #epoch=E to start at a checkpoint. Analyses the run first "
        "if it has no measures.csv.",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write [report.html]")
    p.add_argument("--layer", type=int, default=None, help="MLP layer of the neuron panels (default: the analysis's)")
    p.add_argument("--max-checkpoints", type=int, default=64,
                   help="at most this many checkpoints, evenly spread (keeps the file small) [64]")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out file (never a file of a run)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)
