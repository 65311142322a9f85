"""Prune and check with flat memory: manifests parsed a row at a time, the marks in a scratch SQLite
database, index files decoded a pack at a time."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mailvault.errors import FormatError
from mailvault.vault.check import check
from mailvault.vault.format import (
    BLOB_MESSAGE,
    BlobEntry,
    PackHeader,
    decode_index,
    encode_index,
    id_from_name,
    iter_index,
    sha256,
)
from mailvault.vault.index import iter_index_files
from mailvault.vault.marks import DROP, KEEP, REPACK, MarkSet
from mailvault.vault.prune import prune
from mailvault.vault.repository import Repository, VaultParams
from mailvault.vault.snapshots import (
    ManifestEntry,
    decode_manifest,
    encode_manifest,
    iter_manifest,
    manifest_blob_ids,
)
from tests.vault.helpers import write_snapshot

MakeRepo = Callable[..., Repository]


def _entries(n: int) -> list[ManifestEntry]:
    return [
        ManifestEntry(
            i if i % 3 else f"u]{i}",
            sha256(str(i).encode()).hex(),
            ["\\Seen"] if i % 2 else [],
            None,
            i,
            labels=["a,b]", "Entwürfe"] if i % 5 == 0 else [],
            extra={"k": [i, {"x": "]"}]} if i % 7 == 0 else {},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [0, 1, 250])
def test_manifest_rows_parsed_one_at_a_time_equal_the_whole_decode(n: int) -> None:
    es = _entries(n)
    canonical = encode_manifest(es)
    assert list(iter_manifest(canonical)) == decode_manifest(canonical) == es
    assert list(manifest_blob_ids(canonical)) == [bytes.fromhex(e.blob) for e in es]
    rows = [e.to_json() for e in es]
    # Other valid layouts of the same document (whitespace, key order) read the same.
    for doc in (
        json.dumps({"messages": rows, "v": 1}, indent=2),
        json.dumps({"v": 1, "messages": rows}),
        " \n" + json.dumps({"messages": rows, "v": 1}, separators=(" , ", " : ")) + "\n",
    ):
        assert list(iter_manifest(doc.encode())) == es


@pytest.mark.parametrize(
    "data",
    [
        b'{"messages":[[1,"aa",[],null,1]],"v":2}',
        b'{"messages":[],"v":2}',
        b'{"messages":[[1,"aa",[],null,1] [2]],"v":1}',
        b'{"messages":[[1,"aa",[],null,1]],"v":1',
        b'{"messages":[3],"v":1}',
        b"\xff\xfe not json",
    ],
)
def test_bad_manifests_are_format_errors_when_streamed(data: bytes) -> None:
    with pytest.raises(FormatError):
        list(iter_manifest(data))


def test_manifest_blob_ids_refuse_a_row_without_a_hex_id() -> None:
    with pytest.raises(FormatError):
        list(manifest_blob_ids(b'{"messages":[[1,"' + b"z" * 64 + b'",[],null,1]],"v":1}'))


def test_index_packs_decoded_one_at_a_time_equal_the_whole_decode(make_repo: MakeRepo) -> None:
    repo = make_repo(params=VaultParams(pack_size=64 << 10, block_size=16 << 10))
    write_snapshot(repo, {"INBOX": [os.urandom(3000) for _ in range(60)]})
    data = encode_index(_cache_packs(repo))  # several packs, as an index file holds them
    assert list(iter_index(data)) == decode_index(data)
    assert len(decode_index(data)) > 1


def _cache_packs(repo: Repository) -> list[tuple[bytes, PackHeader]]:
    out = []
    for pack_id in sorted(repo.cache.pack_ids()):
        blocks = repo.cache.pack_blocks(pack_id)
        blobs = []
        for blob_id, _block in repo.cache.pack_blobs(pack_id):
            loc = repo.locate(blob_id)
            blobs.append(BlobEntry(blob_id, loc.type, loc.block_no, loc.offset, loc.length))
        out.append((pack_id, PackHeader(blocks, blobs)))
    return out


def test_markset_first_pack_wins_and_pages_past_one_batch(tmp_path: Path) -> None:
    ids = [sha256(str(i).encode()) for i in range(2500)]
    with MarkSet(tmp_path / "cache") as marks:
        path = marks.path
        assert marks.mark(ids) == 2500 and marks.mark(ids[:10]) == 0  # a second mark adds nothing
        assert ids[5] in marks and sha256(b"other") not in marks
        marks.add_stored([(b"A" * 32, 100), (b"B" * 32, 50), (b"C" * 32, 7)])
        a, stored, listed = marks.list_pack(b"A" * 32)
        assert stored and not listed
        assert marks.list_pack(b"A" * 32)[2]  # listed before
        b = marks.list_pack(b"B" * 32)[0]
        # Pack A lists the first 2,000 ids plus one nobody needs; pack B the last 1,000 (500 shared).
        assert marks.place(a, [*ids[:2000], sha256(b"unneeded")]) == 2000
        assert marks.place(b, ids[1500:]) == 500  # the shared ones stay with A
        assert marks.decide(a, 2001, 2000) == REPACK
        assert marks.decide(b, 1000, 500) == REPACK
        assert marks.unplaced_count() == 0
        marks.index_placement()
        assert marks.placed_in(a) == set(ids[:2000]) and marks.placed_in(b) == set(ids[2000:])
        assert marks.emit(a) and not marks.emit(a)
        # C is in no index: deleted with the repacked ones; a pack only an index names is not stored.
        ghost = marks.list_pack(b"D" * 32)
        assert not ghost[1]
        assert sorted(marks.doomed_packs()) == [b"A" * 32, b"B" * 32, b"C" * 32]
        assert marks.decide(a, 3, 3) == KEEP and marks.decide(b, 3, 0) == DROP
        assert sorted(marks.doomed_packs()) == [b"B" * 32, b"C" * 32]
        assert marks.add_old_index(ids) == 2500
        assert list(marks.old_index()) == ids  # in listing order, across pages
        assert marks.stored_summary() == (3, 157)
        assert path.exists()
    assert not path.exists()  # scratch: removed afterwards


def test_markset_removes_the_scratch_file_of_a_killed_prune(tmp_path: Path) -> None:
    stale = tmp_path / "prune-999999999.sqlite"
    stale.write_bytes(b"left by a prune killed with -9")
    with MarkSet(tmp_path):
        assert not stale.exists()


def _listed(repo: Repository) -> int:
    """Blob entries over every index file (a blob stored twice counts twice)."""
    index_ids = [id_from_name(n) for n, _ in repo.backend.list("index/")]
    return sum(len(h.blobs) for _, h in iter_index_files(repo.backend, repo.sealer, index_ids))


def test_prune_of_a_blob_stored_in_two_packs_keeps_exactly_one_copy(make_repo: MakeRepo) -> None:
    repo = make_repo(params=VaultParams(pack_size=64 << 10, block_size=16 << 10))
    mail = [os.urandom(2000) for _ in range(40)]
    write_snapshot(repo, {"INBOX": mail})
    gone = write_snapshot(repo, {"INBOX": [os.urandom(2000) for _ in range(40)]}, account="gone")
    # The same 10 messages again in a pack of their own (as an interrupted run can leave them).
    w = repo.writer(for_repack=True)
    for raw in mail[:10]:
        w.add_stored(sha256(raw), raw, BLOB_MESSAGE)
    w.flush()
    repo.resync_index()
    repo.backend.delete(f"snapshots/{gone}")
    assert _listed(repo) == 40 + 1 + 40 + 1 + 10  # both snapshots' messages and manifests, the copies
    first = prune(repo)
    assert first.warnings == [] and first.needed_blobs == 41  # 40 messages + 1 manifest
    repo.resync_index()
    for raw in mail:
        assert repo.read_blob(sha256(raw)) == raw
    report = check(repo, read_data=True)
    assert report.ok, report.errors
    # Exactly one copy of each message is left in the packs: the duplicate pack is gone or
    # repacked, and a second prune has nothing to do.
    assert _listed(repo) == 41
    again = prune(repo)
    assert again.blobs_removed == 0 and again.packs_deleted == again.packs_repacked == 0
    assert not list((repo.cache.path.parent if repo.cache.path else Path("/nonexistent")).glob("prune-*"))
