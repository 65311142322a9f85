"""Read local mail stores: mbox files, Maildir trees, directories of single-message files
and Thunderbird profiles.

:func:`iter_local` yields one ``(FolderInfo, messages)`` pair per folder. ``messages`` is a
lazy iterator: a folder's files are listed only when it is consumed, and an mbox file is
split while it is read, so at most one message is held in memory at a time.

Message bytes are never modified. The only bytes an mbox reader removes are the ones the
mbox format itself adds: the ``From`` separator line, the one blank line that precedes
the next separator and (with ``mboxrd=True`` only) one ``>`` of ``>From`` quoted lines.

Folder names use ``/`` as the hierarchy delimiter; the top-level inbox of every format is
called ``INBOX``. ``FolderInfo.name_raw`` is the folder's path relative to the root as it
is on disk (``"."`` for a Maildir root).

One module per format: ``mbox`` (with Thunderbird), ``maildir``, ``eml``; ``headers`` and
``fs`` hold what they share.
"""

from __future__ import annotations

import stat
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from mailvault.errors import ConfigError, SourceError
from mailvault.sources.local.eml import _eml_folder, _iter_eml_tree
from mailvault.sources.local.fs import (
    _MAILDIR_SUBDIRS,
    PST_MAGIC,
    Folder,
    _is_dir,
    _is_pst_file,
    _scandir,
    _stat,
    collect_unreadable,
)
from mailvault.sources.local.headers import HEADER_CAP, header_date, header_fields, parse_from_line_date
from mailvault.sources.local.maildir import _iter_maildir
from mailvault.sources.local.mbox import (
    _iter_mbox_tree,
    _iter_thunderbird,
    _mbox_folder,
    _mbox_folder_name,
    split_mbox,
)

__all__ = [
    "FORMATS",
    "HEADER_CAP",
    "PST_MAGIC",
    "Folder",
    "collect_unreadable",
    "detect_format",
    "header_date",
    "header_fields",
    "iter_local",
    "parse_from_line_date",
    "split_mbox",
]

#: Formats :func:`iter_local` understands (besides ``"auto"``).
FORMATS = ("mbox", "maildir", "eml", "thunderbird")


def detect_format(path: str | Path) -> str:
    """Guess the format of the local store at ``path``.

    A file is an mbox (``*.eml`` files: a single message, ``"eml"``). A directory is a
    Maildir if it, or a subdirectory anywhere below it, contains ``cur/`` and ``new/``
    (the root itself needs only one of them); a Thunderbird tree if it holds any ``.msf``
    file or ``*.sbd`` directory; otherwise a directory of single-message files (``"eml"``).
    The tree is searched breadth-first and the first sign found decides.
    """
    p = Path(path)
    st = _stat(p)
    if stat.S_ISREG(st.st_mode):
        if _is_pst_file(p):
            return "pst"
        return "eml" if p.name.lower().endswith(".eml") else "mbox"
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{p}: not a regular file or directory")
    if (p / "cur").is_dir() or (p / "new").is_dir():
        return "maildir"
    queue: deque[Path] = deque([p])
    while queue:
        d = queue.popleft()
        subdirs: list[Path] = []
        for entry in _scandir(d, required=d == p):
            name = entry.name
            if _is_dir(entry):
                if name.endswith(".sbd"):
                    return "thunderbird"
                if name in _MAILDIR_SUBDIRS:
                    continue
                sub = Path(entry.path)
                if (sub / "cur").is_dir() and (sub / "new").is_dir():
                    return "maildir"
                subdirs.append(sub)
            elif name.endswith(".msf"):
                return "thunderbird"
        queue.extend(sorted(subdirs))
    return "eml"


def iter_local(path: str | Path, fmt: str = "auto", *, mboxrd: bool = False) -> Iterator[Folder]:
    """Yield ``(FolderInfo, messages)`` for every folder of the local store at ``path``.

    ``fmt`` is ``"auto"`` (see :func:`detect_format`) or one of :data:`FORMATS`.
    ``mboxrd=True`` removes one ``>`` from lines matching ``^>+From `` in mbox messages;
    without it mbox message bodies are returned exactly as stored.
    Raises :class:`SourceError` when the store cannot be read.
    """
    p = Path(path)
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"unknown local format {fmt!r} (use auto, {', '.join(FORMATS)})")
    st = _stat(p)
    if fmt == "auto":
        fmt = detect_format(p)
        if fmt == "pst":
            raise ConfigError(f"{p}: an Outlook PST/OST file is read by the pst importer, not iter_local")
    is_file = stat.S_ISREG(st.st_mode)
    if not is_file and not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{p}: not a regular file or directory")
    if fmt == "maildir":
        if is_file:
            raise SourceError(f"{p}: a Maildir must be a directory")
        return _iter_maildir(p)
    if fmt == "eml":
        if is_file:
            return iter([_eml_folder(p.parent, "INBOX", p.name, [p.name])])
        return _iter_eml_tree(p, mboxrd=mboxrd)
    if fmt == "thunderbird":
        if is_file:
            return iter([_mbox_folder(p, _mbox_folder_name(p.name), p.name, mboxrd, mozilla=True)])
        return _iter_thunderbird(p, mboxrd=mboxrd)
    # mbox
    if is_file:
        return iter([_mbox_folder(p, _mbox_folder_name(p.name), p.name, mboxrd)])
    return _iter_mbox_tree(p, mboxrd=mboxrd)
