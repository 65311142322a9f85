"""Single-instance attachments: a message split into a skeleton and its large MIME parts.

A message whose MIME leaf parts (attachments, inline images, large text bodies) are at
least ``min_part`` bytes is stored as a *skeleton* (blob type 2) plus one *part* blob
(type 3) per large leaf. Parts are content-addressed like every blob, so an attachment
carried by a hundred replies, forwards and accounts is stored once.

The skeleton rebuilds the message's **exact bytes**: literal runs of the original bytes
interleaved with references to parts. A base64 part whose lines follow the regular
layout (one width, one line end) is stored decoded — the same file attached with other
line widths is then stored once — and re-encoded on read; any irregularity keeps the
encoded text as the part instead. :func:`split` rebuilds the message before it is used
and returns ``None`` (store the whole message) unless the rebuild is byte-identical.

Skeleton layout (docs/FORMAT.md, "Single-instance attachments")::

    "MVSK" || u8 version(1) || message id (32) || u64 message length || u32 n_ops || ops
    op := 0x00 || u32 n || n literal bytes
        | 0x01 || part id (32)                                   (part inserted as stored)
        | 0x02 || part id (32) || u16 width || u8 eol || u8 last  (base64 of the part)

``eol`` is 0 for CRLF, 1 for LF; ``last`` is 1 when the final base64 line ends with the eol.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mailvault.errors import FormatError, IntegrityError
from mailvault.model import field_lines
from mailvault.vault.format import sha256

SKELETON_MAGIC = b"MVSK"
SKELETON_VERSION = 1
_HEAD = struct.Struct("<4sB32sQI")
_LIT = struct.Struct("<BI")
_B64 = struct.Struct("<HBB")
OP_LITERAL = 0
OP_PART = 1
OP_BASE64 = 2
_EOLS = (b"\r\n", b"\n")

#: MIME nesting deeper than this is not searched for parts (the message is still stored whole
#: or with the parts found above that depth).
MAX_DEPTH = 16
#: Leaves that are not base64 are parts only from this size on (docs/FORMAT.md: smaller text
#: compresses better beside its message).
TEXT_MIN_PART = 64 * 1024
_BOUNDARY = re.compile(rb"""boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;"]{1,200}))""", re.I)
_B64_ALPHABET = re.compile(rb"[A-Za-z0-9+/=]*")
Leaves = list[tuple[int, int, bytes]]


@dataclass(frozen=True)
class PartRef:
    """One large leaf of a message, as stored: ``data`` is decoded when ``b64`` is set."""

    part_id: bytes
    data: bytes
    b64: tuple[int, int, int] | None  # (width, eol, last) or None for bytes stored as they are


@dataclass(frozen=True)
class Split:
    skeleton: bytes
    parts: list[PartRef]


# -- finding large leaves ---------------------------------------------------------------------


