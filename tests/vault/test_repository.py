"""The Repository façade on both backends: init/open, writing, snapshots, dedup, recovery, check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailvault.errors import (
    ConfigError,
    FormatError,
    IntegrityError,
    MailvaultError,
    PasswordError,
    SnapshotNotFound,
    VaultExists,
    VaultNotFound,
)
from mailvault.storage.base import open_backend
from mailvault.vault import repository as repository_module
from mailvault.vault.check import check
from mailvault.vault.crypto import AeadSealer, PlainSealer
from mailvault.vault.format import BLOB_MANIFEST, BLOB_MESSAGE, sha256
from mailvault.vault.repository import INDEX_EVERY_PACKS, Repository, VaultParams, VaultWriter
from mailvault.vault.stats import vault_stats
from tests.common import FAST_SCRYPT, sha
from tests.vault.helpers import (
    PASSWORD,
    flip_byte,
    make_message,
    pack_names,
    pack_of,
    stored_bytes,
    write_snapshot,
)

MakeRepo = Callable[..., Repository]


def corpus(n: int = 40, seed: int = 0, size: int = 2500) -> list[bytes]:
    return [make_message(i, size=size, seed=seed) for i in range(n)]


def read_all(repo: Repository, snap_id: str) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for folder, _entry, raw in repo.iter_messages(repo.resolve_snapshot(snap_id)):
        out.setdefault(folder.name, []).append(raw)
    return out


# -- init and open ----------------------------------------------------------------------


def test_init_then_open(make_repo: MakeRepo, reopen: Callable[..., Repository], vault_location: str) -> None:
    repo = make_repo()
    assert repo.encrypted
    assert isinstance(repo.sealer, AeadSealer)
    assert repo.config["encryption"] == "aes-256-gcm"
    assert repo.params == VaultParams()
    assert repo.location == vault_location
    assert repo.snapshots() == []
    again = reopen()
    assert again.id == repo.id
    assert again.encrypted
    backend = open_backend(vault_location)
    names = {n for n, _ in backend.list("")}
    assert "config" in names
    assert sum(n.startswith("keys/") for n in names) == 1


def test_init_twice_is_vault_exists(make_repo: MakeRepo, vault_location: str) -> None:
    make_repo()
    with pytest.raises(VaultExists, match="already exists"):
        Repository.init(vault_location, PASSWORD, scrypt=FAST_SCRYPT)
    with pytest.raises(VaultExists):
        Repository.init(vault_location, None)


def test_init_in_non_empty_location_is_vault_exists(vault_location: str) -> None:
    backend = open_backend(vault_location)
    backend.put("notes/readme.txt", b"someone else's data")
    with pytest.raises(VaultExists, match="not empty"):
        Repository.init(vault_location, PASSWORD, scrypt=FAST_SCRYPT)
    assert {n for n, _ in backend.list("")} == {"notes/readme.txt"}


def test_init_with_empty_password_is_refused(vault_location: str) -> None:
    with pytest.raises(PasswordError):
        Repository.init(vault_location, b"", scrypt=FAST_SCRYPT)
    assert not open_backend(vault_location).exists("config")


@pytest.mark.parametrize(
    "params",
    [
        VaultParams(pack_size=1024),
        VaultParams(pack_size=2 << 30),
        VaultParams(block_size=1024),
        VaultParams(pack_size=1 << 20, block_size=2 << 20),
        VaultParams(zstd_level=0),
        VaultParams(zstd_level=23),
        VaultParams(dictionary="always"),
    ],
)
def test_bad_params_are_config_errors(tmp_path: Path, params: VaultParams) -> None:
    with pytest.raises(ConfigError):
        Repository.init(str(tmp_path / "v"), None, params)
    assert not (tmp_path / "v" / "config").exists()


def test_open_wrong_or_missing_password(make_repo: MakeRepo, vault_location: str) -> None:
    make_repo()
    with pytest.raises(PasswordError, match="wrong password"):
        Repository.open(vault_location, lambda: b"not the password")
    with pytest.raises(PasswordError, match="no password"):
        Repository.open(vault_location, None)


def test_open_non_vault_is_vault_not_found(vault_location: str, tmp_path: Path) -> None:
    with pytest.raises(VaultNotFound, match="no vault here"):
        Repository.open(vault_location, lambda: PASSWORD)
    (tmp_path / "somedir").mkdir()
    (tmp_path / "somedir" / "file").write_text("x")
    with pytest.raises(VaultNotFound):
        Repository.open(str(tmp_path / "somedir"), lambda: PASSWORD)


def _edit_config(vault_location: str, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    backend = open_backend(vault_location)
    config = json.loads(backend.get("config"))
    edit(config)
    backend.put("config", json.dumps(config).encode())


def test_config_tamper_encryption_none_with_keys_is_refused(make_repo: MakeRepo, vault_location: str) -> None:
    make_repo()
    _edit_config(vault_location, lambda c: c.update(encryption="none"))
    with pytest.raises(FormatError, match="key files exist"):
        Repository.open(vault_location, lambda: PASSWORD)
    with pytest.raises(FormatError):
        Repository.open(vault_location, None)


def test_config_tamper_chunking_is_integrity_error(make_repo: MakeRepo, vault_location: str) -> None:
    make_repo()
    _edit_config(vault_location, lambda c: c["chunking"].update(zstd_level=1))
    with pytest.raises(IntegrityError, match="altered"):
        Repository.open(vault_location, lambda: PASSWORD)


def test_config_without_check_is_integrity_error(make_repo: MakeRepo, vault_location: str) -> None:
    make_repo()
    _edit_config(vault_location, lambda c: c.pop("check"))
    with pytest.raises(IntegrityError):
        Repository.open(vault_location, lambda: PASSWORD)


def test_downgrade_to_unencrypted_is_refused(make_repo: MakeRepo, vault_location: str) -> None:
    repo = make_repo()
    write_snapshot(repo, {"INBOX": corpus(3)})  # also fills this machine's index cache
    repo.close()
    backend = open_backend(vault_location)
    for name, _ in list(backend.list("keys/")):
        backend.delete(name)
    _edit_config(vault_location, lambda c: (c.update(encryption="none"), c.pop("check")))
    # This machine remembers that the vault was encrypted: no plaintext is ever written.
    secret = b"Subject: DowngradeVictimMarker\r\n\r\nwritten after the storage was tampered with\r\n"
    with pytest.raises(MailvaultError):
        again = Repository.open(vault_location, lambda: PASSWORD)
        try:
            write_snapshot(again, {"INBOX": [secret]})
        finally:
            again.close()
    leaked = [n for n, _ in backend.list("") if b"DowngradeVictimMarker" in backend.get(n)]
    assert leaked == []


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.update(version=3),
        lambda c: c.update(encryption="rot13"),
        lambda c: c.pop("chunking"),
    ],
    ids=["version", "cipher", "no-chunking"],
)
def test_config_unsupported_is_format_error(make_repo: MakeRepo, vault_location: str, edit) -> None:  # type: ignore[no-untyped-def]
    make_repo()
    _edit_config(vault_location, edit)
    with pytest.raises(FormatError):
        Repository.open(vault_location, lambda: PASSWORD)


def test_damaged_config_json_is_format_error(make_repo: MakeRepo, vault_location: str) -> None:
    make_repo()
    open_backend(vault_location).put("config", b"{ not json")
    with pytest.raises(FormatError, match="damaged"):
        Repository.open(vault_location, lambda: PASSWORD)


def test_encrypted_vault_without_key_files(make_repo: MakeRepo, vault_location: str) -> None:
    make_repo()
    backend = open_backend(vault_location)
    for name, _ in list(backend.list("keys/")):
        backend.delete(name)
    with pytest.raises(FormatError, match="without key files"):
        Repository.open(vault_location, lambda: PASSWORD)


# -- writing and reading ----------------------------------------------------------------


def test_write_commit_reopen_read_back(make_repo: MakeRepo, reopen: Callable[..., Repository]) -> None:
    repo = make_repo()
    folders = {"INBOX": corpus(30), "Entwürfe": corpus(5, seed=1), "Projects/2002/Q1 & Q2": corpus(3, seed=2)}
    folders["INBOX"].append(b"")  # an empty message is still a message
    folders["INBOX"].append(b"\x00\xff\r\n\r\nbinary\x00")
    snap_id = write_snapshot(repo, folders)
    repo.close()

    repo = reopen()
    (snap,) = repo.snapshots()
    assert snap.id == snap_id
    assert snap.account == "alice@example.org"
    assert [f.name for f in snap.folders] == list(folders)
    assert snap.messages == sum(len(v) for v in folders.values())
    assert snap.size == sum(len(m) for v in folders.values() for m in v)
    assert snap.summary["new_messages"] == snap.messages
    assert read_all(repo, snap_id) == folders
    entries = repo.read_manifest(snap.folders[0])
    assert [e.blob for e in entries] == [sha(m) for m in folders["INBOX"]]
    assert entries[0].flags == ["\\Seen"] and entries[1].flags == []
    assert entries[0].internaldate == "2002-03-04T10:01:00+00:00"
    # A blob read is verified and exact.
    for m in folders["Entwürfe"]:
        assert repo.read_blob(sha256(m)) == m


def test_read_unknown_blob_is_integrity_error(make_repo: MakeRepo) -> None:
    repo = make_repo()
    write_snapshot(repo, {"INBOX": corpus(2)})
    with pytest.raises(IntegrityError, match="not in any index"):
        repo.read_blob(sha256(b"never stored"))


def test_cache_lost_is_rebuilt_from_index_files(
    make_repo: MakeRepo, reopen: Callable[..., Repository], _private_cache: Path
) -> None:
    repo = make_repo()
    msgs = corpus(20)
    snap_id = write_snapshot(repo, {"INBOX": msgs})
    repo.close()
    shutil.rmtree(_private_cache)
    repo = reopen()
    assert read_all(repo, snap_id) == {"INBOX": msgs}
    assert repo.writer().add(msgs[3]) == (sha(msgs[3]), False)


def test_small_packs_roll_over_and_get_indexed(
    make_repo: MakeRepo, reopen: Callable[..., Repository]
) -> None:
    repo = make_repo(params=VaultParams(pack_size=64 << 10, block_size=16 << 10, zstd_level=3))
    msgs = [make_message(i, size=6000, seed=3) for i in range(300)]
    snap_id = write_snapshot(repo, {"INBOX": msgs})
    backend = repo.backend
    assert len(pack_names(backend)) >= 5
    assert len(list(backend.list("index/"))) >= 2
    for name, size in backend.list("data/"):
        assert size < 2 * (64 << 10), name
    repo.close()
    repo = reopen()
    assert read_all(repo, snap_id) == {"INBOX": msgs}
    assert check(repo, read_data=True).ok


def test_unencrypted_vault(vault_location: str, reopen: Callable[..., Repository]) -> None:
    repo = Repository.init(vault_location, None)
    try:
        assert not repo.encrypted
        assert repo.config["encryption"] == "none"
        assert "check" not in repo.config
        assert not list(repo.backend.list("keys/"))
        msgs = corpus(10)
        snap_id = write_snapshot(repo, {"INBOX": msgs})
    finally:
        repo.close()
    again = Repository.open(vault_location)  # no password needed
    try:
        assert isinstance(again.sealer, PlainSealer)
        assert read_all(again, snap_id) == {"INBOX": msgs}
        assert check(again, read_data=True).ok
    finally:
        again.close()
    assert reopen(b"whatever").id == again.id  # a password is simply not used


def test_encrypted_vault_stores_no_plaintext(make_repo: MakeRepo, vault_location: str) -> None:
    repo = make_repo()
    marker = "ZanzibarQuokkaMarker"
    write_snapshot(repo, {f"Folder {marker}": [make_message(i, subject=f"{marker} {i}") for i in range(5)]})
    backend = open_backend(vault_location)
    for name, _ in backend.list(""):
        data = backend.get(name)
        assert marker.encode() not in data, name
        assert b"alice@example.org" not in data, name


# -- snapshots --------------------------------------------------------------------------


def test_resolve_snapshot(make_repo: MakeRepo) -> None:
    repo = make_repo()
    with pytest.raises(SnapshotNotFound, match="no snapshots"):
        repo.resolve_snapshot("latest")
    ids = [write_snapshot(repo, {"INBOX": corpus(3, seed=s)}) for s in range(3)]
    bob = write_snapshot(repo, {"INBOX": corpus(2)}, account="bob@example.org")
    assert repo.resolve_snapshot(ids[1]).id == ids[1]
    assert repo.resolve_snapshot(ids[1].upper()).id == ids[1]
    prefix = ids[2][:8]
    assert repo.resolve_snapshot(prefix).id == ids[2]
    assert repo.resolve_snapshot("latest", "alice@example.org").id == ids[2]
    assert repo.resolve_snapshot("latest", "bob@example.org").id == bob
    assert repo.latest_snapshot("alice@example.org").id == ids[2]  # type: ignore[union-attr]
    assert repo.latest_snapshot("carol") is None
    assert [s.id for s in repo.snapshots("alice@example.org")] == ids
    with pytest.raises(SnapshotNotFound, match="several accounts"):
        repo.resolve_snapshot("latest")
    with pytest.raises(SnapshotNotFound, match="for account carol"):
        repo.resolve_snapshot("latest", "carol")
    with pytest.raises(SnapshotNotFound, match="no snapshot"):
        repo.resolve_snapshot("f" * 64 if not any(i.startswith("ff") for i in ids) else "0" * 64)
    with pytest.raises(SnapshotNotFound, match="no snapshot"):
        repo.resolve_snapshot("not-hex")
    with pytest.raises(SnapshotNotFound, match="belongs to account"):
        repo.resolve_snapshot(bob, "alice@example.org")


def test_resolve_ambiguous_prefix(make_repo: MakeRepo) -> None:
    repo = make_repo()
    ids: list[str] = []
    while len({i[0] for i in ids}) == len(ids):  # 17 snapshots at most (pigeonhole on one hex digit)
        ids.append(write_snapshot(repo, {"INBOX": [b"x"]}))
    dup = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    with pytest.raises(SnapshotNotFound, match="ambiguous"):
        repo.resolve_snapshot(dup)
    with pytest.raises(SnapshotNotFound, match="ambiguous"):
        repo.resolve_snapshot("")
    assert repo.resolve_snapshot(ids[-1]).id == ids[-1]


def test_damaged_snapshot_is_detected(make_repo: MakeRepo) -> None:
    repo = make_repo()
    snap_id = write_snapshot(repo, {"INBOX": corpus(2)})
    flip_byte(repo.backend, f"snapshots/{snap_id}", 20)
    with pytest.raises(IntegrityError):
        repo.load_snapshot(bytes.fromhex(snap_id))


# -- dedup ------------------------------------------------------------------------------


def test_same_blob_twice_is_stored_once(make_repo: MakeRepo) -> None:
    repo = make_repo()
    raw = make_message(1)
    with repo.lock():
        writer = repo.writer()
        assert writer.add(raw) == (sha(raw), True)
        assert writer.add(raw) == (sha(raw), False)
        assert writer.has(sha256(raw))
        writer.flush()
        assert writer.new_messages == 1
        assert writer.new_message_bytes == len(raw)
    assert repo.cache.blob_stats(BLOB_MESSAGE) == (1, len(raw))
    # A later writer knows it too.
    assert repo.writer().add(raw) == (sha(raw), False)


def test_duplicates_across_folders_and_snapshots(make_repo: MakeRepo) -> None:
    repo = make_repo()
    msgs = corpus(200)
    write_snapshot(repo, {"INBOX": msgs, "Copy": msgs[:50]})
    assert repo.cache.blob_stats(BLOB_MESSAGE) == (200, sum(map(len, msgs)))
    before = stored_bytes(repo.backend)
    before_packs = pack_names(repo.backend)
    snap2 = write_snapshot(repo, {"INBOX": msgs, "Copy": msgs[:50]})
    grown = stored_bytes(repo.backend) - before
    assert grown < 0.01 * before, (grown, before)
    assert pack_names(repo.backend) == before_packs  # even the manifests were deduplicated
    assert repo.resolve_snapshot(snap2).summary["new_messages"] == 0
    # A third snapshot with 10 new messages stores about those 10 only.
    extra = corpus(10, seed=9)
    write_snapshot(repo, {"INBOX": msgs + extra})
    assert repo.cache.blob_stats(BLOB_MESSAGE)[0] == 210


# -- crash recovery ---------------------------------------------------------------------


def test_orphan_pack_is_reindexed_and_reused(make_repo: MakeRepo, reopen: Callable[..., Repository]) -> None:
    repo = make_repo()
    msgs = corpus(50)
    writer = repo.writer()
    for m in msgs:
        writer.add(m)
    writer._drain_window()  # the messages held for Date order go into the pack, and
    writer._finish(BLOB_MESSAGE)  # the pack reaches storage ...
    assert len(pack_names(repo.backend)) == 1
    assert not list(repo.backend.list("index/"))  # ... but the process dies before the index
    orphan = pack_names(repo.backend)[0]
    repo.close()

    repo = reopen()
    report = check(repo, read_data=True)
    assert report.ok
    assert any("not in any index" in w for w in report.warnings)
    with repo.lock():
        w2 = repo.writer()
        assert w2.recovered_packs == 1
        assert len(list(repo.backend.list("index/"))) == 1
        for m in msgs:
            assert w2.add(m) == (sha(m), False)
        manifest = w2.add_manifest([])
        w2.flush()
        assert w2.new_messages == 0
    assert set(pack_names(repo.backend)) == {orphan, pack_of(repo, manifest)}
    assert repo.read_blob(sha256(msgs[7])) == msgs[7]
    # A third writer finds nothing left to recover.
    assert repo.writer().recovered_packs == 0
    report = check(repo, read_data=True)
    assert report.ok and not report.warnings


def test_crash_before_index_then_reimport_stores_nothing_new(
    make_repo: MakeRepo, reopen: Callable[..., Repository], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo()
    msgs = corpus(80, size=4000)

    def crash(self: VaultWriter) -> None:
        raise RuntimeError("killed before the index was written")

    monkeypatch.setattr(VaultWriter, "write_pending_index", crash)
    with pytest.raises(RuntimeError, match="killed"):
        write_snapshot(repo, {"INBOX": msgs})
    monkeypatch.undo()
    assert repo.snapshot_ids() == []
    assert not list(repo.backend.list("index/"))
    packs_after_crash = pack_names(repo.backend)
    assert len(packs_after_crash) == 2  # one message pack, one manifest pack
    assert not list(repo.backend.list("locks/"))
    repo.close()

    repo = reopen()
    snap_id = write_snapshot(repo, {"INBOX": msgs})
    snap = repo.resolve_snapshot(snap_id)
    assert snap.summary["new_messages"] == 0
    assert pack_names(repo.backend) == packs_after_crash  # nothing stored again
    assert read_all(repo, snap_id) == {"INBOX": msgs}
    assert check(repo, read_data=True).ok


def test_damaged_orphan_is_not_reused(make_repo: MakeRepo, reopen: Callable[..., Repository]) -> None:
    repo = make_repo()
    msgs = corpus(10)
    writer = repo.writer()
    for m in msgs:
        writer.add(m)
    writer._drain_window()
    writer._finish(BLOB_MESSAGE)
    (orphan,) = pack_names(repo.backend)
    flip_byte(repo.backend, orphan, 10)
    repo.close()
    repo = reopen()
    snap_id = write_snapshot(repo, {"INBOX": msgs})
    assert repo.resolve_snapshot(snap_id).summary["new_messages"] == 10
    assert read_all(repo, snap_id) == {"INBOX": msgs}
    report = check(repo, read_data=True)
    assert not report.ok  # the damaged orphan is still reported
    assert all(orphan.rsplit("/", 1)[1][:12] in e for e in report.errors)


def test_index_every_few_packs(make_repo: MakeRepo) -> None:
    repo = make_repo(params=VaultParams(pack_size=64 << 10, block_size=16 << 10, zstd_level=1))
    writer = repo.writer()
    writer._window_limit = 0  # no Date-order window: each message goes to its pack as it comes
    i = 0
    while writer.packs_written < INDEX_EVERY_PACKS:
        writer.add(make_message(i, size=20000, seed=4))
        i += 1
    # An index file was written without any flush: a killed run loses little.
    assert len(list(repo.backend.list("index/"))) == 1


# -- check ------------------------------------------------------------------------------


def test_check_good_vault(make_repo: MakeRepo, reopen: Callable[..., Repository]) -> None:
    repo = make_repo()
    msgs = corpus(60)
    write_snapshot(repo, {"INBOX": msgs, "Sent": corpus(5, seed=5)})
    write_snapshot(repo, {"INBOX": msgs})
    repo.close()
    repo = reopen()
    report = check(repo, read_data=True)
    assert report.ok, report.errors
    assert report.errors == [] and report.warnings == []
    assert report.snapshots == 2
    assert report.packs == len(pack_names(repo.backend))
    assert report.index_files == len(list(repo.backend.list("index/")))
    assert report.blobs_checked == 65 + 2  # every message and (deduplicated) manifest blob
    assert report.bytes_read == stored_bytes(repo.backend, "data/")
    quick = check(repo)
    assert quick.ok and quick.blobs_checked == 0 and quick.bytes_read == 0


def test_check_flipped_byte_in_pack(make_repo: MakeRepo, reopen: Callable[..., Repository]) -> None:
    repo = make_repo()
    msgs = corpus(40)
    write_snapshot(repo, {"INBOX": msgs})
    victim = pack_of(repo, sha(msgs[0]))
    loc = repo.locate(sha256(msgs[0]))
    flip_byte(repo.backend, victim, loc.block.offset + loc.block.sealed_len // 2)
    repo.close()
    repo = reopen()
    assert check(repo).ok  # structure only: the damage is not seen
    report = check(repo, read_data=True)
    assert not report.ok
    short = victim.rsplit("/", 1)[1][:12]
    assert any(short in e and "block" in e for e in report.errors), report.errors
    # Besides the pack, check names the messages the damage costs.
    assert all(short in e or "cannot be read back" in e for e in report.errors), report.errors
    assert sha(msgs[0]) in {m.blob for m in report.lost_messages}
    with pytest.raises(IntegrityError):
        repo.read_blob(sha256(msgs[0]))


def test_check_deleted_pack(make_repo: MakeRepo, reopen: Callable[..., Repository]) -> None:
    repo = make_repo()
    msgs = corpus(20)
    write_snapshot(repo, {"INBOX": msgs})
    victim = pack_of(repo, sha(msgs[0]))
    repo.backend.delete(victim)
    repo.close()
    repo = reopen()
    short = victim.rsplit("/", 1)[1][:12]
    for read_data in (False, True):
        report = check(repo, read_data=read_data)
        assert not report.ok
        assert any(short in e and "missing" in e for e in report.errors), report.errors


def test_check_damaged_index_and_snapshot(make_repo: MakeRepo, vault_location: str) -> None:
    repo = make_repo()
    snap_id = write_snapshot(repo, {"INBOX": corpus(5)})
    (index,) = [n for n, _ in repo.backend.list("index/")]
    repo.close()
    backend = open_backend(vault_location)
    flip_byte(backend, f"snapshots/{snap_id}", 30)
    repo = Repository.open(vault_location, lambda: PASSWORD, cache_root=None)
    try:
        report = check(repo, read_data=True)
        assert not report.ok
        assert any(snap_id[:12] in e for e in report.errors)
        flip_byte(backend, index, 40)
        report = check(repo, read_data=True)
        assert not report.ok
        assert any(e.startswith(f"index {index.rsplit('/', 1)[1][:12]}:") for e in report.errors), (
            report.errors
        )
    finally:
        repo.close()


# -- stats and dictionaries -------------------------------------------------------------


def test_stats(make_repo: MakeRepo) -> None:
    repo = make_repo()
    msgs = corpus(30)
    write_snapshot(repo, {"INBOX": msgs, "Dup": msgs[:10]})
    write_snapshot(repo, {"INBOX": msgs})
    write_snapshot(repo, {"INBOX": [b"bob's"]}, account="bob")
    st = vault_stats(repo)
    assert st.snapshots == 3
    assert st.accounts == 2
    assert st.messages == 30 + 1  # the latest of each account
    assert st.message_refs == 40 + 30 + 1
    assert st.unique_blobs == 31
    assert st.raw_bytes == sum(map(len, msgs)) + len(b"bob's")
    assert st.stored_bytes == stored_bytes(repo.backend)
    assert st.pack_files == len(pack_names(repo.backend))
    assert st.ratio == round(st.stored_bytes / st.raw_bytes, 4)
    assert repo.cache.blob_stats(BLOB_MANIFEST)[0] >= 3


def test_dictionary_is_trained_and_used(tmp_path: Path) -> None:
    location = str(tmp_path / "dictvault")
    params = VaultParams(pack_size=1 << 20, block_size=64 << 10, zstd_level=3)
    repo = Repository.init(location, PASSWORD, params, scrypt=FAST_SCRYPT)
    msgs = [make_message(i, size=3000, seed=11) for i in range(1600)]  # ~4.8 MB, > the sample size
    try:
        snap_id = write_snapshot(repo, {"INBOX": msgs})
        dicts = repo.dict_ids()
    finally:
        repo.close()
    repo = Repository.open(location, lambda: PASSWORD)
    try:
        assert read_all(repo, snap_id) == {"INBOX": msgs}
        assert check(repo, read_data=True).ok
        assert dicts, "a dictionary pays off on such similar messages"
        assert len(dicts) == 1
        # Blocks written after training name the dictionary (messages are packed in Date order,
        # so not necessarily the last one added); a later writer reuses it.
        named = {repo.locate(sha256(m)).block.dict_id for m in msgs}
        assert named == {b"\x00" * 32, dicts[0]}
        assert repo.writer()._dict_id == dicts[0]
    finally:
        repo.close()


def test_block_cache_is_sized_per_reader(make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers cycling over more blocks than one reader's cache (8) decode every block at every
    access; ``set_readers(2)`` holds 16 blocks, so each is decoded once."""
    repo = make_repo(params=VaultParams(pack_size=1 << 20, block_size=16 << 10, zstd_level=1))
    msgs = [make_message(i, size=6000, seed=5) for i in range(120)]
    write_snapshot(repo, {"INBOX": msgs})
    one_per_block: dict[tuple[bytes, int], bytes] = {}
    for m in msgs:
        loc = repo.locate(bytes.fromhex(sha(m)))
        one_per_block.setdefault((loc.pack_id, loc.block_no), bytes.fromhex(sha(m)))
    assert len(one_per_block) >= 16
    ids = list(one_per_block.values())[:16]
    decodes: list[int] = []
    real_open = repository_module.open_block

    def counting(*args: Any, **kwargs: Any) -> bytes:
        decodes.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(repository_module, "open_block", counting)
    for readers, expected in ((1, 32), (2, 16)):
        repo.set_readers(readers)
        repo._blocks.clear()
        decodes.clear()
        for _ in range(2):
            for blob_id in ids:
                assert sha256(repo.read_blob(blob_id)) == blob_id
        assert len(decodes) == expected, readers


def test_prefetched_locations_are_used_once_and_read_the_same_bytes(make_repo: MakeRepo) -> None:
    """``prefetch`` looks up many blobs in one go; ``read_blob`` then takes each location once
    (a second read, or a blob not prefetched, asks the index as before)."""
    repo = make_repo()
    msgs = [make_message(i, size=3000, seed=9) for i in range(40)]
    write_snapshot(repo, {"INBOX": msgs})
    ids = [bytes.fromhex(sha(m)) for m in msgs]
    queries: list[bytes] = []
    real_lookup = repo.cache.lookup

    def counting(blob_id: bytes) -> Any:
        queries.append(blob_id)
        return real_lookup(blob_id)

    repo.cache.lookup = counting  # type: ignore[method-assign]
    repo.prefetch(ids[:30])
    assert [repo.read_blob(i) for i in ids] == msgs
    assert queries == ids[30:]  # the prefetched 30 needed no query of their own
    assert repo.read_blob(ids[0]) == msgs[0] and queries[-1] == ids[0]  # used once
