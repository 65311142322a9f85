"""The vault façade: the one object the layers above use.

Write order (docs/FORMAT.md, "Crash ordering"): packs -> index -> snapshot.
A snapshot is written only after every blob it references is in a stored pack
that a stored index file lists; the snapshot is the single commit point.
Creating and opening live in ``opening``, writing in ``writer``, the settings in ``params``
(all importable from here as before).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import zstandard

from mailvault.errors import FormatError, IntegrityError
from mailvault.storage.base import Backend
from mailvault.vault import sia, snapshot_store
from mailvault.vault.crypto import Sealer
from mailvault.vault.format import (
    AD_DICT,
    BLOB_SKELETON,
    dict_name,
    id_from_name,
    pack_name,
    sha256,
    stored_blob_id,
)
from mailvault.vault.index import IndexCache, Location, open_cache
from mailvault.vault.locks import Lock
from mailvault.vault.opening import create_vault, open_vault
from mailvault.vault.packs import open_block
from mailvault.vault.params import DEFAULT_SIA_MIN_PART, VaultParams
from mailvault.vault.snapshot_store import SNAPSHOT_LISTING_TTL
from mailvault.vault.snapshots import ManifestEntry, Snapshot, SnapshotFolder, decode_manifest
from mailvault.vault.writer import (
    DICT_MAX_BLOCK,
    DICT_MIN_GAIN,
    DICT_SAMPLE_BYTES,
    DICT_SIZE,
    INDEX_EVERY_PACKS,
    VaultWriter,
    new_snapshot,
)

__all__ = [
    "DEFAULT_SIA_MIN_PART",
    "DICT_MAX_BLOCK",
    "DICT_MIN_GAIN",
    "DICT_SAMPLE_BYTES",
    "DICT_SIZE",
    "INDEX_EVERY_PACKS",
    "SNAPSHOT_LISTING_TTL",
    "PasswordProvider",
    "Repository",
    "VaultParams",
    "VaultWriter",
    "new_snapshot",
]

PasswordProvider = Callable[[], bytes]

#: A new handle's index cache is not synced with ``index/`` again when a handle of this process
#: synced the same cache this recently (index files written by other processes meanwhile are
#: picked up when a blob is not found; a backup that misses them stores a blob twice at worst).
INDEX_SYNC_TTL = 10.0
#: The block cache of a vault handle, per thread reading through it (:meth:`Repository.set_readers`):
#: at most this many decompressed blocks, and bytes. 8 blocks of 4 MiB hold one window of messages
#: a backup packed in Date order (docs/FORMAT.md), whose UID order cycles over all of them.
BLOCK_CACHE_BLOCKS = 8
BLOCK_CACHE_BYTES = 32 << 20


class Repository:
    """An open vault."""

    def __init__(
        self, backend: Backend, config: dict[str, Any], sealer: Sealer, cache_root: Path | None = None
    ) -> None:
        self.backend = backend
        self.config = config
        self.sealer = sealer
        self.id: str = config["id"]
        c = config["chunking"]
        # A version-1 vault has no single-instance parts and gets none (older readers keep reading it).
        sia_min = int(c.get("sia_min_part", 0)) if config["version"] >= 2 else 0
        self.params = VaultParams(c["pack_size"], c["block_size"], c["zstd_level"], c["dictionary"], sia_min)
        self._cache_root = cache_root
        self._cache: IndexCache | None = None
        self._blocks: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        self._cache_blocks = BLOCK_CACHE_BLOCKS
        self._cache_bytes = BLOCK_CACHE_BYTES
        self._read_lock = threading.RLock()  # block cache and index cache are shared by readers
        #: Locations looked up ahead in one query (:meth:`prefetch`), each taken once by :meth:`locate`.
        self._located: dict[bytes, Location] = {}
        self._dicts: dict[bytes, zstandard.ZstdCompressionDict] = {}
        #: Encrypted vault: the id of the key file the password opened, and the master key
        #: (kept for ``mailvault key add``; it is in memory anyway, inside the sealer).
        self.key_id: str | None = None
        self.master_key: bytes | None = None
        self._owns_backend = True
        #: Shared by the siblings of one open vault: work done once per process, not per handle.
        self._shared: dict[str, Any] = {
            "lock": threading.Lock(),
            "writer_setup_done": False,
            "snapshot_listing": None,  # (monotonic time, frozenset of ids)
            "snapshots_added": set(),  # written by this process
            "snapshots_removed": set(),  # deleted by this process
            "index_synced": None,  # (cache path, monotonic time)
        }
        self._index_refreshed = False

    def sibling(self) -> Repository:
        """Another handle on this open vault: the same backend and key, its own index-cache
        connection and block cache. A runner's parallel tasks use siblings instead of opening
        the vault per task (which costs a config read, the key files and a password-based key
        derivation, ~0.1-1 s of CPU, each time). Closing a sibling leaves the backend open."""
        twin = Repository(self.backend, self.config, self.sealer, self._cache_root)
        twin.key_id, twin.master_key = self.key_id, self.master_key
        twin._owns_backend = False
        twin._dicts = self._dicts
        twin._shared = self._shared
        return twin

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def encrypted(self) -> bool:
        return self.sealer.encrypted

    @property
    def cache_root(self) -> Path | None:
        """The local cache directory given at open (None: the default one)."""
        return self._cache_root

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._owns_backend:
            self.backend.close()

    @classmethod
    def init(
        cls,
        location: str | Backend,
        password: bytes | None,
        params: VaultParams | None = None,
        *,
        scrypt: dict[str, int] | None = None,
        cache_root: Path | None = None,
    ) -> Repository:
        """Create a new vault; ``password=None`` means no encryption."""
        return create_vault(cls, location, password, params, scrypt=scrypt, cache_root=cache_root)

    @classmethod
    def open(
        cls,
        location: str | Backend,
        password: PasswordProvider | None = None,
        *,
        cache_root: Path | None = None,
    ) -> Repository:
        return open_vault(cls, location, password, cache_root=cache_root)

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- index ------------------------------------------------------------------------------------
    @property
    def cache(self) -> IndexCache:
        if self._cache is None:
            self._cache = open_cache(self.id, root=self._cache_root)
            self._sync_cache(INDEX_SYNC_TTL)
        return self._cache

    def _sync_cache(self, max_age: float) -> None:
        """Sync the index cache with ``index/`` unless a handle of this process synced the same
        cache file less than ``max_age`` seconds ago."""
        assert self._cache is not None
        path, shared = self._cache.path, self._shared
        if max_age > 0 and path is not None:
            with shared["lock"]:
                last = shared["index_synced"]
            if last is not None and last[0] == path and time.monotonic() - last[1] <= max_age:
                return
        started = time.monotonic()
        self._cache.sync(self.backend, self.sealer)
        if path is not None:
            with shared["lock"]:
                shared["index_synced"] = (path, started)

    def load_index_tolerant(self) -> list[tuple[bytes, str]]:
        """Rebuild the index cache from every index file that still reads; return the damaged
        ones as (id, problem). (``cache`` itself refuses a vault with a damaged index file.)"""
        with self._read_lock:
            if self._cache is None:
                self._cache = open_cache(self.id, root=self._cache_root)
            bad = self._cache.rebuild_tolerant(self.backend, self.sealer)
            self._blocks.clear()
        return bad

    def lock(self, *, exclusive: bool = False, wait: float = 0.0, account: str | None = None) -> Lock:
        return Lock(self.backend, self.sealer, exclusive, account).acquire(wait)

    # -- dictionaries -----------------------------------------------------------------------------
    def load_dict(self, dict_id: bytes) -> zstandard.ZstdCompressionDict:
        d = self._dicts.get(dict_id)
        if d is None:
            data = self.sealer.open(self.backend.get(dict_name(dict_id)), AD_DICT)
            if sha256(data) != dict_id:
                raise IntegrityError(f"dictionary {dict_id.hex()[:12]} does not match its id")
            d = zstandard.ZstdCompressionDict(data)
            self._dicts[dict_id] = d
        return d

    def dict_ids(self) -> list[bytes]:
        return sorted(id_from_name(n) for n, _ in self.backend.list("dicts/"))

    def save_dict(self, data: bytes) -> bytes:
        dict_id = sha256(data)
        if not self.backend.exists(dict_name(dict_id)):
            self.backend.put(dict_name(dict_id), self.sealer.seal(data, AD_DICT))
        return dict_id

    # -- reading blobs ----------------------------------------------------------------------------
    def prefetch(self, blob_ids: Sequence[bytes]) -> None:
        """Look up where ``blob_ids`` are in one query per 500 (a restore's next messages), so
        that reading them costs no index query each. Each location is used once."""
        with self._read_lock:
            self._located.update(self.cache.lookup_many(blob_ids))

    def locate(self, blob_id: bytes) -> Location:
        loc = self._located.pop(blob_id, None)
        if loc is not None:
            return loc
        loc = self.cache.lookup(blob_id)
        if loc is None and not self._index_refreshed:
            # Perhaps in an index file another process wrote since this cache was synced: sync
            # (once per handle, so a damaged vault's many missing blobs cost one listing).
            self._index_refreshed = True
            self._sync_cache(0.0)
            loc = self.cache.lookup(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:12]} is not in any index (vault incomplete)")
        return loc

    def has_blob(self, blob_id: bytes) -> bool:
        """Whether the index knows the blob (a repaired vault no longer lists lost ones)."""
        with self._read_lock:
            return self.cache.has(blob_id)

    def read_block(self, loc: Location) -> bytes:
        """A block's raw bytes (a small LRU cache). The read, decryption and decompression run
        outside the lock, so parallel readers (restore connections) decode blocks at once."""
        key = (loc.pack_id, loc.block_no)
        with self._read_lock:
            raw = self._blocks.get(key)
            if raw is not None:
                self._blocks.move_to_end(key)
                return raw
        sealed = self.backend.get(pack_name(loc.pack_id), loc.block.offset, loc.block.sealed_len)
        if len(sealed) != loc.block.sealed_len:
            raise IntegrityError(f"pack {loc.pack_id.hex()[:12]} is truncated")
        raw = open_block(self.sealer, sealed, loc.block, self.load_dict)
        with self._read_lock:
            self._blocks[key] = raw
            # At most 8 blocks and 32 MiB per reader (a block holding one large blob, e.g. the
            # manifest of a folder of 100k messages, can be far larger than the block size), the
            # newest always.
            while len(self._blocks) > self._cache_blocks or (
                len(self._blocks) > 1 and sum(map(len, self._blocks.values())) > self._cache_bytes
            ):
                self._blocks.popitem(last=False)
        return raw

    def set_readers(self, threads: int) -> None:
        """Size the block cache for ``threads`` threads reading at once (e.g. a restore's
        connections): each walks a folder in UID order over the blocks of its own window, and a
        cache of one window's blocks for all of them decoded each block twice (corpus A restore
        over 3 connections: 26 block decodes against 14)."""
        n = max(1, threads)
        with self._read_lock:
            self._cache_blocks = BLOCK_CACHE_BLOCKS * n
            self._cache_bytes = BLOCK_CACHE_BYTES * n

    def read_blob(self, blob_id: bytes) -> bytes:
        """The exact bytes of a blob, verified against its id. Safe to call from several threads.

        A message stored as a skeleton is rebuilt from its parts (docs/FORMAT.md,
        "Single-instance attachments"); the caller sees the message's bytes either way.
        """
        with self._read_lock:
            loc = self.locate(blob_id)
        data = self.read_block(loc)[loc.offset : loc.offset + loc.length]
        if loc.type == BLOB_SKELETON:
            data = self._rebuild(blob_id, data)
        if sha256(data) != blob_id:
            raise IntegrityError(f"blob {blob_id.hex()[:12]} fails its hash check")
        return data

    def _rebuild(self, blob_id: bytes, skeleton: bytes) -> bytes:
        try:
            return sia.rebuild(skeleton, self.read_blob)
        except FormatError as exc:
            raise IntegrityError(f"message {blob_id.hex()[:12]}: {exc}") from None

    def read_stored(self, blob_id: bytes) -> tuple[int, bytes]:
        """(type, bytes as stored) of a blob: a skeleton is returned as such, not rebuilt."""
        with self._read_lock:
            loc = self.locate(blob_id)
            data = self.read_block(loc)[loc.offset : loc.offset + loc.length]
        try:
            got = stored_blob_id(loc.type, data)
        except FormatError:
            got = b""
        if got != blob_id:
            raise IntegrityError(f"blob {blob_id.hex()[:12]} fails its hash check")
        return loc.type, data

    def read_manifest(self, folder: SnapshotFolder) -> list[ManifestEntry]:
        return decode_manifest(self.read_blob(bytes.fromhex(folder.manifest)))

    # -- snapshots (mailvault.vault.snapshot_store) -------------------------------------------------
    def snapshot_ids(self) -> list[bytes]:
        return snapshot_store.snapshot_ids(self)

    def load_snapshot(self, snapshot_id: bytes) -> Snapshot:
        return snapshot_store.load_snapshot(self, snapshot_id)

    def snapshots(self, account: str | None = None, *, max_age: float = 0.0) -> list[Snapshot]:
        """Snapshots (of one account or all), oldest first (see ``snapshot_store.snapshots``)."""
        return snapshot_store.snapshots(self, account, max_age=max_age)

    def resolve_snapshot(self, spec: str, account: str | None = None) -> Snapshot:
        """An id, a unique id prefix, or ``latest`` (per ``account`` when given)."""
        return snapshot_store.resolve_snapshot(self, spec, account)

    def latest_snapshot(self, account: str) -> Snapshot | None:
        """The newest snapshot of ``account``, from a listing at most SNAPSHOT_LISTING_TTL s old."""
        return snapshot_store.latest_snapshot(self, account)

    def save_snapshot(self, snapshot: Snapshot) -> str:
        return snapshot_store.save_snapshot(self, snapshot)

    def delete_snapshot(self, snapshot_id: bytes) -> None:
        """Delete a snapshot file (forget); its data stays until prune."""
        snapshot_store.delete_snapshot(self, snapshot_id)

    # -- writing ----------------------------------------------------------------------------------
    def writer(self, *, for_repack: bool = False) -> VaultWriter:
        return VaultWriter(self, for_repack=for_repack)

    def resync_index(self) -> None:
        """Bring the index cache up to date with ``index/`` (after prune replaced it)."""
        self.cache.sync(self.backend, self.sealer)
        self._blocks.clear()
        self._located.clear()

    def iter_messages(
        self, snapshot: Snapshot, folders: list[str] | None = None
    ) -> Iterator[tuple[SnapshotFolder, ManifestEntry, bytes]]:
        """Yield (folder, entry, raw bytes) for every message of a snapshot."""
        for folder in snapshot.folders:
            if folders is not None and folder.name not in folders:
                continue
            for entry in self.read_manifest(folder):
                yield folder, entry, self.read_blob(bytes.fromhex(entry.blob))
