"""Restore worker processes (the parent's side): folders and parts of big folders uploaded by
child processes running :mod:`mailvault.restore.worker`.

Why processes: a restore is CPU-bound in one Python process. Reading blobs, the APPEND pipeline,
parsing the verification FETCH and decoding manifests all hold the GIL, so more connections
(threads) do not make it faster while the second core idles. A child process has its own GIL.

The children are started early (:func:`start_workers`, while the parent opens the vault), so
their interpreter start-up and imports overlap the parent's work; once the parent's first
connection has logged in (a wrong password fails once, in the parent), each child gets the vault
key material, the target's credentials and the options **in memory, over its stdin pipe**
(:meth:`Workers.setup`) — never argv, environment or a file — opens the vault from the key
(:mod:`mailvault.vault.handoff`, no key derivation), the same restore journal (SQLite in WAL
mode: several processes write it at once) and its own target connection, and then uploads what
it is sent with the same code as the parent (``_Restore._restore_part`` / ``_restore_folder``).

Messages are length-prefixed pickles on the child's stdin/stdout: both ends are this program,
parent and its own child. A child whose parent dies sees end-of-file on stdin and exits.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from mailvault import workers
from mailvault.net.session import Credentials, Endpoint, TLSPolicy
from mailvault.restore.model import RestoreOptions
from mailvault.restore_journal import Journal
from mailvault.vault.handoff import handoff
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import Snapshot
from mailvault.workers import WorkerDied

MODULE = "mailvault.restore.worker"

#: Number of worker processes (overrides the default ``min(CPUs, connections) - 1``; 0 = none).
ENV_PROCESSES = "MAILVAULT_RESTORE_PROCESSES"


def worker_count(connections: int) -> int:
    """Worker processes for a restore over ``connections`` connections: one per CPU beyond the
    parent's, each using one of the connections (none on one CPU or one connection)."""
    wanted = os.environ.get(ENV_PROCESSES, "").strip()
    if wanted.isdigit():
        return max(0, min(int(wanted), connections - 1))
    return max(0, min(os.cpu_count() or 1, connections) - 1)


@dataclass
class Setup:
    """Everything a worker needs (sent over the pipe; holds the vault key and the target secret)."""

    vault: bytes  # VaultHandoff.to_bytes()
    snapshot: Snapshot
    endpoint: Endpoint
    auth_kind: str  # "password" | "" (no worker processes with OAuth2)
    secret: bytes
    sasl: str
    ca_file: str | None
    allow_plaintext: bool
    options: RestoreOptions
    journal: str

    def __repr__(self) -> str:
        return f"Setup({self.endpoint.address!r})"  # no secrets in a traceback


class WorkerProcess(workers.WorkerProcess):
    """A restore worker: :mod:`mailvault.workers`' child, set up once, then sent jobs."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(proc)
        self._known = False  # whether the worker has answered its setup
        self._problem: str | None = None  # why it cannot work

    def setup(self, s: Setup) -> None:
        try:
            self.post(("setup", s))
        except WorkerDied:
            self._known, self._problem = True, "it exited before it was set up"

    def answered(self, timeout: float) -> bool:
        """Whether the worker has answered its setup (waits at most ``timeout`` seconds)."""
        return self._known or super().answered(timeout)

    def ready(self) -> str | None:
        """None once the worker has opened the vault and logged in; else why it cannot work."""
        if not self._known:
            self._known = True
            try:
                msg = self.answer()
                self._problem = None if msg[0] == "ready" else str(msg[1])
            except (WorkerDied, IndexError):
                self._problem = "it exited while starting"
        return self._problem

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: one that has answered logs out and exits (waited for); one that has
        not (still starting, or never needed) holds nothing yet and is killed."""
        if self._known and self._problem is None:
            super().close(timeout)
        else:
            self.kill()


class Workers:
    """The worker processes of one restore."""

    def __init__(self, procs: list[WorkerProcess]) -> None:
        self.procs = procs

    @classmethod
    def start(cls, count: int) -> Workers:
        started = [WorkerProcess.start(MODULE) for _ in range(count)]
        return cls([w for w in started if w is not None])

    def __len__(self) -> int:
        return len(self.procs)

    def setup(
        self,
        repo: Repository,
        snap: Snapshot,
        endpoint: Endpoint,
        creds: Credentials,
        tls: TLSPolicy,
        options: RestoreOptions,
        journal: Journal,
        *,
        gmail: bool,
        budget: bool,
    ) -> None:
        """Hand the workers their job; stop them instead when this restore cannot use them: a dry
        run, Gmail (one upload per message across folders, claimed in the parent), a daily upload
        budget (reserved in the parent), OAuth2 (each login asks the token source; refreshing is
        the parent's), an in-memory journal or a vault a child cannot reopen."""
        h = handoff(repo)
        oauth2 = creds.oauth2_token is not None  # a token per login, refreshed in the parent
        if (
            not self.procs
            or options.dry_run
            or gmail
            or budget
            or oauth2
            or journal.path is None
            or h is None
        ):
            self.close()
            return
        kind, secret = "", b""
        if creds.password is not None:
            kind, secret = "password", creds.password()
        s = Setup(
            h.to_bytes(),
            snap,
            endpoint,
            kind,
            secret,
            creds.sasl,
            tls.ca_file,
            tls.allow_plaintext,
            options,
            str(journal.path),
        )
        for w in self.procs:
            w.setup(s)

    def close(self) -> None:
        for w in self.procs:
            w.stop()  # all of them log out at once
        for w in self.procs:
            w.close()
        self.procs = []


def start_workers(count: int) -> Workers:
    """Start ``count`` worker processes now (they import while the parent opens the vault)."""
    return Workers.start(count) if count > 0 else Workers([])
