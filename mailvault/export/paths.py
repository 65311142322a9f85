"""Folder names → safe relative paths below the export destination, and file writes that
never overwrite.

A folder name is split on its hierarchy delimiter and every component is made safe (empty,
``.`` and ``..`` components, control characters, ``/`` and ``\\`` and a leading ``.`` are
percent-encoded, e.g. ``..`` becomes ``%2E%2E``). Every target path is checked to stay inside
the destination (:func:`inside`). An existing file is never overwritten: :class:`ExportError`
is raised instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from datetime import datetime
from pathlib import Path

from imapclient import imap_utf7

from mailvault.errors import ExportError

log = logging.getLogger(__name__)

_MAX_COMPONENT_BYTES = 255


def _pct(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def safe_component(component: str, *, maildir: bool = False) -> str:
    """Make one folder-name component safe as a single path component."""
    if component == "":
        return "%"
    if component in (".", ".."):
        return "%2E" * len(component)
    if maildir:
        component = imap_utf7.encode(component).decode("ascii")
    out: list[str] = []
    for i, ch in enumerate(component):
        if ch in "/\\" or (i == 0 and ch == ".") or unicodedata.category(ch) in ("Cc", "Cs"):
            out.append(_pct(ch))
        else:
            out.append(ch)
    safe = "".join(out)
    if maildir and safe in ("cur", "new", "tmp"):
        safe = _pct(safe[0]) + safe[1:]
    if len(safe.encode("utf-8")) > _MAX_COMPONENT_BYTES - 16:  # room for ".mbox" and the like
        digest = hashlib.sha256(safe.encode("utf-8")).hexdigest()[:16]
        cut = safe.encode("utf-8")[:200].decode("utf-8", "ignore")
        safe = f"{cut}~{digest}"
    return safe


def folder_parts(folder: str, delimiter: str | None, *, maildir: bool = False) -> list[str]:
    """Split ``folder`` on ``delimiter`` and make every component safe."""
    parts = folder.split(delimiter) if delimiter else [folder]
    return [safe_component(part, maildir=maildir) for part in parts]


def inside(dest: Path, rel: Path) -> Path:
    """``dest / rel``; an ExportError when it resolves to a place outside ``dest``."""
    target = dest / rel
    resolved = target.resolve()
    if not resolved.is_relative_to(dest.resolve()):
        raise ExportError(f"{target}: refusing to write outside {dest}")
    return target


def set_mtime(path: Path, dt: datetime | None) -> None:
    if dt is None:
        return
    ts = dt.timestamp()
    try:
        os.utime(path, (ts, ts))
    except (OSError, OverflowError, ValueError) as e:
        log.warning("cannot set the mtime of %s: %s", path, e)


def mkdirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{path}: cannot create directory: {e.strerror or e}") from None


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``; an existing file is an ExportError."""
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        raise ExportError(f"{path}: already exists, not overwriting") from None
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror or e}") from None
