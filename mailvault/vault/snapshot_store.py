"""The snapshots of an open vault: listing (with the local cache's verified copies), lookup,
saving and deleting. ``Repository``'s methods of the same names call these."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from mailvault.errors import IntegrityError, MailvaultError, ObjectNotFound, SnapshotNotFound
from mailvault.vault.format import id_from_name, sha256, snapshot_name
from mailvault.vault.snapshots import Snapshot

if TYPE_CHECKING:
    from mailvault.vault.repository import Repository

#: A backup's previous snapshot is looked up in a listing of ``snapshots/`` that this process
#: (any sibling handle) made at most this many seconds ago, plus the snapshots it wrote and
#: minus those it deleted since: a runner over thousands of accounts lists ``snapshots/`` every
#: few seconds, not once per account (which made a run quadratic in the number of accounts).
SNAPSHOT_LISTING_TTL = 10.0


def snapshot_ids(repo: Repository) -> list[bytes]:
    return [id_from_name(n) for n, _ in repo.backend.list("snapshots/")]


def load_snapshot(repo: Repository, snapshot_id: bytes) -> Snapshot:
    sealed = repo.backend.get(snapshot_name(snapshot_id))
    if sha256(sealed) != snapshot_id:
        raise IntegrityError(f"snapshot {snapshot_id.hex()[:12]} does not match its id")
    return Snapshot.unseal(repo.sealer, sealed, snapshot_id.hex())


def present_snapshots(repo: Repository, max_age: float) -> set[bytes]:
    """The ids in ``snapshots/``: listed now, or (``max_age`` > 0) from a listing this process
    made at most ``max_age`` seconds ago, with its own writes and deletions since applied."""
    shared = repo._shared
    with shared["lock"]:
        listing = shared["snapshot_listing"]
    if max_age <= 0 or listing is None or time.monotonic() - listing[0] > max_age:
        started = time.monotonic()
        ids = frozenset(snapshot_ids(repo))
        with shared["lock"]:
            shared["snapshot_listing"] = (started, ids)
        if max_age <= 0:
            return set(ids)
        listing = (started, ids)
    with shared["lock"]:
        added: set[bytes] = shared["snapshots_added"]
        removed: set[bytes] = shared["snapshots_removed"]
        return (set(listing[1]) | added) - removed


def snapshots(repo: Repository, account: str | None = None, *, max_age: float = 0.0) -> list[Snapshot]:
    """Snapshots (of one account or all), oldest first; ``max_age``: see
    :func:`present_snapshots` (0, the default: ``snapshots/`` is listed now).

    Snapshot files never change, so verified copies are kept in the local cache: a vault
    of thousands of accounts costs one listing, not a download per snapshot, per run.
    """
    present = present_snapshots(repo, max_age)
    with repo._read_lock:
        cached = repo.cache.snapshot_ids()
        if cached - present:
            repo.cache.drop_snapshots(cached - present)
        rows = []
        for snap_id in sorted(present - cached):
            try:
                sealed = repo.backend.get(snapshot_name(snap_id))
            except ObjectNotFound:
                continue  # forgotten meanwhile
            if sha256(sealed) != snap_id:
                raise IntegrityError(f"snapshot {snap_id.hex()[:12]} does not match its id")
            snap = Snapshot.unseal(repo.sealer, sealed, snap_id.hex())
            rows.append((snap_id, snap.account, snap.time, sealed))
        if rows:
            repo.cache.put_snapshots(rows)
        sealed_rows = repo.cache.sealed_snapshots(account)
    snaps = [Snapshot.unseal(repo.sealer, b, i.hex()) for i, b in sealed_rows if i in present]
    snaps.sort(key=lambda s: (s.datetime, s.id))
    return snaps


def resolve_snapshot(repo: Repository, spec: str, account: str | None = None) -> Snapshot:
    """An id, a unique id prefix, or ``latest`` (per ``account`` when given)."""
    if spec == "latest":
        snaps = snapshots(repo, account)
        if not snaps:
            who = f" for account {account}" if account else ""
            raise SnapshotNotFound(f"no snapshots{who} in {repo.location}")
        if account is None and len({s.account for s in snaps}) > 1:
            raise SnapshotNotFound("several accounts in this vault: give --account with 'latest'")
        return snaps[-1]
    spec_l = spec.lower()
    matches = [i for i in snapshot_ids(repo) if i.hex().startswith(spec_l)]
    if not matches:
        raise SnapshotNotFound(f"no snapshot {spec!r} in {repo.location}")
    if len(matches) > 1:
        raise SnapshotNotFound(f"snapshot prefix {spec!r} is ambiguous ({len(matches)} match)")
    snap = load_snapshot(repo, matches[0])
    if account is not None and snap.account != account:
        raise SnapshotNotFound(f"snapshot {spec!r} belongs to account {snap.account!r}, not {account!r}")
    return snap


def latest_snapshot(repo: Repository, account: str) -> Snapshot | None:
    """The newest snapshot of ``account`` (a backup's previous one), from a listing of
    ``snapshots/`` at most :data:`SNAPSHOT_LISTING_TTL` seconds old (see there)."""
    snaps = snapshots(repo, account, max_age=SNAPSHOT_LISTING_TTL)
    return snaps[-1] if snaps else None


def save_snapshot(repo: Repository, snapshot: Snapshot) -> str:
    snap_id, sealed = snapshot.seal(repo.sealer)
    repo.backend.put(snapshot_name(snap_id), sealed)
    snapshot.id = snap_id.hex()
    with repo._shared["lock"]:
        repo._shared["snapshots_added"].add(snap_id)
        repo._shared["snapshots_removed"].discard(snap_id)
    # The local cache gets its copy now, not by a download at the next listing.
    with contextlib.suppress(MailvaultError), repo._read_lock:
        repo.cache.put_snapshots([(snap_id, snapshot.account, snapshot.time, sealed)])
    return snapshot.id


def delete_snapshot(repo: Repository, snapshot_id: bytes) -> None:
    """Delete a snapshot file (forget, repair); its data stays until prune."""
    repo.backend.delete(snapshot_name(snapshot_id))
    with repo._shared["lock"]:
        repo._shared["snapshots_removed"].add(snapshot_id)
        repo._shared["snapshots_added"].discard(snapshot_id)
