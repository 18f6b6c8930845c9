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

A process that must hand memory back between runs (a long Jupyter session next to other work, a
server) sets ``GROKINTERP_KEEP_FREED_MEMORY=0`` before the first run: glibc's defaults then stay,
at the cost of the page faults above.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

logger = logging.getLogger(__name__)

__all__ = ["KEEP_FREED_MEMORY_ENV", "keep_freed_memory"]

#: Set to 0 (or "false", "no", "off") to leave glibc's malloc settings alone.
KEEP_FREED_MEMORY_ENV = "GROKINTERP_KEEP_FREED_MEMORY"

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse (see the module docstring), once per process;
    True where glibc accepted both settings, False where there is no glibc or the environment
    variable ``KEEP_FREED_MEMORY_ENV`` turns it off."""
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        logger.debug("%s is off: glibc's malloc settings are left alone", KEEP_FREED_MEMORY_ENV)
        return False
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
