"""Index files and their local SQLite cache.

An index file (``index/<id>``) lists packs with their headers: blob -> pack,
block, offset, length. Opening a vault must not re-read every index file, so
the decoded entries live in a SQLite cache on the local machine, keyed by the
vault id. The cache is derived data: it is brought up to date from the
listing of ``index/`` on open and rebuilt from scratch whenever an index file
it knows has disappeared (after prune) or the file is unusable.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from mailvault.errors import FormatError, IntegrityError, StorageError, StorageFull
from mailvault.storage.base import Backend
from mailvault.vault.crypto import Sealer
from mailvault.vault.format import (
    AD_INDEX,
    BLOB_MESSAGE,
    BLOB_SKELETON,
    BlockInfo,
    PackHeader,
    encode_index,
    id_from_name,
    index_name,
    iter_index,
    sha256,
)

SCHEMA_VERSION = "2"
#: Blob ids per query of :meth:`IndexCache.lookup_many` (SQLite allows 999 variables at least).
LOOKUP_CHUNK = 500
#: Where a blob is (id, pack, block with its offset, sizes and dictionary, offset, length, type),
#: completed by "=?" or "IN (...)".
_LOCATION = (
    "SELECT b.id, p.id, b.block, k.offset, k.sealed_len, k.raw_len, k.dict, b.offset, b.length, b.type "
    "FROM blobs b JOIN packs p ON p.n=b.pack JOIN blocks k ON k.pack=b.pack AND k.block=b.block WHERE b.id"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS index_files(id BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs(n INTEGER PRIMARY KEY, id BLOB UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(
    pack INTEGER, block INTEGER, offset INTEGER, sealed_len INTEGER, raw_len INTEGER, dict BLOB,
    PRIMARY KEY(pack, block)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs(
    id BLOB PRIMARY KEY, type INTEGER, pack INTEGER, block INTEGER, offset INTEGER, length INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots(id BLOB PRIMARY KEY, account TEXT, time TEXT, sealed BLOB) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_account ON snapshots(account);
"""


@dataclass(frozen=True)
class Location:
    """Where a blob lives."""

    pack_id: bytes
    block_no: int
    block: BlockInfo
    offset: int
    length: int
    type: int


def _location(r: tuple[Any, ...]) -> Location:
    """A :class:`Location` from a row of a :data:`_LOCATION` query."""
    return Location(bytes(r[1]), r[2], BlockInfo(r[3], r[4], r[5], bytes(r[6])), r[7], r[8], r[9])


