"""Backup worker processes, the parent's side (the child's: :mod:`mailvault.backup.worker`).

Why: a backup is CPU-bound in one Python process. Parsing FETCH responses, hashing, splitting
MIME parts and building manifests all hold the GIL, so over a fast link more connections
(threads) leave the second core idle. A worker process has a GIL of its own: it takes chunks of
folders like any connection of the backup (:class:`mailvault.backup.work.Work`), fetches them on
its own connection, hashes and splits every message (single-instance parts, the rebuild
checked) and sends back the chunk's manifest rows with those prepared messages. The parent
stores them with the backup's one vault writer (:meth:`VaultWriter.add_prepared`): one set of
packs, deduplicated across every connection, crash ordering as ever. A worker never sees the
vault or its key.

Started early (:class:`mailvault.backup.connect.EarlySource`: while the vault's key is derived
and the first connection logs in), so the interpreter start-up overlaps that work. It logs in
only once the parent's first connection has (a wrong password is tried once), with the password
or token handed **in memory, over its pipe** (:mod:`mailvault.workers`). A worker that dies or
errs loses nothing: its chunk goes back to the other connections.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from dataclasses import dataclass

from mailvault.backup.chunks import ChunkOutcome
from mailvault.backup.common import BackupResult
from mailvault.backup.work import Job, Work
from mailvault.net.connections import AUTO
from mailvault.net.session import Credentials, Endpoint, TLSPolicy
from mailvault.vault.repository import Repository, VaultWriter
from mailvault.vault.snapshots import ManifestEntry
from mailvault.workers import WorkerDied, WorkerProcess

#: A chunk handed to a worker: its job, its number, the previous snapshot's entries sent with it.
_Sent = tuple[Job, int, dict[int, ManifestEntry]]

#: Chunks handed to a worker before its answer to the first is read.
CHUNKS_IN_FLIGHT = 2
#: Worker processes of a backup (overrides the default; 0: none).
ENV_PROCESSES = "MAILVAULT_BACKUP_PROCESSES"
MODULE = "mailvault.backup.worker"
#: ``--connections auto`` opens at most this many connections (see ImapBackup._connections).
AUTO_MAX = 4


@dataclass
class LoginSetup:
    """How a worker logs in (holds the secret: sent over the pipe only)."""

    endpoint: Endpoint
    auth_kind: str  # "password" | "oauth2"
    secret: bytes
    sasl: str
    ca_file: str | None
    allow_plaintext: bool
    batch_bytes: int
    #: The vault's single-instance threshold (0: none): messages are split as its writer would.
    sia_min_part: int = 0

    def __repr__(self) -> str:
        return f"LoginSetup({self.endpoint.address!r})"  # no secret in a traceback


@dataclass
class ChunkTask:
    """One chunk for a worker: the folder, its UIDVALIDITY as planned, the UIDs, the previous
    snapshot's entries of those UIDs and the HIGHESTMODSEQ flags have changed since (or None)."""

    folder_raw: str
    folder: str
    uidvalidity: int | None
    uids: list[int]
    known: dict[int, ManifestEntry]
    since: int | None


def worker_count(connections: int) -> int:
    """Worker processes for a backup over ``connections`` (``AUTO``: up to :data:`AUTO_MAX`):
    one per CPU beyond the parent's, each in place of one of the connections."""
    wanted = os.environ.get(ENV_PROCESSES, "").strip()
    cap = AUTO_MAX if connections == AUTO else connections
    if wanted.isdigit():
        return max(0, min(int(wanted), cap - 1))
    return max(0, min(os.cpu_count() or 1, cap) - 1)


def _setup(endpoint: Endpoint, creds: Credentials, tls: TLSPolicy, batch_bytes: int) -> LoginSetup | None:
    if creds.oauth2_token is not None:
        kind, secret = "oauth2", creds.oauth2_token()
    elif creds.password is not None:
        kind, secret = "password", creds.password()
    else:
        return None
    return LoginSetup(endpoint, kind, secret, creds.sasl, tls.ca_file, tls.allow_plaintext, batch_bytes)


class BackupWorkers:
    """The worker processes of one backup, started ahead of use. They log in only when taken
    (a backup with little to fetch costs the server no extra login)."""

    def __init__(self, count: int) -> None:
        started = [WorkerProcess.start(MODULE) for _ in range(count)] if count > 0 else []
        self._procs = [p for p in started if p is not None]
        self._access: tuple[Endpoint, Credentials, TLSPolicy, int] | None = None
        self._mutex = threading.Lock()  # allow_login (the connecting thread) and close may race

    def __len__(self) -> int:
        return len(self._procs)

    def allow_login(self, endpoint: Endpoint, creds: Credentials, tls: TLSPolicy, batch_bytes: int) -> None:
        """The parent's own login succeeded with ``creds``: workers taken from now on log in
        with them (a wrong password is never tried by a worker)."""
        with self._mutex:
            self._access = (endpoint, creds, tls, batch_bytes)

    def take(self, count: int) -> list[WorkerProcess]:
        """Up to ``count`` workers, told to log in (their answer is read by whoever drives them);
        the others are ended at once (they hold nothing). The secret is asked per worker taken
        (a token command runs once per login, as for any connection)."""
        with self._mutex:
            procs, self._procs = self._procs, []
            access = self._access
        taken: list[WorkerProcess] = []
        for p in procs:
            setup = _setup(*access) if access is not None and len(taken) < count else None
            if setup is not None:
                try:
                    p.post(("login", setup))
                    taken.append(p)
                    continue
                except WorkerDied:
                    pass
            p.kill()
        return taken

    def close(self) -> None:
        self.take(0)


