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


def test_a_failing_method_is_left_out_and_the_rest_are_timed(capsys, monkeypatch):
    bench = _load()

    def broken(cfg):
        def epoch():
            raise RuntimeError("CUDA error: out of memory\nmore lines")

        return epoch

    monkeypatch.setattr(bench, "trainer_epoch_fn", broken)
    argv = ["--device", "cpu", "--p", "7", "--sizes", "1", "--blocks", "1", "--epochs-per-block", "5"]
    assert bench.main([*argv, "--quick", "--no-compile"]) == 0
    out = capsys.readouterr().out
    assert "grokinterp trainer, eager: left out, it failed: RuntimeError: CUDA error: out of memory\n" in out
    rows = re.findall(r"^(\S.*?)\s+[\d.]+\s+[\d.]+x$", out, flags=re.M)
    assert rows == ["TransformerLens demo loop", "ensemble of 1, eager"]


def test_runs_to_grokking_with_a_cap(capsys):
    bench = _load()
    argv = ["--device", "cpu", "--p", "7", "--seeds", "3", "--grok-only", "--grok-max-epochs", "30"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "TransformerLens demo loop" not in out  # no per-epoch table
    classic = re.search(
        r"^nanda-p113 run: test acc >= 0.99 (at epoch (\d+)|not reached by epoch 30), \d+ s$", out, re.M
    )
    assert classic and (classic.group(2) is None or int(classic.group(2)) <= 30)
    seeds = re.search(r"^3 seeds as one ensemble: (\d) grokked by epoch 30 \((.*)\); \d+ s wall-clock$", out, re.M)
    assert seeds and 0 <= int(seeds.group(1)) <= 3
    assert (seeds.group(2) == "none grokked") == (seeds.group(1) == "0")
