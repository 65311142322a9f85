"""Damaged vaults: ``check`` names what is lost, ``repair`` keeps everything else readable.

Each kind of damage (a missing pack, flipped bytes, a truncated pack, a missing or corrupt
index file, a corrupt snapshot or manifest) is made on a local and an S3 vault; after
``repair`` the vault passes ``check --read-data`` and every message not lost reads back exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailvault.vault.check import check
from mailvault.vault.format import BLOB_MANIFEST, id_from_name, snapshot_name
from mailvault.vault.repair import repair
from mailvault.vault.repository import Repository, VaultParams
from tests.vault.helpers import flip_byte, make_message, pack_names, write_snapshot

#: Small packs and blocks, so a few hundred messages make several packs of several blocks.
PARAMS = VaultParams(pack_size=64 << 10, block_size=16 << 10, dictionary="off")
FOLDERS = ("INBOX", "Archive/2002", "Sent")
ALICE = "alice@example.org"


def _fill(repo: Repository) -> dict[str, list[bytes]]:
    mail = {f: [make_message(i, seed=n, size=3000) for i in range(60)] for n, f in enumerate(FOLDERS)}
    write_snapshot(repo, mail)
    return mail


def _message_packs(repo: Repository) -> dict[str, set[bytes]]:
    """Pack name -> the message blob ids it holds (from the index)."""
    out: dict[str, set[bytes]] = {}
    for blob, blob_type in repo.cache.iter_blobs():
        if blob_type == BLOB_MANIFEST:
            continue
        loc = repo.locate(blob)
        out.setdefault(f"data/{loc.pack_id.hex()[:2]}/{loc.pack_id.hex()}", set()).add(blob)
    return out


def _snapshot_contents(repo: Repository, account: str = ALICE) -> dict[tuple[str, int | str], bytes]:
    snap = repo.resolve_snapshot("latest", account)
    return {(f.name, e.uid): raw for f, e, raw in repo.iter_messages(snap)}


def _expect_after_repair(
    repo: Repository, reopen: Callable[..., Repository], mail: dict[str, list[bytes]], lost: set[bytes]
) -> Repository:
    """Repair; then check --read-data passes and every message not lost reads back exactly."""
    import hashlib

    report = repair(repo)
    assert report.changed
    repo.close()
    fresh = reopen()
    after = check(fresh, read_data=True)
    assert after.ok, after.errors
    got = _snapshot_contents(fresh)
    want = {
        (folder, uid): raw
        for folder, msgs in mail.items()
        for uid, raw in enumerate(msgs, 1)
        if hashlib.sha256(raw).digest() not in lost
    }
    assert got == want
    dropped = {(m.folder, m.uid) for m in report.lost_messages}
    assert dropped == {(f, u) for f, msgs in mail.items() for u, r in enumerate(msgs, 1)} - want.keys()
    # The rewritten snapshot records exactly what was dropped.
    snap = fresh.resolve_snapshot("latest", ALICE)
    assert "repaired" in snap.tags
    recorded = {(m["folder"], m["uid"]) for m in snap.repairs[-1]["lost_messages"]}
    assert recorded == dropped
    assert repair(fresh, dry_run=True).index_files_written == 0
    assert repair(fresh).changed is False  # a second repair has nothing to do
    return fresh


def test_missing_pack_is_named_by_check_and_repaired(
    make_repo: Callable[..., Repository], reopen: Callable[..., Repository]
) -> None:
    repo = make_repo(params=PARAMS)
    mail = _fill(repo)
    packs = _message_packs(repo)
    assert len(packs) >= 3
    victim = sorted(packs)[1]
    lost = packs[victim]
    repo.backend.delete(victim)

    report = check(repo)
    assert not report.ok
    assert any(d["kind"] == "pack" and d["id"] == victim.rsplit("/", 1)[1] for d in report.damaged)
    assert {bytes.fromhex(m.blob) for m in report.lost_messages} == lost
    assert all(m.folder in FOLDERS and isinstance(m.uid, int) for m in report.lost_messages)
    # Each is named by its Message-ID too (recorded in the manifest when it was stored).
    raw_by_key = {(f, u): raw for f, msgs in mail.items() for u, raw in enumerate(msgs, 1)}
    for m in report.lost_messages:
        assert m.message_id and m.message_id.encode() in raw_by_key[(m.folder, m.uid)].split(b"\r\n\r\n")[0]
    assert len(report.affected_snapshots) == 1

    dry = repair(repo, dry_run=True)
    assert {bytes.fromhex(m.blob) for m in dry.lost_messages} == lost
    assert not check(repo).ok  # the dry run changed nothing
    _expect_after_repair(repo, reopen, mail, lost)


def test_flipped_byte_loses_one_block_only(
    make_repo: Callable[..., Repository], reopen: Callable[..., Repository]
) -> None:
    repo = make_repo(params=PARAMS)
    mail = _fill(repo)
    packs = _message_packs(repo)
    victim = sorted(packs)[0]
    loc = repo.locate(sorted(packs[victim])[0])
    flip_byte(repo.backend, victim, loc.block.offset + 20)
    in_block = {b for b in packs[victim] if repo.locate(b).block_no == loc.block_no}

    assert check(repo).ok  # structure only: the damage needs --read-data
    report = check(repo, read_data=True)
    assert not report.ok
    assert {bytes.fromhex(m.blob) for m in report.lost_messages} == in_block
    fresh = _expect_after_repair(repo, reopen, mail, in_block)
    # The rest of the damaged pack was salvaged into a new one; the damaged pack is gone.
    assert victim not in pack_names(fresh.backend)


def test_truncated_pack_is_salvaged_through_the_index(
    make_repo: Callable[..., Repository], reopen: Callable[..., Repository]
) -> None:
    repo = make_repo(params=PARAMS)
    mail = _fill(repo)
    packs = _message_packs(repo)
    victim = sorted(packs)[0]
    data = repo.backend.get(victim)
    blocks = repo.cache.pack_blocks(id_from_name(victim))
    cut = blocks[-1].offset + 10  # the last block is cut short, the header is gone
    repo.backend.put(victim, data[:cut])
    lost = {b for b in packs[victim] if repo.locate(b).block_no == len(blocks) - 1}

    report = check(repo)  # the size alone shows it
    assert not report.ok
    assert {bytes.fromhex(m.blob) for m in report.lost_messages} == lost
    _expect_after_repair(repo, reopen, mail, lost)


def test_missing_and_corrupt_index_files_are_rebuilt_from_the_packs(
    make_repo: Callable[..., Repository], reopen: Callable[..., Repository]
) -> None:
    repo = make_repo(params=PARAMS)
    mail = _fill(repo)
    write_snapshot(repo, {"INBOX": [make_message(i, seed=9) for i in range(30)]}, account="bob")
    index = sorted(n for n, _ in repo.backend.list("index/"))
    assert len(index) >= 2
    repo.backend.delete(index[0])
    flip_byte(repo.backend, index[1], 30)

    report = check(repo)
    assert not report.ok
    assert any(d["kind"] == "index" for d in report.damaged)
    assert report.lost_messages or report.lost_folders  # unindexed: not readable until repaired
    r = repair(repo)
    assert r.lost_messages == [] and r.lost_folders == [] and r.snapshots_rewritten == []
    assert r.index_files_damaged and r.index_files_removed >= 1
    repo.close()
    fresh = reopen()
    assert check(fresh, read_data=True).ok
    assert _snapshot_contents(fresh) == {
        (f, u): raw for f, msgs in mail.items() for u, raw in enumerate(msgs, 1)
    }
    assert _snapshot_contents(fresh, "bob") == {("INBOX", i + 1): make_message(i, seed=9) for i in range(30)}


def test_corrupt_snapshot_is_named_and_removed(
    make_repo: Callable[..., Repository], reopen: Callable[..., Repository]
) -> None:
    repo = make_repo(params=PARAMS)
    _fill(repo)
    bob = write_snapshot(repo, {"INBOX": [make_message(i, seed=7) for i in range(5)]}, account="bob")
    flip_byte(repo.backend, snapshot_name(bytes.fromhex(bob)), 40)
    report = check(repo)
    assert [d["id"] for d in report.damaged if d["kind"] == "snapshot"] == [bob]
    r = repair(repo)
    assert [d["id"] for d in r.snapshots_damaged] == [bob]
    repo.close()
    fresh = reopen()
    assert check(fresh, read_data=True).ok
    assert [s.account for s in fresh.snapshots()] == [ALICE]


def test_lost_manifest_drops_its_folder_and_names_it(
    make_repo: Callable[..., Repository], reopen: Callable[..., Repository]
) -> None:
    repo = make_repo(params=PARAMS)
    mail = _fill(repo)
    snap = repo.resolve_snapshot("latest")
    sent = next(f for f in snap.folders if f.name == "Sent")
    loc = repo.locate(bytes.fromhex(sent.manifest))
    name = f"data/{loc.pack_id.hex()[:2]}/{loc.pack_id.hex()}"
    flip_byte(repo.backend, name, loc.block.offset + 5)
    report = check(repo, read_data=True)
    lost_folders = {f.folder for f in report.lost_folders}
    assert "Sent" in lost_folders  # all three manifests share one small block
    r = repair(repo)
    assert {f.folder for f in r.lost_folders} == lost_folders
    repo.close()
    fresh = reopen()
    assert check(fresh, read_data=True).ok
    kept = {f.name for f in fresh.resolve_snapshot("latest").folders}
    assert kept == set(FOLDERS) - lost_folders
    assert _snapshot_contents(fresh) == {
        (f, u): raw for f, msgs in mail.items() if f in kept for u, raw in enumerate(msgs, 1)
    }


def test_an_interrupted_repair_is_finished_by_the_next_one(
    make_repo: Callable[..., Repository], reopen: Callable[..., Repository], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(params=PARAMS)
    mail = _fill(repo)
    packs = _message_packs(repo)
    victim = sorted(packs)[1]
    repo.backend.delete(victim)
    original = repo.resolve_snapshot("latest").id
    real_delete = repo.backend.delete

    def crash_on_snapshot_delete(name: str) -> None:
        if name == snapshot_name(bytes.fromhex(original)):
            raise KeyboardInterrupt  # killed after the rewritten snapshot was stored
        real_delete(name)

    monkeypatch.setattr(repo.backend, "delete", crash_on_snapshot_delete)
    with pytest.raises(KeyboardInterrupt):
        repair(repo)
    monkeypatch.undo()
    repo.close()
    again = reopen()
    from mailvault.vault.locks import remove_locks

    remove_locks(again.backend, again.sealer, all_locks=True)
    assert len(again.snapshot_ids()) == 2
    r = repair(again)
    assert r.snapshots_rewritten == []  # the rewrite exists: only the original is removed
    assert [bytes.fromhex(s.id) for s in again.snapshots()] == again.snapshot_ids()
    assert len(again.snapshot_ids()) == 1
    assert check(again, read_data=True).ok
    want = {(f, u) for f, msgs in mail.items() for u, _ in enumerate(msgs, 1)}
    assert set(_snapshot_contents(again)) == want - {
        (m["folder"], m["uid"]) for m in again.resolve_snapshot("latest").repairs[-1]["lost_messages"]
    }


def test_a_missing_dictionary_is_damage_not_a_crash() -> None:
    """Blocks compressed with a dictionary that is gone are unreadable: reported, never raised."""
    import zstandard

    from mailvault.errors import ObjectNotFound
    from mailvault.vault.crypto import PlainSealer
    from mailvault.vault.damage import scan_pack
    from mailvault.vault.format import sha256
    from mailvault.vault.packs import PackBuilder

    samples = [make_message(i, size=2000) for i in range(200)]
    zdict = zstandard.train_dictionary(8192, samples)
    dict_id = sha256(zdict.as_bytes())
    builder = PackBuilder(PlainSealer(), level=3, block_size=8192, zdict=zdict, dict_id=dict_id)
    for raw in samples[:20]:
        builder.add(sha256(raw), 0, raw)
    pack_id, data, _header = builder.finish()

    def gone(_: bytes) -> zstandard.ZstdCompressionDict:
        raise ObjectNotFound("no object dicts/...")

    scan = scan_pack(PlainSealer(), pack_id, bytes(data), None, gone)
    assert not scan.intact and "dictionary" in scan.problem and scan.readable == []
    ok = scan_pack(PlainSealer(), pack_id, bytes(data), None, lambda _: zdict)
    assert ok.intact and len(ok.readable) == 20
