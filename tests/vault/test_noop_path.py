"""What a runner's no-op task no longer does per account: list ``snapshots/`` (a listing shared by
the process's handles, at most ``SNAPSHOT_LISTING_TTL`` old, its own writes and deletions applied),
sync the index cache (once per ``INDEX_SYNC_TTL``; a blob not found re-syncs), fsync locks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from mailvault.storage.base import Backend, open_backend
from mailvault.storage.local import LocalBackend
from mailvault.vault.format import sha256
from mailvault.vault.repository import Repository, VaultParams
from tests.vault.helpers import PASSWORD, write_snapshot

MakeRepo = Callable[..., Repository]


def counting(location: str) -> tuple[Backend, list[str]]:
    """The vault's backend, with the prefixes of its LIST calls recorded."""
    backend = open_backend(location)
    lists: list[str] = []
    original = backend.list

    def listing(prefix: str = "") -> Iterator[tuple[str, int]]:
        lists.append(prefix)
        return original(prefix)

    backend.list = listing  # type: ignore[method-assign]
    return backend, lists


def test_latest_snapshot_shares_one_listing_and_sees_its_own_writes(
    make_repo: MakeRepo, vault_location: str
) -> None:
    make_repo().close()
    backend, lists = counting(vault_location)
    base = Repository.open(backend, lambda: PASSWORD)
    try:
        assert base.latest_snapshot("a") is None
        a, b = base.sibling(), base.sibling()
        first = write_snapshot(a, {"INBOX": [os.urandom(500)]}, account="a")
        lists.clear()
        assert b.latest_snapshot("a").id == first  # type: ignore[union-attr]
        second = write_snapshot(b, {"INBOX": [os.urandom(500)]}, account="a")
        assert a.latest_snapshot("a").id == second  # type: ignore[union-attr]
        assert "snapshots/" not in lists  # no listing per account within the TTL
        # A snapshot written by another process shows in a fresh listing (and after the TTL).
        other = Repository.open(vault_location, lambda: PASSWORD)
        third = write_snapshot(other, {"INBOX": [os.urandom(500)]}, account="a")
        other.close()
        assert a.latest_snapshot("a").id == second  # type: ignore[union-attr]
        assert [s.id for s in a.snapshots("a")] == [first, second, third]
        assert b.latest_snapshot("a").id == third  # type: ignore[union-attr]  # the fresh listing is shared
        # This process's deletions apply to the shared listing at once.
        b.delete_snapshot(bytes.fromhex(third))
        assert a.latest_snapshot("a").id == second  # type: ignore[union-attr]
        assert [s.id for s in a.snapshots("a")] == [first, second]
        a.close()
        b.close()
    finally:
        base.close()


def test_a_handle_skips_the_index_sync_but_finds_blobs_written_meanwhile(
    make_repo: MakeRepo, vault_location: str, tmp_path: Path
) -> None:
    make_repo(params=VaultParams(pack_size=64 << 10, block_size=16 << 10)).close()
    backend, lists = counting(vault_location)
    base = Repository.open(backend, lambda: PASSWORD)
    try:
        base.cache
        lists.clear()
        sib = base.sibling()
        sib.cache
        assert "index/" not in lists  # synced moments ago by the base handle
        # Another machine (its own index cache) stores a message; this handle has not synced,
        # yet reads it.
        raw = os.urandom(3000)
        other = Repository.open(vault_location, lambda: PASSWORD, cache_root=tmp_path / "elsewhere")
        write_snapshot(other, {"INBOX": [raw]}, account="other")
        other.close()
        assert not sib.cache.has(sha256(raw))
        assert sib.read_blob(sha256(raw)) == raw
        assert "index/" in lists
        sib.close()
    finally:
        base.close()


def test_a_put_that_need_not_be_durable_is_stored_the_same(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("locks/x", b"lock", exclusive=True, durable=False)
    backend.put("runs/a/b", b"record", durable=False)
    assert backend.get("locks/x") == b"lock" and backend.get("runs/a/b") == b"record"
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]  # no temp left
