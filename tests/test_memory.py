"""keep_freed_memory: without it glibc serves a 64 MiB block from its own mmap (and unmaps it when
freed, so the next one faults its pages in again); after it the block comes from the heap and is
kept. Read from glibc's chunk header (the IS_MMAPPED bit), each case in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import ctypes, sys
from grokinterp.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True and keep_freed_memory() is True
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
block = libc.malloc(64 * 2**20)
mmapped = bool(ctypes.c_size_t.from_address(block - 8).value & 0x2)  # glibc's IS_MMAPPED bit
libc.free(block)
print(mmapped)
"""


def _mmapped(mode: str) -> bool:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_large_blocks_come_from_the_heap_after_keep_freed_memory():
    assert _mmapped("default") is True
    assert _mmapped("keep") is False
