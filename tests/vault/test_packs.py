"""Pack files: build in blocks, read back whole, damage confined to one block."""

from __future__ import annotations

import os
import random

import pytest
import zstandard

from mailvault.errors import FormatError, IntegrityError
from mailvault.vault.crypto import AeadSealer, PlainSealer, Sealer, new_master_key
from mailvault.vault.format import BLOB_MANIFEST, BLOB_MESSAGE, NO_DICT, sha256
from mailvault.vault.packs import TRAILER, PackBuilder, open_block, parse_pack_tail, read_pack
from tests.vault.helpers import make_message

BLOCK = 8 * 1024


@pytest.fixture(params=["aead", "plain"])
def sealer(request: pytest.FixtureRequest) -> Sealer:
    return AeadSealer(new_master_key()) if request.param == "aead" else PlainSealer()


def build(sealer: Sealer, blobs: list[bytes], block_size: int = BLOCK, **kw: object) -> tuple[bytes, bytes]:
    builder = PackBuilder(sealer, level=3, block_size=block_size, **kw)  # type: ignore[arg-type]
    for raw in blobs:
        builder.add(sha256(raw), BLOB_MESSAGE, raw)
    pack_id, data, _header = builder.finish()
    return pack_id, data


def blobs_of(data_blocks: list[bytes | Exception], header) -> dict[bytes, bytes]:  # type: ignore[no-untyped-def]
    out = {}
    for e in header.blobs:
        raw = data_blocks[e.block]
        if isinstance(raw, bytes) and e.id:
            out[e.id] = raw[e.offset : e.offset + e.length]
    return out


def test_builder_then_read_pack_recovers_every_blob(sealer: Sealer) -> None:
    rng = random.Random(1)
    blobs = [make_message(i, size=rng.randint(200, 5000)) for i in range(60)]
    builder = PackBuilder(sealer, level=3, block_size=BLOCK)
    for raw in blobs:
        builder.add(sha256(raw), BLOB_MESSAGE, raw)
    assert builder.blob_count == 60
    assert builder.raw_bytes == sum(map(len, blobs))
    pack_id, data, written = builder.finish()
    assert pack_id == sha256(data)
    assert len(written.blocks) > 5  # several blocks of ~8 KiB
    header, blocks = read_pack(sealer, data)
    assert header.blocks == written.blocks
    assert [e.id for e in header.blobs] == [sha256(b) for b in blobs]
    assert [e.id for e in header.blobs] == [e.id for e in written.blobs]
    assert all(isinstance(b, bytes) for b in blocks)
    recovered = blobs_of(blocks, header)
    assert recovered == {sha256(b): b for b in blobs}
    # The blocks are compressed: the pack is smaller than the text it holds.
    assert len(data) < sum(map(len, blobs)) / 2


def test_pack_does_not_store_plaintext_or_ids_when_encrypted() -> None:
    sealer = AeadSealer(new_master_key())
    blobs = [make_message(i, subject=f"UniqueSubjectMarker{i}") for i in range(10)]
    _pack_id, data = build(sealer, blobs)
    assert b"UniqueSubjectMarker" not in data
    for b in blobs:
        assert sha256(b) not in data  # ids are not repeated in packs


def test_oversized_blob_gets_its_own_block(sealer: Sealer) -> None:
    small1, big, small2 = make_message(1, size=500), os.urandom(3 * BLOCK), make_message(2, size=500)
    builder = PackBuilder(sealer, level=3, block_size=BLOCK)
    for raw in (small1, big, small2):
        builder.add(sha256(raw), BLOB_MESSAGE, raw)
    _pack_id, data, _written = builder.finish()
    header, blocks = read_pack(sealer, data)
    big_entry = next(e for e in header.blobs if e.id == sha256(big))
    assert [e for e in header.blobs if e.block == big_entry.block] == [big_entry]
    assert header.blocks[big_entry.block].raw_len == len(big)
    assert big_entry.offset == 0
    assert blocks[big_entry.block] == big
    assert len(header.blocks) == 3


def test_blob_exactly_block_size_and_empty_blob(sealer: Sealer) -> None:
    exact = b"x" * BLOCK
    empty = b""
    tail = b"tail"
    _pack_id, data = build(sealer, [exact, empty, tail])
    header, blocks = read_pack(sealer, data)
    assert blobs_of(blocks, header) == {sha256(exact): exact, sha256(empty): empty, sha256(tail): tail}


