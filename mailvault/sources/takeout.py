"""Google Takeout mail: mbox files whose messages carry ``X-Gmail-Labels`` (and ``X-GM-THRID``).

Each message is read once and yielded with the snapshot folders it belongs to, worked out
from its labels (docs/LOCAL-CLIENTS.md has the full table):

* ``Inbox`` → ``INBOX``; ``Sent`` → ``Sent`` (\\Sent); ``Drafts`` → ``Drafts`` (\\Drafts);
  ``Spam`` → ``Spam`` (\\Junk); ``Trash`` → ``Trash`` (\\Trash); any other label → a folder
  of that name (``a/b`` nests);
* every message that is not in Spam or Trash is also in ``All Mail`` (\\All), as in Gmail;
* ``Chat`` transcripts go to ``Chats`` only;
* ``Starred`` → ``\\Flagged``; no ``Unread`` → ``\\Seen``; ``Important`` → the Gmail label
  ``\\Important`` (no folder); ``Opened``/``Archived`` add nothing; ``Category …`` is kept in
  the manifest entry (``extra.gmail_categories``); ``IMAP_<keyword>`` → that keyword.

The labels are also recorded in X-GM-LABELS syntax on the manifest entries (``\\Inbox``,
``\\Sent``, ``Work``…), like a backup of a Gmail account, so a Gmail restore uploads each
message once and applies the labels.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path

from mailvault.errors import SourceError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.sources.local import header_date, header_fields, parse_from_line_date, split_mbox

__all__ = [
    "TakeoutMessage",
    "archive_mbox_bytes",
    "is_takeout_archive",
    "iter_takeout",
    "looks_like_takeout",
    "parse_labels",
]

ALL_MAIL = FolderInfo(name="All Mail", name_raw="All Mail", delimiter="/", special_use="\\All")
CHATS = FolderInfo(name="Chats", name_raw="Chat", delimiter="/")

#: Takeout label (lower case) -> (folder, special-use, X-GM-LABELS label).
SYSTEM = {
    "inbox": ("INBOX", None, "\\Inbox"),
    "sent": ("Sent", "\\Sent", "\\Sent"),
    "drafts": ("Drafts", "\\Drafts", "\\Draft"),
    "draft": ("Drafts", "\\Drafts", "\\Draft"),
    "spam": ("Spam", "\\Junk", "\\Spam"),
    "trash": ("Trash", "\\Trash", "\\Trash"),
}
#: Labels that only describe state: no folder, no label.
STATE = {"opened", "unread", "archived", "starred", "important", "chat"}
#: IMAP keywords Takeout writes as ``IMAP_<name>``, normalised to the usual spelling.
KEYWORDS = {
    "forwarded": "$Forwarded",
    "$forwarded": "$Forwarded",
    "junk": "$Junk",
    "$junk": "$Junk",
    "notjunk": "$NotJunk",
    "$notjunk": "$NotJunk",
}
_ATOM_RE = re.compile(r"^[\x21-\x7e]+$")
_HEADERS_OF_INTEREST = ("x-gmail-labels", "x-gm-thrid")


@dataclass
class TakeoutMessage:
    message: SourceMessage
    folders: list[FolderInfo]


def parse_labels(value: str) -> list[str]:
    """The labels of an ``X-Gmail-Labels`` value (CSV, blanks stripped, RFC 2047 words decoded)."""
    if "=?" in value:
        with contextlib.suppress(Exception):  # a broken encoded word: keep the text as it is
            value = str(make_header(decode_header(value)))
    try:
        row = next(csv.reader([value], skipinitialspace=True), [])
    except csv.Error:
        row = value.split(",")
    return [label.strip() for label in row if label.strip()]


def _utf8(text: str) -> str:
    """Header values come back latin-1 decoded; Takeout writes raw UTF-8 label names."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def looks_like_takeout(path: Path) -> bool:
    """An mbox file whose first message has an ``X-Gmail-Labels`` or ``X-GM-THRID`` header, or a
    directory holding such ``*.mbox`` files (not below)."""
    if path.is_dir():
        return any(_file_is_takeout(p) for p in _mbox_files(path))
    return _file_is_takeout(path)


