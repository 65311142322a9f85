"""``python -m tests.faults.killhook ARGS``: the mailvault CLI that kills itself with SIGKILL at a chosen
point of progress — a real ``kill -9`` (no cleanup, no atexit, no flush), but at a reproducible moment.

Progress points ("events") are counted by kind:

* ``put`` / ``get`` / ``delete`` — storage calls (local or S3 backend),
* ``multipart`` — an S3 multipart upload started, ``s3:OPERATION`` — an S3 API call (e.g.
  ``s3:UploadPart``) about to be sent,
* ``add`` — a blob handed to the vault writer (one per message stored, also prune's repack),
* ``imap`` — an IMAP command sent (SELECT, FETCH, APPEND, STORE ...), ``imapline`` — a response line read,
* ``pop`` — a POP3 command sent (UIDL, RETR, DELE ...), ``popline`` — a response line read.

Environment:

* ``MV_KILL_AT=KIND:N:DELAY_MS`` — when the N-th event of KIND starts, SIGKILL this process after
  DELAY_MS milliseconds (0: at once, before the call; otherwise the process carries on meanwhile, so the
  kill lands at a random moment inside or after that call).
* ``MV_KILL_COUNTS=FILE`` — on a normal exit, write the event counts as JSON (calibration runs).
"""

from __future__ import annotations

import atexit
import functools
import imaplib
import json
import os
import poplib
import signal
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

COUNTS: Counter[str] = Counter()
_lock = threading.Lock()
#: (kind, n, delay in seconds) of the armed kill point, if any
_TARGET: list[tuple[str, int, float]] = []


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def event(kind: str) -> None:
    with _lock:
        COUNTS[kind] += 1
        hit = bool(_TARGET) and _TARGET[0][0] == kind and COUNTS[kind] == _TARGET[0][1]
    if hit:
        delay = _TARGET[0][2]
        if delay <= 0:
            _die()
        timer = threading.Timer(delay, _die)
        timer.daemon = True
        timer.start()


def _wrap(owner: Any, name: str, kind: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        event(kind)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def install() -> None:
    spec = os.environ.get("MV_KILL_AT")
    if spec:
        kind, n, delay_ms = spec.rsplit(":", 2)
        _TARGET.append((kind, int(n), int(delay_ms) / 1000.0))
    counts_file = os.environ.get("MV_KILL_COUNTS")
    if counts_file:

        def dump() -> None:
            with open(counts_file, "w", encoding="utf-8") as f:
                json.dump(dict(COUNTS), f)

        atexit.register(dump)

    from mailvault.storage.local import LocalBackend
    from mailvault.storage.s3 import S3Backend
    from mailvault.vault.repository import VaultWriter

    for backend in (LocalBackend, S3Backend):
        for method in ("put", "get", "delete"):
            _wrap(backend, method, method)
    _wrap(S3Backend, "_put_multipart", "multipart")
    from botocore.client import BaseClient

    api_call: Callable[..., Any] = BaseClient._make_api_call

    @functools.wraps(api_call)
    def counted_call(self: Any, operation_name: str, api_params: Any) -> Any:
        event(f"s3:{operation_name}")
        return api_call(self, operation_name, api_params)

    BaseClient._make_api_call = counted_call  # type: ignore[method-assign]
    _wrap(VaultWriter, "add", "add")
    _wrap(imaplib.IMAP4, "_command", "imap")
    _wrap(imaplib.IMAP4, "_get_line", "imapline")
    _wrap(poplib.POP3, "_putcmd", "pop")
    _wrap(poplib.POP3, "_getline", "popline")


if __name__ == "__main__":
    install()
    from mailvault.cli import main

    main()
