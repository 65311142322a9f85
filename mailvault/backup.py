"""``mailvault backup``: an IMAP or POP3 account into the vault, incrementally.

Per IMAP folder (EXAMINE only, bodies with BODY.PEEK[]):

1. unchanged since the last snapshot (same UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and
   message count) → the previous manifest is reused: no FETCH at all;
2. otherwise the flags of known messages are refreshed (CONDSTORE ``CHANGEDSINCE``
   when advertised, one FLAGS fetch of the folder otherwise), messages gone from the
   server drop out of the new manifest, and only UIDs the previous snapshot lacks are
   fetched; a UIDVALIDITY change re-fetches the folder (the blobs dedupe);
3. with Gmail's X-GM-EXT-1, a message whose X-GM-MSGID is already in the vault is not
   downloaded again (All Mail costs neither bandwidth nor storage).

POP3: UIDL-based; messages stay on the server unless ``delete_after_days`` is set,
and then only those the just-committed snapshot holds are deleted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from mailvault.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    ConnectError,
    FormatError,
    IntegrityError,
    ObjectNotFound,
    RemoteError,
)
from mailvault.model import FolderInfo, SourceMessage, header_block, message_id
from mailvault.net.imap import AUTO, connection_count
from mailvault.net.session import Credentials, Endpoint, TLSPolicy, connect_imap, connect_pop3
from mailvault.prefetch import prefetch
from mailvault.progress import QUIET, Bar, Progress
from mailvault.sources.imap import Fetched, FetchFailure, FolderState, ImapSource, MessageMeta, RemoteFolder
from mailvault.sources.local import header_date
from mailvault.sources.pop3 import Pop3Entry, Pop3Source
from mailvault.vault.repository import Repository, VaultWriter, new_snapshot
from mailvault.vault.snapshots import ManifestEntry, ManifestRows, Snapshot, SnapshotFolder

#: UIDs handled per round of metadata FETCH + body FETCH in a folder.
UID_CHUNK = 2000


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
    duration: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.failures or self.skipped else EXIT_OK


def folder_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in exclude)


def backup(
    repo: Repository,
    endpoint: Endpoint,
    creds: Credentials,
    tls: TLSPolicy,
    options: BackupOptions | None = None,
    *,
    progress: Progress = QUIET,
) -> BackupResult:
    options = options or BackupOptions()
    if endpoint.protocol == "imap":
        # Connect before taking the lock: a wrong password must leave the vault untouched.
        def open_source() -> ImapSource:
            return ImapSource(lambda: connect_imap(endpoint, creds, tls), batch_bytes=options.batch_bytes)

        source = open_source()
        try:
            return _ImapBackup(repo, endpoint, source, options, progress, open_source).run()
        finally:
            source.close()
    pop = Pop3Source(lambda: connect_pop3(endpoint, creds, tls))
    try:
        return _Pop3Backup(repo, endpoint, pop, options, progress).run()
    finally:
        pop.close()


class _Base:
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


class _ImapBackup(_Base):
    kind = "imap"

    def __init__(
        self,
        repo: Repository,
        endpoint: Endpoint,
        source: ImapSource,
        options: BackupOptions,
        progress: Progress,
        open_source: Callable[[], ImapSource] | None = None,
    ) -> None:
        super().__init__(repo, endpoint, options, progress)
        self._main_source = source
        self._open_source = open_source
        self._local = threading.local()  # each worker thread has its own connection
        self._sources: list[ImapSource] = [source]
        self.namespace = source.personal_namespace()[0]
        self._writer_lock = threading.Lock()  # the vault writer is not thread-safe
        self.gm_known: dict[int, tuple[str, int]] = {}  # X-GM-MSGID -> (blob, size)
        self._fetched_bytes = 0

    @property
    def source(self) -> ImapSource:
        s: ImapSource | None = getattr(self._local, "source", None)
        return s if s is not None else self._main_source

    def run(self) -> BackupResult:
        remote = sorted(
            (
                f
                for f in self.source.folders()
                if folder_selected(f.info.name, self.options.folders, self.options.exclude_folders)
            ),
            key=lambda f: (f.info.name.upper() != "INBOX", f.info.name),  # servers list in any order
        )
        if self.source.gmail and self.prev is not None:
            for pf in self.prev.folders:
                for e in self._known_entries(pf):
                    if e.gm_msgid is not None:
                        self.gm_known.setdefault(e.gm_msgid, (e.blob, e.size))
        with self.repo.lock():
            writer = self.repo.writer()
            n = self._connections(remote) if self._open_source else 1
            if n <= 1:
                folders = [self._folder(writer, rf) for rf in remote]
            else:
                folders = self._parallel(writer, remote, n)
            self.result.reconnects = sum(s.reconnects for s in self._sources)
            self.result.bytes_fetched = sum(s.stats.bytes_fetched for s in self._sources)
            self.result.messages_fetched = sum(s.stats.messages_fetched for s in self._sources)
            self._commit(writer, folders)  # the snapshot's summary carries these counts
        return self.result

    def _connections(self, remote: list[RemoteFolder]) -> int:
        """Connections for this run: folders LIST-STATUS shows unchanged need none."""
        if self.options.connections != AUTO:
            return min(self.options.connections, len(remote))
        src = self.source
        busy = [
            rf
            for rf in remote
            if not (
                src.condstore
                and rf.listed
                and self._unchanged(self._prev_folder(rf.info.name_raw), rf.listed)
            )
        ]
        return min(connection_count(AUTO, len(busy), gmail=src.gmail), max(len(busy), 1))

    def _parallel(self, writer: VaultWriter, remote: list[RemoteFolder], n: int) -> list[SnapshotFolder]:
        """Folders spread over n connections; the snapshot lists them in the usual order."""
        results: dict[int, SnapshotFolder] = {}
        order = list(range(len(remote)))
        lock = threading.Lock()

        def worker() -> None:
            assert self._open_source is not None
            src = self._open_source()
            with lock:
                self._sources.append(src)
            self._local.source = src
            try:
                while True:
                    with lock:
                        if not order:
                            return
                        i = order.pop(0)
                    results[i] = self._folder(writer, remote[i])
            finally:
                self._local.source = None
                src.close()

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="mailvault-backup") as pool:
            for f in [pool.submit(worker) for _ in range(n)]:
                f.result()
        return [results[i] for i in range(len(remote))]

    def _folder(self, writer: VaultWriter, rf: RemoteFolder) -> SnapshotFolder:
        src = self.source
        raw_name = rf.info.name_raw
        pf = self._prev_folder(raw_name)
        # LIST-STATUS already told this folder's state: an unchanged folder needs no EXAMINE.
        listed = rf.listed if src.condstore else None
        state = listed if listed is not None and self._unchanged(pf, listed) else src.examine(raw_name)
        info = FolderInfo(
            rf.info.name,
            raw_name,
            rf.info.delimiter,
            rf.info.special_use,
            state.uidvalidity,
            state.uidnext,
            state.highestmodseq,
        )
        same = pf is not None and pf.uidvalidity is not None and pf.uidvalidity == state.uidvalidity
        if pf is not None and self._unchanged(pf, state):
            self.result.folders_unchanged += 1
            return SnapshotFolder.build(info, pf.manifest, pf.messages, pf.bytes)
        known: dict[int, ManifestEntry] = {}
        if same and pf is not None:
            known = {int(e.uid): e for e in self._known_entries(pf)}
        condstore = bool(known) and pf is not None and pf.highestmodseq is not None
        rows = ManifestRows()
        if state.exists:
            uids = src.all_uids()
            with self.progress.bar(info.name[:30], total=len(uids)) as bar:
                # A chunk of UIDs at a time: metadata, then the bodies it lacks, then its
                # manifest rows — memory does not grow with the size of the folder.
                for i in range(0, len(uids), UID_CHUNK):
                    chunk = uids[i : i + UID_CHUNK]
                    self._chunk(writer, info, chunk, known, rows, condstore, pf, bar)
        with self._writer_lock:
            manifest = writer.add_manifest(rows)
        return SnapshotFolder.build(info, manifest, rows.count, rows.bytes)

    def _unchanged(self, pf: SnapshotFolder | None, state: FolderState) -> bool:
        """Whether a folder is as the previous snapshot has it (same UIDVALIDITY, UIDNEXT, message
        count and HIGHESTMODSEQ: nothing added, expunged or re-flagged), its manifest still there."""
        return (
            pf is not None
            and pf.uidvalidity is not None
            and pf.uidvalidity == state.uidvalidity
            and state.highestmodseq is not None
            and pf.highestmodseq == state.highestmodseq
            and pf.uidnext == state.uidnext
            and pf.messages == state.exists
            and self.repo.has_blob(bytes.fromhex(pf.manifest))
        )

    def _chunk(
        self,
        writer: VaultWriter,
        info: FolderInfo,
        chunk: list[int],
        known: dict[int, ManifestEntry],
        rows: ManifestRows,
        condstore: bool,
        pf: SnapshotFolder | None,
        bar: Bar,
    ) -> None:
        src = self.source
        if condstore and pf is not None and pf.highestmodseq is not None:
            meta = src.metadata(chunk, changedsince=pf.highestmodseq)
            # New UIDs without a newer mod-sequence: ask for their metadata too.
            missing = [u for u in chunk if u not in known and u not in meta]
            meta.update(src.metadata(missing))
        else:
            meta = src.metadata(chunk)
        entries: list[ManifestEntry] = []
        to_fetch: list[MessageMeta] = []
        for uid in chunk:
            e = known.pop(uid, None)
            m = meta.get(uid)
            if e is not None:
                if m is not None:
                    entries.append(self._refresh(e, m))
                elif condstore:
                    entries.append(e)  # unchanged since the last snapshot
                # else: expunged between SEARCH and FETCH
                bar.update()
                continue
            if m is None:
                bar.update()  # expunged meanwhile
                continue
            hit = self.gm_known.get(m.gm_msgid) if m.gm_msgid is not None else None
            if hit is not None:  # Gmail: the same message in another label, already stored
                entries.append(self._entry(m, hit[0], hit[1]))
                bar.update()
            else:
                to_fetch.append(m)
        self._fetch_into(writer, info, to_fetch, entries, bar)
        entries.sort(key=lambda e: int(e.uid))
        for e in entries:
            rows.add(e)

    @staticmethod
    def _entry(m: MessageMeta, blob: str, size: int, mid: str | None = None) -> ManifestEntry:
        return ManifestEntry(
            m.uid,
            blob,
            list(m.flags),
            m.internaldate,
            size,
            list(m.labels),
            m.gm_msgid,
            m.gm_thrid,
            message_id=mid,
        )

    @staticmethod
    def _refresh(e: ManifestEntry, m: MessageMeta | None) -> ManifestEntry:
        if m is None:
            return e
        flags = list(m.flags)
        labels = list(m.labels) if m.labels or e.labels else e.labels
        if flags == e.flags and labels == e.labels:
            return e
        return replace(e, flags=flags, labels=labels)

    def _fetch_into(
        self,
        writer: VaultWriter,
        info: FolderInfo,
        metas: list[MessageMeta],
        entries: list[ManifestEntry],
        bar: Bar,
    ) -> None:
        if not metas:
            return
        fetched = prefetch(
            self.source.fetch(metas),
            max_cost=self.options.batch_bytes,
            cost=lambda i: len(i.raw) if isinstance(i, Fetched) else 0,
        )
        for item in fetched:
            bar.update()
            if isinstance(item, FetchFailure):
                self.result.failures.append(f"{info.name} UID {item.uid}: {item.reason}")
                continue
            m = item.meta
            with self._writer_lock:
                blob, new = writer.add(item.raw)
                if new:
                    self.result.new_messages += 1
            entries.append(self._entry(m, blob, len(item.raw), message_id(header_block(item.raw)) or None))
            if m.gm_msgid is not None:
                self.gm_known.setdefault(m.gm_msgid, (blob, len(item.raw)))
            self._fetched_bytes += len(item.raw)
            bar.set_postfix(f"{self._fetched_bytes >> 20} MiB")


class _Pop3Backup(_Base):
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
