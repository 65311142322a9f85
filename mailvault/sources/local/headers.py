"""Header helpers for local stores: only the header block is looked at, never the whole message."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

#: Only this many bytes at the start of a message are searched for its header block.
HEADER_CAP = 256 * 1024

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