def test_flipped_byte_damages_only_that_block(sealer: Sealer) -> None:
    blobs = [make_message(i, size=3000) for i in range(30)]
    _pack_id, data = build(sealer, blobs)
    header, _ = read_pack(sealer, data)
    victim = 2
    info = header.blocks[victim]
    bad = bytearray(data)
    bad[info.offset + info.sealed_len // 2] ^= 0x40
    header2, blocks = read_pack(sealer, bytes(bad))
    assert isinstance(blocks[victim], IntegrityError)
    for n, raw in enumerate(blocks):
        if n != victim:
            assert isinstance(raw, bytes)
    for e in header2.blobs:
        assert (e.id == b"") == (e.block == victim)
    good = blobs_of(blocks, header2)
    lost = {sha256(b) for b in blobs} - good.keys()
    assert lost == {e.id for e in header.blobs if e.block == victim}
    assert len(lost) >= 1


def test_damaged_header_or_trailer(sealer: Sealer) -> None:
    _pack_id, data = build(sealer, [make_message(i) for i in range(5)])
    (hlen,) = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    bad = bytearray(data)
    bad[len(data) - TRAILER.size - hlen // 2] ^= 0x01
    with pytest.raises(IntegrityError):
        read_pack(sealer, bytes(bad))
    # A trailer claiming more header than there is pack.
    bad = data[:-4] + TRAILER.pack(len(data) + 10)
    with pytest.raises(FormatError):
        parse_pack_tail(sealer, bad)
    with pytest.raises(FormatError):
        parse_pack_tail(sealer, b"\x01\x02")
    with pytest.raises((FormatError, IntegrityError)):
        read_pack(sealer, data[: len(data) // 2])


def test_pack_read_with_wrong_key_fails() -> None:
    _pack_id, data = build(AeadSealer(new_master_key()), [b"hello"])
    with pytest.raises(IntegrityError):
        read_pack(AeadSealer(new_master_key()), data)


def test_blob_types_are_kept(sealer: Sealer) -> None:
    builder = PackBuilder(sealer, level=3, block_size=BLOCK)
    builder.add(sha256(b"msg"), BLOB_MESSAGE, b"msg")
    builder.add(sha256(b"{}"), BLOB_MANIFEST, b"{}")
    _pack_id, data, _ = builder.finish()
    header, _blocks = read_pack(sealer, data)
    assert [(e.id, e.type) for e in header.blobs] == [
        (sha256(b"msg"), BLOB_MESSAGE),
        (sha256(b"{}"), BLOB_MANIFEST),
    ]


def test_open_block_wrong_length_or_garbage(sealer: Sealer) -> None:
    _pack_id, data = build(sealer, [b"hello world"])
    header, _ = read_pack(sealer, data)
    info = header.blocks[0]
    sealed = data[info.offset : info.offset + info.sealed_len]
    assert open_block(sealer, sealed, info) == b"hello world"
    from dataclasses import replace

    with pytest.raises(IntegrityError):
        open_block(sealer, sealed, replace(info, raw_len=info.raw_len + 1))
    with pytest.raises(IntegrityError):
        open_block(sealer, sealer.seal(b"not zstd at all", b"mailvault-pack-block"), info)


def test_dictionary_blocks(sealer: Sealer) -> None:
    samples = [make_message(i, size=1500) for i in range(400)]
    zdict = zstandard.train_dictionary(16 * 1024, samples)
    dict_id = sha256(zdict.as_bytes())
    blobs = [make_message(i, size=1500, seed=7) for i in range(20)]
    _pack_id, data = build(sealer, blobs, block_size=4096, zdict=zdict, dict_id=dict_id)
    header, _ = read_pack(sealer, data, lambda i: zdict)
    assert all(b.dict_id == dict_id for b in header.blocks)
    _h, blocks = read_pack(sealer, data, lambda i: zdict)
    assert blobs_of(blocks, header) == {sha256(b): b for b in blobs}
    # Without a dictionary loader the blocks cannot be opened.
    _h, blocks = read_pack(sealer, data)
    assert all(isinstance(b, FormatError) for b in blocks)
    # Without a dictionary the builder marks blocks NO_DICT.
    _pack_id, data = build(sealer, blobs, block_size=4096)
    header, _ = read_pack(sealer, data)
    assert all(b.dict_id == NO_DICT for b in header.blocks)
