"""benchmarks/bench_gpu.py runs on a CPU with tiny settings (the GPU numbers themselves need a GPU),
prints one row per method with ratios that follow from its own times, and refuses in one line
where no CUDA GPU is present."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_gpu.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_on_a_cpu(capsys):
    bench = _load()
    argv = ["--device", "cpu", "--p", "7", "--sizes", "1,2", "--blocks", "1", "--epochs-per-block", "10"]
    assert bench.main([*argv, "--quick", "--no-compile"]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^(\S.*?)\s+([\d.]+)\s+[\d.]+x$", out, flags=re.M))
    assert set(rows) == {
        "TransformerLens demo loop", "grokinterp trainer, eager", "ensemble of 1, eager", "ensemble of 2, eager",
    }  # fmt: skip
    demo = float(rows["TransformerLens demo loop"])
    for name, ms in rows.items():
        ratio = float(re.search(rf"^{re.escape(name)}\s+[\d.]+\s+([\d.]+)x$", out, flags=re.M).group(1))
        assert ratio == pytest.approx(demo / float(ms), rel=0.02, abs=0.01)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_bench_gpu_refuses_without_a_gpu(capsys):
    assert _load().main([]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0]
