"""Index files and the SQLite index cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailvault.errors import FormatError, IntegrityError
from mailvault.storage.base import Backend
from mailvault.vault.crypto import AeadSealer, PlainSealer, Sealer, new_master_key
from mailvault.vault.format import BLOB_MANIFEST, BLOB_MESSAGE, index_name, sha256
from mailvault.vault.index import (
    IndexCache,
    decode_index_file,
    default_cache_root,
    encode_index_file,
    open_cache,
    rebuild,
)
from mailvault.vault.packs import PackBuilder


def make_pack(sealer: Sealer, blobs: list[bytes], blob_type: int = BLOB_MESSAGE):  # type: ignore[no-untyped-def]
    builder = PackBuilder(sealer, level=1, block_size=4096)
    for raw in blobs:
        builder.add(sha256(raw), blob_type, raw)
    pack_id, _data, header = builder.finish()
    return pack_id, header


def put_index(backend: Backend, sealer: Sealer, packs) -> bytes:  # type: ignore[no-untyped-def]
    index_id, sealed = encode_index_file(sealer, packs)
    backend.put(index_name(index_id), sealed)
    return index_id


def msgs(tag: str, n: int) -> list[bytes]:
    return [f"Subject: {tag} {i}\r\n\r\n{'body ' * (i * 50)}".encode() for i in range(n)]


@pytest.fixture
def sealer() -> Sealer:
    return AeadSealer(new_master_key())


def test_index_file_roundtrip(sealer: Sealer) -> None:
    packs = [make_pack(sealer, msgs("a", 5)), make_pack(sealer, msgs("b", 3))]
    index_id, sealed = encode_index_file(sealer, packs)
    assert index_id == sha256(sealed)
    assert decode_index_file(sealer, sealed) == packs
    with pytest.raises(IntegrityError):
        decode_index_file(AeadSealer(new_master_key()), sealed)
    with pytest.raises(FormatError):
        decode_index_file(sealer, sealer.seal(b"not zstd", b"mailvault-index"))


def test_default_cache_root_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"


def test_sync_loads_new_index_files_and_lookup(backend: Backend, sealer: Sealer, tmp_path: Path) -> None:
    m1, m2 = msgs("one", 4), msgs("two", 6)
    p1, p2 = make_pack(sealer, m1), make_pack(sealer, m2, BLOB_MANIFEST)
    put_index(backend, sealer, [p1])
    cache = IndexCache(tmp_path / "c" / "index.sqlite")
    try:
        assert cache.sync(backend, sealer) == 1
        assert cache.sync(backend, sealer) == 0
        assert cache.has(sha256(m1[2]))
        assert not cache.has(sha256(m2[0]))
        assert cache.lookup(sha256(m2[0])) is None
        second = put_index(backend, sealer, [p2])
        assert cache.sync(backend, sealer) == 1
        assert second in cache.index_ids()
        assert cache.pack_ids() == {p1[0], p2[0]}
        loc = cache.lookup(sha256(m2[3]))
        assert loc is not None
        entry = next(e for e in p2[1].blobs if e.id == sha256(m2[3]))
        assert loc.pack_id == p2[0]
        assert loc.block_no == entry.block
        assert loc.block == p2[1].blocks[entry.block]
        assert (loc.offset, loc.length, loc.type) == (entry.offset, entry.length, BLOB_MANIFEST)
        assert cache.blob_stats(BLOB_MESSAGE) == (4, sum(map(len, m1)))
        assert cache.blob_stats(BLOB_MANIFEST) == (6, sum(map(len, m2)))
        assert dict(cache.iter_blobs()) == {
            **{sha256(m): BLOB_MESSAGE for m in m1},
            **{sha256(m): BLOB_MANIFEST for m in m2},
        }
    finally:
        cache.close()


def test_lookup_many_answers_as_lookup_does(
    backend: Backend, sealer: Sealer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One query per chunk of ids; every id the index knows comes back as lookup() has it,
    unknown ones are left out (also across a chunk boundary)."""
    import mailvault.vault.index as index_module

    monkeypatch.setattr(index_module, "LOOKUP_CHUNK", 3)
    m1, m2 = msgs("one", 4), msgs("two", 5)
    put_index(backend, sealer, [make_pack(sealer, m1), make_pack(sealer, m2, BLOB_MANIFEST)])
    cache = IndexCache(tmp_path / "index.sqlite")
    try:
        cache.sync(backend, sealer)
        known = [sha256(m) for m in m1 + m2]
        unknown = [sha256(b"not stored %d" % i) for i in range(3)]
        asked = [known[0], unknown[0], *known[1:5], unknown[1], *known[5:], unknown[2]]
        got = cache.lookup_many(asked)
        assert set(got) == set(known)
        assert all(got[i] == cache.lookup(i) for i in known)
        assert cache.lookup_many([]) == {}
    finally:
        cache.close()


