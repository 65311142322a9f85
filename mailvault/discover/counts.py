"""Cheap counts and sizes of the stores ``discover`` finds: files and mbox ``From`` lines are
counted, no message is parsed; a PST is counted by the PST reader when it is installed."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from pathlib import Path

from mailvault.sources.counting import count_mbox

_MAILDIR_SUB = ("cur", "new")
_EXT_RE = re.compile(r"\.[A-Za-z][A-Za-z0-9_-]{0,7}$")


def pst_count(p: Path) -> int | None:
    """Mail items in a PST/OST according to the PST reader, when it is installed."""
    try:
        pst = importlib.import_module("mailvault.sources.pst")  # optional: lands separately
    except ImportError:
        return None
    counter = getattr(pst, "count_messages", None)
    if counter is None:
        return None
    try:
        mail = counter(p)
    except Exception:  # an unreadable PST: fall back to the estimate
        return None
    return mail if isinstance(mail, int) else None


def count_maildir(d: Path) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(d):
        if os.path.basename(dirpath) in _MAILDIR_SUB:
            n += sum(1 for f in filenames if not f.startswith("."))
            dirnames[:] = []
    return n


def count_eml(d: Path) -> int:
    n = 0
    for _dirpath, dirnames, filenames in os.walk(d):
        dirnames[:] = [x for x in dirnames if not x.startswith(".")]
        n += sum(
            1
            for f in filenames
            if not f.startswith(".") and (f.lower().endswith(".eml") or not _EXT_RE.search(f))
        )
    return n


def count_thunderbird(d: Path) -> int:
    n = 0
    for dirpath, _dirnames, filenames in os.walk(d):
        names = set(filenames)
        for f in filenames:
            if f.startswith(".") or f.endswith(".msf"):
                continue
            if f + ".msf" in names or os.path.basename(dirpath) in _MAILDIR_SUB:
                n += count_mbox(Path(dirpath) / f) if os.path.basename(dirpath) not in _MAILDIR_SUB else 1
    return n


def tree_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    total = 0
    for dirpath, _dirnames, filenames in os.walk(p):
        for f in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total
