"""``mailvault repair``: make a damaged vault consistent again, losing only what is already lost.

Under the exclusive lock (like prune):

1. read every index file that still reads (damaged ones are noted) and every pack, whole;
   a pack is *intact* when its content matches its id and every block opens;
2. copy the readable blobs of damaged packs (missing from every intact pack) into new
   packs, with an index file for them (salvage);
3. write a new index covering every intact pack (the index is rebuilt from the packs);
4. delete the old index files, then the damaged packs;
5. rewrite each snapshot that names lost data: the same snapshot without the lost
   messages (and without folders whose manifest is lost), with a ``repairs`` record listing
   exactly what was dropped (folder, UIDVALIDITY, UID, INTERNALDATE, size, blob); the
   original snapshot is deleted after its replacement is written; unreadable snapshot files
   are deleted (there is nothing left to keep).

Why deleting is acceptable here (docs/FORMAT.md, "Repair"): repair deletes only objects that
are already unreadable or fully replaced — a damaged pack after its readable blobs were copied,
an index file after a new one describing every intact pack was written, a snapshot after its
rewritten copy was written. Every step is idempotent and a crash at any point leaves a vault a
rerun of ``repair`` finishes; nothing readable is ever deleted before its new home is stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailvault.errors import FormatError, IntegrityError, ObjectNotFound
from mailvault.progress import QUIET, Progress
from mailvault.vault.damage import LostFolder, LostMessage, PackScan, assess_snapshot, scan_pack
from mailvault.vault.format import (
    BLOB_MANIFEST,
    BlockInfo,
    PackHeader,
    id_from_name,
    index_name,
    pack_name,
    sha256,
    snapshot_name,
)
from mailvault.vault.index import encode_index_file, load_index_files, rebuild
from mailvault.vault.packs import open_block
from mailvault.vault.repository import Repository
from mailvault.vault.skeletons import broken_skeletons
from mailvault.vault.snapshots import Snapshot, SnapshotFolder, encode_manifest

#: Index files written by repair hold at most this many packs each.
PACKS_PER_INDEX = 256


@dataclass
class DamagedPack:
    id: str
    problem: str
    blobs_salvaged: int
    blobs_lost: int


@dataclass
class RewrittenSnapshot:
    original: str
    new: str
    account: str
    time: str
    lost_messages: int
    lost_folders: int


@dataclass
class RepairReport:
    dry_run: bool
    packs: int = 0
    packs_damaged: list[DamagedPack] = field(default_factory=list)
    packs_missing: list[str] = field(default_factory=list)
    index_files_damaged: list[dict[str, str]] = field(default_factory=list)
    index_files_written: int = 0
    index_files_removed: int = 0
    blobs_salvaged: int = 0
    snapshots: int = 0
    snapshots_damaged: list[dict[str, str]] = field(default_factory=list)
    snapshots_rewritten: list[RewrittenSnapshot] = field(default_factory=list)
    lost_messages: list[LostMessage] = field(default_factory=list)
    lost_folders: list[LostFolder] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.packs_damaged
            or self.packs_missing
            or self.index_files_damaged
            or self.snapshots_damaged
            or self.snapshots_rewritten
            or self.index_files_removed
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


def repair(
    repo: Repository, *, dry_run: bool = False, wait: float = 0.0, progress: Progress = QUIET
) -> RepairReport:
    with repo.lock(exclusive=True, wait=wait):
        return _Repair(repo, dry_run, progress).run()


@dataclass
class _Loc:
    pack_id: bytes
    block: BlockInfo
    offset: int
    length: int


class _Repair:
    def __init__(self, repo: Repository, dry_run: bool, progress: Progress) -> None:
        self.repo = repo
        self.backend = repo.backend
        self.dry_run = dry_run
        self.progress = progress
        self.report = RepairReport(dry_run)
        self.locs: dict[bytes, _Loc] = {}  # blob -> where an intact copy is
        self.salvaged_manifests: dict[bytes, bytes] = {}  # dry run: salvaged manifests, in memory

    def run(self) -> RepairReport:
        r = self.report
        good_index, bad_index = load_index_files(self.backend, self.repo.sealer)
        r.index_files_damaged = [{"id": i.hex(), "problem": p} for i, p in bad_index]
        expected: dict[bytes, PackHeader] = {}
        for _, packs in good_index:
            for pack_id, header in packs:
                expected.setdefault(pack_id, header)
        stored: dict[bytes, int] = {}
        for name, size in self.backend.list("data/"):
            try:
                stored[id_from_name(name)] = size
            except FormatError:
                continue
        r.packs = len(stored)
        r.packs_missing = sorted(p.hex() for p in expected.keys() - stored.keys())
        # 1. Read every pack.
        intact: list[tuple[bytes, PackHeader]] = []
        damaged: list[PackScan] = []
        with self.progress.bar(
            "repair: read packs", total=sum(stored.values()), unit="B", unit_scale=True
        ) as bar:
            for pack_id in sorted(stored):
                try:
                    data = self.backend.get(pack_name(pack_id))
                except ObjectNotFound:
                    continue
                scan = scan_pack(self.repo.sealer, pack_id, data, expected.get(pack_id), self._load_dict)
                if scan.intact and scan.header is not None:
                    intact.append((pack_id, scan.header))
                    for e in scan.header.blobs:
                        info = scan.header.blocks[e.block]
                        self.locs.setdefault(e.id, _Loc(pack_id, info, e.offset, e.length))
                else:
                    scan.blocks = []  # keep no bytes of damaged packs around
                    damaged.append(scan)
                bar.update(stored[pack_id])
        # 2. Salvage what still reads from damaged packs.
        salvaged: set[bytes] = set()
        writer = None if self.dry_run else self.repo.writer(for_repack=True)
        for scan in damaged:
            n_saved = 0
            lost = set(scan.unreadable)
            if scan.readable:
                data = self.backend.get(pack_name(scan.pack_id))
                rescan = scan_pack(
                    self.repo.sealer, scan.pack_id, data, expected.get(scan.pack_id), self._load_dict
                )
                for e in rescan.readable:
                    if e.id in self.locs or e.id in salvaged:
                        continue
                    raw = rescan.blocks[e.block]
                    assert isinstance(raw, bytes)
                    blob = raw[e.offset : e.offset + e.length]
                    salvaged.add(e.id)
                    n_saved += 1
                    if writer is not None:
                        writer.add_stored(e.id, blob, e.type)
                    elif e.type == BLOB_MANIFEST:
                        self.salvaged_manifests[e.id] = blob
            lost -= salvaged | self.locs.keys()
            r.packs_damaged.append(DamagedPack(scan.pack_id.hex(), scan.problem, n_saved, len(lost)))
        r.blobs_salvaged = len(salvaged)
        # 3. A new index: the salvaged packs (the writer indexes them) and every intact pack.
        old_index = [i for i, _ in good_index] + [i for i, _ in bad_index]
        new_index: set[bytes] = set()
        if writer is not None:
            writer.flush()
            new_index.update(writer.index_ids)
        needs_new_index = bool(damaged or bad_index or r.packs_missing or self._unindexed(intact, good_index))
        if needs_new_index and not self.dry_run:
            for i in range(0, len(intact), PACKS_PER_INDEX):
                index_id, sealed = encode_index_file(self.repo.sealer, intact[i : i + PACKS_PER_INDEX])
                self.backend.put(index_name(index_id), sealed)
                new_index.add(index_id)
            # 4. The old index files, then the damaged packs.
            for index_id in old_index:
                if index_id not in new_index:
                    self.backend.delete(index_name(index_id))
                    r.index_files_removed += 1
            for scan in damaged:
                self.backend.delete(pack_name(scan.pack_id))
        elif needs_new_index:
            r.index_files_removed = len(old_index)
        if not self.dry_run:
            r.index_files_written = len(new_index)
        elif needs_new_index:  # what the real run would write (plus one for salvaged packs)
            r.index_files_written = (len(intact) + PACKS_PER_INDEX - 1) // PACKS_PER_INDEX + bool(salvaged)
        if not self.dry_run:
            rebuild(self.repo.cache, self.backend, self.repo.sealer)
            self.repo.resync_index()
        # 5. Snapshots.
        self._snapshots(salvaged)
        return r

    def _unindexed(self, intact: list[tuple[bytes, PackHeader]], good_index: list[Any]) -> bool:
        listed = {p for _, packs in good_index for p, _ in packs}
        return any(p not in listed for p, _ in intact)

    def _load_dict(self, dict_id: bytes) -> Any:
        return self.repo.load_dict(dict_id)

    def _readable(self, salvaged: set[bytes]) -> Any:
        def present(blob_id: bytes) -> bool:
            return blob_id in self.locs or blob_id in salvaged

        # A message stored as a skeleton is lost with any of its attachment parts.
        r = self.report
        broken = broken_skeletons(self.repo, present) if (r.packs_damaged or r.packs_missing) else set()

        def readable(blob_id: bytes) -> bool:
            return present(blob_id) and blob_id not in broken

        return readable

    def _read_manifest(self, blob_id: bytes) -> bytes | None:
        if blob_id in self.salvaged_manifests:
            return self.salvaged_manifests[blob_id]
        if not self.dry_run:
            if not self.repo.cache.has(blob_id):
                return None
            return self.repo.read_blob(blob_id)
        loc = self.locs.get(blob_id)
        if loc is None:
            return None
        sealed = self.backend.get(pack_name(loc.pack_id), loc.block.offset, loc.block.sealed_len)
        raw = open_block(self.repo.sealer, sealed, loc.block, self._load_dict)[
            loc.offset : loc.offset + loc.length
        ]
        if sha256(raw) != blob_id:
            raise IntegrityError(f"manifest {blob_id.hex()[:12]} fails its hash check")
        return raw

    def _snapshots(self, salvaged: set[bytes]) -> None:
        r = self.report
        readable = self._readable(salvaged)
        snaps: list[Snapshot] = []
        for name, _ in self.backend.list("snapshots/"):
            try:
                snap_id = id_from_name(name)
            except FormatError:
                continue
            try:
                snaps.append(self.repo.load_snapshot(snap_id))
            except ObjectNotFound:
                continue
            except (IntegrityError, FormatError) as exc:
                r.snapshots_damaged.append({"id": snap_id.hex(), "problem": str(exc)})
                if not self.dry_run:
                    self.backend.delete(snapshot_name(snap_id))
        r.snapshots = len(snaps)
        # A snapshot already rewritten by an interrupted repair: only its original is left to delete.
        replaced = {str(rec.get("original")) for s in snaps for rec in s.repairs}
        writer = None if self.dry_run else self.repo.writer(for_repack=True)
        rewrites: list[tuple[Snapshot, Snapshot]] = []
        for snap in snaps:
            if snap.id in replaced:
                if not self.dry_run:
                    self.backend.delete(snapshot_name(bytes.fromhex(snap.id)))
                continue
            dmg = assess_snapshot(snap, self._read_manifest, readable)
            if not dmg.damaged:
                continue
            r.lost_messages.extend(dmg.lost_messages)
            r.lost_folders.extend(dmg.lost_folders)
            folders: list[SnapshotFolder] = []
            for f in snap.folders:
                entries = dmg.kept.get(f.name)
                if entries is None:
                    continue  # its manifest is lost: the folder goes (the next backup fetches it whole)
                if len(entries) == f.messages and f.name not in {m.folder for m in dmg.lost_messages}:
                    folders.append(f)
                    continue
                data = encode_manifest(entries)
                manifest = sha256(data)
                if writer is not None and manifest not in self.locs and manifest not in salvaged:
                    writer.add(data, BLOB_MANIFEST)
                folders.append(
                    SnapshotFolder(
                        **{
                            **asdict(f),
                            "manifest": manifest.hex(),
                            "messages": len(entries),
                            "bytes": sum(e.size for e in entries),
                        }
                    )
                )
            record = {
                "original": snap.id,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "lost_messages": [
                    {k: v for k, v in asdict(m).items() if k not in ("snapshot", "account")}
                    for m in dmg.lost_messages
                ],
                "lost_folders": [
                    {"folder": f.folder, "messages": f.messages, "problem": f.problem}
                    for f in dmg.lost_folders
                ],
            }
            new = Snapshot(
                time=snap.time,
                host=snap.host,
                account=snap.account,
                source_kind=snap.source_kind,
                source_address=snap.source_address,
                folders=folders,
                summary=dict(snap.summary),
                tags=[*snap.tags, *([] if "repaired" in snap.tags else ["repaired"])],
                repairs=[*snap.repairs, record],
                source_namespace=snap.source_namespace,
            )
            rewrites.append((snap, new))
        if writer is not None:
            writer.flush()  # new manifests before the snapshots naming them
        for old, new in rewrites:
            new_id = "" if self.dry_run else self.repo.save_snapshot(new)
            if not self.dry_run:
                self.backend.delete(snapshot_name(bytes.fromhex(old.id)))
            r.snapshots_rewritten.append(
                RewrittenSnapshot(
                    old.id,
                    new_id,
                    old.account,
                    old.time,
                    len(new.repairs[-1]["lost_messages"]),
                    len(new.repairs[-1]["lost_folders"]),
                )
            )
