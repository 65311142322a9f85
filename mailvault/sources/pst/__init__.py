"""Outlook PST/OST files (read with libpff): detection, counting and conversion to RFC 5322.

Public API (also used by ``discover``):

- :func:`looks_like_pst` — the ``!BDN`` signature test (cheap, never raises);
- :func:`estimate_mail_count` — items in the store's folders, without reading them (fast);
- :func:`count_pst` — mail and non-mail items by message class (reads every item's class);
  :func:`count_messages` — just the mail count (``discover`` calls this);
- :func:`iter_pst` — ``(FolderInfo, messages)`` pairs for the importer, with a :class:`PstReport`.

See docs/PST.md for the conversion rules.
"""

from __future__ import annotations

from pathlib import Path

from mailvault.sources.pst.reader import PST_MAGIC, PstFile, looks_like_pst
from mailvault.sources.pst.source import PstReport, count_pst, iter_pst

__all__ = [
    "PST_MAGIC",
    "PstReport",
    "count_messages",
    "count_pst",
    "estimate_mail_count",
    "iter_pst",
    "looks_like_pst",
]


def count_messages(path: str | Path) -> int:
    """Mail items in the store (what ``import`` converts); SourceError when unreadable."""
    return count_pst(path).mail


def estimate_mail_count(path: str | Path) -> int:
    """Items in all folders of the store (all classes; an upper bound for the mail count).

    Raises SourceError when libpff cannot open the file."""
    with PstFile(path) as pst:
        total = 0
        for f in pst.folders():
            try:
                total += int(f.handle.number_of_sub_messages)
            except OSError:
                continue
        return total