def default_cache_root() -> Path:
    env = os.environ.get("MAILVAULT_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("mailvault"))


def encode_index_file(sealer: Sealer, packs: list[tuple[bytes, PackHeader]]) -> tuple[bytes, bytes]:
    """Return (index id, sealed index bytes)."""
    sealed = sealer.seal(zstandard.ZstdCompressor(level=3).compress(encode_index(packs)), AD_INDEX)
    return sha256(sealed), sealed


def decode_index_file(sealer: Sealer, sealed: bytes) -> list[tuple[bytes, PackHeader]]:
    return list(iter_index_file(sealer, sealed))


def iter_index_file(sealer: Sealer, sealed: bytes) -> Iterator[tuple[bytes, PackHeader]]:
    """Open and decompress an index file now; decode its packs one at a time as iterated."""
    plain = sealer.open(sealed, AD_INDEX)
    try:
        data = zstandard.ZstdDecompressor().decompress(plain, max_output_size=1 << 31)
    except zstandard.ZstdError as exc:
        raise FormatError(f"index file does not decompress: {exc}") from None
    del plain
    return iter_index(data)


def get_index_file(backend: Backend, index_id: bytes) -> bytes:
    """The sealed bytes of an index file, checked against its id."""
    sealed = backend.get(index_name(index_id))
    if sha256(sealed) != index_id:
        raise IntegrityError(
            f"index file {index_id.hex()[:12]} does not match its id "
            "(damaged: see 'mailvault check', 'mailvault repair')"
        )
    return sealed


def iter_index_files(
    backend: Backend, sealer: Sealer, index_ids: Iterable[bytes]
) -> Iterator[tuple[bytes, PackHeader]]:
    """Every pack listed by the index files ``index_ids`` (verified), one index file in memory
    at a time; a pack listed twice is yielded twice."""
    for index_id in index_ids:
        yield from iter_index_file(sealer, get_index_file(backend, index_id))


@contextlib.contextmanager
def _writing(path: Path | None) -> Iterator[None]:
    """A write to the cache database failing (full disk, read-only) as one line, not a traceback."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        where = f"the index cache {path}" if path is not None else "the index cache"
        if "full" in str(exc).lower():
            raise StorageFull(f"no space left on device writing {where}") from exc
        raise StorageError(f"{where}: {exc}") from exc


class IndexCache:
    """SQLite-backed map blob id -> location, kept in step with ``index/``."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
            db.commit()
        elif row[0] != SCHEMA_VERSION:
            db.close()
            raise FormatError("index cache has another schema")
        return db

    def close(self) -> None:
        self._db.close()

    # -- sync ---------------------------------------------------------------------------
    def sync(self, backend: Backend, sealer: Sealer, *, rebuild: bool = False) -> int:
        """Load index files not yet cached; rebuild if some have gone (or ``rebuild``).

        Everything read is applied in one transaction, so another process reading the same
        cache never sees it half rebuilt. Returns how many index files were loaded.
        """
        present = {id_from_name(name) for name, _ in backend.list("index/")}
        cached = {bytes(r[0]) for r in self._db.execute("SELECT id FROM index_files")}
        reset = rebuild or bool(cached - present)
        missing = sorted(present if reset else present - cached)
        if not (reset or missing):
            return 0
        # One index file decoded at a time, inserted as it is read: a rebuild of a vault of
        # millions of blobs does not hold the whole index in memory. Any error rolls it all back.
        with _writing(self.path), self._db:
            if reset:
                self._clear()
            for index_id in missing:
                self._insert(index_id, iter_index_file(sealer, get_index_file(backend, index_id)))
        return len(missing)

    def _clear(self) -> None:
        self._db.execute("DELETE FROM index_files")
        self._db.execute("DELETE FROM packs")
        self._db.execute("DELETE FROM blocks")
        self._db.execute("DELETE FROM blobs")

    def rebuild_tolerant(self, backend: Backend, sealer: Sealer) -> list[tuple[bytes, str]]:
        """Rebuild from every index file that still reads, one at a time, in one transaction;
        return the damaged ones as (id, problem). A file that fails half-way adds nothing."""
        from mailvault.errors import MailvaultError

        bad: list[tuple[bytes, str]] = []
        with _writing(self.path), self._db:
            self._clear()
            for index_id, sealed in _index_files(backend, bad):
                self._db.execute("SAVEPOINT index_file")
                try:
                    self._insert(index_id, iter_index_file(sealer, sealed))
                except (MailvaultError, ValueError) as exc:
                    self._db.execute("ROLLBACK TO index_file")
                    bad.append((index_id, str(exc)))
                self._db.execute("RELEASE index_file")
        return bad

    def add(self, index_id: bytes | None, packs: Iterable[tuple[bytes, PackHeader]]) -> None:
        """Record packs (from an index file, or just written when index_id is None)."""
        with _writing(self.path), self._db:
            self._insert(index_id, packs)

    def _insert(self, index_id: bytes | None, packs: Iterable[tuple[bytes, PackHeader]]) -> None:
        db = self._db
        for pack_id, header in packs:
            db.execute("INSERT OR IGNORE INTO packs(id) VALUES (?)", (pack_id,))
            (n,) = db.execute("SELECT n FROM packs WHERE id=?", (pack_id,)).fetchone()
            db.executemany(
                "INSERT OR IGNORE INTO blocks VALUES (?,?,?,?,?,?)",
                [(n, i, b.offset, b.sealed_len, b.raw_len, b.dict_id) for i, b in enumerate(header.blocks)],
            )
            db.executemany(
                "INSERT OR IGNORE INTO blobs VALUES (?,?,?,?,?,?)",
                [(e.id, e.type, n, e.block, e.offset, e.length) for e in header.blobs],
            )
        if index_id is not None:
            db.execute("INSERT OR IGNORE INTO index_files VALUES (?)", (index_id,))

    # -- snapshots (sealed copies of immutable files, so listing them costs one LIST) -----
    def snapshot_ids(self) -> set[bytes]:
        return {bytes(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}

    def put_snapshots(self, rows: Iterable[tuple[bytes, str, str, bytes]]) -> None:
        """Cache (id, account, time, sealed bytes) of snapshot files already verified."""
        with _writing(self.path), self._db:
            self._db.executemany("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?)", list(rows))

    def drop_snapshots(self, ids: Iterable[bytes]) -> None:
        with _writing(self.path), self._db:
            self._db.executemany("DELETE FROM snapshots WHERE id=?", [(i,) for i in ids])

    def sealed_snapshots(self, account: str | None = None) -> list[tuple[bytes, bytes]]:
        """(id, sealed bytes) of the cached snapshots, of one account or all."""
        if account is None:
            rows = self._db.execute("SELECT id, sealed FROM snapshots")
        else:
            rows = self._db.execute("SELECT id, sealed FROM snapshots WHERE account=?", (account,))
        return [(bytes(i), bytes(b)) for i, b in rows]

    # -- queries ------------------------------------------------------------------------
    def has(self, blob_id: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM blobs WHERE id=?", (blob_id,)).fetchone() is not None

    def lookup(self, blob_id: bytes) -> Location | None:
        row = self._db.execute(_LOCATION + "=?", (blob_id,)).fetchone()
        return None if row is None else _location(row)

    def lookup_many(self, blob_ids: Sequence[bytes]) -> dict[bytes, Location]:
        """:meth:`lookup` of many blobs in one query per :data:`LOOKUP_CHUNK` ids (half the
        CPU of one query each: 4.2 against 8 us per blob on corpus A); ids not in the index are
        left out."""
        out: dict[bytes, Location] = {}
        for i in range(0, len(blob_ids), LOOKUP_CHUNK):
            chunk = blob_ids[i : i + LOOKUP_CHUNK]
            stmt = f"{_LOCATION} IN ({','.join('?' * len(chunk))})"  # placeholders only: the ids are bound
            out.update((bytes(r[0]), _location(r)) for r in self._db.execute(stmt, chunk))
        return out

    def find_prefix(self, hex_prefix: str, blob_type: int, limit: int = 2) -> list[bytes]:
        """Blob ids of ``blob_type`` starting with ``hex_prefix`` (at most ``limit``). Messages
        (``BLOB_MESSAGE``) include those stored as skeletons (single-instance attachments)."""
        pad = 64 - len(hex_prefix)
        low, high = bytes.fromhex(hex_prefix + "0" * pad), bytes.fromhex(hex_prefix + "f" * pad)
        other = BLOB_SKELETON if blob_type == BLOB_MESSAGE else blob_type
        rows = self._db.execute(
            "SELECT id FROM blobs WHERE id BETWEEN ? AND ? AND type IN (?, ?) LIMIT ?",
            (low, high, blob_type, other, limit),
        )
        return [bytes(r[0]) for r in rows]

    def iter_type(self, blob_type: int) -> Iterator[tuple[bytes, Location]]:
        """(id, location) of every blob of one type."""
        rows = self._db.execute(
            "SELECT b.id, p.id, b.block, k.offset, k.sealed_len, k.raw_len, k.dict, b.offset, b.length, "
            "b.type FROM blobs b JOIN packs p ON p.n=b.pack "
            "JOIN blocks k ON k.pack=b.pack AND k.block=b.block WHERE b.type=?",
            (blob_type,),
        ).fetchall()
        for r in rows:
            yield (
                bytes(r[0]),
                Location(bytes(r[1]), r[2], BlockInfo(r[3], r[4], r[5], bytes(r[6])), r[7], r[8], r[9]),
            )

    def iter_ids_of_type(self, blob_type: int, chunk: int = 1000) -> Iterator[list[bytes]]:
        """Ids of every blob of one type, in pack, block and offset order (reading them in that
        order reads each block once), a chunk at a time: not all in memory at once."""
        cur = self._db.execute("SELECT id FROM blobs WHERE type=? ORDER BY pack, block, offset", (blob_type,))
        while rows := cur.fetchmany(chunk):
            yield [bytes(r[0]) for r in rows]

    def pack_ids(self) -> set[bytes]:
        return {bytes(r[0]) for r in self._db.execute("SELECT id FROM packs")}

    def pack_blobs(self, pack_id: bytes) -> list[tuple[bytes, int]]:
        """(blob id, block number) of every blob the index places in ``pack_id``."""
        rows = self._db.execute(
            "SELECT b.id, b.block FROM blobs b JOIN packs p ON p.n=b.pack WHERE p.id=?", (pack_id,)
        )
        return [(bytes(i), int(k)) for i, k in rows]

    def pack_blocks(self, pack_id: bytes) -> list[BlockInfo]:
        rows = self._db.execute(
            "SELECT k.offset, k.sealed_len, k.raw_len, k.dict FROM blocks k JOIN packs p ON p.n=k.pack "
            "WHERE p.id=? ORDER BY k.block",
            (pack_id,),
        )
        return [BlockInfo(o, s, r, bytes(d)) for o, s, r, d in rows]

    def index_ids(self) -> set[bytes]:
        return {bytes(r[0]) for r in self._db.execute("SELECT id FROM index_files")}

    def blob_stats(self, blob_type: int) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length),0) FROM blobs WHERE type=?", (blob_type,)
        ).fetchone()
        return int(row[0]), int(row[1])

    def iter_blobs(self) -> Iterator[tuple[bytes, int]]:
        for blob_id, blob_type in self._db.execute("SELECT id, type FROM blobs"):
            yield bytes(blob_id), int(blob_type)


