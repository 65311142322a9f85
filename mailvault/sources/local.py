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
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from imapclient import imap_utf7

from mailvault.errors import ConfigError, SourceError
from mailvault.model import FolderInfo, SourceMessage

__all__ = ["FORMATS", "PST_MAGIC", "detect_format", "header_date", "iter_local", "parse_from_line_date"]

log = logging.getLogger(__name__)

#: Formats :func:`iter_local` understands (besides ``"auto"``).
FORMATS = ("mbox", "maildir", "eml", "thunderbird")

#: Only this many bytes at the start of a message are searched for its header block.
HEADER_CAP = 256 * 1024

_MBOX_SUFFIXES = (".mbox", ".mbx")
_MAILDIR_SUBDIRS = ("cur", "new", "tmp")
_READ_BUFFER = 1024 * 1024

# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------

Folder = tuple[FolderInfo, Iterator[SourceMessage]]


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


# ---------------------------------------------------------------------------------------
# Header helpers (only the header block is looked at, never the whole message)
# ---------------------------------------------------------------------------------------

_HEADER_NAME_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.DOTALL)


def header_fields(raw: bytes, cap: int = HEADER_CAP) -> list[tuple[str, str]]:
    """Return the unfolded header fields of ``raw`` as ``(lower-case name, value)`` pairs.

    Only the first ``cap`` bytes up to the first empty line are examined. Lines that are
    not header fields (such as an mbox ``From`` envelope line) are skipped. Never raises.
    """
    fields: list[tuple[str, bytes]] = []
    for full_line in raw[:cap].split(b"\n"):
        line = full_line.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b" " + line.strip())
            continue
        m = _HEADER_NAME_RE.match(line)
        if m:
            fields.append((m.group(1).decode("ascii", "replace").lower(), m.group(2).strip()))
    return [(name, value.decode("latin-1")) for name, value in fields]


def _parse_date(text: str) -> datetime | None:
    try:
        dt = parsedate_to_datetime(text.strip())
    except Exception:  # malformed dates must never crash the reader
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt.astimezone(UTC)  # out-of-range offsets near datetime.min/max raise here
    except (OverflowError, ValueError):
        return None
    return dt


def _date_from_fields(fields: Iterable[tuple[str, str]]) -> datetime | None:
    received: str | None = None
    date: str | None = None
    for name, value in fields:
        if name == "received" and received is None:
            received = value
        elif name == "date" and date is None:
            date = value
    if received is not None and ";" in received:
        dt = _parse_date(received.rsplit(";", 1)[1])
        if dt is not None:
            return dt
    if date is not None:
        return _parse_date(date)
    return None


