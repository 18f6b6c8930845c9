"""Time ``grokinterp analyze`` and ``grokinterp report``: on the shipped run (32 checkpoints) and on
251 checkpoints of nanda-p113, optionally side by side with an earlier commit.

The 251-checkpoint run is made here: nanda-p113 trained for 250 epochs with a checkpoint every
epoch (full p=113 size), so the timing is of real files and real weights. Each timing runs in a
fresh process (imports excluded, the analysis itself timed inside it), on a copy of the run.

    python benchmarks/bench_analyze.py                      # this checkout
    python benchmarks/bench_analyze.py --baseline b409a05   # and that commit, alternating, same runs

With ``--baseline REV`` the commit is checked out into a temporary git worktree and both versions
analyse the same runs in alternating rounds: the median time of ``--rounds`` is printed, and the
ratio is the median of the rounds' ratios, each from two timings back to back on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
SHIPPED = ROOT / "checkpoints" / "nanda-p113"

# Run inside a fresh interpreter with the version's package first on sys.path; prints JSON.
_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from grokinterp.analysis.run_analysis import analyze_run
from grokinterp.viz.report import write_report
what, run, out = sys.argv[2], sys.argv[3], sys.argv[4]
start = time.perf_counter()
if what == "analyze":
    table, _ = analyze_run(run, progress=False)
    n = len(table)
else:
    write_report(run, out)
    n = 0
secs = time.perf_counter() - start
print(json.dumps({"secs": secs, "n": n, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_dense_run(path: Path, src: Path) -> None:
    """nanda-p113 for 250 epochs, a checkpoint every epoch (251 checkpoints), trained by the code
    at ``src`` (the oldest version compared, so that every version reads its run files)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from grokinterp.presets import get_preset\nfrom grokinterp.training.trainer import Trainer\n"
        "cfg = get_preset('nanda-p113').replace(epochs=250, checkpoint_every=1, eval_every=10, device='cpu')\n"
        "Trainer(cfg, sys.argv[2]).run(progress=False)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(src), str(path)], check=True)


def measure(src: Path, what: str, run: Path, scratch: Path) -> dict:
    """One timing in a fresh process on a fresh copy of ``run`` (no analysis.json reused)."""
    copy = scratch / "run"
    shutil.rmtree(copy, ignore_errors=True)
    (scratch / "report.html").unlink(missing_ok=True)
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("analysis.json", "measures.csv", ".lock"))
    if what == "report":  # the report draws an analysed run: analyse first, untimed
        subprocess.run(
            [sys.executable, "-c", _CHILD, str(src), "analyze", str(copy), ""], check=True, capture_output=True
        )
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), what, str(copy), str(scratch / "report.html")],
        capture_output=True,
        text=True,
    )
    if res.returncode:
        raise SystemExit(f"bench_analyze: {what} with {src} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="also time this commit, side by side")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (median printed)")
    parser.add_argument("--no-dense", action="store_true", help="skip the 251-checkpoint run")
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        versions = {"this checkout": ROOT}
        if args.baseline:
            base = tmp / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
                           check=True, capture_output=True)  # fmt: skip
            versions = {f"baseline {args.baseline}": base, **versions}
        try:
            runs = {"shipped run (32 checkpoints)": SHIPPED}
            if not args.no_dense:
                make_dense_run(tmp / "dense", next(iter(versions.values())))
                runs["nanda-p113, 251 checkpoints"] = tmp / "dense"
            jobs = [
                (r, w) for r in runs for w in ("analyze", "report") if not (w == "report" and r != next(iter(runs)))
            ]
            results: dict[tuple, list[dict]] = {}
            for _ in range(args.rounds):
                for run_name, what in jobs:
                    for name, src in versions.items():
                        res = measure(src, what, runs[run_name], tmp)
                        results.setdefault((run_name, what, name), []).append(res)
            for run_name, what in jobs:
                line = []
                for name in versions:
                    rs = results[(run_name, what, name)]
                    secs = statistics.median(r["secs"] for r in rs)
                    per = f" ({secs / rs[0]['n'] * 1e3:.0f} ms per checkpoint)" if rs[0]["n"] else ""
                    line.append((name, secs))
                    rss = max(r["rss_mib"] for r in rs)
                    print(f"{what:7s} {run_name}, {name}: {secs:.1f} s{per}, peak memory {rss:.0f} MiB")
                if len(line) == 2:
                    # Paired: each round times both versions back to back, so the host's drift
                    # between rounds cancels in the ratio within a round.
                    base, now = (results[(run_name, what, name)] for name in versions)
                    ratio = statistics.median(b["secs"] / n["secs"] for b, n in zip(base, now, strict=True))
                    print(f"{what:7s} {run_name}: {ratio:.2f}x faster than the baseline (median of paired rounds)")
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "baseline")],
                               check=False, capture_output=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