def open_cache(vault_id: str, *, root: Path | None = None) -> IndexCache:
    """Open (or create) the cache for a vault; fall back to memory if unusable."""
    base = (root or default_cache_root()) / vault_id
    path = base / "index.sqlite"
    try:
        return IndexCache(path)
    except (sqlite3.DatabaseError, FormatError, OSError):
        with contextlib.suppress(OSError):
            path.unlink()
        try:
            return IndexCache(path)
        except (sqlite3.DatabaseError, FormatError, OSError):
            return IndexCache(None)


def rebuild(cache: IndexCache, backend: Backend, sealer: Sealer) -> int:
    """Re-read (and verify) every index file, replacing the cache in one transaction."""
    return cache.sync(backend, sealer, rebuild=True)


def load_index_files(
    backend: Backend, sealer: Sealer
) -> tuple[list[tuple[bytes, list[tuple[bytes, PackHeader]]]], list[tuple[bytes, str]]]:
    """Read every index file, tolerating damage: ([(id, packs)] of the good ones, [(id, problem)])."""
    from mailvault.errors import MailvaultError

    good: list[tuple[bytes, list[tuple[bytes, PackHeader]]]] = []
    bad: list[tuple[bytes, str]] = []
    for index_id, sealed in _index_files(backend, bad):
        try:
            good.append((index_id, decode_index_file(sealer, sealed)))
        except (MailvaultError, ValueError) as exc:
            bad.append((index_id, str(exc)))
    return good, bad


def _index_files(backend: Backend, bad: list[tuple[bytes, str]]) -> Iterator[tuple[bytes, bytes]]:
    """(id, sealed bytes) of every index file whose content matches its id, one at a time; the
    others are added to ``bad``. Files removed meanwhile and foreign names are passed over."""
    from mailvault.errors import ObjectNotFound

    for name, _ in backend.list("index/"):
        try:
            index_id = id_from_name(name)
        except FormatError:
            continue
        try:
            sealed = backend.get(name)
        except ObjectNotFound:
            continue  # removed meanwhile
        if sha256(sealed) != index_id:
            bad.append((index_id, "content does not match its id"))
            continue
        yield index_id, sealed
