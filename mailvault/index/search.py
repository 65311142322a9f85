"""Running queries against the index: :func:`search`, :func:`count`, :func:`select`.

A *hit* is one message in one folder of one snapshot (a :class:`Hit`); the same blob in two
folders is two hits. Scope (``snapshot``):

``"latest"`` (default)
    the latest snapshot of each account (or of ``account``);
``"all"``
    every snapshot; a message present in several is reported once (per account, folder,
    uid and blob), from the newest snapshot holding it;
an id or unique id prefix
    that snapshot.

``gone:`` in the query overrides the scope (see :class:`mailvault.index.query.Query`).
Hits come newest first (Date header, else INTERNALDATE), then by account, folder, uid.
The functions here read an index that :func:`mailvault.index.update_index` has brought up
to date; they never read the vault.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailvault.errors import ConfigError, SnapshotNotFound
from mailvault.index import phrase, store
from mailvault.index.query import Query, parse_query
from mailvault.index.query_sql import split_driver, to_sql
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import Snapshot


@dataclass
class Hit:
    blob: str  # hex
    account: str
    snapshot: str  # hex id
    folder: str
    uid: int | str
    date: str | None  # ISO 8601, UTC
    from_: str
    to: str
    subject: str
    size: int
    flags: list[str]
    attachments: list[str]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form: keys blob, account, snapshot, folder, uid, date, from, to,
        subject, size, flags, attachments."""
        return {
            "blob": self.blob,
            "account": self.account,
            "snapshot": self.snapshot,
            "folder": self.folder,
            "uid": self.uid,
            "date": self.date,
            "from": self.from_,
            "to": self.to,
            "subject": self.subject,
            "size": self.size,
            "flags": self.flags,
            "attachments": self.attachments,
        }


def open_index(repo: Repository) -> sqlite3.Connection:
    """A connection to the index of ``repo``, with the phrase checks reading from ``repo``."""
    db = store.connect(store.index_path(repo.id, repo.cache_root))
    phrase.register(db, repo.read_blob)
    return db


