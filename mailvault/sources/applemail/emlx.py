"""One Apple Mail ``.emlx`` file: byte-count line, the exact message bytes, an XML plist.

See docs/LOCAL-CLIENTS.md for the layout, the flag bits and how a ``.partial.emlx`` is
rebuilt. A full ``.emlx`` gives its message bytes exactly; nothing is normalised.
"""

from __future__ import annotations

import plistlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["EmlxMessage", "flags_from_bits", "parse_emlx"]

#: emlx ``flags`` bits (jwz.org, 2005) that mailvault trusts, and the IMAP flag each gives.
FLAG_BITS = (
    (0, "\\Seen"),
    (1, "\\Deleted"),
    (2, "\\Answered"),
    (4, "\\Flagged"),
    (6, "\\Draft"),
    (8, "$Forwarded"),
)
JUNK_BIT = 24

_COUNT_RE = re.compile(rb"^[ \t]*(\d{1,12})[ \t]*\r?\n")
_PLIST_START = (b"<?xml", b"<!DOCTYPE plist", b"<plist")
_HEADER_LINE_RE = re.compile(rb"^[!-9;-~]+[ \t]*:")


@dataclass
class EmlxMessage:
    """What an ``.emlx`` file holds. ``problem`` is set when the file was read with a fallback."""

    raw: bytes
    plist: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        return flags_from_bits(self.plist.get("flags"))

    @property
    def date_received(self) -> datetime | None:
        value = self.plist.get("date-received")
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return datetime.fromtimestamp(value, tz=UTC)
            except (OverflowError, OSError, ValueError):
                return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return None


def flags_from_bits(bits: object) -> tuple[str, ...]:
    """IMAP flags for an emlx ``flags`` integer: bits 0-9 as documented, bit 24 → ``$Junk``."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 0:
        return ()
    flags = [flag for bit, flag in FLAG_BITS if bits >> bit & 1]
    if bits >> JUNK_BIT & 1:
        flags.append("$Junk")
    return tuple(flags)


def looks_like_message(raw: bytes) -> bool:
    """True if ``raw`` starts with an RFC 5322 header field."""
    return bool(_HEADER_LINE_RE.match(raw.lstrip(b"\r\n")[:1000]))


def _plist_at(data: bytes, pos: int) -> bool:
    rest = data[pos : pos + 64].lstrip()
    return rest.startswith(_PLIST_START)


def _load_plist(data: bytes) -> dict[str, Any]:
    try:
        value = plistlib.loads(data.strip())
    except Exception:  # a damaged plist only costs the flags, never the message
        return {}
    return value if isinstance(value, dict) else {}


def parse_emlx(data: bytes) -> EmlxMessage | None:
    """Split an ``.emlx`` file. ``None`` if no message can be found in it at all.

    The plist must start exactly at the counted offset. If it does not (a wrong count, or
    no count line), the message is taken as the bytes before the last plist in the file (or
    up to the end of the file when there is none) and :attr:`EmlxMessage.problem` says so.
    """
    m = _COUNT_RE.match(data)
    if m is not None:
        start = m.end()
        count = int(m.group(1))
        end = start + count
        if end <= len(data) and (end == len(data) or _plist_at(data, end)):
            return EmlxMessage(data[start:end], _load_plist(data[end:]))
        problem = f"byte count {count} does not match the file"
    else:
        start = 0
        problem = "no byte-count line"
    plist_pos = max(data.rfind(b"<?xml"), -1)
    if plist_pos < start:
        plist_pos = -1
    raw = data[start:plist_pos] if plist_pos >= 0 else data[start:]
    if not looks_like_message(raw):
        return None
    plist = _load_plist(data[plist_pos:]) if plist_pos >= 0 else {}
    where = "the bytes before the plist" if plist_pos >= 0 else "the rest of the file (no plist)"
    return EmlxMessage(raw, plist, f"{problem}; imported {where}")
