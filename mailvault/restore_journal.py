"""The restore journal: which snapshot message already sits where on which target.

A local SQLite file beside the vault's index cache (``<cache>/<vault id>/restore.sqlite``),
keyed by target account, target folder and that folder's UIDVALIDITY: a recreated
folder (new UIDVALIDITY) is restored again. ``seq`` tells apart byte-identical
messages inside one source folder (a faithful restore keeps both).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mailvault.errors import StorageError, StorageFull

F = TypeVar("F", bound=Callable[..., Any])


def _error(path: Path | None, exc: sqlite3.Error) -> StorageError:
    """A failing journal database as one line (a full disk is StorageFull, exit 2)."""
    where = f"the restore journal {path}" if path is not None else "the restore journal"
    if "full" in str(exc).lower():
        return StorageFull(f"no space left on device writing {where}")
    return StorageError(f"{where}: {exc}")


def _locked(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise _error(self._path, exc) from exc

    return wrapper  # type: ignore[return-value]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal(
    target TEXT, folder TEXT, uidvalidity INTEGER, blob TEXT, seq INTEGER, uid INTEGER,
    PRIMARY KEY(target, folder, uidvalidity, blob, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gmail_copy(
    target TEXT, blob TEXT, folder TEXT, uidvalidity INTEGER, uid INTEGER,
    PRIMARY KEY(target, blob)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gmail_label(
    target TEXT, blob TEXT, label TEXT, PRIMARY KEY(target, blob, label)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS budget(target TEXT, day TEXT, bytes INTEGER, PRIMARY KEY(target, day));
"""


class Journal:
    """Thread-safe: restore workers share one journal."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.RLock()
        self._path = path
        try:
            if path is None:
                self._db = sqlite3.connect(":memory:", check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, timeout=60, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives a killed process (the WAL is in the OS's hands);
                # only a power cut can lose the last commits, and a rerun's duplicate check
                # (Message-ID and size in the target folder) finds those messages there.
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise _error(path, exc) from exc

    @property
    def path(self) -> Path | None:
        """The database file (None: in memory). WAL mode and a 60 s busy timeout let restore
        worker processes (``mailvault.restore.worker``) write the same file at once."""
        return self._path

    def close(self) -> None:
        self._db.close()

    @_locked
    def done(self, target: str, folder: str, uidvalidity: int) -> set[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT blob, seq FROM journal WHERE target=? AND folder=? AND uidvalidity=?",
            (target, folder, uidvalidity),
        )
        return {(r[0], int(r[1])) for r in rows}

    @_locked
    def done_uids(self, target: str, folder: str, uidvalidity: int) -> set[int]:
        """Target UIDs the journal accounts for in this folder."""
        rows = self._db.execute(
            "SELECT uid FROM journal WHERE target=? AND folder=? AND uidvalidity=? AND uid IS NOT NULL",
            (target, folder, uidvalidity),
        )
        return {int(r[0]) for r in rows}

    @_locked
    def record(
        self, target: str, folder: str, uidvalidity: int, rows: list[tuple[str, int, int | None]]
    ) -> None:
        """Record (blob, seq, uid) rows as present in the target folder."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO journal VALUES (?,?,?,?,?,?)",
                [(target, folder, uidvalidity, b, s, u) for b, s, u in rows],
            )

    @_locked
    def record_uploaded(
        self,
        target: str,
        folder: str,
        uidvalidity: int,
        rows: list[tuple[str, int, int | None]],
        *,
        day: str,
        nbytes: int,
        gmail: bool = False,
    ) -> None:
        """One transaction for a group of uploaded messages: their journal rows, the bytes spent
        today and, on Gmail, where each message's single copy is."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO journal VALUES (?,?,?,?,?,?)",
                [(target, folder, uidvalidity, b, s, u) for b, s, u in rows],
            )
            self._db.execute(
                "INSERT INTO budget VALUES (?,?,?) ON CONFLICT(target, day) DO UPDATE SET bytes = bytes + ?",
                (target, day, nbytes, nbytes),
            )
            if gmail:
                self._db.executemany(
                    "INSERT OR REPLACE INTO gmail_copy VALUES (?,?,?,?,?)",
                    [(target, b, folder, uidvalidity, u) for b, _s, u in rows],
                )

    # Gmail: one copy per message, labels for the other folders.
    @_locked
    def gmail_copy(self, target: str, blob: str) -> tuple[str, int, int | None] | None:
        row = self._db.execute(
            "SELECT folder, uidvalidity, uid FROM gmail_copy WHERE target=? AND blob=?", (target, blob)
        ).fetchone()
        return (row[0], int(row[1]), row[2]) if row else None

    @_locked
    def record_gmail_copy(
        self, target: str, blob: str, folder: str, uidvalidity: int, uid: int | None
    ) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO gmail_copy VALUES (?,?,?,?,?)",
                (target, blob, folder, uidvalidity, uid),
            )

    @_locked
    def labels_done(self, target: str, blob: str) -> set[str]:
        rows = self._db.execute("SELECT label FROM gmail_label WHERE target=? AND blob=?", (target, blob))
        return {r[0] for r in rows}

    @_locked
    def record_labels(self, target: str, rows: list[tuple[str, str]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO gmail_label VALUES (?,?,?)", [(target, b, lab) for b, lab in rows]
            )

    # Daily upload budget.
    @_locked
    def spent(self, target: str, day: str) -> int:
        row = self._db.execute("SELECT bytes FROM budget WHERE target=? AND day=?", (target, day)).fetchone()
        return int(row[0]) if row else 0

    @_locked
    def spend(self, target: str, day: str, nbytes: int) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO budget VALUES (?,?,?) ON CONFLICT(target, day) DO UPDATE SET bytes = bytes + ?",
                (target, day, nbytes, nbytes),
            )
