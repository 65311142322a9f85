"""A restore worker process: ``python -m mailvault.restore.worker`` (started by
:mod:`mailvault.restore.procs`; not a user command).

It reads a :class:`~mailvault.restore.procs.Setup` from stdin, opens the vault from the handed-over
key, the restore journal and one target connection, answers ``("ready",)`` (or ``("error", text)``),
then uploads each job it is sent — ``("part", plan, work, uidvalidity)`` or ``("folder", plan,
folder)`` — with the parent's own code and answers ``("done", plan, failures, warnings, once,
over_quota, budget_exhausted)`` or ``("raised", exception)``. End of file on stdin: the parent is
done (log out and exit) or gone (exit at once, mid-job too: the journal and the target's duplicate
check make the rerun safe).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

from mailvault.errors import MailvaultError
from mailvault.net.session import Credentials, TLSPolicy, connect_imap
from mailvault.progress import QUIET
from mailvault.restore.model import _Part
from mailvault.restore.procs import Setup
from mailvault.restore.run import _Restore
from mailvault.restore_journal import Journal
from mailvault.targets.imap import ImapTarget
from mailvault.vault.handoff import VaultHandoff, open_handed_over
from mailvault.workers import recv, send

#: Tests and benchmarks: a file each worker appends ``<pid> <event> ...`` lines to (ready, start, done).
ENV_TRACE = "MAILVAULT_RESTORE_WORKER_TRACE"


def _trace(*words: object) -> None:
    path = os.environ.get(ENV_TRACE)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            stamp = (os.getpid(), f"{time.time():.3f}", *words, f"cpu={time.process_time():.3f}")
            f.write(" ".join(map(str, stamp)) + "\n")


class _ChildRestore(_Restore):
    """The parent's restore code, reporting what the parent must merge."""

    once: list[tuple[str, str]]

    def _fail_once(self, blob: str, message: str) -> None:
        # The parent reports each blob once across all processes.
        self.once.append((blob, message))

    def job(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        r = self.result
        r.failures, r.warnings, self.once = [], [], []
        _trace("start", msg[0], msg[1].target_raw, len(msg[2]) if msg[0] == "part" else msg[1].messages)
        try:
            if msg[0] == "part":
                _, plan, work, uidvalidity = msg
                self._restore_part(_Part(plan, work, uidvalidity))
            else:
                _, plan, folder = msg
                self._restore_folder(plan, folder)
        except MailvaultError as exc:
            return ("raised", exc)
        _trace("done", msg[0], plan.target_raw, plan.uploaded)
        return ("done", plan, r.failures, r.warnings, self.once, self._over_quota, r.budget_exhausted)


def _credentials(s: Setup) -> Credentials:
    secret = s.secret
    if s.auth_kind == "password":
        return Credentials(password=lambda: secret, sasl=s.sasl)
    return Credentials(sasl=s.sasl)


def _open(s: Setup) -> _ChildRestore:
    repo = open_handed_over(VaultHandoff.from_bytes(s.vault))
    journal = Journal(Path(s.journal))
    creds = _credentials(s)
    # The parent already warned about --allow-plaintext.
    tls = TLSPolicy(s.ca_file, s.allow_plaintext, warn=lambda _m: None)
    target = ImapTarget(lambda: connect_imap(s.endpoint, creds, tls))
    r = _ChildRestore(repo, s.snapshot, s.endpoint, target, journal, s.options, QUIET)
    r.once = []
    return r


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    try:
        first = recv(inp)
    except EOFError:
        return  # the parent did not need this worker
    try:
        r = _open(first[1])
    except BaseException as exc:  # told to the parent, which restores in-process instead
        send(out, ("error", str(exc) if isinstance(exc, MailvaultError) else repr(exc)))
        return
    jobs: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
    busy = threading.Event()

    def read() -> None:
        while True:
            try:
                msg = recv(inp)
            except (EOFError, OSError):
                if busy.is_set():
                    os._exit(3)  # the parent is gone mid-job
                jobs.put(None)
                return
            busy.set()
            jobs.put(msg)

    threading.Thread(target=read, name="mailvault-worker-stdin", daemon=True).start()
    _trace("ready")
    send(out, ("ready",))
    try:
        while (msg := jobs.get()) is not None:
            try:
                answer = r.job(msg)
            except Exception:
                answer = ("crashed", traceback.format_exc(limit=8))
            busy.clear()
            send(out, answer)
    finally:
        r._main_target.close()
        r.journal.close()
        r.repo.close()


def main() -> None:
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing printed by accident can corrupt the answers
    try:
        serve(inp, out)
    except (BrokenPipeError, EOFError):
        pass
    finally:
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
