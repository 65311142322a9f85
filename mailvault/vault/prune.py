"""``mailvault prune``: delete what no snapshot needs, under the exclusive lock, crash-safe.

Order (docs/FORMAT.md, "Prune"):

1. mark: every manifest and message blob named by a remaining snapshot is needed, and
   every single-instance part that a needed skeleton refers to;
2. repack: needed blobs of partly-used packs are copied into new packs, with an index
   file for them;
3. a new index covering every pack that is kept whole is written;
4. only then are the old index files deleted, and after them the packs nothing needs
   (unused, repacked, or orphaned by interrupted runs).

A crash before step 4 leaves the old index valid (its packs still exist); a crash
during step 4 leaves packs that no index names, which the next prune deletes. Nothing
a kept snapshot needs is ever deleted before its new home is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from mailvault.errors import FormatError, IntegrityError, VaultError
from mailvault.progress import QUIET, Progress
from mailvault.vault.format import PackHeader, id_from_name, index_name, pack_name, sha256
from mailvault.vault.index import decode_index_file, encode_index_file
from mailvault.vault.packs import read_pack
from mailvault.vault.repository import Repository

#: Index files written by prune hold at most this many packs each.
PACKS_PER_INDEX = 256
#: ... and at most about this many blobs (an index file is decoded whole when read).
BLOBS_PER_INDEX = 100_000


@dataclass
class PruneResult:
    dry_run: bool
    snapshots: int = 0
    needed_blobs: int = 0
    packs_total: int = 0
    packs_kept: int = 0
    packs_repacked: int = 0
    packs_deleted: int = 0
    blobs_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    index_files_replaced: int = 0
    temp_removed: int = 0  # temp files / S3 multipart uploads left by killed writers
    warnings: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)


def prune(
    repo: Repository, *, dry_run: bool = False, wait: float = 0.0, progress: Progress = QUIET
) -> PruneResult:
    with repo.lock(exclusive=True, wait=wait):
        return _prune_locked(repo, dry_run=dry_run, progress=progress)


def _prune_locked(repo: Repository, *, dry_run: bool, progress: Progress) -> PruneResult:
    backend = repo.backend
    result = PruneResult(dry_run)
    # 1. Mark.
    needed: set[bytes] = set()
    snapshots = repo.snapshots()
    result.snapshots = len(snapshots)
    with progress.bar("prune: mark", total=len(snapshots), unit="snap") as bar:
        for snap in snapshots:
            for folder in snap.folders:
                needed.add(bytes.fromhex(folder.manifest))
                needed.update(bytes.fromhex(e.blob) for e in repo.read_manifest(folder))
            bar.update()
    # Single-instance parts live as long as a kept skeleton names them.
    needed |= repo.skeleton_parts(needed)
    result.needed_blobs = len(needed)
    # The index as stored (not the cache), read as a stream, one index file at a time: a vault of
    # millions of messages must not hold every pack header in memory (the packs kept whole are
    # read again for step 3). A pack's first listing wins.
    old_index = [id_from_name(n) for n, _ in backend.list("index/")]

    def index_packs() -> Iterator[tuple[bytes, PackHeader]]:
        for index_id in old_index:
            sealed = backend.get(index_name(index_id))
            if sha256(sealed) != index_id:
                raise IntegrityError(f"index file {index_id.hex()[:12]} is damaged; run 'mailvault check'")
            yield from decode_index_file(repo.sealer, sealed)

    stored = {}
    for name, size in backend.list("data/"):
        try:
            stored[id_from_name(name)] = size
        except FormatError:
            result.warnings.append(f"ignored unexpected object {name}")
    result.packs_total = len(stored)
    result.bytes_before = sum(stored.values())
    # Decide per pack; a blob stored twice keeps its first copy only (``unplaced`` shrinks as
    # blobs find their pack: what is left at the end is in no pack).
    unplaced = needed
    n_needed = len(needed)
    listed: set[bytes] = set()
    keep: set[bytes] = set()
    repack: dict[bytes, set[bytes]] = {}
    pack_blobs: dict[bytes, int] = {}
    listed_blobs = 0
    for pack_id, header in index_packs():
        if pack_id in listed:
            continue
        listed.add(pack_id)
        if pack_id not in stored:
            result.warnings.append(f"index names missing pack {pack_id.hex()[:12]}; run 'mailvault check'")
            continue
        listed_blobs += len(header.blobs)
        used = {e.id for e in header.blobs if e.id in unplaced}
        unplaced -= used
        if not used:
            continue
        if len(used) == len(header.blobs):
            keep.add(pack_id)
        else:
            repack[pack_id] = used
            pack_blobs[pack_id] = len(header.blobs)
    drop = set(stored) - keep - set(repack)  # unused, and orphans in no index
    if unplaced:
        raise VaultError(
            f"{len(unplaced)} blob(s) needed by snapshots are in no pack; refusing to prune a damaged vault "
            "(run 'mailvault check')"
        )
    del needed, unplaced
    result.packs_kept = len(keep)
    result.packs_repacked = len(repack)
    result.packs_deleted = len(drop)
    result.blobs_removed = listed_blobs - n_needed
    if dry_run:
        result.bytes_after = sum(stored[p] for p in keep) + sum(
            stored[p] * len(u) // max(1, pack_blobs[p]) for p, u in repack.items()
        )
        return result
    # 2. Repack.
    writer = repo.writer(for_repack=True)
    with progress.bar("prune: repack", total=len(repack), unit="pack") as bar:
        for pack_id, used in repack.items():
            data = backend.get(pack_name(pack_id))
            header, blocks = read_pack(repo.sealer, data, repo.load_dict)
            for e in header.blobs:
                if e.id in used and e.id not in writer._pending:
                    raw = blocks[e.block]
                    if not isinstance(raw, bytes):
                        raise IntegrityError(f"pack {pack_id.hex()[:12]}: {raw}; run 'mailvault check'")
                    writer.add_stored(e.id, raw[e.offset : e.offset + e.length], e.type)
            if not used <= writer._pending:
                raise IntegrityError(f"pack {pack_id.hex()[:12]} lacks blobs its index lists")
            bar.update()
    writer.flush()
    new_index = set(writer.index_ids)
    # 3. The index of the packs kept whole (their headers read again, a few at a time).
    batch: list[tuple[bytes, PackHeader]] = []
    batch_blobs = 0
    emitted: set[bytes] = set()

    def write_batch() -> None:
        index_id, sealed = encode_index_file(repo.sealer, batch)
        backend.put(index_name(index_id), sealed)
        new_index.add(index_id)

    for pack_id, header in index_packs():
        if pack_id not in keep or pack_id in emitted:
            continue
        emitted.add(pack_id)
        batch.append((pack_id, header))
        batch_blobs += len(header.blobs)
        if len(batch) >= PACKS_PER_INDEX or batch_blobs >= BLOBS_PER_INDEX:
            write_batch()
            batch, batch_blobs = [], 0
    if batch:
        write_batch()
    # 4. Delete the old index files, then the packs nothing needs.
    for index_id in old_index:
        if index_id not in new_index:
            backend.delete(index_name(index_id))
            result.index_files_replaced += 1
    for pack_id in (*drop, *repack):
        backend.delete(pack_name(pack_id))
    # 5. Leftovers of killed writers (local temp files, S3 multipart uploads): no writer can be at
    #    work under the exclusive lock, so all of them go.
    cleanup = getattr(backend, "cleanup_temp", None)
    if cleanup is not None:
        result.temp_removed = cleanup(0.0)
    repo.resync_index()
    result.bytes_after = sum(size for _, size in backend.list("data/"))
    return result
