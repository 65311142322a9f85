"""Vault locks: shared for writers and readers of data that must not vanish, exclusive for prune.

A lock is an object ``locks/<random hex>`` holding sealed JSON (host, pid, time,
exclusive). It is refreshed (rewritten under a new name) every few minutes while
held. A lock is *stale* when it was not refreshed for :data:`STALE_AFTER` seconds,
or when it belongs to this host and its process no longer exists; stale locks are
ignored and can be removed with ``mailvault unlock``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from mailvault.errors import IntegrityError, LockedError, ObjectNotFound, StorageError
from mailvault.storage.base import Backend
from mailvault.vault.crypto import Sealer
from mailvault.vault.format import AD_LOCK

STALE_AFTER = 30 * 60
REFRESH_EVERY = 5 * 60


@dataclass(frozen=True)
class LockInfo:
    name: str
    host: str
    pid: int
    time: float
    exclusive: bool
    account: str | None = None

    def is_stale(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if now - self.time > STALE_AFTER:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        kind = f"account {self.account!r}" if self.account else "exclusive" if self.exclusive else "shared"
        age = int(time.time() - self.time)
        return f"{kind} lock by pid {self.pid} on {self.host} ({age}s ago)"


def read_locks(backend: Backend, sealer: Sealer) -> list[LockInfo]:
    out = []
    for name, _ in backend.list("locks/"):
        try:
            doc = json.loads(sealer.open(backend.get(name), AD_LOCK))
            out.append(
                LockInfo(
                    name,
                    doc["host"],
                    int(doc["pid"]),
                    float(doc["time"]),
                    bool(doc["exclusive"]),
                    doc.get("account"),
                )
            )
        except ObjectNotFound:
            continue
        except (IntegrityError, ValueError, KeyError):
            # Unreadable lock: treat as a stale foreign lock (it cannot be ours).
            out.append(LockInfo(name, "?", 0, 0.0, False))
    return out


class Lock:
    """A held lock; use as a context manager or call release()."""

    def __init__(self, backend: Backend, sealer: Sealer, exclusive: bool, account: str | None = None) -> None:
        """A vault lock, or with ``account`` a lock that only conflicts with the same account's."""
        self._backend = backend
        self._sealer = sealer
        self.exclusive = exclusive
        self.account = account
        self.name = ""
        self._written = 0.0  # monotonic time of the last write
        self._mutex = threading.Lock()

    def _write(self) -> str:
        doc = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
            "exclusive": self.exclusive,
            "account": self.account,
        }
        name = f"locks/{secrets.token_hex(32)}"
        self._written = time.monotonic()
        # Not flushed to disk: other processes see it at once, and after a power loss a lock is
        # void anyway (an unreadable or missing one is treated as stale).
        self._backend.put(
            name, self._sealer.seal(json.dumps(doc).encode(), AD_LOCK), exclusive=True, durable=False
        )
        return name

    def _conflicts(self) -> list[LockInfo]:
        now = time.time()
        return [
            lk
            for lk in read_locks(self._backend, self._sealer)
            if lk.name != self.name and not lk.is_stale(now) and self._conflicts_with(lk)
        ]

    def _conflicts_with(self, lk: LockInfo) -> bool:
        if self.account is not None:
            return lk.account == self.account
        return lk.account is None and (self.exclusive or lk.exclusive)

    def acquire(self, wait: float = 0.0) -> Lock:
        deadline = time.monotonic() + wait
        collisions = 0
        while True:
            conflicts = self._conflicts()
            if not conflicts:
                self.name = self._write()
                # Re-check: someone may have written a conflicting lock meanwhile.
                conflicts = self._conflicts()
                if not conflicts:
                    break
                self._backend.delete(self.name)
                self.name = ""
                # Two contenders that wrote at the same instant both withdraw: retry after a
                # random pause so that one of them wins, even when asked not to wait.
                if collisions < 5:
                    collisions += 1
                    time.sleep(random.uniform(0.02, 0.25))
                    continue
            if time.monotonic() >= deadline:
                what = f"account {self.account!r} is busy" if self.account else "vault is locked"
                raise LockedError(
                    f"{what}: {conflicts[0].describe()}; if that process is gone, run 'mailvault unlock'"
                )
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        _REFRESHER.add(self)
        return self

    def refresh(self) -> None:
        """Rewrite the lock under a new name (so it is not taken for stale), then drop the old."""
        with self._mutex:
            if not self.name:
                return
            new = self._write()
            old, self.name = self.name, new
            self._backend.delete(old)

    def release(self) -> None:
        _REFRESHER.discard(self)
        with self._mutex:
            if self.name:
                self._backend.delete(self.name)
                self.name = ""

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.release()
            return
        # Already failing (e.g. the storage went away mid-run): the release must not replace that
        # error with its own; a lock left behind is stale once this process is gone.
        with contextlib.suppress(StorageError):
            self.release()


class _Refresher:
    """One daemon thread per process refreshes every held lock every :data:`REFRESH_EVERY` seconds
    (a thread started and joined per lock cost a runner ~10 % of each no-op task's time)."""

    def __init__(self) -> None:
        self._locks: set[Lock] = set()
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, lock: Lock) -> None:
        with self._mutex:
            self._locks.add(lock)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="mailvault-lock", daemon=True)
                self._thread.start()

    def discard(self, lock: Lock) -> None:
        with self._mutex:
            self._locks.discard(lock)

    def _loop(self) -> None:
        while True:
            time.sleep(min(REFRESH_EVERY, 5.0) / 5)
            now = time.monotonic()
            with self._mutex:
                due = [lk for lk in self._locks if now - lk._written >= REFRESH_EVERY]
            for lk in due:
                try:
                    lk.refresh()
                except Exception:  # a failed refresh must not kill the run: retried in 30 s
                    lk._written = now - REFRESH_EVERY * 0.9


_REFRESHER = _Refresher()


def remove_locks(backend: Backend, sealer: Sealer, *, all_locks: bool = False) -> list[LockInfo]:
    """Delete stale locks (or every lock with all_locks); return what was removed."""
    removed = []
    for lk in read_locks(backend, sealer):
        if all_locks or lk.is_stale():
            backend.delete(lk.name)
            removed.append(lk)
    return removed
