"""Bringing the search index up to date with the vault: :func:`update_index`.

Work is proportional to what is new:

* a snapshot already indexed costs nothing; one forgotten since is dropped (its folders'
  manifests too, once no snapshot uses them);
* a folder manifest already indexed (the folder did not change since an indexed
  snapshot: same content, same manifest id) costs one row per folder;
* a new manifest costs one membership row per message, and every message blob not yet
  indexed is read (in pack order, so each block is decompressed once), parsed once in a
  pool of worker processes and added to ``msgs`` and ``fts``.

Messages are committed in batches, so an interrupted run keeps what it did and the next
run resumes; a manifest's members and a snapshot's rows are each written in one
transaction, after every message they reference is indexed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from mailvault.errors import MailvaultError
from mailvault.index import store
from mailvault.index.extract import Doc, cjk_bigrams, extract_many
from mailvault.progress import QUIET, Progress
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import ManifestEntry, Snapshot

#: Messages per commit (an interrupted run loses at most this many parses).
COMMIT_EVERY = 5000
#: Messages per job of the parsing pool.
JOB_SIZE = 200
#: Below this many new messages, parse in this process (starting workers costs more).
POOL_MIN = 2000


@dataclass
class IndexStats:
    """What one :func:`update_index` run did."""

    snapshots_added: int = 0
    snapshots_removed: int = 0
    manifests_added: int = 0
    messages_indexed: int = 0  # blobs parsed and added this run
    bytes_indexed: int = 0
    members_added: int = 0
    unreadable: int = 0  # blobs that could not be read from the vault (indexed without text)
    messages_total: int = 0  # distinct blobs in the index
    index_bytes: int = 0  # size of the database file
    duration: float = 0.0


def to_unix(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def _utc(snap: Snapshot) -> str:
    return snap.datetime.astimezone(UTC).isoformat(timespec="microseconds")


def update_index(
    repo: Repository, progress: Progress = QUIET, *, rebuild: bool = False, workers: int | None = None
) -> IndexStats:
    """Index every snapshot of ``repo`` not yet indexed; drop forgotten ones. See the module doc."""
    started = time.monotonic()
    path = store.index_path(repo.id, repo.cache_root)
    with store.update_lock(path):  # one updater at a time; readers go on (WAL)
        if rebuild:
            store.remove(path)
        db = store.connect(path)
        try:
            stats = IndexStats()
            _Updater(repo, db, progress, stats, workers).run()
            stats.messages_total = db.execute("SELECT COUNT(*) FROM msgs").fetchone()[0]
        finally:
            db.close()
    stats.index_bytes = sum(
        os.path.getsize(str(path) + s) for s in ("", "-wal") if os.path.exists(str(path) + s)
    )
    stats.duration = round(time.monotonic() - started, 3)
    return stats


class _Updater:
    def __init__(
        self,
        repo: Repository,
        db: sqlite3.Connection,
        progress: Progress,
        stats: IndexStats,
        workers: int | None,
    ) -> None:
        self.repo = repo
        self.db = db
        self.progress = progress
        self.stats = stats
        self.workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
        self._pool: ProcessPoolExecutor | None = None

    def run(self) -> None:
        try:
            snaps = self.repo.snapshots()
            self._drop_forgotten({s.id for s in snaps})
            known = {r[0] for r in self.db.execute("SELECT sid FROM snapshots")}
            for snap in snaps:
                if snap.id not in known:
                    self._add_snapshot(snap)
            if self.stats.messages_indexed > 0.2 * self._count():
                self.db.execute("INSERT INTO fts(fts) VALUES('optimize')")  # merge segments: smaller
                self.db.commit()
                self.db.executescript("PRAGMA incremental_vacuum;")  # (execute() frees one page a step)
            with self.db:
                self.db.execute(
                    "UPDATE snapshots SET latest = (id = (SELECT s2.id FROM snapshots s2 "
                    "WHERE s2.account = snapshots.account ORDER BY s2.time DESC, s2.sid DESC LIMIT 1))"
                )
            if self.stats.messages_indexed or self.stats.snapshots_removed:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file holds it all, no big WAL
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)

    def _count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM msgs").fetchone()[0])

    def _drop_forgotten(self, present: set[str]) -> None:
        gone = [(n, sid) for n, sid in self.db.execute("SELECT id, sid FROM snapshots") if sid not in present]
        if not gone:
            return
        with self.db:
            for n, _sid in gone:
                self.db.execute("DELETE FROM snapfolders WHERE snap=?", (n,))
                self.db.execute("DELETE FROM snapshots WHERE id=?", (n,))
            orphans = [
                r[0]
                for r in self.db.execute(
                    "SELECT id FROM manifests WHERE id NOT IN (SELECT manifest FROM snapfolders)"
                )
            ]
            for m in orphans:
                self.db.execute("DELETE FROM members WHERE manifest=?", (m,))
                self.db.execute("DELETE FROM manifests WHERE id=?", (m,))
        self.stats.snapshots_removed += len(gone)

    def _manifest_id(self, blob: bytes) -> int | None:
        row = self.db.execute("SELECT id FROM manifests WHERE blob=?", (blob,)).fetchone()
        return None if row is None else int(row[0])

    def _add_snapshot(self, snap: Snapshot) -> None:
        # Every new message of the snapshot is indexed in one pass (pack order, one pool),
        # then each new manifest's rows are added.
        new: dict[bytes, list[ManifestEntry]] = {}
        for folder in snap.folders:
            mblob = bytes.fromhex(folder.manifest)
            if mblob not in new and self._manifest_id(mblob) is None:
                new[mblob] = self.repo.read_manifest(folder)
        self._index_blobs([e for entries in new.values() for e in entries], f"index {snap.account}")
        folders: list[tuple[str, int]] = []
        for folder in snap.folders:
            mblob = bytes.fromhex(folder.manifest)
            mid = self._manifest_id(mblob)
            if mid is None:
                mid = self._add_manifest(mblob, new[mblob])
            folders.append((folder.name, mid))
        with self.db:
            cur = self.db.execute(
                "INSERT INTO snapshots(sid, account, time) VALUES (?,?,?)",
                (snap.id, snap.account, _utc(snap)),
            )
            n = cur.lastrowid
            self.db.executemany(
                "INSERT OR REPLACE INTO snapfolders VALUES (?,?,?)", [(n, f, m) for f, m in folders]
            )
        self.stats.snapshots_added += 1

    def _add_manifest(self, mblob: bytes, entries: list[ManifestEntry]) -> int:
        db = self.db
        with db:
            cur = db.execute("INSERT INTO manifests(blob) VALUES (?)", (mblob,))
            mid = int(cur.lastrowid or 0)
            rows = []
            for e in entries:
                row = db.execute(
                    "SELECT id, date FROM msgs WHERE blob=?", (bytes.fromhex(e.blob),)
                ).fetchone()
                if row is None:  # cannot happen: _index_blobs indexed every blob first
                    raise MailvaultError(f"search index: blob {e.blob[:12]} missing after indexing")
                idate = to_unix(e.internaldate)
                sortdate = row[1] if row[1] is not None else idate
                rows.append((mid, e.uid, row[0], " ".join(e.flags), idate, sortdate))
            db.executemany("INSERT INTO members VALUES (?,?,?,?,?,?)", rows)
        self.stats.manifests_added += 1
        self.stats.members_added += len(rows)
        return mid

    # -- messages -------------------------------------------------------------------------
    def _index_blobs(self, entries: list[ManifestEntry], desc: str) -> None:
        sizes: dict[bytes, int] = {}
        for e in entries:
            b = bytes.fromhex(e.blob)
            if b not in sizes and self.db.execute("SELECT 1 FROM msgs WHERE blob=?", (b,)).fetchone() is None:
                sizes[b] = e.size
        if not sizes:
            return
        order = self._pack_order(list(sizes))
        with self.progress.bar(desc, total=len(order)) as bar:
            pending = 0
            for blob, doc in self._parsed(order):
                self._insert(blob, doc if doc is not None else None, sizes[blob])
                pending += 1
                bar.update()
                if pending >= COMMIT_EVERY:
                    self.db.commit()
                    pending = 0
            self.db.commit()

    def _pack_order(self, blobs: list[bytes]) -> list[bytes]:
        cache = self.repo.cache

        def key(b: bytes) -> tuple[bytes, int, int]:
            loc = cache.lookup(b)
            return (loc.pack_id, loc.block_no, loc.offset) if loc else (b"", 0, 0)

        return sorted(blobs, key=key)

    def _read(self, blob: bytes) -> bytes | None:
        try:
            return self.repo.read_blob(blob)
        except MailvaultError:
            self.stats.unreadable += 1
            return None

    def _parsed(self, order: list[bytes]) -> Iterator[tuple[bytes, Doc | None]]:
        """(blob, parsed doc or None when unreadable), in ``order``."""
        if len(order) < POOL_MIN or self.workers <= 1:
            for blob in order:
                raw = self._read(blob)
                yield blob, (extract_many([raw])[0] if raw is not None else None)
            return
        pool = self._get_pool()
        inflight: list[tuple[list[bytes], list[bool], Future[list[Doc]]]] = []
        for start in range(0, len(order), JOB_SIZE):
            chunk = order[start : start + JOB_SIZE]
            raws = [self._read(b) for b in chunk]
            ok = [r is not None for r in raws]
            inflight.append((chunk, ok, pool.submit(extract_many, [r for r in raws if r is not None])))
            while len(inflight) > 2 * self.workers:
                yield from self._collect(inflight.pop(0))
        for job in inflight:
            yield from self._collect(job)

    @staticmethod
    def _collect(
        job: tuple[list[bytes], list[bool], Future[list[Doc]]],
    ) -> Iterator[tuple[bytes, Doc | None]]:
        chunk, ok, fut = job
        docs = iter(fut.result())
        for blob, good in zip(chunk, ok, strict=True):
            yield blob, (next(docs) if good else None)

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))
        return self._pool

    def _insert(self, blob: bytes, doc: Doc | None, size: int) -> None:
        db = self.db
        if doc is None:
            db.execute(
                "INSERT OR IGNORE INTO msgs(blob, date, size, from_, to_, cc, subject, attachments, nattach) "
                "VALUES (?,NULL,?,'','','','','[]',0)",
                (blob, size),
            )
            return
        atts = [[a.name, a.mime, a.size] for a in doc.attachments]
        cur = db.execute(
            "INSERT OR IGNORE INTO msgs(blob, date, size, from_, to_, cc, subject, attachments, nattach) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (
                blob,
                doc.date,
                doc.size,
                doc.from_,
                doc.to,
                doc.cc,
                doc.subject,
                json.dumps(atts, ensure_ascii=False),
                len(atts),
            ),
        )
        if cur.rowcount != 1:
            return
        names = " ".join(f"{a.name} {a.mime}" for a in doc.attachments)
        db.execute(
            "INSERT INTO fts(rowid, from_, to_, cc, subject, body, filename) VALUES (?,?,?,?,?,?,?)",
            (
                cur.lastrowid,
                cjk_bigrams(doc.from_),
                cjk_bigrams(doc.to),
                cjk_bigrams(doc.cc),
                cjk_bigrams(doc.subject),
                cjk_bigrams(doc.text),
                cjk_bigrams(names),
            ),
        )
        self.stats.messages_indexed += 1
        self.stats.bytes_indexed += doc.size
