"""Process-wide memory tuning for the long runs (called by the CLI, not by the library).

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
large buffers — FETCH responses, compression blocks, packs — come from the heap, where many
long-lived small objects keep the freed space from being returned. A fixed threshold keeps
big buffers in mmap'd memory that goes back to the system when freed: measured on a
50,000-message folder, peak RSS 163 MiB -> 118 MiB, with no change in speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold; a no-op (False) elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