def _header_end(raw: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(end of the header block, start of the body) for the entity at ``raw[start:end]``."""
    if raw.startswith(b"\r\n", start):
        return start, start + 2
    if raw.startswith(b"\n", start):
        return start, start + 1
    crlf = raw.find(b"\r\n\r\n", start, end)
    # Only an empty LF line before the first CRLF one matters: no second search of the whole body.
    lf = raw.find(b"\n\n", start, end if crlf < 0 else crlf + 2)
    if crlf < 0 and lf < 0:
        return None
    if lf < 0 or (0 <= crlf < lf):
        return crlf, crlf + 4
    return lf, lf + 2


#: Content-Type and Content-Transfer-Encoding fields of a header block, with their folded lines
#: (a line starting with "Content-Type:" inside another field's folding is not one of them).
_MIME_FIELD = re.compile(
    rb"^(content-type|content-transfer-encoding)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)


_MIME_NAMES = (b"content-type", b"content-transfer-encoding")


def _headers(block: bytes) -> dict[bytes, bytes]:
    """The first Content-Type and Content-Transfer-Encoding of a header block, unfolded."""
    out: dict[bytes, bytes] = {}
    lower = block.lower()
    for name in _MIME_NAMES:
        for at in field_lines(lower, name):
            m = _MIME_FIELD.match(block, at)
            if m:
                out[name] = b" ".join(line.strip() for line in m.group(2).split(b"\n"))
                break
    return out


def _leaves(raw: bytes, start: int, end: int, min_part: int, depth: int, out: Leaves) -> None:
    """Append (body start, body end, transfer encoding) of every leaf body >= ``min_part`` bytes."""
    if depth > MAX_DEPTH or end - start < min_part:
        return
    he = _header_end(raw, start, end)
    if he is None:
        return
    hdr = _headers(raw[start : he[0]])
    body = he[1]
    ctype = hdr.get(b"content-type", b"text/plain").lower()
    cte = hdr.get(b"content-transfer-encoding", b"7bit").lower().split(b";")[0].strip()
    if ctype.startswith(b"multipart/"):
        m = _BOUNDARY.search(hdr.get(b"content-type", b""))
        if m is None:
            return
        _multipart(raw, body, end, b"--" + (m.group(1) or m.group(2)), min_part, depth, out)
    elif ctype.startswith(b"message/rfc822") and cte in (b"7bit", b"8bit", b"binary"):
        _leaves(raw, body, end, min_part, depth + 1, out)
    elif end - body >= (min_part if cte == b"base64" else max(min_part, TEXT_MIN_PART)):
        out.append((body, end, cte))


def _multipart(
    raw: bytes, start: int, end: int, delim: bytes, min_part: int, depth: int, out: Leaves
) -> None:
    part_start = -1
    pos = start
    while True:
        p = raw.find(delim, pos, end)
        if p < 0:
            return  # no closing delimiter: the last part is left in the skeleton
        after = p + len(delim)
        pos = after
        if p != start and raw[p - 1 : p] != b"\n":
            continue  # not at the start of a line
        closing = raw.startswith(b"--", after, end)
        q = after + 2 if closing else after
        while q < end and raw[q : q + 1] in (b" ", b"\t"):
            q += 1
        if raw.startswith(b"\r\n", q):
            q += 2
        elif raw.startswith(b"\n", q):
            q += 1
        elif q != end:
            continue  # the boundary string followed by something else
        if part_start >= 0:
            stop = p - 2 if raw[p - 2 : p] == b"\r\n" else p - 1
            if stop >= part_start:
                _leaves(raw, part_start, stop, min_part, depth + 1, out)
        if closing:
            return
        part_start = q
        pos = q


# -- splitting and rebuilding -----------------------------------------------------------------


def _as_base64(body: bytes) -> PartRef | None:
    """The decoded part if ``body`` is base64 laid out regularly, else None.

    No list of lines is built (for a 100 MiB part that list alone took ~150 MiB): the layout is
    taken from the first line and proven by re-encoding, which must give ``body`` exactly.
    """
    eol_no = 0 if b"\r\n" in body else 1
    eol = _EOLS[eol_no]
    first = body.find(eol)
    width = first if first >= 0 else len(body)
    if not 4 <= width <= 998:
        return None
    last = 1 if body.endswith(eol) else 0
    text = body.replace(eol, b"")
    if not text or _B64_ALPHABET.fullmatch(text) is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    del text
    if encode_base64(data, width, eol_no, last) != body:
        return None
    return PartRef(sha256(data), data, (width, eol_no, last))


_ENCODE_LINES = 4096  # lines joined at a time: no list of every line of a huge part


def encode_base64(data: bytes, width: int, eol_no: int, last: int) -> bytes:
    text = base64.b64encode(data)
    eol = _EOLS[eol_no]
    out = io.BytesIO()
    step = width * _ENCODE_LINES
    for start in range(0, len(text), step):
        if start:
            out.write(eol)
        stop = min(len(text), start + step)
        out.write(eol.join(text[i : i + width] for i in range(start, stop, width)))
    del text
    if last:
        out.write(eol)
    return out.getvalue()


def split(raw: bytes, min_part: int, raw_id: bytes | None = None) -> Split | None:
    """A skeleton and its parts for ``raw``, or None when storing it whole is as good.

    The rebuild is checked here: a result is returned only if it yields ``raw`` exactly.
    """
    if min_part <= 0 or len(raw) < min_part:
        return None
    found: Leaves = []
    try:
        _leaves(raw, 0, len(raw), min_part, 0, found)
    except RecursionError:
        return None
    if not found:
        return None
    found.sort()
    ops: list[bytes] = []
    parts: list[PartRef] = []
    pos = 0
    for s, e, cte in found:
        if s < pos:
            return None  # overlapping leaves: never expected; keep the message whole
        if s > pos:
            ops.append(_LIT.pack(OP_LITERAL, s - pos) + raw[pos:s])
        body = raw[s:e]
        ref = _as_base64(body) if cte == b"base64" else None
        if ref is None:
            ref = PartRef(sha256(body), body, None)
            ops.append(bytes([OP_PART]) + ref.part_id)
        else:
            assert ref.b64 is not None
            ops.append(bytes([OP_BASE64]) + ref.part_id + _B64.pack(*ref.b64))
        parts.append(ref)
        pos = e
        del body  # a leaf's encoded copy is not needed any more: one less copy of a huge part at the peak
    if pos < len(raw):
        ops.append(_LIT.pack(OP_LITERAL, len(raw) - pos) + raw[pos:])
    skeleton = _HEAD.pack(
        SKELETON_MAGIC, SKELETON_VERSION, raw_id or sha256(raw), len(raw), len(ops)
    ) + b"".join(ops)
    by_id = {p.part_id: p.data for p in parts}
    try:
        rebuilt = rebuild(skeleton, by_id.__getitem__)
    except (FormatError, IntegrityError, KeyError):
        return None
    if rebuilt != raw:
        return None
    return Split(skeleton, parts)


def message_id(skeleton: bytes) -> bytes:
    """The id (SHA-256 of the whole message) a skeleton stands for."""
    if len(skeleton) < _HEAD.size or skeleton[:4] != SKELETON_MAGIC:
        raise FormatError("not a mailvault skeleton")
    return skeleton[5:37]


def part_ids(skeleton: bytes) -> list[bytes]:
    """The parts a skeleton refers to, in order (without reading them)."""
    return [op[1] for op in _ops(skeleton)[1] if op[0] != OP_LITERAL]


def _ops(skeleton: bytes) -> tuple[int, list[tuple[int, bytes, tuple[int, int, int] | None]]]:
    try:
        magic, version, _mid, length, n = _HEAD.unpack_from(skeleton, 0)
    except struct.error:
        raise FormatError("skeleton is truncated") from None
    if magic != SKELETON_MAGIC:
        raise FormatError("not a mailvault skeleton")
    if version != SKELETON_VERSION:
        raise FormatError(f"unsupported skeleton version {version}")
    pos = _HEAD.size
    ops: list[tuple[int, bytes, tuple[int, int, int] | None]] = []
    try:
        for _ in range(n):
            kind = skeleton[pos]
            if kind == OP_LITERAL:
                (_k, size) = _LIT.unpack_from(skeleton, pos)
                pos += _LIT.size
                if pos + size > len(skeleton):
                    raise FormatError("skeleton literal is truncated")
                ops.append((kind, skeleton[pos : pos + size], None))
                pos += size
            elif kind == OP_PART:
                ops.append((kind, skeleton[pos + 1 : pos + 33], None))
                pos += 33
            elif kind == OP_BASE64:
                width, eol, last = _B64.unpack_from(skeleton, pos + 33)
                if eol > 1 or last > 1 or not width:
                    raise FormatError("skeleton has a bad base64 layout")
                ops.append((kind, skeleton[pos + 1 : pos + 33], (width, eol, last)))
                pos += 33 + _B64.size
            else:
                raise FormatError(f"skeleton has an unknown operation {kind}")
    except (IndexError, struct.error):
        raise FormatError("skeleton is truncated") from None
    if pos != len(skeleton):
        raise FormatError("skeleton has trailing bytes")
    return length, ops


def rebuild(skeleton: bytes, read_part: Callable[[bytes], bytes]) -> bytes:
    """The message's bytes from its skeleton; ``read_part`` returns a part's stored bytes."""
    length, ops = _ops(skeleton)
    out = []
    for kind, value, layout in ops:
        if kind == OP_LITERAL:
            out.append(value)
        elif kind == OP_PART:
            out.append(read_part(value))
        else:
            assert layout is not None
            out.append(encode_base64(read_part(value), *layout))
    data = b"".join(out)
    if len(data) != length:
        raise IntegrityError("message rebuilt from its skeleton has the wrong length")
    return data


def raw_length(skeleton: bytes) -> int:
    return int(_HEAD.unpack_from(skeleton, 0)[3])
