"""Time ``grokinterp analyze`` on 250 checkpoints of nanda-p113, and its peak memory.

The run is made here: nanda-p113 trained for 250 epochs with a checkpoint every epoch (251
distinct checkpoints, full p=113 size), so the timing is of real files and real weights.
The shipped run is also analysed, for comparison.

    python benchmarks/bench_analyze.py
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import torch

from grokinterp.analysis.run_analysis import analyze_run
from grokinterp.presets import get_preset
from grokinterp.training.trainer import Trainer

SHIPPED = Path(__file__).parents[1] / "checkpoints" / "nanda-p113"


def main() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = get_preset("nanda-p113").replace(epochs=250, checkpoint_every=1, eval_every=10)
        Trainer(cfg, Path(tmp) / "run").run(progress=False)
        start = time.perf_counter()
        table, summary = analyze_run(Path(tmp) / "run", progress=False)
        secs = time.perf_counter() - start
    print(f"nanda-p113, {len(table)} checkpoints, {len(table.columns)} measures each: {secs:.1f} s "
          f"({secs / len(table) * 1e3:.0f} ms per checkpoint)")  # fmt: skip
    start = time.perf_counter()
    table, _ = analyze_run(SHIPPED, progress=False, write=False)
    secs = time.perf_counter() - start
    print(f"shipped run, {len(table)} checkpoints: {secs:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
