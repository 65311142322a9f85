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

Memory stays flat with the vault's size: the marks (needed blob ids, and the pack each is
kept from) and the per-pack decisions live in a scratch SQLite database on disk
(``marks.MarkSet``); manifests are read a row at a time, index files a pack at a time, and
a pack is repacked a block at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from mailvault.errors import FormatError, IntegrityError, VaultError
from mailvault.progress import QUIET, Progress
from mailvault.vault import sia
from mailvault.vault.format import (
    BLOB_SKELETON,
    PackHeader,
    id_from_name,
    index_name,
    pack_name,
    stored_blob_id,
)
from mailvault.vault.index import encode_index_file, iter_index_files
from mailvault.vault.marks import KEEP, REPACK, MarkSet
from mailvault.vault.packs import open_block
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import manifest_blob_ids
from mailvault.vault.writer import VaultWriter

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
        cache_path = repo.cache.path
        with MarkSet(cache_path.parent if cache_path is not None else None) as marks:
            return _prune_locked(repo, marks, dry_run=dry_run, progress=progress)


def _mark(repo: Repository, marks: MarkSet, result: PruneResult, progress: Progress) -> None:
    """Step 1: every blob a kept snapshot needs goes into ``marks``."""
    snapshots = repo.snapshots()
    result.snapshots = len(snapshots)
    with progress.bar("prune: mark", total=len(snapshots), unit="snap") as bar:
        for snap in snapshots:
            for folder in snap.folders:
                manifest = bytes.fromhex(folder.manifest)
                if manifest in marks:
                    continue  # an unchanged folder: the same manifest, marked with a snapshot before
                data = repo.read_blob(manifest)
                try:
                    marks.mark(manifest_blob_ids(data))
                except FormatError as exc:
                    raise IntegrityError(
                        f"snapshot {snap.id[:12]} folder {folder.name!r}: its manifest: {exc}"
                    ) from None
                marks.mark([manifest])
            bar.update()
    # Single-instance parts live as long as a kept skeleton names them: the skeletons of the
    # vault (from the index cache, in pack order: one read per block) whose message is needed.
    for chunk in repo.cache.iter_ids_of_type(BLOB_SKELETON):
        wanted = [i for i in chunk if i in marks]
        for blob_id in wanted:
            _type, data = repo.read_stored(blob_id)
            try:
                marks.mark(sia.part_ids(data))
            except FormatError as exc:
                raise IntegrityError(f"message {blob_id.hex()[:12]}: {exc}") from None


