"""Writing to a vault: blobs into packs, packs into index files, then the snapshot.

Write order (docs/FORMAT.md, "Crash ordering"): packs -> index -> snapshot. The snapshot is
written only after every blob it references is in a stored pack that a stored index file lists.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import zstandard

from mailvault.errors import FormatError, IntegrityError, ObjectNotFound
from mailvault.vault import sia
from mailvault.vault.format import (
    BLOB_MANIFEST,
    BLOB_MESSAGE,
    BLOB_PART,
    BLOB_SKELETON,
    PackHeader,
    id_from_name,
    index_name,
    pack_name,
    sha256,
)
from mailvault.vault.index import encode_index_file
from mailvault.vault.order import WINDOW_BYTES, date_key
from mailvault.vault.packs import PackBuilder, read_pack
from mailvault.vault.snapshots import ManifestEntry, ManifestRows, Snapshot, SnapshotFolder, encode_manifest

if TYPE_CHECKING:
    from mailvault.vault.repository import Repository

#: Write an index file after this many packs, so a killed run loses little.
INDEX_EVERY_PACKS = 4
#: Dictionaries are only tried below this block size (measured: at 1 MiB they cost ~1.5 %).
DICT_MAX_BLOCK = 512 * 1024
DICT_SAMPLE_BYTES = 4 << 20
DICT_SIZE = 64 * 1024
DICT_MIN_GAIN = 0.03


@dataclass(frozen=True)
class PreparedMessage:
    """A message as :meth:`VaultWriter.add` would store it, worked out in another process: its
    id, and its skeleton and parts when it splits (then ``raw`` is not carried), else its bytes."""

    blob_id: bytes
    size: int
    raw: bytes | None
    split: sia.Split | None


def prepare_message(raw: bytes, sia_min_part: int) -> PreparedMessage:
    """Hash and split (the rebuild checked) a message for :meth:`VaultWriter.add_prepared`."""
    blob_id = sha256(raw)
    split = sia.split(raw, sia_min_part, blob_id) if sia_min_part else None
    return PreparedMessage(blob_id, len(raw), None if split is not None else raw, split)


class VaultWriter:
    """Adds blobs to packs and commits snapshots, in the crash-safe order."""

    def __init__(self, repo: Repository, *, for_repack: bool = False) -> None:
        """``for_repack``: prune's writer — every blob given is written (the old copies are
        about to be deleted) and orphan packs are left alone (prune deletes them)."""
        self.repo = repo
        self.params = repo.params
        self._for_repack = for_repack
        self._pending: set[bytes] = set()
        self._written: list[tuple[bytes, PackHeader]] = []
        self._builders: dict[int, PackBuilder] = {}
        self.new_messages = 0
        self.new_message_bytes = 0
        self.new_skeletons = 0  # of new_messages, stored as skeletons
        self.new_parts = 0
        self.new_part_bytes = 0
        self.stored_bytes = 0
        self.packs_written = 0
        self.index_ids: list[bytes] = []
        self.recovered_packs = 0
        #: Messages and skeletons held back to go into blocks in Date order (mailvault.vault.order):
        #: (date key or None, arrival number, id, bytes, type). Prune's repack keeps pack order.
        self._window: list[tuple[int | None, int, bytes, bytes, int]] = []
        self._window_bytes = 0
        self._window_limit = 0 if for_repack else WINDOW_BYTES
        if not for_repack:
            # Once per open vault (siblings included): a runner over thousands of accounts must
            # not list every pack of the vault per account.
            with repo._shared["lock"]:
                first = not repo._shared["writer_setup_done"]
                repo._shared["writer_setup_done"] = True
            if first:
                self.recovered_packs = self._recover_orphans()
                cleanup = getattr(repo.backend, "cleanup_temp", None)
                if cleanup is not None:
                    cleanup(3600.0)  # temp files of writers killed over an hour ago
        dicts = repo.dict_ids()
        self._dict_id: bytes | None = dicts[0] if dicts else None
        self._sampling = (
            self._dict_id is None
            and self.params.dictionary == "auto"
            and self.params.block_size < DICT_MAX_BLOCK
        )
        self._samples: list[bytes] = []
        self._sample_bytes = 0

    # Packs that reached storage but no index file (a run killed between the two) are
    # re-indexed from their own contents, so their blobs are reused, not stored again.
    def _recover_orphans(self) -> int:
        repo = self.repo
        known = repo.cache.pack_ids()
        orphans = []
        for name, _size in repo.backend.list("data/"):
            try:
                pack_id = id_from_name(name)
            except FormatError:
                continue
            if pack_id in known:
                continue
            try:
                data = repo.backend.get(name)
                if sha256(data) != pack_id:
                    continue  # damaged: check reports it, prune removes it
                header, _blocks = read_pack(repo.sealer, data, repo.load_dict)
            except (FormatError, IntegrityError, ObjectNotFound):
                continue
            good = [e for e in header.blobs if e.id]
            orphans.append((pack_id, PackHeader(header.blocks, good)))
        if orphans:
            self._write_index(orphans)
        return len(orphans)

    def _builder(self, blob_type: int) -> PackBuilder:
        blob_type = _PACK_KIND.get(blob_type, blob_type)
        b = self._builders.get(blob_type)
        if b is None:
            zdict = (
                self.repo.load_dict(self._dict_id) if self._dict_id and blob_type == BLOB_MESSAGE else None
            )
            b = PackBuilder(
                self.repo.sealer,
                level=self.params.zstd_level,
                block_size=self.params.block_size,
                zdict=zdict,
                dict_id=self._dict_id if zdict is not None and self._dict_id else b"\x00" * 32,
            )
            self._builders[blob_type] = b
        return b

    def has(self, blob_id: bytes) -> bool:
        if self._for_repack:
            return blob_id in self._pending
        return blob_id in self._pending or self.repo.cache.has(blob_id)

    def add(self, raw: bytes, blob_type: int = BLOB_MESSAGE) -> tuple[str, bool]:
        """Store ``raw`` unless already present; return (hex id, newly stored).

        A message with large MIME leaf parts is stored as a skeleton plus single-instance
        parts when its rebuild is byte-identical (checked here), else whole.
        """
        blob_id = sha256(raw)
        if self.has(blob_id):
            return blob_id.hex(), False
        if blob_type == BLOB_MESSAGE:
            split = sia.split(raw, self.params.sia_min_part, blob_id) if self.params.sia_min_part else None
            self._store_message(blob_id, len(raw), raw, split)
        else:
            self._store(blob_id, raw, blob_type)
        return blob_id.hex(), True

    def add_prepared(self, m: PreparedMessage) -> tuple[str, bool]:
        """:meth:`add` for a message hashed and split elsewhere (:func:`prepare_message`, in a
        backup's worker process)."""
        if self.has(m.blob_id):
            return m.blob_id.hex(), False
        self._store_message(m.blob_id, m.size, m.raw, m.split)
        return m.blob_id.hex(), True

    def _store_message(self, blob_id: bytes, size: int, raw: bytes | None, split: sia.Split | None) -> None:
        self.new_messages += 1
        self.new_message_bytes += size
        if split is None:
            assert raw is not None
            self._store(blob_id, raw, BLOB_MESSAGE)
            return
        for part in split.parts:
            if not self.has(part.part_id):
                self._store(part.part_id, part.data, BLOB_PART)
                self.new_parts += 1
                self.new_part_bytes += len(part.data)
        self._store(blob_id, split.skeleton, BLOB_SKELETON)
        self.new_skeletons += 1

    def add_stored(self, blob_id: bytes, data: bytes, blob_type: int) -> None:
        """Store a blob exactly as another pack held it (prune's repack), under its id."""
        if not self.has(blob_id):
            self._store(blob_id, data, blob_type)

    def _store(self, blob_id: bytes, data: bytes, blob_type: int) -> None:
        if self._window_limit and blob_type in (BLOB_MESSAGE, BLOB_SKELETON):
            self._window.append((date_key(data), len(self._window), blob_id, data, blob_type))
            self._window_bytes += len(data)
            self._pending.add(blob_id)
            if self._window_bytes >= self._window_limit:
                self._drain_window()
            return
        self._pack(blob_id, data, blob_type)

    def _drain_window(self) -> None:
        """The held-back messages into blocks, oldest Date first (undated ones last, in arrival
        order)."""
        window, self._window, self._window_bytes = self._window, [], 0
        window.sort(key=lambda w: (w[0] is None, w[0] or 0, w[1]))
        for _key, _n, blob_id, data, blob_type in window:
            self._pack(blob_id, data, blob_type)

    def _pack(self, blob_id: bytes, data: bytes, blob_type: int) -> None:
        if self._sampling and blob_type in (BLOB_MESSAGE, BLOB_SKELETON):
            self._sample(data)
        builder = self._builder(blob_type)
        builder.add(blob_id, blob_type, data)
        self._pending.add(blob_id)
        if builder.projected_size >= self.params.pack_size:
            self._finish(_PACK_KIND.get(blob_type, blob_type))

    def add_manifest(self, entries: list[ManifestEntry] | ManifestRows) -> str:
        data = entries.encode() if isinstance(entries, ManifestRows) else encode_manifest(entries)
        return self.add(data, BLOB_MANIFEST)[0]

    def _sample(self, raw: bytes) -> None:
        if len(raw) <= 64 * 1024:
            self._samples.append(raw)
            self._sample_bytes += len(raw)
        if self._sample_bytes < DICT_SAMPLE_BYTES:
            return
        self._sampling = False
        samples, self._samples = self._samples, []
        try:
            zdict = zstandard.train_dictionary(
                DICT_SIZE, list[bytes | bytearray | memoryview](samples), level=self.params.zstd_level
            )
        except zstandard.ZstdError:
            return
        blocks, cur, n = [], [], 0
        for s in samples:
            cur.append(s)
            n += len(s)
            if n >= self.params.block_size:
                blocks.append(b"".join(cur))
                cur, n = [], 0
        plain = zstandard.ZstdCompressor(level=self.params.zstd_level)
        withd = zstandard.ZstdCompressor(level=self.params.zstd_level, dict_data=zdict)
        size_plain = sum(len(plain.compress(b)) for b in blocks)
        size_dict = sum(len(withd.compress(b)) for b in blocks) + len(zdict.as_bytes())
        if size_plain and size_dict < size_plain * (1 - DICT_MIN_GAIN):
            self._dict_id = self.repo.save_dict(zdict.as_bytes())
            # Blocks from here on use the dictionary: start a new message pack.
            if BLOB_MESSAGE in self._builders:
                self._finish(BLOB_MESSAGE)

    def _finish(self, blob_type: int) -> None:
        builder = self._builders.pop(blob_type, None)
        if builder is None or builder.blob_count == 0:
            return
        pack_id, data, header = builder.finish()
        self.repo.backend.put(pack_name(pack_id), data)
        self.stored_bytes += len(data)
        self.packs_written += 1
        self._written.append((pack_id, header))
        if len(self._written) >= INDEX_EVERY_PACKS:
            self.write_pending_index()

    def _write_index(self, packs: list[tuple[bytes, PackHeader]]) -> None:
        index_id, sealed = encode_index_file(self.repo.sealer, packs)
        self.repo.backend.put(index_name(index_id), sealed)
        self.stored_bytes += len(sealed)
        self.index_ids.append(index_id)
        if not self._for_repack:
            self.repo.cache.add(index_id, packs)

    def write_pending_index(self) -> None:
        if self._written:
            self._write_index(self._written)
            # The index cache knows them now (prune's repack copies each blob once): keep the
            # pending set small.
            self._pending.difference_update(e.id for _, h in self._written for e in h.blobs)
            self._written = []

    def flush(self) -> None:
        """Write every held-back message and open pack, then an index file for them."""
        self._drain_window()
        for blob_type in list(self._builders):
            self._finish(blob_type)
        self.write_pending_index()

    def commit(self, snapshot: Snapshot) -> str:
        """Flush packs and index, then write the snapshot (the commit point)."""
        self.flush()
        snapshot.summary.setdefault("new_messages", self.new_messages)
        snapshot.summary.setdefault("new_bytes", self.new_message_bytes)
        snapshot.summary.setdefault("stored_bytes", self.stored_bytes)
        return self.repo.save_snapshot(snapshot)


#: Which pack a blob type goes to: skeletons beside whole messages (similar text compresses
#: together), parts in packs of their own, manifests in theirs.
_PACK_KIND = {BLOB_SKELETON: BLOB_MESSAGE}


def new_snapshot(
    account: str,
    source_kind: str,
    source_address: str,
    folders: list[SnapshotFolder],
    source_namespace: str = "",
) -> Snapshot:
    return Snapshot(
        time=datetime.now(UTC).astimezone().isoformat(timespec="microseconds"),
        host=socket.gethostname(),
        account=account,
        source_kind=source_kind,
        source_address=source_address,
        folders=folders,
        source_namespace=source_namespace,
    )
