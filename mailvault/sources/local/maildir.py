"""Maildir trees (Maildir++ and the nested "fs" layout), with Dovecot keywords and uidlist."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from mailvault.model import FolderInfo, SourceMessage
from mailvault.sources.local.fs import (
    _MAILDIR_SUBDIRS,
    Folder,
    _clean_name,
    _decode_mutf7,
    _is_dir,
    _is_file,
    _scandir,
    _Unreadable,
    _unreadable,
    log,
)
from mailvault.sources.local.headers import _mtime

# ---------------------------------------------------------------------------------------
# Maildir (Maildir++ and the nested "fs" layout)
# ---------------------------------------------------------------------------------------

_MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_INFO_RE = re.compile(r"[:;!]2,([^:;!]*)$")
_MBSYNC_UID_RE = re.compile(r",U=(\d+)")


def _is_maildir(d: Path) -> bool:
    return (d / "cur").is_dir() or (d / "new").is_dir()


def _read_keywords(d: Path) -> dict[str, str]:
    try:
        text = (d / "dovecot-keywords").read_text("utf-8", "replace")
    except OSError:
        return {}
    keywords: dict[str, str] = {}
    for line in text.splitlines():
        num, _, name = line.strip().partition(" ")
        if num.isdigit() and 0 <= int(num) < 26 and name.strip():
            keywords[chr(ord("a") + int(num))] = name.strip()
    return keywords


def _read_uidlist(d: Path) -> tuple[int | None, int | None]:
    try:
        with open(d / "dovecot-uidlist", "rb") as f:
            header = f.readline(4096).decode("ascii", "replace").split()
    except OSError:
        return None, None
    validity: int | None = None
    nextuid: int | None = None
    if header[:1] == ["3"]:
        for tok in header[1:]:
            if tok[:1] == "V" and tok[1:].isdigit():
                validity = int(tok[1:])
            elif tok[:1] == "N" and tok[1:].isdigit():
                nextuid = int(tok[1:])
    elif header[:1] == ["1"] and len(header) >= 3 and header[1].isdigit() and header[2].isdigit():
        validity, nextuid = int(header[1]), int(header[2])
    return validity, nextuid


def _maildir_folders(root: Path) -> Iterator[tuple[Path, list[str], str]]:
    """``(directory, name components, name_raw)`` of every Maildir folder below ``root``."""
    if _is_maildir(root):
        yield root, ["INBOX"], "."
    entries = _scandir(root)
    # Maildir++: .a.b at the top level
    for entry in entries:
        if entry.name.startswith(".") and entry.name not in (".", "..") and _is_dir(entry):
            sub = Path(entry.path)
            parts = entry.name[1:].split(".")
            if all(parts) and _is_maildir(sub):
                yield sub, parts, entry.name
    # fs layout: a/b/cur
    yield from _maildir_fs(root, ())


def _maildir_fs(root: Path, rel: tuple[str, ...]) -> Iterator[tuple[Path, list[str], str]]:
    d = root.joinpath(*rel)
    for entry in _scandir(d, required=not rel):
        name = entry.name
        if name.startswith(".") or name in _MAILDIR_SUBDIRS or not _is_dir(entry):
            continue
        sub_rel = (*rel, name)
        sub = Path(entry.path)
        if _is_maildir(sub):
            parts = list(sub_rel)
            if len(parts) == 1 and parts[0].lower() == "inbox":
                parts[0] = "INBOX"
            yield sub, parts, "/".join(sub_rel)
        yield from _maildir_fs(root, sub_rel)


def _iter_maildir(root: Path) -> Iterator[Folder]:
    for d, parts, name_raw in _maildir_folders(root):
        name = "/".join(_decode_mutf7(_clean_name(part)) for part in parts)
        validity, nextuid = _read_uidlist(d)
        info = FolderInfo(
            name=name, name_raw=_clean_name(name_raw), delimiter="/", uidvalidity=validity, uidnext=nextuid
        )
        yield info, _iter_maildir_messages(d, name)


def _maildir_flags(info: str, keywords: dict[str, str]) -> tuple[tuple[str, ...], str]:
    flags: list[str] = []
    unknown = ""
    for letter in sorted(set(info)):
        if letter in _MAILDIR_FLAGS:
            flags.append(_MAILDIR_FLAGS[letter])
        elif letter in keywords:
            flags.append(keywords[letter])
        elif letter.isalpha():
            unknown += letter
    return tuple(dict.fromkeys(flags)), unknown


def _iter_maildir_messages(d: Path, folder: str = "") -> Iterator[SourceMessage]:
    keywords = _read_keywords(d)
    files: list[tuple[str, str]] = []
    for sub in ("cur", "new"):
        subdir = d / sub
        if not subdir.is_dir():
            continue
        for entry in _scandir(subdir):
            if not entry.name.startswith(".") and _is_file(entry):
                files.append((entry.name, sub))
    files.sort()
    for filename, sub in files:
        p = d / sub / filename
        try:
            got = _read_maildir_file(d, p, filename)
        except _Unreadable as e:
            _unreadable(e.path, folder, e.error)
            continue
        if got is None:
            continue
        name, raw, st = got
        m = _INFO_RE.search(name)
        base = name[: m.start()] if m else name
        flags, unknown = _maildir_flags(m.group(1) if m else "", keywords)
        extra: dict[str, object] = {}
        u = _MBSYNC_UID_RE.search(base)
        if u:
            extra["mbsync_uid"] = int(u.group(1))
        if unknown:
            extra["maildir_unknown_flags"] = unknown
        yield SourceMessage(uid=_clean_name(base), raw=raw, flags=flags, internaldate=_mtime(st), extra=extra)


def _read_maildir_file(d: Path, p: Path, filename: str) -> tuple[str, bytes, os.stat_result] | None:
    try:
        with open(p, "rb") as f:
            return filename, f.read(), os.fstat(f.fileno())
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _Unreadable(p, e) from None
    # Another program may have renamed it (a flag change) meanwhile: look again.
    found = _find_renamed(d, filename)
    if found is None:
        log.warning("%s vanished while reading, skipped", p)
        return None
    p, filename = found
    try:
        with open(p, "rb") as f:
            return filename, f.read(), os.fstat(f.fileno())
    except OSError as e:
        raise _Unreadable(p, e) from None


def _find_renamed(d: Path, filename: str) -> tuple[Path, str] | None:
    m = _INFO_RE.search(filename)
    base = filename[: m.start()] if m else filename
    for sub in ("cur", "new"):
        try:
            names = os.listdir(d / sub)
        except OSError:
            continue
        for name in sorted(names):
            if name == base or (name.startswith(base) and _INFO_RE.fullmatch(name[len(base) :])):
                return d / sub / name, name
    return None
