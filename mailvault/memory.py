"""Process-wide memory tuning for the long runs (called by the CLI and the worker processes, not
by the library).

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
large buffers — FETCH responses, compression blocks, packs — come from the heap, where many
long-lived small objects keep the freed space from being returned. A fixed threshold keeps
big buffers in mmap'd memory that goes back to the system when freed: measured on a
50,000-message folder, peak RSS 163 MiB -> 118 MiB, with no change in speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024
#: Allocations (minus frees) of container objects between two young-generation collections
#: (CPython's default: 700).
GC_GEN0_THRESHOLD = 20_000


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


def tune_gc() -> None:
    """Fewer, cheaper cyclic-garbage collections for a run that makes millions of short-lived
    objects (FETCH responses, manifest rows) and few cycles.

    ``gc.freeze()`` moves everything allocated so far (the modules imported by then: ~18,000
    objects in the CLI, before a command's own lazy imports) out of the collector's sight, so a
    full collection no longer walks them; a higher young-generation threshold makes collections
    rarer. Measured on corpus A (8,596 messages), the parent process's collections: restore
    0.085 s (185 young, 17 middle, one full) -> 0.015 s (27 young, 2 middle); fresh backup
    0.05 s -> 0.01 s.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
