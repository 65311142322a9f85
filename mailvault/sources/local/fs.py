"""File-system helpers shared by the local-store readers: stat, listing, unreadable files, names."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from mailvault.errors import SourceError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.net import mutf7

log = logging.getLogger("mailvault.sources.local")

#: One folder of a local store: its description and a lazy iterator over its messages.
Folder = tuple[FolderInfo, Iterator[SourceMessage]]

_MBOX_SUFFIXES = (".mbox", ".mbx")
_MAILDIR_SUBDIRS = ("cur", "new", "tmp")

# File-system helpers
# ---------------------------------------------------------------------------------------


def _stat(p: Path) -> os.stat_result:
    try:
        return p.stat()
    except FileNotFoundError:
        raise SourceError(f"{p}: no such file or directory") from None
    except OSError as e:
        raise SourceError(f"{p}: cannot read: {e.strerror or e}") from None


def _scandir(d: Path, *, required: bool = True) -> list[os.DirEntry[str]]:
    """Sorted entries of ``d``. A listing error is a SourceError (or ignored if not required)."""
    try:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        if not required:
            log.warning("skipping unreadable directory %s: %s", d, e)
            return []
        raise SourceError(f"{d}: cannot list directory: {e.strerror or e}") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


#: The signature of Outlook PST/OST files: such a file is never read as mbox or as one message.
PST_MAGIC = b"!BDN"


def _is_pst_file(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == PST_MAGIC
    except OSError:
        return False


def _refuse_pst(p: Path) -> SourceError:
    return SourceError(
        f"{p}: is an Outlook PST/OST file, not mbox or a message: import it by itself (--format pst)"
    )


#: Where unreadable files are reported during :func:`collect_unreadable` (else they raise).
_UNREADABLE: ContextVar[list[str] | None] = ContextVar("mailvault_local_unreadable", default=None)


@contextlib.contextmanager
def collect_unreadable(problems: list[str]) -> Iterator[None]:
    """While active, a message file (or mbox file) that cannot be read is skipped and named in
    ``problems`` (``<file> (folder <name>): cannot read: <error>, skipped``) instead of raising
    :class:`SourceError`. The importer uses it so one bad file does not stop the import."""
    token = _UNREADABLE.set(problems)
    try:
        yield
    finally:
        _UNREADABLE.reset(token)


class _Unreadable(Exception):
    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(str(path))
        self.path = path
        self.error = error


def _unreadable(p: Path, folder: str, e: OSError) -> None:
    problems = _UNREADABLE.get()
    if problems is None:
        raise SourceError(f"{p}: cannot read: {e.strerror or e}") from None
    problems.append(f"{p} (folder {folder or '?'}): cannot read: {e.strerror or e}, skipped")


def _read_file(p: Path) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError as e:
        raise SourceError(f"{p}: cannot read: {e.strerror or e}") from None


def _clean_name(name: str) -> str:
    """Make names with undecodable bytes (surrogate escapes) safe to serialise."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def _natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part
    )


def _decode_mutf7(name: str) -> str:
    """Decode an IMAP modified UTF-7 name if it contains ``&`` and decodes cleanly."""
    if "&" not in name:
        return name
    decoded = mutf7.decode_exact(name)
    return name if decoded is None else decoded


def _inbox(name: str) -> str:
    return "INBOX" if name.lower() == "inbox" else name


# ---------------------------------------------------------------------------------------
# mbox
# ---------------------------------------------------------------------------------------
