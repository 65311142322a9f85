"""POP3 side of ``mailvault backup``: UIDL-based; messages stay on the server unless
``delete_after_days`` is set, and then only those the just-committed snapshot holds are deleted."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from mailvault.backup.common import BackupBase, BackupOptions, BackupResult
from mailvault.errors import ConnectError, RemoteError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.net.session import Endpoint
from mailvault.progress import Progress
from mailvault.sources.pop3 import Pop3Entry, Pop3Source
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import ManifestEntry, SnapshotFolder


class Pop3Backup(BackupBase):
    kind = "pop3"

    def __init__(
        self,
        repo: Repository,
        endpoint: Endpoint,
        source: Pop3Source,
        options: BackupOptions,
        progress: Progress,
    ) -> None:
        super().__init__(repo, endpoint, options, progress)
        self.source = source

    def run(self) -> BackupResult:
        from mailvault.sources.local import header_date  # POP3 only: not loaded for IMAP runs

        src = self.source
        listing = src.listing()
        pf = self._prev_folder("INBOX")
        known = {str(e.uid): e for e in self._known_entries(pf)} if pf is not None else {}
        entries: list[ManifestEntry] = []
        info = FolderInfo("INBOX", "INBOX", None, None)
        with self.repo.lock():
            writer = self.repo.writer()
            pending = list(listing)
            with self.progress.bar("INBOX", total=len(listing)) as bar:
                while pending:
                    item = pending.pop(0)
                    if item.uidl is not None and item.uidl in known:
                        entries.append(known[item.uidl])
                        bar.update()
                        continue
                    try:
                        raw = src.retrieve(item.number)
                    except ConnectError as exc:
                        if not src.has_uidl or self.result.reconnects >= 3:
                            self.result.failures.append(
                                f"INBOX: {exc}; {len(pending) + 1} message(s) not fetched"
                            )
                            break
                        # Message numbers only hold within a session: re-list and go on by UIDL.
                        src.reconnect()
                        self.result.reconnects += 1
                        numbers = {e.uidl: e.number for e in src.listing()}
                        pending = [
                            Pop3Entry(numbers[e.uidl], e.uidl, e.size)
                            for e in [item, *pending]
                            if e.uidl in numbers
                        ]
                        continue
                    except RemoteError as exc:
                        self.result.failures.append(f"INBOX message {item.number} ({item.uidl}): {exc}")
                        bar.update()
                        continue
                    self.result.messages_fetched += 1
                    self.result.bytes_fetched += len(raw)
                    uid = item.uidl if item.uidl is not None else "sha256:" + hashlib.sha256(raw).hexdigest()
                    date = header_date(raw) or datetime.now(UTC)
                    entry = self._store(writer, SourceMessage(uid=uid, raw=raw, internaldate=date))
                    known.setdefault(uid, entry)
                    entries.append(entry)
                    bar.update()
            manifest = writer.add_manifest(entries)
            folder = SnapshotFolder.build(info, manifest, len(entries), sum(e.size for e in entries))
            self._commit(writer, [folder])
        if self.options.delete_after_days is not None:
            self._delete_old(entries, self.options.delete_after_days)
        return self.result

    def _delete_old(self, committed: list[ManifestEntry], days: int) -> None:
        """Delete only messages the committed snapshot holds that are older than ``days``.

        Messages are matched by UIDL in a fresh listing of the current session; a
        server without UIDL gets no deletion at all (message numbers are no identity).
        """
        src = self.source
        if not src.has_uidl:
            self.result.warnings.append("the server has no UIDL: --delete-after-days was not applied")
            return
        cutoff = datetime.now(UTC) - timedelta(days=min(days, 700_000))  # ~1900 years: no overflow
        old = {
            str(e.uid)
            for e in committed
            if e.internaldate is not None and datetime.fromisoformat(e.internaldate) < cutoff
        }
        if not old:
            return
        victims = [e.number for e in src.listing() if e.uidl is not None and e.uidl in old]
        if victims:
            self.result.deleted = src.delete(victims)