def _file_is_takeout(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return False
    if not head.startswith(b"From "):
        return False
    end = head.find(b"\n") + 1
    return any(name in _HEADERS_OF_INTEREST for name, _ in header_fields(head[end:]))


def _mbox_files(d: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(d))
    except OSError as e:
        raise SourceError(f"{d}: cannot list directory: {e.strerror or e}") from None
    return [d / n for n in names if n.lower().endswith(".mbox") and (d / n).is_file()]


def _folders_for(labels: list[str]) -> tuple[list[FolderInfo], list[str], set[str], list[str]]:
    """(folders, X-GM-LABELS labels, flags, categories) of one message's Takeout labels."""
    folders: list[FolderInfo] = []
    gm: list[str] = []
    flags: set[str] = set()
    categories: list[str] = []
    lower = {lab.lower() for lab in labels}
    if "unread" not in lower:
        flags.add("\\Seen")
    if "starred" in lower:
        flags.add("\\Flagged")
    if "important" in lower:
        gm.append("\\Important")
    if "chat" in lower:
        return [CHATS], [], flags, []
    hidden = False
    for label in labels:
        low = label.lower()
        if low in SYSTEM:
            name, special, gm_label = SYSTEM[low]
            folders.append(FolderInfo(name=name, name_raw=label, delimiter="/", special_use=special))
            gm.append(gm_label)
            hidden = hidden or low in ("spam", "trash")
        elif low in STATE:
            continue
        elif low.startswith("category "):
            categories.append(label)
        elif label.startswith("IMAP_"):
            kw = label[5:]
            kw = KEYWORDS.get(kw.lower(), kw)
            if _ATOM_RE.match(kw) and not kw.startswith("\\"):
                flags.add(kw)
        else:
            folders.append(FolderInfo(name=label, name_raw=label, delimiter="/"))
            gm.append(label)
    if not hidden:
        folders.append(ALL_MAIL)
    # One entry per folder even if a label is repeated.
    unique = list({f.name: f for f in folders}.values())
    return unique, list(dict.fromkeys(gm)), flags, categories


def is_takeout_archive(p: Path) -> bool:
    """A Takeout download: a zip holding ``*.mbox`` members (read from its directory, cheap), or a
    ``.tgz``/``.tar.gz`` whose name says ``takeout`` (its members are only seen while importing)."""
    low = p.name.lower()
    if low.endswith((".tgz", ".tar.gz")):
        return "takeout" in low and p.is_file()
    try:
        if not zipfile.is_zipfile(p):
            return False
        with zipfile.ZipFile(p) as zf:
            return any(_is_mbox_member(n) for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def archive_mbox_bytes(p: Path) -> int:
    """Uncompressed size of the ``*.mbox`` members of a Takeout zip (0 for a tgz: not listed)."""
    try:
        with zipfile.ZipFile(p) as zf:
            return sum(i.file_size for i in zf.infolist() if _is_mbox_member(i.filename))
    except (OSError, zipfile.BadZipFile):
        return 0


def _is_mbox_member(name: str) -> bool:
    return name.lower().endswith(".mbox") and not name.endswith("/")


def iter_takeout(path: str | Path) -> Iterator[TakeoutMessage]:
    """Every message of the Takeout mbox file ``path``, of every ``*.mbox`` in a directory, or of
    every ``*.mbox`` member of a Takeout ``.zip``/``.tgz`` (read as a stream, never unpacked)."""
    p = Path(path)
    if p.is_file() and is_takeout_archive(p):
        yield from _iter_archive(p)
        return
    files = _mbox_files(p) if p.is_dir() else [p]
    for file in files:
        yield from _iter_file(file)


def _iter_archive(p: Path) -> Iterator[TakeoutMessage]:
    found = False
    mtime = p.stat().st_mtime
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                for name in zf.namelist():
                    if _is_mbox_member(name):
                        found = True
                        with zf.open(name) as f:
                            for n, (from_line, raw) in enumerate(split_mbox(f), 1):
                                yield _message(n, from_line, raw, mtime)
        else:
            with tarfile.open(p, mode="r|*") as tf:
                for member in tf:
                    if member.isfile() and _is_mbox_member(member.name):
                        found = True
                        stream = tf.extractfile(member)
                        if stream is None:
                            continue
                        for n, (from_line, raw) in enumerate(split_mbox(stream), 1):
                            yield _message(n, from_line, raw, mtime)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise SourceError(f"{p}: cannot read the archive: {e}") from None
    if not found:
        raise SourceError(f"{p}: no Takeout mail (*.mbox) in this archive")


def _iter_file(p: Path) -> Iterator[TakeoutMessage]:
    try:
        f = open(p, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise SourceError(f"{p}: no such file or directory") from None
    except OSError as e:
        raise SourceError(f"{p}: cannot read: {e.strerror or e}") from None
    with f:
        mtime = os.fstat(f.fileno()).st_mtime
        try:
            for n, (from_line, raw) in enumerate(split_mbox(f), 1):
                yield _message(n, from_line, raw, mtime)
        except OSError as e:
            raise SourceError(f"{p}: read error: {e.strerror or e}") from None


def _message(n: int, from_line: bytes | None, raw: bytes, mtime: float) -> TakeoutMessage:
    fields = header_fields(raw)
    labels: list[str] = []
    thrid: int | None = None
    for name, value in fields:
        if name == "x-gmail-labels":
            labels.extend(parse_labels(_utf8(value)))
        elif name == "x-gm-thrid" and value.strip().isdigit():
            thrid = int(value.strip())
    folders, gm_labels, flags, categories = _folders_for(labels)
    msgid: int | None = None
    extra: dict[str, object] = {}
    date = None
    if from_line is not None:
        line = from_line.rstrip(b"\r\n")  # Takeout files are CRLF: no "\r" in the envelope
        extra["mbox_from_line"] = line.decode("latin-1")
        sender = line[5:].split(b" ", 1)[0]
        local = sender.split(b"@", 1)[0]
        if local.isdigit():
            msgid = int(local)
        date = parse_from_line_date(line)
    if categories:
        extra["gmail_categories"] = categories
    if labels:
        extra["gmail_takeout_labels"] = labels
    message = SourceMessage(
        uid=str(msgid) if msgid is not None else f"#{n}",
        raw=raw,
        flags=tuple(sorted(flags)),
        internaldate=date or header_date(raw) or datetime.fromtimestamp(mtime, tz=UTC),
        labels=tuple(gm_labels),
        gm_msgid=msgid,
        gm_thrid=thrid,
        extra=extra,
    )
    return TakeoutMessage(message, folders)