class WorkerChunks:
    """The parent's part for :class:`mailvault.backup.imap.ImapBackup`: chunks run by worker
    processes, their messages stored here (a mixin: it uses the backup's lock, writer lock and
    result, and its ``_chunk_done``)."""

    repo: Repository
    result: BackupResult
    _lock: threading.Lock
    _writer_lock: threading.Lock
    _workers: BackupWorkers | None

    def _chunk_done(self, writer: VaultWriter, job: Job, k: int, out: ChunkOutcome) -> None:
        raise NotImplementedError

    def _take_procs(self, count: int) -> list[WorkerProcess]:
        """``count`` of the started workers (the others are ended)."""
        workers, self._workers = self._workers, None
        if workers is None:
            return []
        procs = workers.take(count)
        for p in procs:
            with contextlib.suppress(WorkerDied):  # found out at its first answer
                p.post(("params", self.repo.params.sia_min_part))
        return procs

    def _proc_worker(self, writer: VaultWriter, work: Work, proc: WorkerProcess) -> None:
        """Drive one worker process: chunks from ``work`` until there are none left."""
        try:
            self._drive(writer, work, proc)
        finally:
            proc.close()

    def _drive(self, writer: VaultWriter, work: Work, proc: WorkerProcess) -> None:
        try:
            answer = proc.answer()
        except WorkerDied as exc:
            answer = ("error", str(exc))
        if answer[0] != "ready":
            self.result.warnings.append(
                f"a worker process could not log in ({answer[1]}); went on with fewer connections"
            )
            return
        # Two chunks in flight: the worker fetches the next while this process stores the last.
        inflight: deque[_Sent] = deque()
        selected: str | None = None
        counted = False
        while True:
            if len(inflight) < CHUNKS_IN_FLIGHT:
                task = work.take(selected, chunks_only=True, wait=not inflight)
                if task is not None:
                    assert task.job is not None
                    sent = self._send_chunk(proc, task.job, task.chunk)
                    if sent is None:
                        work.requeue(task.job, task.chunk)
                        self._lost(work, inflight, "its pipe broke")
                        return
                    inflight.append(sent)
                    selected = task.job.info.name_raw
                    continue
                if not inflight:
                    return
            job, k, known = inflight.popleft()
            try:
                answer = proc.answer()
            except WorkerDied as exc:
                answer = ("error", str(exc))
            if answer[0] == "rows":
                out: ChunkOutcome = answer[1]
                for m in out.prepared:
                    with self._writer_lock:
                        _, new = writer.add_prepared(m)
                    out.new_messages += new
                out.prepared = []
                fetched, nbytes, reconnects = answer[2]
                with self._lock:
                    self.result.worker_processes += not counted
                    counted = True
                    self.result.messages_fetched += fetched
                    self.result.bytes_fetched += nbytes
                    self.result.reconnects += reconnects
                job.bar.update(len(job.chunks[k]))
                self._chunk_done(writer, job, k, out)
                work.done()
                continue
            if answer[0] == "raise":  # e.g. UIDVALIDITY changed: the backup fails as it would here
                work.fail()
                raise answer[1]
            inflight.appendleft((job, k, known))
            self._lost(work, inflight, answer[1])
            return

    def _send_chunk(self, proc: WorkerProcess, job: Job, k: int) -> _Sent | None:
        with self._lock:
            known = {u: job.known.pop(u) for u in job.chunks[k] if u in job.known}
        since = job.pf.highestmodseq if job.condstore and job.pf is not None else None
        t = ChunkTask(job.info.name_raw, job.info.name, job.uidvalidity, job.chunks[k], known, since)
        try:
            proc.post(("chunk", t))
        except WorkerDied:
            with self._lock:
                job.known.update(known)
            return None
        return job, k, known

    def _lost(self, work: Work, inflight: deque[_Sent], why: str) -> None:
        """The worker died or erred: nothing of its chunks in flight was stored; they go back to
        the other connections."""
        for job, k, known in inflight:
            with self._lock:
                job.known.update(known)
            work.requeue(job, k)
        self.result.warnings.append(f"a worker process failed ({why}); its work was redone")
