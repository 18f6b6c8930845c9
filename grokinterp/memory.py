"""Keeping freed memory for reuse during CPU training and analysis (glibc's ``mallopt``).

glibc's malloc serves each large block from a fresh ``mmap`` (from 128 KiB up to a threshold it
raises, at most 32 MiB) and returns it with ``munmap`` when freed, and it trims the heap top back to
the system. Training and analysis allocate and free blocks of that size every step or checkpoint
(activations and their gradients, (p^2, d_mlp) grids), so each step pays the page faults of first
writes to new memory again: about 7% of a single nanda-p113 epoch on one thread (875 page faults
per epoch, 38 after), 2-10% of an ensemble's model-epoch, and in three analyses of the shipped run
279k of the process's page faults (151k after). ``keep_freed_memory`` turns both
off for the process (``M_MMAP_MAX`` 0, ``M_TRIM_THRESHOLD`` at its maximum), so freed blocks stay
in the heap and the next step reuses them; the process keeps its peak memory instead of returning
it. ``Trainer.run`` and ``EnsembleTrainer.run`` on the CPU and ``analyze_run`` call it. It is what
the environment variables ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` do, applied from inside
the process. Elsewhere (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

logger = logging.getLogger(__name__)

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse (see the module docstring), once per process;
    True where glibc accepted both settings, False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    logger.debug("glibc keeps freed memory for reuse: %s", ok)
    return ok