def _prune_locked(repo: Repository, marks: MarkSet, *, dry_run: bool, progress: Progress) -> PruneResult:
    backend = repo.backend
    result = PruneResult(dry_run)
    _mark(repo, marks, result, progress)
    result.needed_blobs = marks.needed_count()
    # The index as stored (not the cache), read as a stream, one pack of one index file at a
    # time. A pack's first listing wins, and so does a blob's first pack.
    marks.add_old_index(id_from_name(n) for n, _ in backend.list("index/"))

    def stored_packs() -> Iterator[tuple[bytes, int]]:
        for name, size in backend.list("data/"):
            try:
                yield id_from_name(name), size
            except FormatError:
                result.warnings.append(f"ignored unexpected object {name}")

    marks.add_stored(stored_packs())
    result.packs_total, result.bytes_before = marks.stored_summary()
    listed_blobs = 0
    for pack_id, header in iter_index_files(backend, repo.sealer, marks.old_index()):
        n, stored, listed = marks.list_pack(pack_id)
        if listed:
            continue
        if not stored:
            result.warnings.append(f"index names missing pack {pack_id.hex()[:12]}; run 'mailvault check'")
            continue
        listed_blobs += len(header.blobs)
        used = marks.place(n, (e.id for e in header.blobs))
        marks.decide(n, len(header.blobs), used)
    unplaced = marks.unplaced_count()
    if unplaced:
        raise VaultError(
            f"{unplaced} blob(s) needed by snapshots are in no pack; refusing to prune a damaged vault "
            "(run 'mailvault check')"
        )
    marks.index_placement()
    result.packs_kept, kept_bytes, _ = marks.action_summary(KEEP)
    result.packs_repacked, _, repacked_bytes = marks.action_summary(REPACK)
    result.packs_deleted = result.packs_total - result.packs_kept - result.packs_repacked
    result.blobs_removed = listed_blobs - result.needed_blobs
    if dry_run:
        result.bytes_after = kept_bytes + repacked_bytes
        return result
    # 2 and 3, in one more pass over the index: needed blobs of partly-used packs are copied into
    # new packs (with index files for them); the packs kept whole get new index files.
    writer = repo.writer(for_repack=True)
    new_index: set[bytes] = set()
    batch: list[tuple[bytes, PackHeader]] = []
    batch_blobs = 0

    def write_batch() -> None:
        index_id, sealed = encode_index_file(repo.sealer, batch)
        backend.put(index_name(index_id), sealed)
        new_index.add(index_id)

    with progress.bar("prune: repack", total=result.packs_repacked, unit="pack") as bar:
        for pack_id, header in iter_index_files(backend, repo.sealer, marks.old_index()):
            row = marks.pack(pack_id)
            if row is None or not row[1] or row[3] not in (KEEP, REPACK) or not marks.emit(row[0]):
                continue
            if row[3] == REPACK:
                _repack(repo, writer, pack_id, header, marks.placed_in(row[0]))
                bar.update()
                continue
            batch.append((pack_id, header))
            batch_blobs += len(header.blobs)
            if len(batch) >= PACKS_PER_INDEX or batch_blobs >= BLOBS_PER_INDEX:
                write_batch()
                batch, batch_blobs = [], 0
    if batch:
        write_batch()
    writer.flush()
    new_index.update(writer.index_ids)
    # 4. Delete the old index files, then the packs nothing needs.
    for index_id in marks.old_index():
        if index_id not in new_index:
            backend.delete(index_name(index_id))
            result.index_files_replaced += 1
    for pack_id in marks.doomed_packs():
        backend.delete(pack_name(pack_id))
    # 5. Leftovers of killed writers (local temp files, S3 multipart uploads): no writer can be at
    #    work under the exclusive lock, so all of them go.
    cleanup = getattr(backend, "cleanup_temp", None)
    if cleanup is not None:
        result.temp_removed = cleanup(0.0)
    repo.resync_index()
    result.bytes_after = sum(size for _, size in backend.list("data/"))
    return result


def _repack(
    repo: Repository, writer: VaultWriter, pack_id: bytes, header: PackHeader, used: set[bytes]
) -> None:
    """Copy the blobs ``used`` of one pack into the writer's new packs, a block at a time (one
    ranged read each), every blob checked against its id."""
    by_block: dict[int, list[tuple[bytes, int, int, int]]] = {}
    for e in header.blobs:
        if e.id in used:
            by_block.setdefault(e.block, []).append((e.id, e.type, e.offset, e.length))
    done: set[bytes] = set()
    name = pack_name(pack_id)
    for block_no in sorted(by_block):
        if block_no >= len(header.blocks):
            raise IntegrityError(f"pack {pack_id.hex()[:12]}: its index lists a block it does not have")
        info = header.blocks[block_no]
        sealed = repo.backend.get(name, info.offset, info.sealed_len)
        if len(sealed) != info.sealed_len:
            raise IntegrityError(f"pack {pack_id.hex()[:12]} is truncated; run 'mailvault check'")
        raw = open_block(repo.sealer, sealed, info, repo.load_dict)
        del sealed
        for blob_id, blob_type, offset, length in by_block[block_no]:
            if blob_id in done:
                continue
            data = raw[offset : offset + length]
            try:
                ok = len(data) == length and stored_blob_id(blob_type, data) == blob_id
            except FormatError:
                ok = False
            if not ok:
                raise IntegrityError(
                    f"pack {pack_id.hex()[:12]}: blob {blob_id.hex()[:12]} fails its hash check "
                    "(run 'mailvault check')"
                )
            writer.add_stored(blob_id, data, blob_type)
            done.add(blob_id)
    if done != used:
        raise IntegrityError(f"pack {pack_id.hex()[:12]} lacks blobs its index lists")