def test_sync_rebuilds_when_an_index_file_vanishes(backend: Backend, sealer: Sealer, tmp_path: Path) -> None:
    m1, m2 = msgs("one", 3), msgs("two", 3)
    i1 = put_index(backend, sealer, [make_pack(sealer, m1)])
    i2 = put_index(backend, sealer, [make_pack(sealer, m2)])
    cache = IndexCache(tmp_path / "index.sqlite")
    try:
        assert cache.sync(backend, sealer) == 2
        backend.delete(index_name(i1))
        # Rebuilt from what is left: the remaining file is read again.
        assert cache.sync(backend, sealer) == 1
        assert cache.index_ids() == {i2}
        assert not any(cache.has(sha256(m)) for m in m1)
        assert all(cache.has(sha256(m)) for m in m2)
    finally:
        cache.close()


def test_same_pack_in_two_index_files(backend: Backend, sealer: Sealer, tmp_path: Path) -> None:
    m = msgs("dup", 3)
    pack = make_pack(sealer, m)
    put_index(backend, sealer, [pack])
    put_index(backend, sealer, [pack, make_pack(sealer, msgs("x", 1))])
    cache = IndexCache(tmp_path / "index.sqlite")
    try:
        assert cache.sync(backend, sealer) == 2
        assert len(cache.pack_ids()) == 2
        assert cache.blob_stats(BLOB_MESSAGE)[0] == 4
    finally:
        cache.close()


def test_index_file_not_matching_its_name(backend: Backend, sealer: Sealer, tmp_path: Path) -> None:
    _index_id, sealed = encode_index_file(sealer, [make_pack(sealer, msgs("a", 2))])
    backend.put(index_name(sha256(b"another name")), sealed)
    cache = IndexCache(None)
    try:
        with pytest.raises(IntegrityError, match="does not match its id"):
            cache.sync(backend, sealer)
    finally:
        cache.close()


def test_cache_persists_between_opens(backend: Backend, sealer: Sealer, tmp_path: Path) -> None:
    m = msgs("p", 5)
    put_index(backend, sealer, [make_pack(sealer, m)])
    cache = open_cache("vault-1", root=tmp_path)
    assert cache.path == tmp_path / "vault-1" / "index.sqlite"
    assert cache.sync(backend, sealer) == 1
    cache.close()
    again = open_cache("vault-1", root=tmp_path)
    try:
        assert again.sync(backend, sealer) == 0  # nothing to read again
        assert all(again.has(sha256(x)) for x in m)
    finally:
        again.close()
    other = open_cache("vault-2", root=tmp_path)
    try:
        assert not other.has(sha256(m[0]))
    finally:
        other.close()


def test_open_cache_replaces_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "v" / "index.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a sqlite database" * 100)
    cache = open_cache("v", root=tmp_path)
    try:
        assert not cache.has(b"\x00" * 32)
        cache.add(None, [])
    finally:
        cache.close()


def test_open_cache_with_other_schema_is_replaced(tmp_path: Path) -> None:
    cache = open_cache("v", root=tmp_path)
    cache._db.execute("UPDATE meta SET value='999' WHERE key='schema'")
    cache._db.commit()
    cache.close()
    with pytest.raises(FormatError):
        IndexCache(tmp_path / "v" / "index.sqlite")
    cache = open_cache("v", root=tmp_path)
    cache.close()
    IndexCache(tmp_path / "v" / "index.sqlite").close()  # usable again


def test_rebuild_rereads_everything(backend: Backend, tmp_path: Path) -> None:
    sealer = PlainSealer()
    put_index(backend, sealer, [make_pack(sealer, msgs("a", 2))])
    put_index(backend, sealer, [make_pack(sealer, msgs("b", 2))])
    cache = IndexCache(None)
    try:
        assert cache.sync(backend, sealer) == 2
        assert rebuild(cache, backend, sealer) == 2
        assert cache.blob_stats(BLOB_MESSAGE)[0] == 4
    finally:
        cache.close()


def test_add_packs_just_written_without_an_index_file(sealer: Sealer) -> None:
    cache = IndexCache(None)
    try:
        pack = make_pack(sealer, msgs("w", 2))
        cache.add(None, [pack])
        assert cache.has(sha256(msgs("w", 2)[1]))
        assert cache.index_ids() == set()
    finally:
        cache.close()
