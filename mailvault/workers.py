"""Worker processes: a child running ``python -m <module>`` that talks to its parent over pipes.

A backup or a restore is CPU-bound in one Python process (the GIL): parsing IMAP responses,
hashing, splitting MIME, reading the vault. More threads do not use a second core; a child
process does. Both ends are this program, so messages are pickles, each preceded by its length,
on the child's stdin (parent -> child) and stdout (child -> parent). Secrets (a vault's master
key, a server password) travel only this way: never argv, environment or a file.

A child whose parent dies reads end-of-file on stdin and exits. Its standard error goes nowhere
(the parent reports what matters); its ``print`` output goes to standard error, never into the pipe.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import IO, Any, Self

from mailvault.memory import tune_gc
from mailvault.passwords import VAULT_PASSWORD_ENV

_HEAD = struct.Struct(">Q")


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


class WorkerProcess:
    """One child process and its pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, module: str) -> Self | None:
        """``python -m module`` with pipes (None if it cannot be started). The vault password, if
        the user passed it in the environment, is not a worker's business: it is left out."""
        env = {k: v for k, v in os.environ.items() if k != VAULT_PASSWORD_ENV}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError:
            return None
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def post(self, msg: object) -> None:
        """Send without waiting for an answer."""
        try:
            assert self.proc.stdin is not None
            send(self.proc.stdin, msg)
        except (OSError, ValueError) as exc:
            raise WorkerDied(str(exc) or type(exc).__name__) from None

    def answer(self) -> tuple[Any, ...]:
        """The next message from the child."""
        try:
            assert self.proc.stdout is not None
            msg: tuple[Any, ...] = recv(self.proc.stdout)
            return msg
        except (EOFError, OSError, ValueError, pickle.UnpicklingError, AttributeError) as exc:
            raise WorkerDied(self._why(exc)) from None

    def answered(self, timeout: float) -> bool:
        """Whether an answer is waiting to be read (waits at most ``timeout`` seconds)."""
        if self.proc.stdout is None:
            return True
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return bool(readable)

    def _why(self, exc: BaseException) -> str:
        try:
            code = self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return f"its pipe failed: {type(exc).__name__}"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    def call(self, msg: object) -> tuple[Any, ...]:
        """Send one message, wait for its answer."""
        self.post(msg)
        return self.answer()

    def stop(self) -> None:
        """Close its stdin: an idle worker finishes and exits."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def kill(self) -> None:
        """End it now (for a worker that holds nothing worth finishing)."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def close(self, timeout: float = 5.0) -> None:
        self.stop()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def serve(handle: Callable[[tuple[Any, ...]], tuple[Any, ...] | None]) -> int:
    """The child's loop: every message from the parent to ``handle``, its answer (if any) back;
    ends at end-of-file (the parent closed the pipe or died) or when ``handle`` raises SystemExit."""
    tune_gc()  # the worker's modules are imported by now
    inp = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdin.close()
    sys.stdout = sys.stderr  # a stray print must not corrupt the pipe
    with contextlib.suppress(OSError):
        os.dup2(sys.stderr.fileno(), 1)
    while True:
        try:
            msg = recv(inp)
        except EOFError:
            return 0
        try:
            reply = handle(msg)
        except SystemExit as stop:
            return int(stop.code or 0)
        if reply is not None:
            try:
                send(out, reply)
            except OSError:
                return 0
