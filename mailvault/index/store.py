"""The search index database: one SQLite file per vault in the local cache directory.

``<cache>/<vault id>/search.sqlite`` (the cache is ``MAILVAULT_CACHE_DIR`` or the user cache
directory). The directory is created 0700 and the database 0600 (SQLite gives its ``-wal``
and ``-shm`` files the same mode): the index holds **plaintext terms** of the mail, even
when the vault is encrypted. It is derived data: deleting it (or ``mailvault index
--rebuild``) loses nothing but the time to rebuild it from the vault.

Tables:

``msgs``
    one row per indexed message blob (parsed once, whatever the number of copies):
    blob id, Date header, size, decoded From/To/Subject, attachment names and types; an
    index (id, attachments, size) checks ``has:``/``larger:``/``smaller:`` without reading
    the (wide) rows.
``fts``
    a *contentless* FTS5 table (``content=''``, ``detail=column``) with columns from_, to_,
    cc, subject, body, filename, rowid = ``msgs.id``: it holds which messages (and columns)
    hold each term, not positions and never a second copy of the text — half the size of a
    positional index. A multi-word phrase is found as "all its words" by FTS5, then checked
    word by word (:mod:`mailvault.index.phrase`). CJK runs are indexed as bigrams
    (:func:`mailvault.index.extract.cjk_bigrams`).
``manifests`` / ``members``
    a folder manifest (content-addressed, so shared by every snapshot in which the folder
    did not change) and its rows: uid, message, flags, INTERNALDATE, and the date hits are
    sorted and filtered by (Date header, else INTERNALDATE; indexed, so "newest first,
    50 of them" reads 50 rows, not every match). A second index, (message, manifest, date,
    uid), sorts a set of full-text matches without reading the table (only a page's rows
    are then read).
``snapshots`` / ``snapfolders``
    the snapshots indexed, and which manifest each of their folders has.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from mailvault.errors import IndexError_
from mailvault.vault.index import default_cache_root

SCHEMA_VERSION = "3"
DB_NAME = "search.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS msgs(
    id INTEGER PRIMARY KEY,
    blob BLOB UNIQUE NOT NULL,
    date INTEGER,
    size INTEGER NOT NULL,
    from_ TEXT NOT NULL,
    to_ TEXT NOT NULL,
    cc TEXT NOT NULL,
    subject TEXT NOT NULL,
    attachments TEXT NOT NULL,   -- JSON [[name, mime, size], ...]
    nattach INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS msgs_filter ON msgs(id, nattach, size);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    from_, to_, cc, subject, body, filename,
    content='', columnsize=0, detail=column, tokenize='unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS manifests(id INTEGER PRIMARY KEY, blob BLOB UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS members(
    manifest INTEGER NOT NULL, uid NOT NULL, msg INTEGER NOT NULL, flags TEXT NOT NULL,
    idate INTEGER,
    sortdate INTEGER  -- the message's date: its Date header, else INTERNALDATE; NULL if neither
);
CREATE INDEX IF NOT EXISTS members_manifest ON members(manifest);
CREATE INDEX IF NOT EXISTS members_by_msg ON members(msg, manifest, sortdate, uid);
CREATE INDEX IF NOT EXISTS members_sortdate ON members(sortdate);
CREATE TABLE IF NOT EXISTS snapshots(
    id INTEGER PRIMARY KEY, sid TEXT UNIQUE NOT NULL, account TEXT NOT NULL, time TEXT NOT NULL,
    latest INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapfolders(
    snap INTEGER NOT NULL, folder TEXT NOT NULL, manifest INTEGER NOT NULL, PRIMARY KEY(snap, folder)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapfolders_manifest ON snapfolders(manifest);
"""

#: Upgrades in place from an older schema (others are rebuilt: the index is derived data).
_MIGRATIONS: dict[str, tuple[str, ...]] = {
    "2": (
        "CREATE INDEX IF NOT EXISTS members_by_msg ON members(msg, manifest, sortdate, uid)",
        "DROP INDEX IF EXISTS members_msg",
        "CREATE INDEX IF NOT EXISTS msgs_filter ON msgs(id, nattach, size)",
        "UPDATE meta SET value = '3' WHERE key = 'schema'",
    ),
}


def index_path(vault_id: str, root: Path | None = None) -> Path:
    return (root or default_cache_root()) / vault_id / DB_NAME


def _private_file(path: Path) -> None:
    """Create the directory (0700) and the database file (0600) before SQLite opens it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the index database at ``path``."""
    try:
        _private_file(path)
        db = sqlite3.connect(path, timeout=60, check_same_thread=False)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file only
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-65536")
        db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and row[0] in _MIGRATIONS:
            db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is not None and row[0] in _MIGRATIONS:
                for stmt in _MIGRATIONS[row[0]]:
                    db.execute(stmt)
            db.commit()
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and row[0] != SCHEMA_VERSION:  # derived data of another version: start again
            db.close()
            remove(path)
            return connect(path)
        db.executescript(_SCHEMA)
        if row is None:
            db.execute("INSERT INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
            db.commit()
    except sqlite3.Error as exc:
        raise IndexError_(f"{path}: search index unusable: {exc} (run 'mailvault index --rebuild')") from None
    except OSError as exc:
        raise IndexError_(f"{path}: cannot open the search index: {exc.strerror or exc}") from None
    return db


@contextlib.contextmanager
def update_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<index>.lock`` (waits for another process updating the index)."""
    _private_file(Path(str(path) + ".lock"))
    with open(str(path) + ".lock", "rb+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def remove(path: Path) -> None:
    """Delete the index database (and its WAL files)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(path) + suffix).unlink()
