"""Two runners that reach for the same account's lock at the same instant."""

from __future__ import annotations

import threading
from pathlib import Path

from mailvault.errors import LockedError
from mailvault.vault.locks import Lock
from mailvault.vault.repository import Repository
from tests.runner.helpers import VAULT_PASSWORD, make_vault


def test_simultaneous_account_locks_never_both_lose(tmp_path: Path) -> None:
    vault = make_vault(tmp_path / "vault")
    repos = [Repository.open(vault, VAULT_PASSWORD.encode) for _ in range(2)]
    both_lost = 0
    try:
        for _ in range(200):
            got: list[Lock | None] = [None, None]
            barrier = threading.Barrier(2)

            def take(i: int) -> None:
                barrier.wait()
                try:
                    got[i] = repos[i].lock(account="acct")
                except LockedError:
                    got[i] = None

            threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sum(g is not None for g in got) <= 1  # never both: that is the safety part
            both_lost += all(g is None for g in got)
            for g in got:
                if g is not None:
                    g.release()
    finally:
        for r in repos:
            r.close()
    assert both_lost == 0, f"{both_lost} of 200 simultaneous attempts: neither runner got the account"
