"""Vault locks: shared and exclusive, stale detection, unlock."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

import pytest

from mailvault.errors import LockedError
from mailvault.storage.base import Backend
from mailvault.vault.crypto import AeadSealer, Sealer, new_master_key
from mailvault.vault.format import AD_LOCK
from mailvault.vault.locks import STALE_AFTER, Lock, LockInfo, read_locks, remove_locks


@pytest.fixture
def sealer() -> Sealer:
    return AeadSealer(new_master_key())


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant_lock(
    backend: Backend,
    sealer: Sealer,
    *,
    host: str | None = None,
    pid: int | None = None,
    age: float = 0.0,
    exclusive: bool = False,
) -> str:
    doc = {
        "host": socket.gethostname() if host is None else host,
        "pid": os.getpid() if pid is None else pid,
        "time": time.time() - age,
        "exclusive": exclusive,
    }
    name = f"locks/{secrets.token_hex(32)}"
    backend.put(name, sealer.seal(json.dumps(doc).encode(), AD_LOCK))
    return name


def lock_names(backend: Backend) -> set[str]:
    return {n for n, _ in backend.list("locks/")}


def test_shared_locks_coexist_and_release(backend: Backend, sealer: Sealer) -> None:
    a = Lock(backend, sealer, exclusive=False).acquire()
    b = Lock(backend, sealer, exclusive=False).acquire()
    assert len(lock_names(backend)) == 2
    infos = read_locks(backend, sealer)
    assert {i.pid for i in infos} == {os.getpid()}
    assert not any(i.exclusive for i in infos)
    a.release()
    b.release()
    b.release()  # twice is harmless
    assert lock_names(backend) == set()


def test_lock_context_manager(backend: Backend, sealer: Sealer) -> None:
    with Lock(backend, sealer, exclusive=True).acquire() as lk:
        assert lk.name in lock_names(backend)
    assert lock_names(backend) == set()


def test_exclusive_conflicts_with_shared(backend: Backend, sealer: Sealer) -> None:
    with Lock(backend, sealer, exclusive=False).acquire():
        with pytest.raises(LockedError, match="shared lock by pid"):
            Lock(backend, sealer, exclusive=True).acquire()
        assert len(lock_names(backend)) == 1  # the loser left nothing behind


def test_shared_conflicts_with_exclusive(backend: Backend, sealer: Sealer) -> None:
    with Lock(backend, sealer, exclusive=True).acquire():
        with pytest.raises(LockedError, match="exclusive lock"):
            Lock(backend, sealer, exclusive=False).acquire()
        with pytest.raises(LockedError, match="mailvault unlock"):
            Lock(backend, sealer, exclusive=True).acquire()


def test_acquire_waits_then_gives_up(backend: Backend, sealer: Sealer) -> None:
    with Lock(backend, sealer, exclusive=True).acquire():
        start = time.monotonic()
        with pytest.raises(LockedError):
            Lock(backend, sealer, exclusive=False).acquire(wait=0.3)
        assert time.monotonic() - start >= 0.25


def test_stale_lock_of_dead_pid_is_ignored(backend: Backend, sealer: Sealer) -> None:
    pid = dead_pid()
    plant_lock(backend, sealer, pid=pid, exclusive=True)
    (info,) = read_locks(backend, sealer)
    assert info.pid == pid and info.exclusive
    assert info.is_stale()
    with Lock(backend, sealer, exclusive=True).acquire():
        pass


def test_old_lock_is_stale_even_on_another_host(backend: Backend, sealer: Sealer) -> None:
    plant_lock(backend, sealer, host="elsewhere.invalid", pid=1, age=STALE_AFTER + 60, exclusive=True)
    with Lock(backend, sealer, exclusive=True).acquire():
        pass


def test_recent_foreign_lock_is_respected(backend: Backend, sealer: Sealer) -> None:
    plant_lock(backend, sealer, host="elsewhere.invalid", pid=1, exclusive=True)
    with pytest.raises(LockedError, match=r"elsewhere\.invalid"):
        Lock(backend, sealer, exclusive=False).acquire()


def test_live_local_process_lock_is_respected(backend: Backend, sealer: Sealer) -> None:
    plant_lock(backend, sealer, pid=os.getpid(), exclusive=True)
    with pytest.raises(LockedError):
        Lock(backend, sealer, exclusive=False).acquire()


def test_unreadable_lock_is_stale(backend: Backend, sealer: Sealer) -> None:
    backend.put(f"locks/{secrets.token_hex(32)}", b"garbage, not sealed")
    plant_lock(backend, AeadSealer(new_master_key()), exclusive=True)  # another vault's key
    infos = read_locks(backend, sealer)
    assert len(infos) == 2
    assert all(i.is_stale() for i in infos)
    with Lock(backend, sealer, exclusive=True).acquire():
        pass


def test_remove_locks(backend: Backend, sealer: Sealer) -> None:
    stale_dead = plant_lock(backend, sealer, pid=dead_pid())
    stale_old = plant_lock(backend, sealer, host="elsewhere.invalid", age=STALE_AFTER * 2)
    live_foreign = plant_lock(backend, sealer, host="elsewhere.invalid", pid=1)
    held = Lock(backend, sealer, exclusive=False).acquire()
    removed = remove_locks(backend, sealer)
    assert {lk.name for lk in removed} == {stale_dead, stale_old}
    assert lock_names(backend) == {live_foreign, held.name}
    removed = remove_locks(backend, sealer, all_locks=True)
    assert {lk.name for lk in removed} == {live_foreign, held.name}
    assert lock_names(backend) == set()
    held.release()  # its object is already gone: not an error


def test_lock_info_describe() -> None:
    info = LockInfo("locks/x", "elsewhere.invalid", 12, time.time() - 5, True)
    assert info.describe().startswith("exclusive lock by pid 12 on elsewhere.invalid (")
    assert not info.is_stale(now=info.time + 10)
    assert info.is_stale(now=info.time + STALE_AFTER + 1)


def test_account_locks_conflict_only_within_the_account(backend: Backend, sealer: Sealer) -> None:
    with Lock(backend, sealer, exclusive=False, account="alice").acquire():
        with pytest.raises(LockedError, match="account 'alice' is busy"):
            Lock(backend, sealer, exclusive=False, account="alice").acquire()
        with Lock(backend, sealer, exclusive=False, account="bob").acquire():
            pass
        # Vault-wide locks and account locks are independent of each other.
        with Lock(backend, sealer, exclusive=True).acquire():
            pass
    assert lock_names(backend) == set()


def test_stale_account_lock_is_ignored(backend: Backend, sealer: Sealer) -> None:
    doc = {"host": socket.gethostname(), "pid": dead_pid(), "time": time.time(), "exclusive": False}
    doc["account"] = "alice"
    backend.put(f"locks/{secrets.token_hex(32)}", sealer.seal(json.dumps(doc).encode(), AD_LOCK))
    (info,) = read_locks(backend, sealer)
    assert info.account == "alice" and info.is_stale()
    with Lock(backend, sealer, exclusive=False, account="alice").acquire():
        pass


def test_held_locks_are_refreshed_by_one_thread(
    backend: Backend, sealer: Sealer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from mailvault.vault import locks

    monkeypatch.setattr(locks, "REFRESH_EVERY", 0.5)
    held = [Lock(backend, sealer, exclusive=False).acquire() for _ in range(3)]
    first = {lk.name for lk in held}
    assert lock_names(backend) == first
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and lock_names(backend) & first:
        time.sleep(0.1)
    # Every lock was rewritten under a new name (the old ones deleted), by a single thread.
    assert not lock_names(backend) & first
    # The refresher keeps renaming (every 0.5 s here): compare listing and handles at a moment
    # between two rewrites (a loaded CI machine caught one in the middle).
    listed, names = set(), {""}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = {lk.name for lk in held}
        listed = lock_names(backend)
        if listed == names == {lk.name for lk in held}:
            break
        time.sleep(0.05)
    assert listed == names and len(listed) == 3, (listed, names)
    assert sum(t.name == "mailvault-lock" for t in threading.enumerate()) == 1
    for lk in held:
        lk.release()
    assert lock_names(backend) == set()
    time.sleep(1.2)  # a released lock is not written again
    assert lock_names(backend) == set()
