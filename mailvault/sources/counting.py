"""Cheap message counts for local stores (used by ``discover``; no message is parsed)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["count_mbox"]


def count_mbox(p: Path) -> int:
    """Number of lines starting with ``From `` in the file ``p`` (0 if it cannot be read)."""
    n = 0
    try:
        with open(p, "rb") as f:
            tail = b"\n"  # the file start counts as a line start
            while chunk := f.read(1 << 20):
                buf = tail + chunk
                n += buf.count(b"\nFrom ")
                tail = buf[-5:]  # shorter than "\nFrom ": a match is never counted twice
    except OSError:
        return 0
    return n
