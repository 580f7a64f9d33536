"""The C heap of a process that churns through large NumPy columns (replay's engine).

By default glibc serves an allocation above a moving threshold (128 KiB at first) with its own
mmap and gives freed memory at the heap's top back to the kernel, so every batch's new columns
fault in fresh zeroed pages: ~4x the cost of copying a column of 200,000 rows. Keeping freed
memory in the heap (up to 32 MiB an allocation, glibc's ceiling) lets the next batch reuse it;
the process keeps its peak heap until it exits.
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit platforms
_NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tune this process's glibc heap as above (inherited by processes it forks); False where
    the C library is not glibc (nothing changed)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
