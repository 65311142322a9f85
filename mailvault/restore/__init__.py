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

from mailvault.net.session import Credentials, Endpoint, TLSPolicy, connect_imap
from mailvault.progress import QUIET, Progress
from mailvault.restore.model import (
    GMAIL_DEFAULT_BUDGET_MB,
    GMAIL_SYSTEM_LABELS,
    FolderPlan,
    RestoreOptions,
    RestoreResult,
    parse_map,
)
from mailvault.restore.run import _Restore
from mailvault.restore_journal import Journal
from mailvault.targets.imap import ImapTarget
from mailvault.vault.index import default_cache_root
from mailvault.vault.repository import Repository

__all__ = [
    "GMAIL_DEFAULT_BUDGET_MB",
    "GMAIL_SYSTEM_LABELS",
    "QUIET",
    "FolderPlan",
    "ImapTarget",
    "RestoreOptions",
    "RestoreResult",
    "_Restore",
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
) -> RestoreResult:
    options = options or RestoreOptions()
    snap = repo.resolve_snapshot(options.snapshot, options.account)

    def connect() -> ImapTarget:
        return ImapTarget(lambda: connect_imap(endpoint, creds, tls))

    target = connect()
    own_journal = journal is None
    jr = journal or _journal(repo)
    try:
        return _Restore(repo, snap, endpoint, target, jr, options, progress, connect=connect).run()
    finally:
        target.close()
        if own_journal:
            jr.close()
