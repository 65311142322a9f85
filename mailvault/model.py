"""Plain data types shared by sources, the vault and targets.

Sources yield :class:`FolderInfo` and :class:`SourceMessage`; the vault stores
them as snapshot folder entries and manifest entries (see docs/FORMAT.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class FolderInfo:
    """One folder (mailbox) as the source describes it."""

    #: Decoded Unicode name, hierarchy levels joined by ``delimiter``.
    name: str
    #: The name exactly as the server or the disk gives it (e.g. modified UTF-7).
    name_raw: str
    #: Hierarchy delimiter (``"/"``, ``"."``) or None for a flat namespace.
    delimiter: str | None = "/"
    #: Special-use attribute such as ``"\\Sent"`` (RFC 6154), if known.
    special_use: str | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None


@dataclass
class SourceMessage:
    """One message with its metadata, as read from a source."""

    #: IMAP UID (int), POP3 UIDL or a local identifier (str).
    uid: int | str
    #: The exact raw bytes; never modified.
    raw: bytes
    #: IMAP system flags and keywords, e.g. ``("\\Seen", "$Forwarded")``.
    flags: tuple[str, ...] = ()
    #: INTERNALDATE, timezone-aware.
    internaldate: datetime | None = None
    #: Gmail labels, message id and thread id, when the source knows them.
    labels: tuple[str, ...] = ()
    gm_msgid: int | None = None
    gm_thrid: int | None = None
    #: Extra source-specific fields worth keeping (JSON-serialisable).
    extra: dict[str, object] = field(default_factory=dict)


def header_block(raw: bytes) -> bytes:
    """The header block of a message (up to the first empty line; at most 64 KiB)."""
    crlf = raw.find(b"\n\r\n")
    # Only an empty LF line before the first CRLF one matters: no second search of the whole body.
    lf = raw.find(b"\n\n", 0, len(raw) if crlf < 0 else crlf + 2)
    ends = [e for e in (crlf, lf) if e >= 0]
    return raw[: min(ends) + 1] if ends else raw[:65536]


_MSGID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def field_lines(lower: bytes, name: bytes) -> Iterator[int]:
    """Offsets of the lines of a lower-cased header block that start with ``name`` (lower case).

    Found with ``bytes.find`` and checked by the caller's anchored regex: a case-insensitive,
    multi-line regex *search* tries every offset of the block in Python's regex engine, which
    cost 5-9 us per message for a field near the end (every message stored runs two)."""
    if lower.startswith(name):
        yield 0
    key = b"\n" + name
    at = lower.find(key)
    while at >= 0:
        yield at + 1
        at = lower.find(key, at + 1)


def message_id(header_block: bytes) -> str:
    """The Message-ID of a header block, whitespace-normalised ('' if none)."""
    for at in field_lines(header_block.lower(), b"message-id:"):
        m = _MSGID.match(header_block, at)
        if m:
            return " ".join(m.group(1).decode("latin-1").split())
    return ""
