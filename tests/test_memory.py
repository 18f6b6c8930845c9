"""keep_freed_memory: without it glibc serves a 64 MiB block from its own mmap (and unmaps it when
freed, so the next one faults its pages in again); after it the block comes from the heap and is
kept. Read from glibc's chunk header (the IS_MMAPPED bit), each case in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = """
import ctypes, sys
from grokinterp.memory import keep_freed_memory
mode = sys.argv[1]
if mode == "keep":
    assert keep_freed_memory() is True and keep_freed_memory() is True
elif mode in ("trainer", "train"):
    from grokinterp.presets import get_preset
    from grokinterp.training.trainer import Trainer
    trainer = Trainer(get_preset("nanda-p113").replace(p=7, epochs=2))
    if mode == "train":
        trainer.run(progress=False)
elif mode == "analyze":
    from grokinterp.analysis.run_analysis import analyze_run
    analyze_run(sys.argv[2], progress=False, write=False)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
block = libc.malloc(64 * 2**20)
mmapped = bool(ctypes.c_size_t.from_address(block - 8).value & 0x2)  # glibc's IS_MMAPPED bit
libc.free(block)
print(mmapped)
"""


def _mmapped(*args: str, env: dict | None = None) -> bool:
    # the variable the user may have set is dropped, so each case sets exactly what it names
    env = {**{k: v for k, v in os.environ.items() if k != "GROKINTERP_KEEP_FREED_MEMORY"}, **(env or {})}
    out = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_large_blocks_come_from_the_heap_after_keep_freed_memory():
    assert _mmapped("default") is True
    assert _mmapped("keep") is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_a_cpu_run_and_the_analysis_keep_freed_memory(tmp_path):
    # Building a trainer changes nothing; running it on the CPU, or analysing a run, does.
    assert _mmapped("trainer") is True
    assert _mmapped("train") is False
    code = (
        "import sys; from grokinterp.presets import get_preset; from grokinterp.training.trainer import Trainer;"
        "Trainer(get_preset('nanda-p113').replace(p=7, epochs=2), sys.argv[1]).run(progress=False)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], check=True, capture_output=True)
    assert _mmapped("analyze", str(tmp_path / "run")) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_environment_variable_leaves_glibc_alone():
    assert _mmapped("train", env={"GROKINTERP_KEEP_FREED_MEMORY": "0"}) is True
    assert _mmapped("train", env={"GROKINTERP_KEEP_FREED_MEMORY": "1"}) is False
