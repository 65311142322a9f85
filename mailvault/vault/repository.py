"""The vault façade: the one object the layers above use.

Write order (docs/FORMAT.md, "Crash ordering"): packs -> index -> snapshot.
A snapshot is written only after every blob it references is in a stored pack
that a stored index file lists; the snapshot is the single commit point.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from mailvault.errors import (
    FormatError,
    IntegrityError,
    MailvaultError,
    ObjectNotFound,
    PasswordError,
    SnapshotNotFound,
    VaultExists,
    VaultNotFound,
)
from mailvault.storage.base import Backend, open_backend
from mailvault.vault import sia
from mailvault.vault.crypto import AeadSealer, KeyFile, PlainSealer, Sealer, new_master_key, unwrap_which
from mailvault.vault.format import (
    AD_CONFIG,
    AD_DICT,
    BLOB_MANIFEST,
    BLOB_MESSAGE,
    BLOB_PART,
    BLOB_SKELETON,
    VAULT_VERSION,
    VAULT_VERSIONS,
    PackHeader,
    dict_name,
    id_from_name,
    index_name,
    pack_name,
    sha256,
    snapshot_name,
    stored_blob_id,
)
from mailvault.vault.index import (
    IndexCache,
    Location,
    default_cache_root,
    encode_index_file,
    load_index_files,
    open_cache,
)
from mailvault.vault.locks import Lock
from mailvault.vault.packs import PackBuilder, open_block, read_pack
from mailvault.vault.snapshots import (
    ManifestEntry,
    ManifestRows,
    Snapshot,
    SnapshotFolder,
    decode_manifest,
    encode_manifest,
)

PasswordProvider = Callable[[], bytes]

#: Write an index file after this many packs, so a killed run loses little.
INDEX_EVERY_PACKS = 4
#: Dictionaries are only tried below this block size (measured: at 1 MiB they cost ~1.5 %).
DICT_MAX_BLOCK = 512 * 1024
DICT_SAMPLE_BYTES = 4 << 20
DICT_SIZE = 64 * 1024
DICT_MIN_GAIN = 0.03
#: Default single-instance threshold (docs/FORMAT.md, "Single-instance attachments").
DEFAULT_SIA_MIN_PART = 4096


@dataclass(frozen=True)
class VaultParams:
    pack_size: int = 16 << 20
    block_size: int = 4 << 20  # corpus A: 0.187 of raw at 4 MiB, 0.202 at 1 MiB (docs/FORMAT.md)
    zstd_level: int = 9
    dictionary: str = "auto"  # "auto" | "off"
    #: MIME leaf parts of at least this many bytes are stored once (single-instance); 0 = off.
    sia_min_part: int = DEFAULT_SIA_MIN_PART

    def validate(self) -> None:
        from mailvault.errors import ConfigError

        if not (64 << 10) <= self.pack_size <= (1 << 30):
            raise ConfigError("pack size must be between 64 KiB and 1 GiB")
        if not (4 << 10) <= self.block_size <= min(self.pack_size, 64 << 20):
            raise ConfigError("block size must be between 4 KiB and min(pack size, 64 MiB)")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError("zstd level must be between 1 and 22")
        if self.dictionary not in ("auto", "off"):
            raise ConfigError("dictionary must be 'auto' or 'off'")
        if self.sia_min_part and not 1024 <= self.sia_min_part <= (64 << 20):
            raise ConfigError("attachment threshold must be 0 (off) or between 1 KiB and 64 MiB")


def _encrypted_marker(cache_root: Path | None, vault_id: str) -> Path:
    return (cache_root or default_cache_root()) / vault_id / "encrypted"


def _remember_encrypted(cache_root: Path | None, vault_id: str) -> None:
    """Note on this machine that the vault is encrypted, so a config later altered to say
    "none" is refused instead of receiving plaintext (downgrade protection)."""
    marker = _encrypted_marker(cache_root, vault_id)
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


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
        self._read_lock = threading.RLock()  # block cache and index cache are shared by readers
        self._dicts: dict[bytes, zstandard.ZstdCompressionDict] = {}
        #: Encrypted vault: the id of the key file the password opened, and the master key
        #: (kept for ``mailvault key add``; it is in memory anyway, inside the sealer).
        self.key_id: str | None = None
        self.master_key: bytes | None = None
        self._owns_backend = True
        #: Shared by the siblings of one open vault: work done once per process, not per handle.
        self._shared: dict[str, Any] = {"lock": threading.Lock(), "writer_setup_done": False}

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

    # -- creation and opening -----------------------------------------------------------------
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
        params = params or VaultParams()
        params.validate()
        backend = location if isinstance(location, Backend) else open_backend(location)
        if backend.exists("config"):
            raise VaultExists(f"{backend.location}: a vault already exists here")
        if next(iter(backend.list("")), None) is not None:
            raise VaultExists(f"{backend.location}: not empty; init needs an empty directory or prefix")
        config: dict[str, Any] = {
            "version": VAULT_VERSION,
            "id": secrets.token_hex(16),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "encryption": "aes-256-gcm" if password is not None else "none",
            "chunking": {
                "pack_size": params.pack_size,
                "block_size": params.block_size,
                "zstd_level": params.zstd_level,
                "dictionary": params.dictionary,
                "sia_min_part": params.sia_min_part,
            },
        }
        sealer: Sealer
        if password is not None:
            if not password:
                raise PasswordError("the vault password must not be empty")
            master = new_master_key()
            sealer = AeadSealer(master)
            keyfile = KeyFile.create(master, password, scrypt)
            data = keyfile.to_bytes()
            key_id = sha256(data).hex()
            backend.put(f"keys/{key_id}", data, exclusive=True)
            config["check"] = base64.b64encode(sealer.seal(_canonical(config), AD_CONFIG)).decode()
            _remember_encrypted(cache_root, config["id"])
        else:
            sealer = PlainSealer()
        # The config is written last: its presence is what makes the location a vault.
        backend.put("config", json.dumps(config, indent=1, sort_keys=True).encode(), exclusive=True)
        repo = cls(backend, config, sealer, cache_root)
        if password is not None:
            repo.key_id, repo.master_key = key_id, master
        return repo

    @classmethod
    def open(
        cls,
        location: str | Backend,
        password: PasswordProvider | None = None,
        *,
        cache_root: Path | None = None,
    ) -> Repository:
        backend = location if isinstance(location, Backend) else open_backend(location)
        try:
            raw = backend.get("config")
        except ObjectNotFound:
            raise VaultNotFound(
                f"{backend.location}: no vault here (create one with 'mailvault init')"
            ) from None
        try:
            config = json.loads(raw)
            version = config["version"]
            config["chunking"]["pack_size"]
        except (ValueError, KeyError, TypeError):
            raise FormatError(f"{backend.location}: the vault config is damaged") from None
        if version not in VAULT_VERSIONS:
            raise FormatError(
                f"{backend.location}: vault format version {version} is not supported "
                f"(this mailvault reads versions {', '.join(map(str, VAULT_VERSIONS))})"
            )
        key_names = sorted(name for name, _ in backend.list("keys/"))
        keyfiles = [KeyFile.from_bytes(backend.get(name)) for name in key_names]
        key_id: str | None = None
        master: bytes | None = None
        sealer: Sealer
        marker = _encrypted_marker(cache_root, str(config.get("id", "?")))
        if config.get("encryption") == "none":
            if keyfiles:
                raise FormatError(
                    f"{backend.location}: config says unencrypted but key files exist (config altered?)"
                )
            if marker.exists():
                raise IntegrityError(
                    f"{backend.location}: this vault was encrypted when last used here, but its config now "
                    "says unencrypted; refusing to write plaintext (config altered?)"
                )
            sealer = PlainSealer()
        elif config.get("encryption") == "aes-256-gcm":
            if not keyfiles:
                raise FormatError(f"{backend.location}: encrypted vault without key files")
            if password is None:
                raise PasswordError(f"{backend.location}: the vault is encrypted and no password was given")
            which, master = unwrap_which(keyfiles, password())
            key_id = key_names[which].rsplit("/", 1)[-1]
            sealer = AeadSealer(master)
            check = dict(config)
            sealed_check = check.pop("check", "")
            try:
                expected = sealer.open(base64.b64decode(sealed_check), AD_CONFIG)
            except (IntegrityError, ValueError):
                raise IntegrityError(f"{backend.location}: the vault config fails its check") from None
            if expected != _canonical(check):
                raise IntegrityError(f"{backend.location}: the vault config was altered")
            _remember_encrypted(cache_root, config["id"])
        else:
            raise FormatError(f"{backend.location}: unknown encryption {config.get('encryption')!r}")
        repo = cls(backend, config, sealer, cache_root)
        repo.key_id, repo.master_key = key_id, master
        return repo

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- index ------------------------------------------------------------------------------------
    @property
    def cache(self) -> IndexCache:
        if self._cache is None:
            self._cache = open_cache(self.id, root=self._cache_root)
            self._cache.sync(self.backend, self.sealer)
        return self._cache

    def load_index_tolerant(self) -> list[tuple[bytes, str]]:
        """Rebuild the index cache from every index file that still reads; return the damaged
        ones as (id, problem). (``cache`` itself refuses a vault with a damaged index file.)"""
        good, bad = load_index_files(self.backend, self.sealer)
        with self._read_lock:
            if self._cache is None:
                self._cache = open_cache(self.id, root=self._cache_root)
            self._cache.replace(good)
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
    def locate(self, blob_id: bytes) -> Location:
        loc = self.cache.lookup(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:12]} is not in any index (vault incomplete)")
        return loc

    def has_blob(self, blob_id: bytes) -> bool:
        """Whether the index knows the blob (a repaired vault no longer lists lost ones)."""
        with self._read_lock:
            return self.cache.has(blob_id)

    def read_block(self, loc: Location) -> bytes:
        key = (loc.pack_id, loc.block_no)
        raw = self._blocks.get(key)
        if raw is not None:
            self._blocks.move_to_end(key)
            return raw
        sealed = self.backend.get(pack_name(loc.pack_id), loc.block.offset, loc.block.sealed_len)
        if len(sealed) != loc.block.sealed_len:
            raise IntegrityError(f"pack {loc.pack_id.hex()[:12]} is truncated")
        raw = open_block(self.sealer, sealed, loc.block, self.load_dict)
        self._blocks[key] = raw
        while len(self._blocks) > 8:
            self._blocks.popitem(last=False)
        return raw

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

    def broken_skeletons(self, present: Callable[[bytes], bool]) -> set[bytes]:
        """Messages stored as skeletons that cannot be rebuilt: the skeleton itself or one of its
        parts is not ``present`` (used by check and repair on a damaged vault)."""
        broken: set[bytes] = set()
        for blob_id, _loc in self.cache.iter_type(BLOB_SKELETON):
            if not present(blob_id):
                continue
            try:
                parts = sia.part_ids(self.read_stored(blob_id)[1])
            except MailvaultError:
                broken.add(blob_id)
                continue
            if not all(present(p) for p in parts):
                broken.add(blob_id)
        return broken

    def skeleton_parts(self, blob_ids: Iterable[bytes]) -> set[bytes]:
        """The parts that the skeletons among ``blob_ids`` refer to (reads only the skeletons)."""
        wanted = set(blob_ids)
        skeletons = [(loc, i) for i, loc in self.cache.iter_type(BLOB_SKELETON) if i in wanted]
        skeletons.sort(key=lambda x: (x[0].pack_id, x[0].block_no, x[0].offset))  # one read per block
        parts: set[bytes] = set()
        for _loc, blob_id in skeletons:
            _type, data = self.read_stored(blob_id)
            try:
                parts.update(sia.part_ids(data))
            except FormatError as exc:
                raise IntegrityError(f"message {blob_id.hex()[:12]}: {exc}") from None
        return parts

    def read_manifest(self, folder: SnapshotFolder) -> list[ManifestEntry]:
        return decode_manifest(self.read_blob(bytes.fromhex(folder.manifest)))

    # -- snapshots --------------------------------------------------------------------------------
    def snapshot_ids(self) -> list[bytes]:
        return [id_from_name(n) for n, _ in self.backend.list("snapshots/")]

    def load_snapshot(self, snapshot_id: bytes) -> Snapshot:
        sealed = self.backend.get(snapshot_name(snapshot_id))
        if sha256(sealed) != snapshot_id:
            raise IntegrityError(f"snapshot {snapshot_id.hex()[:12]} does not match its id")
        return Snapshot.unseal(self.sealer, sealed, snapshot_id.hex())

    def snapshots(self, account: str | None = None) -> list[Snapshot]:
        """Snapshots (of one account or all), oldest first.

        Snapshot files never change, so verified copies are kept in the local cache: a vault
        of thousands of accounts costs one listing, not a download per snapshot, per run.
        """
        present = set(self.snapshot_ids())
        with self._read_lock:
            cached = self.cache.snapshot_ids()
            if cached - present:
                self.cache.drop_snapshots(cached - present)
            rows = []
            for snap_id in sorted(present - cached):
                try:
                    sealed = self.backend.get(snapshot_name(snap_id))
                except ObjectNotFound:
                    continue  # forgotten meanwhile
                if sha256(sealed) != snap_id:
                    raise IntegrityError(f"snapshot {snap_id.hex()[:12]} does not match its id")
                snap = Snapshot.unseal(self.sealer, sealed, snap_id.hex())
                rows.append((snap_id, snap.account, snap.time, sealed))
            if rows:
                self.cache.put_snapshots(rows)
            sealed_rows = self.cache.sealed_snapshots(account)
        snaps = [Snapshot.unseal(self.sealer, b, i.hex()) for i, b in sealed_rows if i in present]
        snaps.sort(key=lambda s: (s.datetime, s.id))
        return snaps

    def resolve_snapshot(self, spec: str, account: str | None = None) -> Snapshot:
        """An id, a unique id prefix, or ``latest`` (per ``account`` when given)."""
        if spec == "latest":
            snaps = self.snapshots(account)
            if not snaps:
                who = f" for account {account}" if account else ""
                raise SnapshotNotFound(f"no snapshots{who} in {self.location}")
            if account is None and len({s.account for s in snaps}) > 1:
                raise SnapshotNotFound("several accounts in this vault: give --account with 'latest'")
            return snaps[-1]
        spec_l = spec.lower()
        matches = [i for i in self.snapshot_ids() if i.hex().startswith(spec_l)]
        if not matches:
            raise SnapshotNotFound(f"no snapshot {spec!r} in {self.location}")
        if len(matches) > 1:
            raise SnapshotNotFound(f"snapshot prefix {spec!r} is ambiguous ({len(matches)} match)")
        snap = self.load_snapshot(matches[0])
        if account is not None and snap.account != account:
            raise SnapshotNotFound(f"snapshot {spec!r} belongs to account {snap.account!r}, not {account!r}")
        return snap

    def latest_snapshot(self, account: str) -> Snapshot | None:
        snaps = self.snapshots(account)
        return snaps[-1] if snaps else None

    def save_snapshot(self, snapshot: Snapshot) -> str:
        snap_id, sealed = snapshot.seal(self.sealer)
        self.backend.put(snapshot_name(snap_id), sealed)
        snapshot.id = snap_id.hex()
        return snapshot.id

    # -- writing ----------------------------------------------------------------------------------
    def writer(self, *, for_repack: bool = False) -> VaultWriter:
        return VaultWriter(self, for_repack=for_repack)

    def resync_index(self) -> None:
        """Bring the index cache up to date with ``index/`` (after prune replaced it)."""
        self.cache.sync(self.backend, self.sealer)
        self._blocks.clear()

    def iter_messages(
        self, snapshot: Snapshot, folders: list[str] | None = None
    ) -> Iterator[tuple[SnapshotFolder, ManifestEntry, bytes]]:
        """Yield (folder, entry, raw bytes) for every message of a snapshot."""
        for folder in snapshot.folders:
            if folders is not None and folder.name not in folders:
                continue
            for entry in self.read_manifest(folder):
                yield folder, entry, self.read_blob(bytes.fromhex(entry.blob))


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
            self.new_messages += 1
            self.new_message_bytes += len(raw)
            split = sia.split(raw, self.params.sia_min_part, blob_id) if self.params.sia_min_part else None
            if split is not None:
                for part in split.parts:
                    if not self.has(part.part_id):
                        self._store(part.part_id, part.data, BLOB_PART)
                        self.new_parts += 1
                        self.new_part_bytes += len(part.data)
                self._store(blob_id, split.skeleton, BLOB_SKELETON)
                self.new_skeletons += 1
                return blob_id.hex(), True
        self._store(blob_id, raw, blob_type)
        return blob_id.hex(), True

    def add_stored(self, blob_id: bytes, data: bytes, blob_type: int) -> None:
        """Store a blob exactly as another pack held it (prune's repack), under its id."""
        if not self.has(blob_id):
            self._store(blob_id, data, blob_type)

    def _store(self, blob_id: bytes, data: bytes, blob_type: int) -> None:
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
            if not self._for_repack:  # the index cache knows them now: keep the pending set small
                self._pending.difference_update(e.id for _, h in self._written for e in h.blobs)
            self._written = []

    def flush(self) -> None:
        """Write every open pack, then an index file for them."""
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
