"""MAPI property bags as plain Python values.

libpff (``pypff``) exposes an item's properties as record sets of entries (tag, value type,
raw bytes). :class:`Props` turns them into a dictionary keyed by property id and decodes
values on demand. Strings of type ``PT_UNICODE`` (0x001F) are UTF-16LE; ``PT_STRING8``
(0x001E) strings are decoded with the item's code page (``PR_INTERNET_CPID``,
``PR_MESSAGE_CODEPAGE``), else the store's ANSI code page, else Windows-1252.

The same class reads the property context of an *embedded* message (attach method 5),
which pypff only hands out as the raw heap-on-node bytes: see :func:`parse_heap_props`.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Props", "codec_for_cpid", "filetime", "parse_heap_props"]

# Property value types (MS-OXCDATA 2.11.1)
PT_SHORT = 0x0002
PT_LONG = 0x0003
PT_BOOLEAN = 0x000B
PT_OBJECT = 0x000D
PT_I8 = 0x0014
PT_STRING8 = 0x001E
PT_UNICODE = 0x001F
PT_SYSTIME = 0x0040
PT_BINARY = 0x0102

# Property ids used by the reader and the converter
PR_MESSAGE_CLASS = 0x001A
PR_SUBJECT = 0x0037
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_SENT_REPRESENTING_ENTRYID = 0x0041
PR_SENT_REPRESENTING_NAME = 0x0042
PR_SENT_REPRESENTING_ADDRTYPE = 0x0064
PR_SENT_REPRESENTING_EMAIL = 0x0065
PR_TRANSPORT_MESSAGE_HEADERS = 0x007D
PR_SENDER_ENTRYID = 0x0C19
PR_SENDER_NAME = 0x0C1A
PR_SENDER_ADDRTYPE = 0x0C1E
PR_SENDER_EMAIL = 0x0C1F
PR_RECIPIENT_TYPE = 0x0C15
PR_MESSAGE_DELIVERY_TIME = 0x0E06
PR_MESSAGE_FLAGS = 0x0E07
PR_BODY = 0x1000
PR_RTF_COMPRESSED = 0x1009
PR_HTML = 0x1013
PR_INTERNET_MESSAGE_ID = 0x1035
PR_INTERNET_REFERENCES = 0x1039
PR_IN_REPLY_TO_ID = 0x1042
PR_ICON_INDEX = 0x1080
PR_LAST_VERB_EXECUTED = 0x1081
PR_FLAG_STATUS = 0x1090
PR_ENTRYID = 0x0FFF
PR_DISPLAY_NAME = 0x3001
PR_ADDRTYPE = 0x3002
PR_EMAIL_ADDRESS = 0x3003
PR_CREATION_TIME = 0x3007
PR_LAST_MODIFICATION_TIME = 0x3008
PR_CONTAINER_CLASS = 0x3613
PR_ATTACH_DATA = 0x3701
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_METHOD = 0x3705
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_MIME_TAG = 0x370E
PR_ATTACH_CONTENT_ID = 0x3712
PR_ATTACH_CONTENT_LOCATION = 0x3713
PR_ATTACH_FLAGS = 0x3714
PR_SMTP_ADDRESS = 0x39FE
PR_INTERNET_CPID = 0x3FDE
PR_MESSAGE_CODEPAGE = 0x3FFD
PR_ATTACHMENT_HIDDEN = 0x7FFE
PR_SENDER_SMTP_ADDRESS = 0x5D01
PR_SENT_REPRESENTING_SMTP_ADDRESS = 0x5D02

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def filetime(value: int) -> datetime | None:
    """A Windows FILETIME (100 ns ticks since 1601) as an aware UTC datetime, whole seconds."""
    if value <= 0:
        return None
    try:
        dt = _FILETIME_EPOCH + timedelta(microseconds=value // 10)
    except OverflowError:
        return None
    if dt.year < 1971 or dt.year > 9000:  # 0 / 0x7FFF... sentinels, "none" dates
        return None
    return dt.replace(microsecond=0)


#: Code pages Python spells differently (or that need a specific codec).
_CPID_CODECS = {
    20127: "ascii",
    28591: "latin-1",
    65001: "utf-8",
    1200: "utf-16-le",
    50220: "iso2022_jp",
    50221: "iso2022_jp_ext",
    50222: "iso2022_jp",
    51932: "euc_jp",
    936: "gbk",
    54936: "gb18030",
    949: "cp949",
    950: "big5",
    52936: "hz",
    20866: "koi8_r",
    21866: "koi8_u",
}


def codec_for_cpid(cpid: int | None) -> str | None:
    """The Python codec name of a Windows code page id, or None when unknown."""
    if not cpid:
        return None
    name = _CPID_CODECS.get(cpid)
    if name is None:
        name = f"iso8859_{cpid - 28590}" if 28591 <= cpid <= 28606 else f"cp{cpid}"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


class Props:
    """The properties of one item: ``{property id: (value type, raw bytes)}``."""

    def __init__(self, values: dict[int, tuple[int, bytes]], ansi_codec: str = "cp1252") -> None:
        self.values = values
        codec = codec_for_cpid(self.integer(PR_INTERNET_CPID)) or codec_for_cpid(
            self.integer(PR_MESSAGE_CODEPAGE)
        )
        self.codec = codec or ansi_codec

    @classmethod
    def of(cls, item: Any, ansi_codec: str = "cp1252") -> Props:
        """Read every record set of a pypff item (message, folder, attachment, recipient)."""
        return cls(read_record_sets(item.record_sets), ansi_codec)

    def __contains__(self, prop: int) -> bool:
        return prop in self.values

    def raw(self, prop: int) -> bytes | None:
        got = self.values.get(prop)
        return None if got is None else got[1]

    def type(self, prop: int) -> int | None:
        got = self.values.get(prop)
        return None if got is None else got[0]

    def integer(self, prop: int) -> int | None:
        got = self.values.get(prop)
        if got is None:
            return None
        vtype, data = got
        if vtype == PT_SHORT and len(data) >= 2:
            return int(struct.unpack_from("<h", data)[0])
        if vtype == PT_LONG and len(data) >= 4:
            return int(struct.unpack_from("<i", data)[0])
        if vtype == PT_BOOLEAN and data:
            return 1 if data[0] else 0
        if vtype in (PT_I8, PT_SYSTIME) and len(data) >= 8:
            return int(struct.unpack_from("<q", data)[0])
        return None

    def flag(self, prop: int) -> bool:
        return bool(self.integer(prop))

    def time(self, prop: int) -> datetime | None:
        got = self.values.get(prop)
        if got is None or got[0] != PT_SYSTIME or len(got[1]) < 8:
            return None
        return filetime(struct.unpack_from("<q", got[1])[0])

    def text(self, prop: int) -> str | None:
        """A string property, decoded; trailing NULs removed. None when absent or not a string."""
        got = self.values.get(prop)
        if got is None:
            return None
        vtype, data = got
        if vtype == PT_UNICODE:
            text = data.decode("utf-16-le", "replace")
        elif vtype in (PT_STRING8, PT_BINARY):  # PR_HTML is often binary, in the message's code page
            text = data.decode(self.codec, "replace")
        else:
            return None
        return text.rstrip("\x00")

    def subject(self) -> str | None:
        """``PR_SUBJECT`` without its prefix marker: a subject may begin with ``\x01`` and one
        character giving the length of the prefix (MS-OXCMSG 2.2.1.46); both are dropped."""
        subject = self.text(PR_SUBJECT)
        if subject is not None and subject[:1] == "\x01":
            subject = subject[2:]
        return subject


def read_record_sets(record_sets: Iterable[Any]) -> dict[int, tuple[int, bytes]]:
    values: dict[int, tuple[int, bytes]] = {}
    for rs in record_sets:
        for entry in rs.entries:
            try:
                data = entry.data
            except OSError:  # an unreadable value: treated as absent
                continue
            values.setdefault(entry.entry_type, (entry.value_type, data or b""))
    return values


# ---------------------------------------------------------------------------------------
# The property context of an embedded message (MS-PST 2.3.1 heap-on-node, 2.3.2 BTH,
# 2.3.3 PC). pypff gives the node data of attach-method-5 objects as raw bytes only.
# ---------------------------------------------------------------------------------------

_FIXED_SIZES = {0x0002: 2, 0x0003: 4, 0x0004: 4, 0x000A: 4, 0x000B: 1}


def _block_starts(data: bytes, block_size: int) -> list[int]:
    """Start offsets of the data blocks the node data was made of (all but the last are full)."""
    return list(range(0, len(data), block_size)) or [0]


def _heap_item(data: bytes, hid: int, starts: list[int]) -> bytes | None:
    if hid & 0x1F:  # an NID (subnode): not reachable from the heap bytes
        return None
    index = (hid >> 5) & 0x7FF
    block = hid >> 16
    if block >= len(starts) or index == 0:
        return None
    base = starts[block]
    end_of_block = starts[block + 1] if block + 1 < len(starts) else len(data)
    if base + 2 > end_of_block:
        return None
    (ib_hnpm,) = struct.unpack_from("<H", data, base)
    pm = base + ib_hnpm
    if pm + 4 > end_of_block:
        return None
    c_alloc, _c_free = struct.unpack_from("<HH", data, pm)
    if index > c_alloc or pm + 4 + 2 * (c_alloc + 1) > end_of_block:
        return None
    start, end = struct.unpack_from("<HH", data, pm + 4 + 2 * (index - 1))
    if not start <= end <= end_of_block - base:
        return None
    return data[base + start : base + end]


def parse_heap_props(data: bytes) -> tuple[dict[int, tuple[int, bytes]], list[int]]:
    """Properties of a PC heap (``pypff.attachment.read_buffer`` of an embedded message).

    Returns ``(values, unreachable)``: values stored in the heap, and the ids of properties
    whose value lives in a subnode (large bodies, tables), which these bytes do not hold.
    Raises ValueError when the bytes are not a property-context heap.
    """
    if len(data) < 12 or data[2] != 0xEC or data[3] != 0xBC:
        raise ValueError("not a property context heap")
    # Data blocks hold 8176 bytes (Unicode PST) or 8180 (ANSI); the heap of a multi-block
    # node starts a page map in every block, so try both and keep the one that parses.
    best: tuple[dict[int, tuple[int, bytes]], list[int]] | None = None
    for block_size in (8176, 8180):
        try:
            got = _parse_pc(data, _block_starts(data, block_size))
        except (struct.error, ValueError):
            continue
        if best is None or len(got[0]) > len(best[0]):
            best = got
        if len(data) <= 8176:
            break
    if best is None:
        raise ValueError("unreadable property context heap")
    return best


def _parse_pc(data: bytes, starts: list[int]) -> tuple[dict[int, tuple[int, bytes]], list[int]]:
    (hid_root,) = struct.unpack_from("<I", data, 4)
    header = _heap_item(data, hid_root, starts)
    if header is None or len(header) < 8 or header[0] != 0xB5:
        raise ValueError("no BTH header")
    cb_key, cb_ent, levels = header[1], header[2], header[3]
    (hid_records,) = struct.unpack_from("<I", header, 4)
    if cb_key != 2 or cb_ent != 6:
        raise ValueError("not a property BTH")
    leaves = [hid_records] if hid_records else []
    for _ in range(levels):  # intermediate levels: (key, hid) records
        nxt: list[int] = []
        for hid in leaves:
            block = _heap_item(data, hid, starts) or b""
            for off in range(0, len(block) - 5, 6):
                nxt.append(struct.unpack_from("<I", block, off + 2)[0])
        leaves = nxt
    values: dict[int, tuple[int, bytes]] = {}
    unreachable: list[int] = []
    for hid in leaves:
        block = _heap_item(data, hid, starts) or b""
        for off in range(0, len(block) - 7, 8):
            prop, vtype, value = struct.unpack_from("<HHI", block, off)
            raw = struct.pack("<I", value)
            if vtype in _FIXED_SIZES:
                values[prop] = (vtype, raw[: _FIXED_SIZES[vtype]])
                continue
            item = _heap_item(data, value, starts) if value else b""
            if item is None:
                unreachable.append(prop)
                continue
            values[prop] = (vtype, item)
    return values, unreachable