def _scope(
    db: sqlite3.Connection, q: Query, account: str | None, snapshot: str
) -> tuple[str, list[object], bool]:
    """(WHERE fragment on s/sf/m, params, whether to group duplicates across snapshots)."""
    params: list[object] = []
    acct = ""
    if account is not None:
        acct = " AND s.account = ?"
        params.append(account)
    if q.gone is not None:
        if snapshot not in ("latest", "all"):
            raise ConfigError("gone: compares with the latest snapshot; use it without --snapshot")
        same_folder = " AND lf.folder = sf.folder" if q.gone == "folder" else ""
        return (
            "s.latest = 0" + acct + " AND NOT EXISTS (SELECT 1 FROM snapshots ls "  # noqa: S608
            "JOIN snapfolders lf ON lf.snap = ls.id JOIN members lm ON lm.manifest = lf.manifest "
            f"WHERE ls.latest = 1 AND ls.account = s.account AND lm.msg = m.msg{same_folder})",
            params,
            True,
        )
    if snapshot == "latest":
        return "s.latest = 1" + acct, params, False
    if snapshot == "all":
        return "1" + acct, params, True
    rows = db.execute(
        "SELECT id, sid, account FROM snapshots WHERE sid LIKE ? ESCAPE '\\'",
        (snapshot.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
    ).fetchall()
    if not rows:
        raise SnapshotNotFound(f"no snapshot {snapshot!r} in the search index")
    if len(rows) > 1:
        raise SnapshotNotFound(f"snapshot prefix {snapshot!r} is ambiguous ({len(rows)} match)")
    if account is not None and rows[0][2] != account:
        raise SnapshotNotFound(f"snapshot {snapshot!r} belongs to account {rows[0][2]!r}, not {account!r}")
    return "s.id = ?", [rows[0][0]], False


_COLS = (
    "g.blob, s.account, s.sid, sf.folder, m.uid, m.sortdate AS d, g.from_, g.to_, "
    "g.subject, g.size, m.flags, g.attachments"
)
_BY_DATE = (
    "members m INDEXED BY members_sortdate CROSS JOIN snapfolders sf ON sf.manifest = m.manifest "
    "CROSS JOIN snapshots s ON s.id = sf.snap CROSS JOIN msgs g ON g.id = m.msg"
)
_BY_TEXT = (
    "(SELECT rowid AS id FROM fts WHERE fts MATCH ?) f CROSS JOIN msgs g ON g.id = f.id "
    "CROSS JOIN members m ON m.msg = g.id CROSS JOIN snapfolders sf ON sf.manifest = m.manifest "
    "CROSS JOIN snapshots s ON s.id = sf.snap"
)
#: The keys-only join of the deferred page plan (see :func:`_statement`): everything it reads
#: is in indexes, the message table is not touched.
_BY_TEXT_KEYS = (
    "(SELECT rowid AS id FROM fts WHERE fts MATCH ?) f CROSS JOIN members m INDEXED BY members_by_msg "
    "ON m.msg = f.id CROSS JOIN snapfolders sf ON sf.manifest = m.manifest "
    "CROSS JOIN snapshots s ON s.id = sf.snap"
)
_DEFERRED_ROWS = (
    "CROSS JOIN members m ON m.rowid = x.mr CROSS JOIN snapfolders sf ON sf.snap = x.sn AND sf.folder = x.fo "
    "CROSS JOIN snapshots s ON s.id = x.sn CROSS JOIN msgs g ON g.id = m.msg"
)
_ALL_KEYS = (
    "snapshots s CROSS JOIN snapfolders sf ON sf.snap = s.id "
    "CROSS JOIN members m INDEXED BY members_manifest ON m.manifest = sf.manifest"
)
_FILTER_JOIN = " CROSS JOIN msgs g INDEXED BY msgs_filter ON g.id = m.msg"
_ORDER = " ORDER BY d DESC, s.account, sf.folder, m.uid"
_ALL = (
    "snapshots s JOIN snapfolders sf ON sf.snap = s.id JOIN members m ON m.manifest = sf.manifest "
    "JOIN msgs g ON g.id = m.msg"
)
#: Choosing the plan for a page of hits: the messages are walked newest first along the date
#: index (each checked against the query) when the words match at least this many messages and
#: at least 1/25 of the index (1/5 when other conditions narrow further) — then a page is found
#: within a few thousand rows; otherwise reading every full-text match is cheaper.
DRIVE_MAX = 2000
#: How many matches the words have is estimated from the newest this many messages of the
#: index (counting them all cost more than the query: 40-60 ms for a common sender in 1M).
SAMPLE = 5000


def _matches_about(db: sqlite3.Connection, match: str) -> tuple[int, int]:
    """(about how many messages ``match`` matches, messages in the index): counted among
    the newest :data:`SAMPLE` message ids, scaled up (exact in a smaller index)."""
    total = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM msgs").fetchone()[0])
    low = max(0, total - SAMPLE)
    row = db.execute("SELECT COUNT(*) FROM fts WHERE fts MATCH ? AND rowid > ?", (match, low)).fetchone()
    return int(row[0]) * total // max(1, total - low), total


@dataclass
class _Plan:
    stmt: str  # SELECT <_COLS>[, MAX(s.time)] ... (no ORDER BY / LIMIT); deferred: see below
    params: list[object]
    group: bool
    #: ``stmt`` selects only the keys (member row, snapshot, folder) of the hits, from indexes;
    #: :func:`search` sorts and limits them and then reads the rows of that page only
    deferred: bool = False


def _statement(
    db: sqlite3.Connection,
    q: Query,
    account: str | None,
    snapshot: str,
    *,
    page: bool = False,
    keys: bool = False,
) -> _Plan:
    """The statement for the hits of ``q``; three plans.

    *By text*: start from the full-text matches (a selective word costs a few index reads).
    *By date* (only for a page of hits, ``page``), when the words match a large share of the
    index, or there are no words: walk the messages newest first along the date index,
    checking each against the query, and stop once the page is full. *Deferred* (a page of
    the by-text plan, when the rest of the query needs no message columns nor flags): the
    matches are joined and sorted on the (message, manifest, date, uid) index alone and only
    the page's rows are read — reading the message row of each of the 16,000 matches of two
    words in a million messages cost two thirds of the time (``has:``/``larger:``/``smaller:``
    are checked on an index too). With ``keys`` (counting), the deferred statement is given
    whenever the query allows, also without words.
    """
    scope_sql, scope_params, group = _scope(db, q, account, snapshot)
    driver, rest = split_driver(q.root)
    where = [scope_sql]
    params: list[object] = []
    by_date = page and not group
    if by_date and driver is not None:
        about, total = _matches_about(db, driver)
        by_date = about >= max(DRIVE_MAX, total // (25 if rest is None else 5))
    rest_sql, rest_params = to_sql(rest, probe=by_date) if rest is not None else ("", [])
    deferred = False
    if by_date:
        source = _BY_DATE
        params.extend(scope_params)
        if driver is not None:
            where.append("EXISTS (SELECT 1 FROM fts WHERE fts MATCH ? AND rowid = m.msg)")
            params.append(driver)
    elif driver is not None:
        narrow = re.sub(r"\bg\.(nattach|size)\b", "", rest_sql)  # what msgs_filter holds
        deferred = (page or keys) and not group and "g." not in narrow and "m.flags" not in rest_sql
        source = _BY_TEXT_KEYS if deferred else _BY_TEXT
        if deferred and narrow != rest_sql:
            source += _FILTER_JOIN
        params.append(driver)
        params.extend(scope_params)
    else:
        narrow = re.sub(r"\bg\.(nattach|size)\b", "", rest_sql)
        deferred = keys and not group and "g." not in narrow and "m." not in rest_sql
        source = _ALL_KEYS if deferred else _ALL
        if deferred and narrow != rest_sql:
            source += _FILTER_JOIN
        params.extend(scope_params)
    if rest is not None:
        where.append(f"({rest_sql})")
        params.extend(rest_params)
    cols = _COLS + (", MAX(s.time)" if group else "")
    if deferred:
        cols = "m.rowid AS mr, sf.snap AS sn, sf.folder AS fo"
    # Only fixed fragments are pasted together; every value of the query is a bound parameter.
    stmt = f"SELECT {cols} FROM {source} WHERE {' AND '.join(where)}"  # noqa: S608
    if group:
        stmt += " GROUP BY s.account, sf.folder, m.uid, g.id"
    return _Plan(stmt, params, group, deferred)


def _iso(ts: int | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _hit(row: tuple[Any, ...]) -> Hit:
    atts = json.loads(row[11]) if row[11] else []
    return Hit(
        blob=bytes(row[0]).hex(),
        account=row[1],
        snapshot=row[2],
        folder=row[3],
        uid=row[4],
        date=_iso(row[5]),
        from_=row[6],
        to=row[7],
        subject=row[8],
        size=row[9],
        flags=row[10].split() if row[10] else [],
        attachments=[a[0] for a in atts],
    )


def _run(fn: Any, db: sqlite3.Connection, *args: Any) -> Any:
    try:
        return fn(db, *args)
    except sqlite3.OperationalError as exc:
        from mailvault.errors import QueryError

        raise QueryError(f"bad query: the full-text index refused it ({exc})") from None


def search(
    db: sqlite3.Connection,
    query: str | Query,
    *,
    account: str | None = None,
    snapshot: str = "latest",
    limit: int | None = None,
    offset: int = 0,
) -> list[Hit]:
    """The hits of ``query`` (text or parsed), newest first: at most ``limit``, after skipping
    ``offset`` (pages of a folder listing: ``search(db, 'in:"INBOX"', snapshot=id, limit=50,
    offset=100)``)."""
    q = parse_query(query) if isinstance(query, str) else query
    plan = _statement(db, q, account, snapshot, page=limit is not None)
    stmt, params = plan.stmt, list(plan.params)
    if plan.deferred:
        keys = stmt + " ORDER BY m.sortdate DESC, s.account, sf.folder, m.uid LIMIT ? OFFSET ?"
        stmt = f"SELECT {_COLS} FROM ({keys}) x {_DEFERRED_ROWS}"  # noqa: S608
        params += [-1 if limit is None else limit, offset]
        limit, offset = None, 0
    stmt += _ORDER
    if limit is not None or offset:
        stmt += " LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
    rows = _run(lambda d: d.execute(stmt, params).fetchall(), db)
    return [_hit(r) for r in rows]


def count(
    db: sqlite3.Connection, query: str | Query, *, account: str | None = None, snapshot: str = "latest"
) -> int:
    """How many hits :func:`search` would return without a limit."""
    q = parse_query(query) if isinstance(query, str) else query
    plan = _statement(db, q, account, snapshot, keys=True)
    counted = f"SELECT COUNT(*) FROM ({plan.stmt})"  # noqa: S608
    row = _run(lambda d: d.execute(counted, plan.params).fetchone(), db)
    return int(row[0])


def select(db: sqlite3.Connection, query: str | Query, snapshot_id: str) -> dict[str, set[tuple[str, str]]]:
    """The matches of ``query`` inside one snapshot: folder -> {(str(uid), blob hex)}.

    What ``restore --search`` and ``export --search`` keep of the snapshot.
    """
    q = parse_query(query) if isinstance(query, str) else query
    if q.gone is not None:
        raise ConfigError("gone: cannot select messages to restore or export from one snapshot")
    out: dict[str, set[tuple[str, str]]] = {}
    for h in search(db, q, snapshot=snapshot_id):
        out.setdefault(h.folder, set()).add((str(h.uid), h.blob))
    return out


def select_in_snapshot(
    repo: Repository, query: str | Query, snapshot: str, account: str | None, progress: Any = None
) -> tuple[Snapshot, dict[str, set[tuple[str, str]]]]:
    """Resolve ``snapshot`` (id, prefix or ``latest``), bring the index up to date, and return
    the snapshot with the matches of ``query`` in it (see :func:`select`)."""
    from mailvault.index.update import update_index
    from mailvault.progress import QUIET

    q = parse_query(query) if isinstance(query, str) else query
    snap = repo.resolve_snapshot(snapshot, account)
    update_index(repo, progress or QUIET)
    db = open_index(repo)
    try:
        return snap, select(db, q, snap.id)
    finally:
        db.close()