_END_OF_HEADER_RE = re.compile(rb"\n\r?\n")
_RECEIVED_RE = re.compile(rb"^received[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_DATE_RE = re.compile(rb"^date[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def header_date(raw: bytes, cap: int = HEADER_CAP) -> datetime | None:
    """The date of the first ``Received`` header (after its last ``;``), else ``Date``.

    The hot path of every import: two regex searches over the header block only.
    """
    head = raw[:cap]
    end = _END_OF_HEADER_RE.search(head)
    if end is not None:
        head = head[: end.start() + 1]
    m = _RECEIVED_RE.search(head)
    if m is not None and b";" in m.group(1):
        dt = _parse_date(m.group(1).rsplit(b";", 1)[1].decode("latin-1"))
        if dt is not None:
            return dt
    m = _DATE_RE.search(head)
    if m is not None:
        return _parse_date(m.group(1).decode("latin-1"))
    return None


_FROM_DATE_RE = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+"
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\s+(\d{1,2})\s+"
    rb"(\d{1,2}):(\d{2})(?::(\d{2}))?\s+"
    rb"(?:([A-Za-z]{1,5}|[+-]\d{4})\s+)?(\d{4})(?:\s+([+-]\d{4}))?",
    re.IGNORECASE,
)
_MONTHS = {m: i for i, m in enumerate(b"jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}


def parse_from_line_date(line: bytes) -> datetime | None:
    """Parse the asctime date of an mbox ``From`` line (``From sender Sat Jan  3 01:05:34 1996``).

    The date is taken as UTC unless the line carries an explicit numeric offset.
    """
    m = _FROM_DATE_RE.search(line[5:] if line.startswith(b"From ") else line)
    if not m:
        return None
    mon, day, hh, mm, ss, zone1, year, zone2 = m.groups()
    tz: timezone = UTC
    for zone in (zone2, zone1):
        if zone and zone[:1] in b"+-":
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            tz = timezone(timedelta(minutes=-minutes if zone[:1] == b"-" else minutes))
            break
    try:
        return datetime(int(year), _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss or 0), tzinfo=tz)
    except (ValueError, KeyError):
        return None


def _mtime(st: os.stat_result) -> datetime:
    try:
        return datetime.fromtimestamp(st.st_mtime, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0, tz=UTC)


# ---------------------------------------------------------------------------------------
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
    try:
        raw = name.encode("ascii")
        decoded: str = imap_utf7.decode(raw)
        if imap_utf7.encode(decoded) != raw:
            return name
    except Exception:  # not modified UTF-7 after all
        return name
    return decoded


def _inbox(name: str) -> str:
    return "INBOX" if name.lower() == "inbox" else name


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
_EXTENSION_RE = re.compile(r"\.[A-Za-z][A-Za-z0-9_-]{0,7}$")


def _is_message_file(name: str) -> bool:
    if name.startswith("."):
        return False
    if name.lower().endswith(".eml"):
        return True
    return _EXTENSION_RE.search(name) is None


def _is_mbox_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(_MBOX_SUFFIXES)


def _eml_folder(folder_dir: Path, name: str, name_raw: str, files: list[str]) -> Folder:
    return FolderInfo(name=name, name_raw=name_raw, delimiter="/"), _iter_eml_messages(
        folder_dir, files, name
    )


def _iter_eml_messages(folder_dir: Path, files: list[str], folder: str = "") -> Iterator[SourceMessage]:
    for filename in files:
        p = folder_dir / filename
        try:
            with open(p, "rb") as f:
                raw = f.read()
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            log.warning("%s vanished while reading, skipped", p)
            continue
        except OSError as e:
            _unreadable(p, folder, e)
            continue
        if raw.startswith(PST_MAGIC):
            raise _refuse_pst(p)
        yield SourceMessage(uid=_clean_name(filename), raw=raw, internaldate=header_date(raw) or _mtime(st))


def _iter_eml_tree(root: Path, *, mboxrd: bool, rel: tuple[str, ...] = ()) -> Iterator[Folder]:
    d = root.joinpath(*rel)
    entries = _scandir(d, required=not rel)
    files: list[str] = []
    mboxes: list[os.DirEntry[str]] = []
    subdirs: list[str] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if _is_dir(entry):
            subdirs.append(entry.name)
        elif not _is_file(entry):
            continue
        elif _is_mbox_file(entry.name):
            mboxes.append(entry)
        elif _is_message_file(entry.name):
            files.append(entry.name)
    if files:
        if rel:
            name = "/".join([_inbox(rel[0]), *rel[1:]])
            yield _eml_folder(
                d, _clean_name(name), _clean_name("/".join(rel)), sorted(files, key=_natural_key)
            )
        else:
            yield _eml_folder(d, "INBOX", ".", sorted(files, key=_natural_key))
    for entry in mboxes:
        parts = [*rel, _strip_mbox_suffix(entry.name)]
        parts[0] = _inbox(parts[0])
        yield _mbox_folder(
            Path(entry.path), _clean_name("/".join(parts)), "/".join([*rel, entry.name]), mboxrd
        )
    for sub in subdirs:
        yield from _iter_eml_tree(root, mboxrd=mboxrd, rel=(*rel, sub))


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
