"""Rebuild a ``.partial.emlx`` message from its stub parts and the files under ``Attachments/``.

Apple Mail keeps a stub for each attachment it stored outside the message: the MIME part
keeps its headers, gains ``X-Apple-Content-Length: <n>`` and has an empty body. The decoded
file lives at ``Attachments/<ROWID>/<IMAP part number>/<file>`` beside ``Messages/``.

The rebuild works on bytes: only the stub parts change (the ``X-Apple-Content-Length``
line is dropped, the file is encoded with the part's Content-Transfer-Encoding and put in
as the body); every other byte of the message stays as it was.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Callable
from email.message import Message
from email.parser import BytesHeaderParser

__all__ = ["Rebuild", "rebuild_partial"]

_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_XAPPLE_RE = re.compile(rb"^X-Apple-Content-Length[ \t]*:[^\n]*\n", re.IGNORECASE | re.MULTILINE)

#: Looks up the decoded bytes of a part: ``(part number, filename or None) -> bytes | None``.
Lookup = Callable[[str, str | None], bytes | None]


class Rebuild:
    """Result of a rebuild: the new bytes, the parts filled in and the parts left as stubs."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.filled: list[str] = []
        self.missing: list[str] = []


def _split_entity(entity: bytes) -> tuple[bytes, bytes, bytes]:
    """``(header block, separator, body)``; a header-only entity has an empty separator and body."""
    m = _BLANK_LINE_RE.search(entity)
    if m is None:
        return entity, b"", b""
    return entity[: m.start()], entity[m.start() : m.end()], entity[m.end() :]


def _headers(block: bytes) -> Message:
    return BytesHeaderParser().parsebytes(block + b"\n\n")


def _encode(data: bytes, cte: str, eol: bytes) -> bytes:
    if cte == "base64":
        text = base64.b64encode(data)
        lines = [text[i : i + 76] for i in range(0, len(text), 76)]
        return eol.join(lines)
    if cte == "quoted-printable":
        encoded = quopri.encodestring(data)
        return encoded.replace(b"\n", eol) if eol != b"\n" else encoded
    if eol != b"\n":
        data = re.sub(rb"(?<!\r)\n", eol, data)
    return data


def _boundary_spans(body: bytes, boundary: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each body part between delimiter lines (CRLF before a delimiter
    belongs to the delimiter, RFC 2046)."""
    delim = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for m in delim.finditer(body):
        if start is not None:
            spans.append((start, m.start()))
        if m.group(1):  # close delimiter
            start = None
            break
        start = m.end()
    if start is not None and start < len(body):  # truncated: no close delimiter
        spans.append((start, len(body)))
    return spans


def rebuild_partial(raw: bytes, lookup: Lookup) -> Rebuild:
    """Fill every stub part of ``raw`` from ``lookup``; parts it cannot find stay stubs."""
    eol = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
    result = Rebuild(raw)
    result.raw = _rebuild(raw, "", lookup, eol, result)
    return result


def _rebuild(entity: bytes, number: str, lookup: Lookup, eol: bytes, result: Rebuild) -> bytes:
    block, sep, body = _split_entity(entity)
    headers = _headers(block)
    if headers.get_content_maintype() == "multipart":
        boundary = headers.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            return entity
        spans = _boundary_spans(body, boundary.encode("latin-1", "replace"))
        out = bytearray()
        pos = 0
        for i, (start, end) in enumerate(spans, 1):
            child = f"{number}.{i}" if number else str(i)
            out += body[pos:start]
            out += _rebuild(body[start:end], child, lookup, eol, result)
            pos = end
        out += body[pos:]
        return block + sep + bytes(out)
    if headers.get("X-Apple-Content-Length") is None or body.strip():
        return entity
    part = number or "1"
    filename = headers.get_filename()
    data = lookup(part, filename if isinstance(filename, str) else None)
    if data is None:
        result.missing.append(part)
        return entity
    cte = str(headers.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    try:
        encoded = _encode(data, cte, eol)
    except (binascii.Error, ValueError):
        result.missing.append(part)
        return entity
    result.filled.append(part)
    new_block = _XAPPLE_RE.sub(b"", block + b"\n")[:-1]
    return new_block + (sep or eol + eol) + encoded
