"""Prune's bookkeeping on disk: the blobs the kept snapshots need, the packs in storage and
what becomes of each, in a scratch SQLite database beside the index cache.

A vault of a million messages needs a million blob ids marked; held in a Python set that is
~95 bytes each (and ~76 GB at 800 M blobs). Here it is a B-tree on disk: prune's memory stays
flat whatever the vault's size, and it needs disk about the size of the index cache instead.
The database is scratch: made fresh by each prune (under the vault's exclusive lock) and
removed afterwards; one left by a killed prune is removed by the next.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mailvault.errors import StorageError, StorageFull

#: What prune does with a pack (``packs.action``).
DROP, KEEP, REPACK = 0, 1, 2

_SCHEMA = """
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
PRAGMA temp_store=FILE;
PRAGMA cache_size=-16384;
CREATE TABLE needed(id BLOB PRIMARY KEY, pack INTEGER) WITHOUT ROWID;
CREATE TABLE packs(
    n INTEGER PRIMARY KEY, id BLOB UNIQUE NOT NULL, size INTEGER, stored INTEGER DEFAULT 0,
    listed INTEGER DEFAULT 0, blobs INTEGER DEFAULT 0, used INTEGER DEFAULT 0,
    action INTEGER DEFAULT 0, emitted INTEGER DEFAULT 0);
CREATE TABLE old_index(n INTEGER PRIMARY KEY, id BLOB NOT NULL);
"""

_BATCH = 1000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class MarkSet:
    """The scratch database of one prune. Use as a context manager (removed on exit)."""

    def __init__(self, directory: Path | None) -> None:
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                for old in directory.glob("prune-*.sqlite"):
                    with contextlib.suppress(ValueError, OSError):
                        if not _alive(int(old.stem.split("-", 1)[1])):
                            old.unlink()
            except OSError:
                directory = None
        if directory is None:
            directory = Path(tempfile.gettempdir())
        self.path = directory / f"prune-{os.getpid()}.sqlite"
        with contextlib.suppress(OSError):
            self.path.unlink()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.executescript(_SCHEMA)
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StorageError(f"prune's scratch database {self.path}: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def __enter__(self) -> MarkSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, sql: str, args: Iterable[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except sqlite3.OperationalError as exc:
            if "full" in str(exc).lower():
                raise StorageFull(f"no space left on device writing {self.path}") from exc
            raise StorageError(f"prune's scratch database {self.path}: {exc}") from exc

    def _many(self, sql: str, rows: Iterable[tuple[object, ...]]) -> int:
        before = self._db.total_changes
        try:
            self._db.executemany(sql, rows)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc).lower():
                raise StorageFull(f"no space left on device writing {self.path}") from exc
            raise StorageError(f"prune's scratch database {self.path}: {exc}") from exc
        return self._db.total_changes - before

    # -- needed blobs -------------------------------------------------------------------------
    def mark(self, blob_ids: Iterable[bytes]) -> int:
        """Mark blobs needed (streamed: the ids are not collected first); return how many were new."""
        return self._many("INSERT OR IGNORE INTO needed(id) VALUES (?)", ((i,) for i in blob_ids))

    def __contains__(self, blob_id: bytes) -> bool:
        return self._run("SELECT 1 FROM needed WHERE id=?", (blob_id,)).fetchone() is not None

    def needed_count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM needed").fetchone()[0])

    def unplaced_count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM needed WHERE pack IS NULL").fetchone()[0])

    def place(self, pack_n: int, blob_ids: Iterable[bytes]) -> int:
        """Take every needed blob among ``blob_ids`` not yet placed from pack ``pack_n`` (the first
        pack listing a blob is where it is kept from); return how many were taken."""
        return self._many(
            "UPDATE needed SET pack=? WHERE id=? AND pack IS NULL", ((pack_n, i) for i in blob_ids)
        )

    def placed_in(self, pack_n: int) -> set[bytes]:
        """The needed blobs taken from pack ``pack_n`` (one pack's worth, held in memory)."""
        return {bytes(r[0]) for r in self._run("SELECT id FROM needed WHERE pack=?", (pack_n,))}

    def index_placement(self) -> None:
        self._run("CREATE INDEX needed_pack ON needed(pack)")

    # -- packs --------------------------------------------------------------------------------
    def add_stored(self, packs: Iterable[tuple[bytes, int]]) -> None:
        self._many("INSERT OR IGNORE INTO packs(id, size, stored) VALUES (?, ?, 1)", packs)

    def pack(self, pack_id: bytes) -> tuple[int, bool, bool, int] | None:
        """(n, stored, listed before, action) of a pack, or None if it is neither stored nor listed."""
        row = self._run("SELECT n, stored, listed, action FROM packs WHERE id=?", (pack_id,)).fetchone()
        return None if row is None else (int(row[0]), bool(row[1]), bool(row[2]), int(row[3]))

    def list_pack(self, pack_id: bytes) -> tuple[int, bool, bool]:
        """Note that an index file lists ``pack_id``: (n, stored, listed before)."""
        row = self.pack(pack_id)
        if row is None:
            n = self._run("INSERT INTO packs(id, listed) VALUES (?, 1)", (pack_id,)).lastrowid
            return int(n or 0), False, False
        n, stored, listed, _action = row
        if not listed:
            self._run("UPDATE packs SET listed=1 WHERE n=?", (n,))
        return n, stored, listed

    def decide(self, pack_n: int, blobs: int, used: int) -> int:
        action = DROP if not used else KEEP if used == blobs else REPACK
        self._run("UPDATE packs SET blobs=?, used=?, action=? WHERE n=?", (blobs, used, action, pack_n))
        return action

    def emit(self, pack_n: int) -> bool:
        """True the first time pack ``pack_n`` is written to the new index."""
        return self._run("UPDATE packs SET emitted=1 WHERE n=? AND emitted=0", (pack_n,)).rowcount == 1

    def stored_summary(self) -> tuple[int, int]:
        row = self._run("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM packs WHERE stored=1").fetchone()
        return int(row[0]), int(row[1])

    def action_summary(self, action: int) -> tuple[int, int, int]:
        """(packs, their stored bytes, estimated bytes kept) of the stored packs with ``action``."""
        row = self._run(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(size * used / MAX(1, blobs)), 0) "
            "FROM packs WHERE stored=1 AND action=?",
            (action,),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def doomed_packs(self) -> Iterator[bytes]:
        """Stored packs to delete: unused, repacked, or listed by no index file."""
        yield from self._pages("SELECT n, id FROM packs WHERE stored=1 AND action != ? AND n > ?", KEEP)

    # -- index files --------------------------------------------------------------------------
    def add_old_index(self, ids: Iterable[bytes]) -> int:
        return self._many("INSERT INTO old_index(id) VALUES (?)", ((i,) for i in ids))

    def old_index(self) -> Iterator[bytes]:
        yield from self._pages("SELECT n, id FROM old_index WHERE n > ?")

    def _pages(self, sql: str, *args: object) -> Iterator[bytes]:
        """Rows ``(n, id)`` of ``sql`` (which ends in ``n > ?``) a page at a time, in n order, so
        the caller may write to the database between them."""
        last = 0
        while True:
            rows = self._run(f"{sql} ORDER BY n LIMIT {_BATCH}", (*args, last)).fetchall()
            if not rows:
                return
            for _n, blob_id in rows:
                yield bytes(blob_id)
            last = int(rows[-1][0])
