"""``mailvault backup``: an IMAP or POP3 account into the vault, incrementally.

Per IMAP folder (EXAMINE only, bodies with BODY.PEEK[]; :mod:`mailvault.backup.imap`):

1. unchanged since the last snapshot (same UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and
   message count) → the previous manifest is reused: no FETCH at all;
2. otherwise the flags of known messages are refreshed (CONDSTORE ``CHANGEDSINCE``
   when advertised, one FLAGS fetch of the folder otherwise), messages gone from the
   server drop out of the new manifest, and only UIDs the previous snapshot lacks are
   fetched; a UIDVALIDITY change re-fetches the folder (the blobs dedupe);
3. with Gmail's X-GM-EXT-1, a message whose X-GM-MSGID is already in the vault is not
   downloaded again (All Mail costs neither bandwidth nor storage).

Folders, and chunks of large folders, are spread over parallel connections; bodies come by
pipelined FETCH (:mod:`mailvault.net.fetch`).

POP3: UIDL-based; messages stay on the server unless ``delete_after_days`` is set,
and then only those the just-committed snapshot holds are deleted.
"""

from __future__ import annotations

from mailvault.backup.common import BackupOptions, BackupResult, folder_selected
from mailvault.backup.connect import EarlySource, open_source
from mailvault.backup.imap import ImapBackup
from mailvault.backup.pop3 import Pop3Backup
from mailvault.net.pop3 import connect_pop3
from mailvault.net.session import Credentials, Endpoint, TLSPolicy
from mailvault.progress import QUIET, Progress
from mailvault.sources.pop3 import Pop3Source
from mailvault.vault.repository import Repository

__all__ = ["BackupOptions", "BackupResult", "EarlySource", "backup", "folder_selected"]


def backup(
    repo: Repository,
    endpoint: Endpoint,
    creds: Credentials,
    tls: TLSPolicy,
    options: BackupOptions | None = None,
    *,
    progress: Progress = QUIET,
    early: EarlySource | None = None,
) -> BackupResult:
    """Back up one account into ``repo``. ``early``: the IMAP connection already being opened
    (:class:`EarlySource`, started while the vault's key was derived)."""
    options = options or BackupOptions()
    if endpoint.protocol == "imap":
        # Connect before taking the lock: a wrong password must leave the vault untouched.
        source = (
            early.take() if early is not None else open_source(endpoint, creds, tls, options, prepare=True)
        )
        workers = early.workers if early is not None else None
        try:
            return ImapBackup(
                repo,
                endpoint,
                source,
                options,
                progress,
                lambda: open_source(endpoint, creds, tls, options),
                workers,
            ).run()
        finally:
            source.close()
            if workers is not None:
                workers.close()  # those not used
    pop = Pop3Source(lambda: connect_pop3(endpoint, creds, tls))
    try:
        return Pop3Backup(repo, endpoint, pop, options, progress).run()
    finally:
        pop.close()
