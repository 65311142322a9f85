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

import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, Any

from mailvault.net.session import Credentials, Endpoint, TLSPolicy
from mailvault.passwords import VAULT_PASSWORD_ENV
from mailvault.restore.model import RestoreOptions
from mailvault.restore_journal import Journal
from mailvault.vault.handoff import handoff
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import Snapshot

#: Number of worker processes (overrides the default ``min(CPUs, connections) - 1``; 0 = none).
ENV_PROCESSES = "MAILVAULT_RESTORE_PROCESSES"
_HEAD = struct.Struct(">Q")


def worker_count(connections: int) -> int:
    """Worker processes for a restore over ``connections`` connections: one per CPU beyond the
    parent's, each using one of the connections (none on one CPU or one connection)."""
    wanted = os.environ.get(ENV_PROCESSES, "").strip()
    if wanted.isdigit():
        return max(0, min(int(wanted), connections - 1))
    return max(0, min(os.cpu_count() or 1, connections) - 1)


def send(f: IO[bytes], msg: object) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_HEAD.pack(len(data)))
    f.write(data)
    f.flush()


def recv(f: IO[bytes]) -> Any:
    """The next message; EOFError when the other side is gone."""
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size:
        raise EOFError
    (n,) = _HEAD.unpack(head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 -- our own parent or child, over a private pipe


class WorkerDied(Exception):
    """The worker process exited (killed, crashed) or its pipe broke."""


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


class WorkerProcess:
    """One child process and its pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._known = False  # whether the worker has answered its setup
        self._problem: str | None = None  # why it cannot work

    @classmethod
    def start(cls) -> WorkerProcess | None:
        # The vault password, if the user passed it in the environment, is not the worker's business.
        env = {k: v for k, v in os.environ.items() if k != VAULT_PASSWORD_ENV}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mailvault.restore.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError:
            return None
        return cls(proc)

    def setup(self, s: Setup) -> None:
        try:
            assert self.proc.stdin is not None
            send(self.proc.stdin, ("setup", s))
        except (OSError, ValueError):
            self._known, self._problem = True, "it exited before it was set up"

    def answered(self, timeout: float) -> bool:
        """Whether the worker has answered its setup (waits at most ``timeout`` seconds)."""
        if self._known or self.proc.stdout is None:
            return True
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return bool(readable)

    def ready(self) -> str | None:
        """None once the worker has opened the vault and logged in; else why it cannot work."""
        if not self._known:
            self._known = True
            try:
                assert self.proc.stdout is not None
                msg = recv(self.proc.stdout)
                self._problem = None if msg[0] == "ready" else str(msg[1])
            except (EOFError, OSError, pickle.UnpicklingError, IndexError):
                self._problem = "it exited while starting"
        return self._problem

    def call(self, job: tuple[Any, ...]) -> tuple[Any, ...]:
        """Send one job, wait for its answer."""
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            send(self.proc.stdin, job)
            answer: tuple[Any, ...] = recv(self.proc.stdout)
            return answer
        except (EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
            try:
                code = self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                raise WorkerDied(f"its pipe failed: {type(exc).__name__}") from None
            why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise WorkerDied(why) from None

    def stop(self) -> None:
        """Close its stdin: an idle worker logs out and exits."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: one that has answered logs out and exits (waited for); one that has
        not (still starting, or never needed) holds nothing yet and is killed."""
        self.stop()
        if self._known and self._problem is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Workers:
    """The worker processes of one restore."""

    def __init__(self, procs: list[WorkerProcess]) -> None:
        self.procs = procs

    @classmethod
    def start(cls, count: int) -> Workers:
        started = [WorkerProcess.start() for _ in range(count)]
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
