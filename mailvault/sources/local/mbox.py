"""mbox files and Thunderbird profiles (mbox files without extension, ``.sbd`` folder directories)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from mailvault.errors import SourceError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.sources.local.fs import (
    _MBOX_SUFFIXES,
    PST_MAGIC,
    Folder,
    _clean_name,
    _inbox,
    _is_dir,
    _is_file,
    _refuse_pst,
    _scandir,
    _unreadable,
)
from mailvault.sources.local.headers import _date_from_fields, _mtime, header_fields, parse_from_line_date

_READ_BUFFER = 1024 * 1024

# ---------------------------------------------------------------------------------------
# mbox
# ---------------------------------------------------------------------------------------

_MBOXRD_RE = re.compile(rb">+From ")
_BOM = b"\xef\xbb\xbf"


def _finish(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines.pop()
    return b"".join(lines)


def split_mbox(f: Iterable[bytes], *, mboxrd: bool = False) -> Iterator[tuple[bytes | None, bytes]]:
    """Split an mbox stream into ``(From line, message bytes)`` pairs, reading incrementally.

    Every line beginning with ``From `` starts a message (Python's ``mailbox`` rule). One
    empty line (``\\n`` or ``\\r\\n``) at the end of a message is the separator and is
    dropped. A UTF-8 byte-order mark before the first ``From`` line is ignored. Text
    before the first ``From`` line is returned as a message with a ``None``
    From line unless it is only whitespace (so a plain message file is not lost).
    """
    from_line: bytes | None = None
    lines: list[bytes] = []
    started = False
    first = True
    for line in f:
        if first:
            first = False
            if line.startswith(_BOM + b"From "):  # a UTF-8 BOM some editors put at the start
                line = line[len(_BOM) :]  # noqa: PLW2901
        if line.startswith(b"From "):
            if started:
                yield from_line, _finish(lines)
            elif lines and any(x.strip() for x in lines):
                yield None, b"".join(lines)
            started = True
            from_line = line
            lines = []
            continue
        if mboxrd and started and line[:1] == b">" and _MBOXRD_RE.match(line):
            lines.append(line[1:])
        else:
            lines.append(line)
    if started:
        yield from_line, _finish(lines)
    elif lines and any(x.strip() for x in lines):
        yield None, b"".join(lines)


_MOZ_FLAGS = ((0x0001, "\\Seen"), (0x0002, "\\Answered"), (0x0004, "\\Flagged"), (0x0008, "\\Deleted"))
_MOZ_FORWARDED = 0x1000
_X_STATUS = (("A", "\\Answered"), ("F", "\\Flagged"), ("T", "\\Draft"), ("D", "\\Deleted"))


def _mbox_flags(fields: list[tuple[str, str]], *, mozilla: bool) -> tuple[str, ...]:
    """Flags from ``Status``/``X-Status`` (mutt, pine) and ``X-Mozilla-Status``/``-Keys``."""
    flags: list[str] = []
    for name, value in fields:
        if name == "status" and "R" in value:
            flags.append("\\Seen")
        elif name == "x-status":
            flags.extend(flag for letter, flag in _X_STATUS if letter in value)
        elif mozilla and name == "x-mozilla-status":
            try:
                bits = int(value.strip(), 16)
            except ValueError:
                continue
            flags.extend(flag for bit, flag in _MOZ_FLAGS if bits & bit)
            if bits & _MOZ_FORWARDED:
                flags.append("$Forwarded")
        elif mozilla and name == "x-mozilla-keys":
            flags.extend(k for k in value.split() if k.isprintable() and "\\" not in k)
    return tuple(dict.fromkeys(flags))


def _strip_mbox_suffix(filename: str) -> str:
    for suffix in _MBOX_SUFFIXES:
        if filename.lower().endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return filename


def _mbox_folder_name(filename: str) -> str:
    """Folder name of a top-level mbox file: the name without .mbox/.mbx; inbox is INBOX."""
    return _inbox(_clean_name(_strip_mbox_suffix(filename)))


def _mbox_folder(p: Path, name: str, name_raw: str, mboxrd: bool, *, mozilla: bool = False) -> Folder:
    return FolderInfo(name=name, name_raw=_clean_name(name_raw), delimiter="/"), _iter_mbox_messages(
        p, mboxrd=mboxrd, mozilla=mozilla, folder=name
    )


def _iter_mbox_messages(p: Path, *, mboxrd: bool, mozilla: bool, folder: str = "") -> Iterator[SourceMessage]:
    try:
        f = open(p, "rb", buffering=_READ_BUFFER)  # noqa: SIM115  # closed below
    except OSError as e:
        _unreadable(p, folder, e)
        return
    with f:
        if f.read(4) == PST_MAGIC:
            raise _refuse_pst(p)
        f.seek(0)
        mtime = _mtime(os.fstat(f.fileno()))
        try:
            for uid, (from_line, raw) in enumerate(split_mbox(f, mboxrd=mboxrd), 1):
                fields = header_fields(raw)
                date = parse_from_line_date(from_line) if from_line else None
                extra: dict[str, object] = {}
                if from_line is None:
                    extra["mbox_no_from_line"] = True
                else:
                    extra["mbox_from_line"] = from_line.rstrip(b"\r\n").decode("latin-1")
                yield SourceMessage(
                    uid=uid,
                    raw=raw,
                    flags=_mbox_flags(fields, mozilla=mozilla),
                    internaldate=date or _date_from_fields(fields) or mtime,
                    extra=extra,
                )
        except OSError as e:
            raise SourceError(f"{p}: read error: {e.strerror or e}") from None


def _iter_mbox_tree(root: Path, *, mboxrd: bool) -> Iterator[Folder]:
    """Every regular, non-hidden file below ``root`` read as an mbox file."""
    for rel, entry in _walk_files(root):
        if entry.name.endswith(".msf"):
            continue
        parts = [*rel, _strip_mbox_suffix(entry.name)]
        parts[0] = _inbox(parts[0])
        yield _mbox_folder(
            Path(entry.path), _clean_name("/".join(parts)), "/".join([*rel, entry.name]), mboxrd
        )


def _walk_files(root: Path, rel: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], os.DirEntry[str]]]:
    """Non-hidden regular files below ``root`` (files of a directory before its subdirectories)."""
    d = root.joinpath(*rel)
    entries = _scandir(d, required=not rel)
    subdirs: list[str] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if _is_dir(entry):
            subdirs.append(entry.name)
        elif _is_file(entry):
            yield rel, entry
    for sub in subdirs:
        yield from _walk_files(root, (*rel, sub))


# ---------------------------------------------------------------------------------------
# Directories of single-message files (*.eml, MH folders, the SpamAssassin corpus)
# ---------------------------------------------------------------------------------------

# A file-name extension: a dot and a short word starting with a letter. Hash-like or
# numeric suffixes (``00001.7c53336b37003a9286aba55d2945844c``) do not count.

# ---------------------------------------------------------------------------------------
# Thunderbird (mbox files without extension, Name.sbd/ subfolder directories, .msf indexes)
# ---------------------------------------------------------------------------------------

_TB_SKIP_SUFFIXES = (".msf", ".dat", ".json", ".html", ".htm", ".sqlite", ".log", ".js", ".txt", ".bak")


def _is_tb_mailbox(entry: os.DirEntry[str], names: set[str]) -> bool:
    if entry.name + ".msf" in names:
        return True
    low = entry.name.lower()
    if low.endswith(_TB_SKIP_SUFFIXES):
        return False
    try:
        if entry.stat().st_size == 0:
            return "." not in entry.name
        with open(entry.path, "rb") as f:
            return f.read(5) == b"From "
    except OSError:
        return False


def _iter_thunderbird(root: Path, *, mboxrd: bool, rel: tuple[str, ...] = ()) -> Iterator[Folder]:
    d = root.joinpath(*rel)
    entries = _scandir(d, required=not rel)
    names = {e.name for e in entries}
    prefix = [n[:-4] if n.endswith(".sbd") else n for n in rel]
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if _is_dir(entry):
            yield from _iter_thunderbird(root, mboxrd=mboxrd, rel=(*rel, entry.name))
        elif _is_file(entry) and _is_tb_mailbox(entry, names):
            name = "/".join([*prefix, entry.name]) if prefix else _inbox(entry.name)
            yield _mbox_folder(
                Path(entry.path), _clean_name(name), "/".join([*rel, entry.name]), mboxrd, mozilla=True
            )


# ---------------------------------------------------------------------------------------
# Maildir (Maildir++ and the nested "fs" layout)
