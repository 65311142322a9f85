"""Byte layouts: pack headers, index files, object names."""

from __future__ import annotations

import hashlib
import struct

import pytest

from mailvault.errors import FormatError
from mailvault.vault.format import (
    BLOB_MANIFEST,
    BLOB_MESSAGE,
    FORMAT_VERSION,
    INDEX_MAGIC,
    NO_DICT,
    PACK_MAGIC,
    BlobEntry,
    BlockInfo,
    PackHeader,
    decode_index,
    dict_name,
    encode_index,
    id_from_name,
    index_name,
    pack_name,
    sha256,
    snapshot_name,
)


def _id(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def sample_header() -> PackHeader:
    blocks = [
        BlockInfo(0, 1000, 4096, NO_DICT),
        BlockInfo(1000, 500, 2000, _id(99)),
        BlockInfo(1500, 70, 100, NO_DICT),
    ]
    blobs = [
        BlobEntry(_id(1), BLOB_MESSAGE, 0, 0, 1000),
        BlobEntry(_id(2), BLOB_MESSAGE, 0, 1000, 3096),
        BlobEntry(_id(3), BLOB_MESSAGE, 1, 0, 2000),
        BlobEntry(_id(4), BLOB_MANIFEST, 2, 0, 100),
    ]
    return PackHeader(blocks, blobs)


def test_sha256_is_sha256() -> None:
    assert sha256(b"abc") == hashlib.sha256(b"abc").digest()


def test_pack_header_roundtrip_with_ids() -> None:
    header = sample_header()
    data = header.encode(with_ids=True)
    decoded, end = PackHeader.decode(data, with_ids=True)
    assert end == len(data)
    assert decoded == header


def test_pack_header_roundtrip_without_ids_drops_ids() -> None:
    header = sample_header()
    data = header.encode(with_ids=False)
    decoded, end = PackHeader.decode(data, with_ids=False)
    assert end == len(data)
    assert decoded.blocks == header.blocks
    assert [e.id for e in decoded.blobs] == [b""] * len(header.blobs)
    assert [(e.type, e.block, e.offset, e.length) for e in decoded.blobs] == [
        (e.type, e.block, e.offset, e.length) for e in header.blobs
    ]
    # Without ids the header is 32 bytes per blob shorter.
    assert len(header.encode(with_ids=True)) - len(data) == 32 * len(header.blobs)


def test_pack_header_decodes_at_offset_and_returns_end() -> None:
    header = sample_header()
    prefix, suffix = b"\x01" * 17, b"trailing"
    data = prefix + header.encode(with_ids=True) + suffix
    decoded, end = PackHeader.decode(memoryview(data), len(prefix), with_ids=True)
    assert decoded == header
    assert data[end:] == suffix


def test_empty_pack_header_roundtrip() -> None:
    header = PackHeader([], [])
    for with_ids in (True, False):
        decoded, _ = PackHeader.decode(header.encode(with_ids=with_ids), with_ids=with_ids)
        assert decoded == header


def test_pack_header_starts_with_magic_and_version() -> None:
    data = sample_header().encode(with_ids=False)
    assert data[:4] == PACK_MAGIC
    assert data[4] == FORMAT_VERSION


@pytest.mark.parametrize("with_ids", [True, False])
def test_truncated_pack_header_is_format_error(with_ids: bool) -> None:
    data = sample_header().encode(with_ids=with_ids)
    for cut in (0, 3, 8, 12, 13, 40, len(data) - 1):
        with pytest.raises(FormatError):
            PackHeader.decode(data[:cut], with_ids=with_ids)


def test_pack_header_bad_magic_and_version() -> None:
    data = bytearray(sample_header().encode(with_ids=True))
    bad_magic = b"XXXX" + bytes(data[4:])
    with pytest.raises(FormatError, match="not a mailvault pack header"):
        PackHeader.decode(bad_magic, with_ids=True)
    data[4] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match="version"):
        PackHeader.decode(bytes(data), with_ids=True)


def test_pack_header_entry_outside_its_block_is_format_error() -> None:
    blocks = [BlockInfo(0, 10, 100)]
    for entry in (BlobEntry(_id(1), 0, 0, 90, 11), BlobEntry(_id(1), 0, 1, 0, 1)):
        data = PackHeader(blocks, [entry]).encode(with_ids=True)
        with pytest.raises(FormatError, match="outside"):
            PackHeader.decode(data, with_ids=True)


def test_pack_header_huge_counts_are_truncation_not_memory_error() -> None:
    data = struct.pack("<4sBII", PACK_MAGIC, FORMAT_VERSION, 2**31, 2**31)
    with pytest.raises(FormatError, match="truncated"):
        PackHeader.decode(data, with_ids=True)


def test_index_roundtrip() -> None:
    h1 = sample_header()
    h2 = PackHeader([BlockInfo(0, 5, 5)], [BlobEntry(_id(7), BLOB_MESSAGE, 0, 0, 5)])
    packs = [(_id(100), h1), (_id(101), h2), (_id(102), PackHeader([], []))]
    data = encode_index(packs)
    assert data[:4] == INDEX_MAGIC
    assert decode_index(data) == packs


def test_empty_index_roundtrip() -> None:
    assert decode_index(encode_index([])) == []


def test_truncated_index_is_format_error() -> None:
    data = encode_index([(_id(100), sample_header()), (_id(101), sample_header())])
    for cut in (4, 6, 9, 20, 41, 60, len(data) // 2, len(data) - 1):
        with pytest.raises(FormatError):
            decode_index(data[:cut])


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 64, b"MVPK" + b"\x01" * 40, b"hello world, not an index"])
def test_garbage_index_is_format_error(garbage: bytes) -> None:
    with pytest.raises(FormatError):
        decode_index(garbage)


def test_index_unknown_version_is_format_error() -> None:
    data = bytearray(encode_index([]))
    data[4] = 42
    with pytest.raises(FormatError, match="version 42"):
        decode_index(bytes(data))


def test_index_with_corrupt_pack_header_is_format_error() -> None:
    data = bytearray(encode_index([(_id(100), sample_header())]))
    data[9 + 32] ^= 0xFF  # first byte of the pack header magic
    with pytest.raises(FormatError):
        decode_index(bytes(data))


def test_object_names() -> None:
    i = _id(5)
    h = i.hex()
    assert pack_name(i) == f"data/{h[:2]}/{h}"
    assert index_name(i) == f"index/{h}"
    assert snapshot_name(i) == f"snapshots/{h}"
    assert dict_name(i) == f"dicts/{h}"
    for name in (pack_name(i), index_name(i), snapshot_name(i), dict_name(i)):
        assert id_from_name(name) == i


@pytest.mark.parametrize("name", ["data/zz/zzzz", "index/abcd", "config", "snapshots/" + "0" * 66, "locks/"])
def test_id_from_bad_name_is_format_error(name: str) -> None:
    with pytest.raises(FormatError):
        id_from_name(name)
