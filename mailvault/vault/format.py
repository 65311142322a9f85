"""Byte layouts of the vault's objects (see docs/FORMAT.md, format version 1).

All integers are little-endian. Ids are 32-byte SHA-256 digests, shown as hex.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from mailvault.errors import FormatError

FORMAT_VERSION = 1
#: ``config.version``: 2 adds single-instance attachments (blob types 2 and 3); 1 is still read.
VAULT_VERSION = 2
VAULT_VERSIONS = (1, 2)

# Associated data for each sealed object kind.
AD_BLOCK = b"mailvault-pack-block"
AD_PACK_HEADER = b"mailvault-pack-header"
AD_INDEX = b"mailvault-index"
AD_SNAPSHOT = b"mailvault-snapshot"
AD_DICT = b"mailvault-dict"
AD_LOCK = b"mailvault-lock"
AD_CONFIG = b"mailvault-config"
AD_STATE = b"mailvault-state"

# Blob types.
BLOB_MESSAGE = 0
BLOB_MANIFEST = 1
BLOB_SKELETON = 2  # a message stored as a skeleton; its id is the SHA-256 of the whole message
BLOB_PART = 3  # a large MIME leaf part (single-instance attachment)

NO_DICT = b"\x00" * 32

PACK_MAGIC = b"MVPK"
INDEX_MAGIC = b"MVIX"

_BLOCK = struct.Struct("<QII32s")  # offset in pack, sealed length, raw length, dict id
_BLOB = struct.Struct("<32sBIII")  # id, type, block number, offset in block, length (index files)
_BLOB_NOID = struct.Struct("<BIII")  # type, block number, offset in block, length (pack headers)
_HEAD = struct.Struct("<4sBII")  # magic, version, n_blocks, n_blobs


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def stored_blob_id(blob_type: int, stored: bytes | bytearray | memoryview) -> bytes:
    """A blob's id from its stored bytes: their SHA-256, except for a skeleton, which names
    the message it rebuilds (verified when the message is read)."""
    if blob_type == BLOB_SKELETON:
        if len(stored) < 37 or bytes(stored[:4]) != b"MVSK":
            raise FormatError("not a mailvault skeleton")
        return bytes(stored[5:37])
    return sha256(stored)


@dataclass(frozen=True, slots=True)
class BlockInfo:
    offset: int
    sealed_len: int
    raw_len: int
    dict_id: bytes = NO_DICT


@dataclass(frozen=True, slots=True)
class BlobEntry:
    id: bytes  # b"" in a header read from a pack (packs do not repeat ids; hash the bytes)
    type: int
    block: int
    offset: int
    length: int


@dataclass
class PackHeader:
    """The table of a pack's blocks and the blobs inside them.

    Stored at the end of the pack *without* blob ids (an id is the SHA-256 of
    the blob's bytes, so it can be recomputed; leaving 32 bytes per message out
    of every pack saves ~3 % of the vault), and in index files *with* them.
    """

    blocks: list[BlockInfo]
    blobs: list[BlobEntry]

    def encode(self, *, with_ids: bool) -> bytes:
        parts = [_HEAD.pack(PACK_MAGIC, FORMAT_VERSION, len(self.blocks), len(self.blobs))]
        parts.extend(_BLOCK.pack(b.offset, b.sealed_len, b.raw_len, b.dict_id) for b in self.blocks)
        if with_ids:
            parts.extend(_BLOB.pack(e.id, e.type, e.block, e.offset, e.length) for e in self.blobs)
        else:
            parts.extend(_BLOB_NOID.pack(e.type, e.block, e.offset, e.length) for e in self.blobs)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes | memoryview, pos: int = 0, *, with_ids: bool) -> tuple[PackHeader, int]:
        """Decode a header starting at ``pos``; return it and the position after it."""
        try:
            magic, version, nblocks, nblobs = _HEAD.unpack_from(data, pos)
        except struct.error:
            raise FormatError("pack header is truncated") from None
        if magic != PACK_MAGIC:
            raise FormatError("not a mailvault pack header")
        if version != FORMAT_VERSION:
            raise FormatError(f"unsupported pack format version {version}")
        pos += _HEAD.size
        entry = _BLOB if with_ids else _BLOB_NOID
        end = pos + nblocks * _BLOCK.size + nblobs * entry.size
        if end > len(data):
            raise FormatError("pack header is truncated")
        blocks = [BlockInfo(*_BLOCK.unpack_from(data, pos + i * _BLOCK.size)) for i in range(nblocks)]
        pos += nblocks * _BLOCK.size
        if with_ids:
            blobs = [BlobEntry(*_BLOB.unpack_from(data, pos + i * _BLOB.size)) for i in range(nblobs)]
        else:
            blobs = [
                BlobEntry(b"", *_BLOB_NOID.unpack_from(data, pos + i * entry.size)) for i in range(nblobs)
            ]
        for e in blobs:
            if e.block >= nblocks or e.offset + e.length > blocks[e.block].raw_len:
                raise FormatError("pack header has an entry outside its block")
        return cls(blocks, blobs), end


def encode_index(packs: list[tuple[bytes, PackHeader]]) -> bytes:
    """Index file plaintext: the headers of several packs, each with its pack id."""
    out = [INDEX_MAGIC, struct.pack("<BI", FORMAT_VERSION, len(packs))]
    for pack_id, header in packs:
        out.append(pack_id)
        out.append(header.encode(with_ids=True))
    return b"".join(out)


def decode_index(data: bytes) -> list[tuple[bytes, PackHeader]]:
    return list(iter_index(data))


def iter_index(data: bytes) -> Iterator[tuple[bytes, PackHeader]]:
    """The packs of an index file's plaintext, decoded one at a time (an index file of a few
    hundred thousand blobs is not turned into objects all at once)."""
    if data[:4] != INDEX_MAGIC:
        raise FormatError("not a mailvault index file")
    try:
        version, count = struct.unpack_from("<BI", data, 4)
    except struct.error:
        raise FormatError("index file is truncated") from None
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported index format version {version}")
    pos = 9
    view = memoryview(data)
    for _ in range(count):
        pack_id = bytes(view[pos : pos + 32])
        if len(pack_id) != 32:
            raise FormatError("index file is truncated")
        header, pos = PackHeader.decode(view, pos + 32, with_ids=True)
        yield pack_id, header


# Storage names --------------------------------------------------------------------------


def pack_name(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"data/{h[:2]}/{h}"


def index_name(index_id: bytes) -> str:
    return f"index/{index_id.hex()}"


def snapshot_name(snapshot_id: bytes) -> str:
    return f"snapshots/{snapshot_id.hex()}"


def dict_name(dict_id: bytes) -> str:
    return f"dicts/{dict_id.hex()}"


def id_from_name(name: str) -> bytes:
    try:
        raw = bytes.fromhex(name.rsplit("/", 1)[-1])
    except ValueError:
        raise FormatError(f"object name is not an id: {name}") from None
    if len(raw) != 32:
        raise FormatError(f"object name is not an id: {name}")
    return raw
