"""``mailvault restore``: replay a snapshot into an IMAP account — exact, idempotent, resumable.

1. **Plan.** Each source folder gets a target folder: ``--into`` (everything into one
   folder), else an explicit ``--map SRC=DST``, else the target folder with the same
   special-use attribute (\\Sent → ``[Gmail]/Sent Mail``), else the same name, re-joined
   with the target's delimiter under its personal namespace prefix. Missing folders are
   created; a name the target refuses is reported with a suggestion.
2. **Upload.** Messages are APPENDed byte-exact with their INTERNALDATE and the flags the
   folder's PERMANENTFLAGS allow (the rest reported once per folder), in MULTIAPPEND
   batches where advertised. Each success is written to the restore journal (blob → UID,
   per target folder and UIDVALIDITY), so a rerun uploads only what is missing and an
   interrupted run resumes. Before uploading into a non-empty folder the target's
   (Message-ID, size) pairs are compared, so messages already there (from another tool or
   a journal that was lost) are not uploaded again.
3. **Gmail** (target advertises X-GM-EXT-1): each message is uploaded once; its other
   folders become labels (``STORE +X-GM-LABELS``); the \\All folder comes last; APPENDLIMIT
   and a daily upload budget are respected; throttling answers back off.
"""

from __future__ import annotations

from collections.abc import Callable

from mailvault.net.connections import AUTO, AUTO_CONNECTIONS, connection_count
from mailvault.net.session import Credentials, Endpoint, TLSPolicy, connect_imap
from mailvault.progress import QUIET, Progress
from mailvault.restore.connections import Connections
from mailvault.restore.model import (
    GMAIL_DEFAULT_BUDGET_MB,
    GMAIL_SYSTEM_LABELS,
    FolderPlan,
    RestoreOptions,
    RestoreResult,
    parse_map,
)
from mailvault.restore.procs import start_workers, worker_count
from mailvault.restore.run import MIN_PART, _Restore
from mailvault.restore_journal import Journal
from mailvault.targets.imap import ImapTarget
from mailvault.vault.index import default_cache_root
from mailvault.vault.repository import Repository

__all__ = [
    "GMAIL_DEFAULT_BUDGET_MB",
    "GMAIL_SYSTEM_LABELS",
    "QUIET",
    "Connections",
    "FolderPlan",
    "ImapTarget",
    "RestoreOptions",
    "RestoreResult",
    "_Restore",
    "connect_ahead",
    "connect_imap",
    "parse_map",
    "restore",
]


def _journal(repo: Repository) -> Journal:
    return Journal(default_cache_root() / repo.id / "restore.sqlite")


def restore(
    repo: Repository,
    endpoint: Endpoint,
    creds: Credentials,
    tls: TLSPolicy,
    options: RestoreOptions | None = None,
    *,
    progress: Progress = QUIET,
    journal: Journal | None = None,
    connections: Connections | None = None,
) -> RestoreResult:
    """``connections``: from :func:`connect_ahead` (opened while the vault was being opened);
    by default the workers' connections are opened once the first one has logged in."""
    options = options or RestoreOptions()
    snap = repo.resolve_snapshot(options.snapshot, options.account)
    conns = connections or Connections(_connector(endpoint, creds, tls))
    target = conns.take()
    own_journal = journal is None
    jr = journal or _journal(repo)
    workers = conns.workers
    try:
        if workers:  # the first connection is in: hand the worker processes their part
            budget = options.max_upload_mb_per_day is not None
            workers.setup(repo, snap, endpoint, creds, tls, options, jr, gmail=target.gmail, budget=budget)
        if connections is None and not options.dry_run and options.connections is not None:
            # Log the other connections in while the folders are planned and created.
            units = sum(max(1, f.messages // MIN_PART) for f in snap.folders if f.messages)
            conns.ahead(connection_count(options.connections, units, gmail=target.gmail) - 1)
        r = _Restore(repo, snap, endpoint, target, jr, options, progress, connect=conns.take)
        r.workers = list(workers.procs)
        return r.run()
    finally:
        for w in workers.procs:
            w.stop()  # they log out while this process does
        target.close()
        workers.close()
        if connections is None:
            conns.close()
        if own_journal:
            jr.close()


def connect_ahead(
    endpoint: Endpoint, creds: Credentials, tls: TLSPolicy, options: RestoreOptions
) -> Connections | None:
    """Start logging in to the target before the vault is open (the caller opens it meanwhile,
    then passes the result to :func:`restore` and closes it afterwards): the first connection,
    then, once it is in, the workers' (``--connections``: auto = up to AUTO_CONNECTIONS). None
    when the credentials come from the vault itself (OAuth2 tokens kept in it)."""
    from mailvault.auth.access import VaultTokens

    if isinstance(creds.oauth2_token, VaultTokens):
        return None
    conns = Connections(_connector(endpoint, creds, tls))
    workers = 0
    if not options.dry_run and options.connections is not None:
        total = AUTO_CONNECTIONS if options.connections == AUTO else options.connections
        if options.max_upload_mb_per_day is None and creds.oauth2_token is None:
            # Worker processes (mailvault.restore.procs) start now: their imports overlap the
            # vault's opening. Each brings its own connection.
            conns.workers = start_workers(worker_count(total))
        workers = total - 1 - len(conns.workers)
    conns.ahead(1, after_first=workers, prepare=lambda t: t.prefetch_listing())
    return conns


def _connector(endpoint: Endpoint, creds: Credentials, tls: TLSPolicy) -> Callable[[], ImapTarget]:
    def connect() -> ImapTarget:
        return ImapTarget(lambda: connect_imap(endpoint, creds, tls))

    return connect
