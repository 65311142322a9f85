"""Backup worker processes (mailvault.backup.procs) against a real Dovecot: a backup that spreads
chunks over a worker process makes the same snapshot as one that does not; a worker that dies
loses nothing; the worker never gets the vault; a wrong password is tried once."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import mailvault.backup.procs as procs
from mailvault.errors import EXIT_ERROR
from tests.backup.helpers import Account, backup, backup_args, by_key, cli_json, cli_proc, ls, make_message
from tests.common import mv

FOLDERS = {"INBOX": 1500, "Archive": 500}


def _seed(account: Account) -> None:
    rng = random.Random(4242)
    for folder, n in FOLDERS.items():
        account.server.seed(
            account.user,
            folder,
            [
                (
                    make_message(i, rng, tag=f"w{folder}"),
                    ["\\Seen"] if i % 3 else [],
                    datetime(2015, 1, 1 + i % 28, tzinfo=UTC),
                )
                for i in range(n)
            ],
        )


def _listing(vault: Path) -> dict[Any, tuple[Any, ...]]:
    return {k: (r["blob"], sorted(r["flags"]), r["internaldate"]) for k, r in by_key(ls(vault)).items()}


def test_a_worker_process_makes_the_same_snapshot(
    account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(account)
    total = sum(FOLDERS.values())
    without = tmp_path / "threads"
    mv("init", without)
    monkeypatch.setenv(procs.ENV_PROCESSES, "1")
    # The worker takes chunks only once it has logged in; on a loaded machine the parent's own
    # connections may have taken them all by then (by design: nobody waits for it). Try again,
    # into a new vault, until a run had the worker do its share.
    for attempt in range(6):
        with_worker = tmp_path / f"procs{attempt}"
        mv("init", with_worker)
        one = backup(with_worker, account, "--connections", "3")
        if one["worker_processes"] == 1:
            break
    assert one["worker_processes"] == 1, one
    assert one["messages_fetched"] == total and one["messages"] == total and not one["failures"], one
    monkeypatch.setenv(procs.ENV_PROCESSES, "0")
    other = backup(without, account, "--connections", "3")
    assert other["worker_processes"] == 0 and other["messages_fetched"] == total, other
    # The same messages, flags and dates, and the same stored bytes (one writer, deduplicated).
    assert _listing(with_worker) == _listing(without)
    assert len(_listing(with_worker)) == total
    assert one["new_messages"] == other["new_messages"] == total
    assert cli_json("check", with_worker, "--read-data")["ok"] is True
    # Nothing new: nothing fetched, whatever runs where.
    monkeypatch.setenv(procs.ENV_PROCESSES, "1")
    again = backup(with_worker, account, "--connections", "3")
    assert again["messages_fetched"] == 0 and again["messages"] == total, again


def test_a_worker_process_that_dies_loses_nothing(
    account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(account)
    total = sum(FOLDERS.values())
    reference, vault = tmp_path / "reference", tmp_path / "vault"
    for v in (reference, vault):
        mv("init", v)
    monkeypatch.setenv(procs.ENV_PROCESSES, "0")
    backup(reference, account, "--connections", "3")
    monkeypatch.setenv(procs.ENV_PROCESSES, "1")
    monkeypatch.setattr(procs, "MODULE", "tests.backup.dying_worker")
    monkeypatch.setenv("MV_TEST_WORKER_DIE_AT", "1")
    result = backup(vault, account, "--connections", "3")
    assert any("worker process failed" in w for w in result["warnings"]), result["warnings"]
    assert result["worker_processes"] == 0 and not result["failures"], result
    assert result["messages"] == total
    assert _listing(vault) == _listing(reference)
    assert cli_json("check", vault, "--read-data")["ok"] is True


def test_a_wrong_password_is_one_error_with_workers_started(
    account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = tmp_path / "vault"
    mv("init", vault)
    env = {**account.env("not-the-password"), procs.ENV_PROCESSES: "2"}
    proc = cli_proc(*backup_args(vault, account, "--connections", "3"), env=env)
    assert proc.returncode == EXIT_ERROR, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailvault: ") and "refused" in lines[0], proc.stderr
    assert "not-the-password" not in proc.stderr
    assert not list(vault.glob("snapshots/*"))  # nothing committed
