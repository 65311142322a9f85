"""What every kind of ``mailvault backup`` shares: options, result, the previous snapshot, commit."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailvault.errors import EXIT_OK, EXIT_PARTIAL, FormatError, IntegrityError, ObjectNotFound
from mailvault.model import SourceMessage
from mailvault.net.session import Endpoint
from mailvault.progress import Progress
from mailvault.vault.repository import Repository, VaultWriter, new_snapshot
from mailvault.vault.snapshots import ManifestEntry, Snapshot, SnapshotFolder


@dataclass
class BackupOptions:
    account: str | None = None
    folders: Sequence[str] = ()
    exclude_folders: Sequence[str] = ()
    delete_after_days: int | None = None
    batch_bytes: int = 4 << 20
    #: IMAP: folders backed up over this many parallel connections (``AUTO``, 0: one per folder
    #: with changes, at most 4; Gmail at most 15).
    connections: int = 1


@dataclass
class BackupResult:
    snapshot: str
    account: str
    source: str
    folders: int
    messages: int
    bytes: int
    new_messages: int = 0
    bytes_fetched: int = 0
    new_bytes_stored: int = 0
    messages_fetched: int = 0
    folders_unchanged: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    deleted: int = 0
    reconnects: int = 0
    #: IMAP: worker processes that fetched chunks (mailvault.backup.procs).
    worker_processes: int = 0
    duration: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.failures or self.skipped else EXIT_OK


def folder_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in exclude)


class BackupBase:
    kind = ""

    def __init__(
        self, repo: Repository, endpoint: Endpoint, options: BackupOptions, progress: Progress
    ) -> None:
        self.repo = repo
        self.endpoint = endpoint
        self.options = options
        self.progress = progress
        self.account = options.account or endpoint.account
        self.started = time.monotonic()
        self.prev: Snapshot | None = repo.latest_snapshot(self.account)
        self.result = BackupResult("", self.account, endpoint.address, 0, 0, 0)
        self.namespace = ""  # the source's personal namespace prefix (IMAP)

    def _prev_folder(self, name_raw: str) -> SnapshotFolder | None:
        if self.prev is None:
            return None
        for f in self.prev.folders:
            if f.name_raw == name_raw:
                return f
        return None

    def _known_entries(self, pf: SnapshotFolder) -> list[ManifestEntry]:
        """The previous snapshot's entries of a folder whose bytes the vault still holds.

        "Already have it" is asked of the index, not only of the previous snapshot: a message
        lost to damage (and dropped from the index by ``repair``) is fetched again while the
        server still has it. An unreadable manifest means nothing is known: the folder is
        fetched whole (the blobs still in the vault dedupe)."""
        try:
            entries = self.repo.read_manifest(pf)
        except (IntegrityError, FormatError, ObjectNotFound) as exc:
            self.result.warnings.append(f"{pf.name}: the previous snapshot's list is unreadable ({exc})")
            return []
        return [e for e in entries if self.repo.has_blob(bytes.fromhex(e.blob))]

    def _store(self, writer: VaultWriter, msg: SourceMessage) -> ManifestEntry:
        blob, new = writer.add(msg.raw)
        if new:
            self.result.new_messages += 1
        return ManifestEntry.from_message(msg, blob)

    def _commit(self, writer: VaultWriter, folders: list[SnapshotFolder]) -> Snapshot:
        snap = new_snapshot(self.account, self.kind, self.endpoint.address, folders, self.namespace)
        r = self.result
        r.duration = round(time.monotonic() - self.started, 3)
        snap.summary.update(
            {
                "messages_fetched": r.messages_fetched,
                "bytes_fetched": r.bytes_fetched,
                "failures": len(r.failures),
                "duration": r.duration,
            }
        )
        r.snapshot = writer.commit(snap)
        r.new_bytes_stored = writer.stored_bytes
        r.folders = len(folders)
        r.messages = snap.messages
        r.bytes = snap.size
        return snap
