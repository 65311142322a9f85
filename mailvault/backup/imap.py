"""The IMAP side of ``mailvault backup``: folders, and chunks of large folders, over parallel connections.

Work comes in two kinds of task, shared by every connection of the run:

* *plan* a folder: its state (from LIST-STATUS when that tells it is unchanged or empty, else
  EXAMINE), the UIDs (UID SEARCH), cut into chunks;
* a *chunk*: metadata FETCH of its UIDs (CONDSTORE ``CHANGEDSINCE`` for known messages), then the
  bodies it lacks by pipelined FETCH (:mod:`mailvault.net.fetch`), stored as they arrive.

A connection keeps to the folder it has selected while that folder has chunks left, plans the
next folder when it has none, and takes the largest chunk of another folder when every folder
is planned: one large folder is split over every connection. A chunk on another connection
EXAMINEs the folder there and checks its UIDVALIDITY. The manifest of a folder is its chunks'
rows in UID order, however they were spread: the same snapshot as over one connection.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mailvault.backup.chunks import ChunkOutcome, ChunkRunner
from mailvault.backup.common import BackupBase, BackupOptions, BackupResult, folder_selected
from mailvault.backup.procs import BackupWorkers, WorkerChunks
from mailvault.backup.work import Job, Work
from mailvault.errors import ProtocolError, RemoteError
from mailvault.model import FolderInfo
from mailvault.net import mutf7
from mailvault.net.connections import AUTO, connection_count
from mailvault.net.session import Endpoint
from mailvault.progress import Progress
from mailvault.sources.imap import FolderState, ImapSource, RemoteFolder
from mailvault.vault.repository import Repository, VaultWriter
from mailvault.vault.snapshots import ManifestEntry, ManifestRows, SnapshotFolder

#: UIDs handled per round of metadata FETCH + body FETCH in a folder (one connection).
UID_CHUNK = 2000
#: With several connections a folder is cut into chunks of at least this many UIDs.
MIN_SPLIT = 250
#: ``auto``: about this many messages to fetch make one more connection worth opening.
MESSAGES_PER_CONNECTION = 500


class ImapBackup(WorkerChunks, BackupBase):
    kind = "imap"

    def __init__(
        self,
        repo: Repository,
        endpoint: Endpoint,
        source: ImapSource,
        options: BackupOptions,
        progress: Progress,
        open_source: Callable[[], ImapSource] | None = None,
        workers: BackupWorkers | None = None,
    ) -> None:
        super().__init__(repo, endpoint, options, progress)
        #: Worker processes started ahead (:mod:`mailvault.backup.procs`); some of the extra
        #: connections run in them.
        self._workers = workers
        self._to_fetch = 0  # messages to fetch, as LIST-STATUS tells (see _connections)

        self._main_source = source
        self._open_source = open_source
        self._local = threading.local()  # each worker thread has its own connection
        self._sources: list[ImapSource] = [source]
        self.namespace = (source.namespace if source.namespace is not None else source.prepare())[0]
        self._writer_lock = threading.Lock()  # the vault writer is not thread-safe
        self._lock = threading.Lock()  # counters and results shared by the connections
        self.gm_known: dict[int, tuple[str, int]] = {}  # X-GM-MSGID -> (blob, size)
        self._chunk_runner: ChunkRunner | None = None
        self._results: dict[int, SnapshotFolder] = {}
        self._remote: list[RemoteFolder] = []
        self._split = 1

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
        self._remote = remote
        if self.source.gmail and self.prev is not None:
            for pf in self.prev.folders:
                for e in self._known_entries(pf):
                    if e.gm_msgid is not None:
                        self.gm_known.setdefault(e.gm_msgid, (e.blob, e.size))
        with self.repo.lock():
            writer = self.repo.writer()
            n = self._connections(remote) if self._open_source else 1
            self._split = n
            self._parallel(writer, n)
            folders = [self._results[i] for i in range(len(remote))]
            self.result.reconnects += sum(s.reconnects for s in self._sources)
            self.result.bytes_fetched += sum(s.stats.bytes_fetched for s in self._sources)
            self.result.messages_fetched += sum(s.stats.messages_fetched for s in self._sources)
            self._commit(writer, folders)  # the snapshot's summary carries these counts
        return self.result

    # -- how many connections -------------------------------------------------------------
    def _connections(self, remote: list[RemoteFolder]) -> int:
        """Connections for this run: folders LIST-STATUS shows unchanged need none; about one
        per :data:`MESSAGES_PER_CONNECTION` messages to fetch, at least one per folder with work
        (``auto``: at most 4; Gmail at most 15); an explicit number is not exceeded."""
        src = self.source
        busy = 0
        messages = 0
        for rf in remote:
            pf = self._prev_folder(rf.info.name_raw)
            listed = rf.listed if src.condstore else None
            if listed is not None and self._unchanged(pf, listed):
                continue
            busy += 1
            if listed is None:
                messages += UID_CHUNK  # unknown: as if large
            elif pf is not None and pf.uidvalidity == listed.uidvalidity and pf.uidnext and listed.uidnext:
                messages += max(0, listed.uidnext - pf.uidnext)
            else:
                messages += listed.exists
        self._to_fetch = messages
        useful = max(busy, math.ceil(messages / MESSAGES_PER_CONNECTION), 1)
        if self.options.connections == AUTO:
            return connection_count(AUTO, useful, gmail=src.gmail)
        return max(1, min(self.options.connections, useful))

    def _parallel(self, writer: VaultWriter, n: int) -> None:
        """Every task over ``n`` connections: this thread's (the first) and ``n - 1`` more."""
        work = Work(len(self._remote))
        # Worker processes for some of the extra connections, when there is enough to fetch to
        # be worth one (not for Gmail: its X-GM-MSGID dedupe is shared by one process's connections).
        worth = self._to_fetch >= MESSAGES_PER_CONNECTION and not self.source.gmail
        procs = self._take_procs(n - 1 if worth else 0)
        if n <= 1:
            self._worker(writer, work, None)
            return

        def extra() -> None:
            assert self._open_source is not None
            try:
                src = self._open_source()
            except RemoteError as exc:  # e.g. the server's connection limit: go on with fewer
                self.result.warnings.append(
                    f"an extra connection could not be opened ({exc}); went on with fewer"
                )
                return
            with self._lock:
                self._sources.append(src)
            try:
                self._worker(writer, work, src)
            finally:
                src.close()

        with ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="mailvault-backup") as pool:
            futures = [pool.submit(self._proc_worker, writer, work, p) for p in procs]
            futures += [pool.submit(extra) for _ in range(n - 1 - len(procs))]
            try:
                self._worker(writer, work, None)
            finally:
                for f in futures:
                    f.exception()  # wait for every connection before raising
            for f in futures:
                f.result()

    def _worker(self, writer: VaultWriter, work: Work, src: ImapSource | None) -> None:
        self._local.source = src
        try:
            while True:
                task = work.take(self.source.selected)
                if task is None:
                    return
                try:
                    planned = self._plan(writer, task.plan) if task.plan is not None else None
                    if task.job is not None:
                        self._run_chunk(writer, task.job, task.chunk)
                except BaseException:
                    work.fail()
                    raise
                work.done(planned)
        finally:
            self._local.source = None

    # -- a folder ----------------------------------------------------------------------------
    def _plan(self, writer: VaultWriter, index: int) -> Job | None:
        """A folder's state and UIDs; its result when there is nothing to fetch, else its job."""
        src = self.source
        rf = self._remote[index]
        raw_name = rf.info.name_raw
        pf = self._prev_folder(raw_name)
        # LIST-STATUS already told this folder's state: an unchanged or empty folder needs no EXAMINE.
        listed = rf.listed if src.condstore else None
        skip = listed is not None and (self._unchanged(pf, listed) or (listed.exists == 0 and pf is None))
        state = listed if skip and listed is not None else src.examine(raw_name)
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
            with self._lock:
                self.result.folders_unchanged += 1
            self._results[index] = SnapshotFolder.build(info, pf.manifest, pf.messages, pf.bytes)
            return None
        known: dict[int, ManifestEntry] = {}
        if same and pf is not None:
            known = {int(e.uid): e for e in self._known_entries(pf)}
        condstore = bool(known) and pf is not None and pf.highestmodseq is not None
        uids = src.all_uids() if state.exists else []
        if not uids:
            self._finish(writer, index, info, [])
            return None
        size = UID_CHUNK
        if self._split > 1:  # small enough that the connections share a large folder
            size = max(MIN_SPLIT, min(UID_CHUNK, math.ceil(len(uids) / (2 * self._split))))
        chunks = [uids[i : i + size] for i in range(0, len(uids), size)]
        bar = self.progress.bar(info.name[:30], total=len(uids))
        job = Job(index, info, pf, state.uidvalidity, known, condstore, chunks, bar)
        job.rows = [None] * len(chunks)
        job.left = len(chunks)
        return job

    def _finish(self, writer: VaultWriter, index: int, info: FolderInfo, parts: list[ManifestRows]) -> None:
        rows = ManifestRows()
        for part in parts:
            rows.extend(part)
        with self._writer_lock:
            manifest = writer.add_manifest(rows)
        self._results[index] = SnapshotFolder.build(info, manifest, rows.count, rows.bytes)

    def _run_chunk(self, writer: VaultWriter, job: Job, k: int) -> None:
        src = self.source
        if src.selected != job.info.name_raw:
            state = src.examine(job.info.name_raw)
            if state.uidvalidity != job.uidvalidity:
                raise ProtocolError(
                    f"UIDVALIDITY of {mutf7.decode(job.info.name_raw)!r} changed while we were working"
                )
        since = job.pf.highestmodseq if job.condstore and job.pf is not None else None
        out = self._runner(writer).run(src, job.info.name, job.chunks[k], job.known, since, job.bar)
        self._chunk_done(writer, job, k, out)

    def _chunk_done(self, writer: VaultWriter, job: Job, k: int, out: ChunkOutcome) -> None:
        with self._lock:
            self.result.new_messages += out.new_messages
            self.result.failures.extend(out.failures)
            job.rows[k] = out.rows
            job.left -= 1
            last = job.left == 0
        if last:
            job.bar.close()
            self._finish(writer, job.index, job.info, [r for r in job.rows if r is not None])

    def _runner(self, writer: VaultWriter) -> ChunkRunner:
        with self._lock:
            if self._chunk_runner is None:

                def store(raw: bytes) -> tuple[str, bool]:
                    with self._writer_lock:
                        return writer.add(raw)

                self._chunk_runner = ChunkRunner(
                    store, batch_bytes=self.options.batch_bytes, gm_known=self.gm_known
                )
            return self._chunk_runner

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
