"""``mailvault check``: verify the vault's structure and, with read_data, every byte.

Besides naming each damaged object (pack, index file, snapshot), check says what the damage
costs: the snapshots, folders and messages (folder, UIDVALIDITY, UID, date, size) that can no
longer be read back. ``mailvault repair`` fixes what check finds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mailvault.errors import FormatError, IntegrityError, MailvaultError, ObjectNotFound
from mailvault.progress import QUIET, Progress
from mailvault.vault.damage import LostFolder, LostMessage, assess_snapshot, scan_pack
from mailvault.vault.format import BLOB_SKELETON, PackHeader, id_from_name, pack_name
from mailvault.vault.index import iter_index_files
from mailvault.vault.repository import Repository
from mailvault.vault.skeletons import broken_skeletons


@dataclass
class CheckReport:
    snapshots: int = 0
    packs: int = 0
    index_files: int = 0
    blobs_checked: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Damaged objects: {"kind": "pack"|"index"|"snapshot", "id", "problem"}.
    damaged: list[dict[str, str]] = field(default_factory=list)
    #: Snapshots whose data is (partly) lost: {"id", "account", "time", "lost_messages", "lost_folders"}.
    affected_snapshots: list[dict[str, Any]] = field(default_factory=list)
    lost_messages: list[LostMessage] = field(default_factory=list)
    lost_folders: list[LostFolder] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def _damage(self, kind: str, object_id: bytes, problem: str) -> None:
        self.damaged.append({"kind": kind, "id": object_id.hex(), "problem": problem})
        self.errors.append(f"{kind} {object_id.hex()[:12]}: {problem}")


def check(repo: Repository, *, read_data: bool = False, progress: Progress = QUIET) -> CheckReport:
    report = CheckReport()
    backend = repo.backend
    # 1. Every index file decrypts, parses and matches its id; the cache is rebuilt from those that do.
    for index_id, problem in repo.load_index_tolerant():
        report._damage("index", index_id, f"{problem} (its packs are re-indexed by 'mailvault repair')")
    cache = repo.cache
    report.index_files = len(cache.index_ids())
    stored: dict[bytes, int] = {}
    for name, size in backend.list("data/"):
        try:
            stored[id_from_name(name)] = size
        except FormatError:
            report.warnings.append(f"unexpected object {name}")
    indexed = cache.pack_ids()
    report.packs = len(stored)
    lost: set[bytes] = set()  # blobs no readable copy of which exists
    for pack_id in sorted(indexed - stored.keys()):
        report._damage("pack", pack_id, "in the index but missing from storage")
        lost.update(b for b, _ in cache.pack_blobs(pack_id))
    for pack_id in sorted(indexed & stored.keys()):
        blocks = cache.pack_blocks(pack_id)
        extent = max((b.offset + b.sealed_len for b in blocks), default=0)
        if stored[pack_id] <= extent:
            report._damage(
                "pack", pack_id, f"truncated ({stored[pack_id]} bytes; its blocks end at {extent})"
            )
            cut = {i for i, b in enumerate(blocks) if b.offset + b.sealed_len > stored[pack_id]}
            lost.update(b for b, k in cache.pack_blobs(pack_id) if k in cut)
    unindexed = stored.keys() - indexed
    if unindexed:
        report.warnings.append(
            f"{len(unindexed)} pack(s) not in any index (left by an interrupted run or a lost index file; "
            "the next backup or 'mailvault repair' re-indexes them, prune removes unused ones)"
        )
    # 2. With read_data: every pack read whole; its id, header, blocks and every blob hash
    #    verified against the index files that list it.
    if read_data:
        # Each pack is checked against its first listing in a readable index file, read a pack
        # header at a time (the whole index is not held in memory); then those no index lists.
        skip = {bytes.fromhex(d["id"]) for d in report.damaged if d["kind"] == "index"}
        done: set[bytes] = set()
        with progress.bar("read data", total=sum(stored.values()), unit="B", unit_scale=True) as bar:
            for pack_id, header in _readable_index(repo, skip):
                if pack_id in stored and pack_id not in done:
                    done.add(pack_id)
                    _check_pack(repo, pack_id, header, report, lost)
                    report.bytes_read += stored[pack_id]
                    bar.update(stored[pack_id])
            for pack_id in sorted(stored.keys() - done):
                _check_pack(repo, pack_id, None, report, lost)
                report.bytes_read += stored[pack_id]
                bar.update(stored[pack_id])

    # 3. Every snapshot decrypts; every manifest and message it names is readable. (No memo per
    #    message: one SQLite probe each; a folder's manifest found whole is not read again.)
    def present(blob: bytes) -> bool:
        return blob not in lost and cache.has(blob)

    # A message stored as a skeleton is lost with any of its attachment parts.
    broken = broken_skeletons(repo, present) if (lost or report.damaged) else set()
    if read_data:
        broken |= _unbuildable(repo, present, broken, report)

    def readable(blob: bytes) -> bool:
        return present(blob) and blob not in broken

    def read_manifest(blob: bytes) -> bytes | None:
        return repo.read_blob(blob) if readable(blob) else None

    clean: set[bytes] = set()
    ids = repo.snapshot_ids()
    with progress.bar("check snapshots", total=len(ids), unit="snap") as bar:
        for snap_id in ids:
            bar.update()
            try:
                snap = repo.load_snapshot(snap_id)
            except MailvaultError as exc:
                report._damage("snapshot", snap_id, f"{exc} (the whole snapshot is lost)")
                continue
            report.snapshots += 1
            if snap.repairs:
                n = sum(len(r.get("lost_messages", [])) for r in snap.repairs)
                f = sum(len(r.get("lost_folders", [])) for r in snap.repairs)
                report.warnings.append(
                    f"snapshot {snap.id[:12]} ({snap.account}) was repaired: {n} message(s) and "
                    f"{f} folder(s) were lost (listed in its repair record, 'mailvault snapshots --json')"
                )
            dmg = assess_snapshot(snap, read_manifest, readable, keep=False, clean=clean)
            if not dmg.damaged:
                continue
            report.lost_messages.extend(dmg.lost_messages)
            report.lost_folders.extend(dmg.lost_folders)
            report.affected_snapshots.append(
                {
                    "id": snap.id,
                    "account": snap.account,
                    "time": snap.time,
                    "lost_messages": len(dmg.lost_messages),
                    "lost_folders": len(dmg.lost_folders),
                }
            )
            for lf in dmg.lost_folders:
                report.errors.append(lf.describe())
            by_folder: dict[str, list[LostMessage]] = {}
            for m in dmg.lost_messages:
                by_folder.setdefault(m.folder, []).append(m)
            for folder, msgs in by_folder.items():
                report.errors.append(
                    f"snapshot {snap.id[:12]} ({snap.account}) folder {folder!r}: {len(msgs)} message(s) "
                    "cannot be read back"
                )
    return report


def _readable_index(repo: Repository, skip: set[bytes]) -> Iterator[tuple[bytes, PackHeader]]:
    """The packs of every index file not in ``skip`` that still reads (damage is step 1's to report)."""
    for name, _ in repo.backend.list("index/"):
        try:
            index_id = id_from_name(name)
            if index_id in skip:
                continue
            yield from iter_index_files(repo.backend, repo.sealer, [index_id])
        except (FormatError, IntegrityError, ObjectNotFound, ValueError):
            continue


def _check_pack(
    repo: Repository, pack_id: bytes, expected: PackHeader | None, report: CheckReport, lost: set[bytes]
) -> None:
    """Verify one pack; ``expected`` is its header from an index file (None for an unindexed pack)."""
    try:
        data = repo.backend.get(pack_name(pack_id))
    except MailvaultError:
        report._damage("pack", pack_id, "vanished during the check")
        return
    scan = scan_pack(repo.sealer, pack_id, data, expected, repo.load_dict)
    report.blobs_checked += len(scan.readable)
    if scan.intact:
        return
    report.damaged = [d for d in report.damaged if not (d["kind"] == "pack" and d["id"] == pack_id.hex())]
    report.errors = [e for e in report.errors if not e.startswith(f"pack {pack_id.hex()[:12]}:")]
    what = f"; {len(scan.unreadable)} blob(s) unreadable" if scan.unreadable else ""
    report._damage("pack", pack_id, scan.problem + what)
    lost.update(scan.unreadable)


def _unbuildable(
    repo: Repository, present: Callable[[bytes], bool], broken: set[bytes], report: CheckReport
) -> set[bytes]:
    """With --read-data: every message stored as a skeleton is rebuilt and hashed."""
    bad: set[bytes] = set()
    for blob_id, _loc in repo.cache.iter_type(BLOB_SKELETON):
        if blob_id in broken or not present(blob_id):
            continue
        try:
            repo.read_blob(blob_id)
        except MailvaultError:
            bad.add(blob_id)
    if bad:  # an error only where a snapshot needs one (step 3 lists those as lost messages)
        report.warnings.append(
            f"{len(bad)} stored message(s) do not rebuild from their attachment parts "
            "(prune removes those no snapshot names)"
        )
    return bad
