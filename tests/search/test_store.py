"""The index database's schema: an index of the previous schema is upgraded in place, others rebuilt."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailvault.index import store


def _indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()


def _schema_2(path: Path) -> None:
    """Turn a new index back into what schema 2 had (its index on members(msg) only)."""
    db = store.connect(path)
    db.execute(
        "INSERT INTO msgs(blob, date, size, from_, to_, cc, subject, attachments, nattach) "
        "VALUES(x'01', 0, 10, 'a', 'b', '', 's', '[]', 0)"
    )
    db.execute("INSERT INTO members(manifest, uid, msg, flags, idate, sortdate) VALUES(1, 7, 1, '', 0, 0)")
    db.execute("DROP INDEX members_by_msg")
    db.execute("DROP INDEX msgs_filter")
    db.execute("CREATE INDEX members_msg ON members(msg)")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    db.commit()
    db.close()


def test_schema_2_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "search.sqlite"
    _schema_2(path)
    assert "members_msg" in _indexes(path) and "members_by_msg" not in _indexes(path)
    db = store.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (store.SCHEMA_VERSION,)
        assert db.execute("SELECT COUNT(*) FROM members").fetchone() == (1,)  # kept, not rebuilt
    finally:
        db.close()
    idx = _indexes(path)
    assert {"members_by_msg", "msgs_filter"} <= idx and "members_msg" not in idx


def test_an_unknown_schema_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "search.sqlite"
    _schema_2(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.commit()
    db.close()
    db = store.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (store.SCHEMA_VERSION,)
        assert db.execute("SELECT COUNT(*) FROM members").fetchone() == (0,)  # started again
    finally:
        db.close()
