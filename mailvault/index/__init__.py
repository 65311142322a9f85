"""Search across snapshots: a local full-text index of the vault, and what is built on it.

The core API (the CLI commands ``index``, ``search``, ``show``, ``diff``, ``restore/export
--search`` and the web UI are thin shells over it)::

    from mailvault.index import update_index, open_index, search, count, parse_query

    stats = update_index(repo, progress)          # -> IndexStats (incremental, resumable)
    db = open_index(repo)                          # sqlite3 connection to the index
    hits = search(db, "from:alice has:attachment", account=None, snapshot="latest", limit=50)
    n = count(db, "invoice OR receipt")            # -> int
    q = parse_query("subject:(x")                  # raises QueryError naming the token
    sel = select(db, query, snapshot_id)           # folder -> {(uid, blob)} for restore/export
    snap, sel = select_in_snapshot(repo, query, "latest", account)   # update + resolve + select
    d = diff_snapshots(repo, "abc1", "latest", account="me")   # -> SnapshotDiff
    blob = find_blob(repo, "3fa2")                 # unique prefix -> blob id (bytes)
    v = view(repo.read_blob(blob), blob.hex())     # -> MessageView (headers, text, attachments)
    att, data = attachment(raw, 1)                 # attachment N (1-based)

Modules: ``extract`` (message -> searchable Doc), ``store`` (the SQLite file, its schema and
permissions), ``update`` (indexing), ``query`` (the query language -> a parsed tree),
``query_sql`` (a parsed tree -> SQL), ``search`` (running queries; :class:`Hit`), ``diff``
(snapshot comparison), ``show`` (rendering one message). The index lives in the local cache
and holds plaintext terms: see docs/SEARCH.md.
"""

from __future__ import annotations

from mailvault.index.diff import FlagChange, FolderDiff, SnapshotDiff, diff_snapshots
from mailvault.index.query import Query, parse_query
from mailvault.index.search import Hit, count, open_index, search, select, select_in_snapshot
from mailvault.index.show import MessageView, attachment, find_blob, html_body, view
from mailvault.index.update import IndexStats, update_index

__all__ = [
    "FlagChange",
    "FolderDiff",
    "Hit",
    "IndexStats",
    "MessageView",
    "Query",
    "SnapshotDiff",
    "attachment",
    "count",
    "diff_snapshots",
    "find_blob",
    "html_body",
    "open_index",
    "parse_query",
    "search",
    "select",
    "select_in_snapshot",
    "update_index",
    "view",
]
