"""Connections cut or stalled mid-FETCH (FaultProxy in front of Dovecot's IMAPS port).

Whatever happens to a run, the next clean run completes; then nothing is lost (every message is in
the latest snapshot, byte-exact) and nothing is stored twice (unique blobs == distinct messages).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mailvault.backup.connect as backup_module
from mailvault.backup import BackupOptions
from mailvault.backup import backup as core_backup
from mailvault.net.session import Credentials, TLSPolicy, connect_imap, parse_url
from tests.backup.helpers import (
    Account,
    backup,
    backup_proc,
    by_key,
    cli_json,
    ls,
    make_message,
    open_vault,
    server_messages,
    stats,
)
from tests.common import sha
from tests.servers.dovecot import Dovecot
from tests.servers.proxy import FaultProxy


def _seed(account: Account, folders: dict[str, int], size: int = 7000) -> dict[str, dict[int, str]]:
    """Seed ``count`` ~``size``-byte messages per folder; return folder -> uid -> served blob."""
    rng = random.Random(17)
    for n, (folder, count) in enumerate(folders.items()):
        msgs = [(make_message(i, rng, size=size, tag=f"fault{n}-"), [], datetime(2009, 9, 9, tzinfo=UTC))
                for i in range(count)]  # fmt: skip
        account.server.seed(account.user, folder, msgs)
    return {f: {uid: sha(m.body) for uid, m in server_messages(account, f).items()} for f in folders}


def _assert_complete(vault: Path, account: Account, expected: dict[str, dict[int, str]]) -> None:
    rows = by_key(ls(vault, "latest", account.account_name))
    want = {(f, uid): blob for f, uids in expected.items() for uid, blob in uids.items()}
    assert {k: r["blob"] for k, r in rows.items() if r["folder"] in expected} == want
    distinct = {blob for uids in expected.values() for blob in uids.values()}
    assert stats(vault)["unique_blobs"] == len(distinct)
    report = cli_json("check", vault, "--read-data")
    assert report["ok"] is True, report


def _run_until_complete(vault: Path, account: Account, port: int) -> list[dict]:
    """The faulty run (exit 0 or 1) then clean runs; returns their JSON results."""
    proc = backup_proc(vault, account, "--json", "--connections", "1", port=port)
    assert proc.returncode in (0, 1), proc.stderr
    first = json.loads(proc.stdout)
    results = [first]
    if proc.returncode == 0:
        assert first["reconnects"] >= 1
        assert first["failures"] == []
    else:
        assert first["failures"], first
    again = backup(vault, account, "--connections", "1", port=port)
    assert again["failures"] == []
    results.append(again)
    return results


@pytest.mark.parametrize("cut", [200_000, 20_000], ids=["in-body-fetch", "in-flags-fetch"])
def test_cut_mid_fetch_of_a_big_folder(
    account: Account, vault: Path, fault_proxy: FaultProxy, cut: int
) -> None:
    expected = _seed(account, {"INBOX": 300})
    total = sum(len(m.body) for m in server_messages(account, "INBOX").values())
    assert total > 1_900_000
    fault_proxy.cut_after(cut)
    first, again = _run_until_complete(vault, account, fault_proxy.port)
    assert fault_proxy.cuts == 1
    assert fault_proxy.connections >= 2
    if first["exit_code"] == 0:
        assert first["messages"] == 300
        assert first["messages_fetched"] == 300
        assert again["messages_fetched"] == 0
    _assert_complete(vault, account, expected)


def test_reset_in_a_later_folder(account: Account, vault: Path, fault_proxy: FaultProxy) -> None:
    expected = _seed(account, {"INBOX": 100, "Archive/2009": 100, "Lists": 100})
    fault_proxy.cut_after(1_000_000, rst=True)  # in the second folder's FETCH
    _run_until_complete(vault, account, fault_proxy.port)
    assert fault_proxy.cuts == 1
    _assert_complete(vault, account, expected)


def test_every_connection_cut_gives_up_then_recovers(
    account: Account, vault: Path, fault_proxy: FaultProxy
) -> None:
    expected = _seed(account, {"INBOX": 300})
    fault_proxy.cut_after(200_000, times=None)  # every (re)connection dies in the body FETCH
    proc = backup_proc(vault, account, "--json", "--connections", "1", port=fault_proxy.port)
    assert proc.returncode in (1, 2), proc.stdout
    if proc.returncode == 2:
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("mailvault: ")
        assert "connection" in lines[0]
        assert "internal error" not in lines[0]
        assert cli_json("snapshots", vault) == []
    assert fault_proxy.cuts >= 2
    fault_proxy.reset()
    result = backup(vault, account, "--connections", "1", port=fault_proxy.port)
    assert result["reconnects"] == 0
    _assert_complete(vault, account, expected)


def test_short_stall_is_waited_out(account: Account, vault: Path, fault_proxy: FaultProxy) -> None:
    expected = _seed(account, {"INBOX": 100})
    fault_proxy.stall_after(150_000, 1.5)
    result = backup(vault, account, "--connections", "1", port=fault_proxy.port)
    assert fault_proxy.stalls == 1
    assert result["messages"] == 100
    assert result["reconnects"] == 0
    _assert_complete(vault, account, expected)


def test_stall_longer_than_the_timeout_reconnects(
    account: Account, vault: Path, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core backup with a 2 s socket timeout: a 6 s stall mid-FETCH makes it reconnect."""
    expected = _seed(account, {"INBOX": 300})
    real: Callable = connect_imap
    monkeypatch.setattr(
        backup_module, "connect_imap", lambda ep, creds, tls: real(ep, creds, tls, timeout=2.0)
    )
    endpoint = parse_url(account.url("imaps", port=fault_proxy.port))
    creds = Credentials(password=account.password.encode)
    tls = TLSPolicy(str(account.server.ca_file))
    fault_proxy.stall_after(200_000, 6.0)
    with open_vault(vault) as repo:
        result = core_backup(repo, endpoint, creds, tls, BackupOptions())
    assert fault_proxy.stalls == 1
    assert result.exit_code in (0, 1)
    if result.exit_code == 0:
        assert result.reconnects >= 1
        assert result.messages == 300
    with open_vault(vault) as repo:
        core_backup(repo, endpoint, creds, tls, BackupOptions())
    _assert_complete(vault, account, expected)


def test_pop3_cut_mid_retr_reconnects_and_retries(
    dovecot: Dovecot, account: Account, vault: Path, make_fault_proxy
) -> None:
    assert dovecot.pop3s_port is not None
    rng = random.Random(29)
    msgs = [(make_message(i, rng, size=7000, tag="popcut-"), [], datetime(2009, 9, 9, tzinfo=UTC))
            for i in range(60)]  # fmt: skip
    dovecot.seed(account.user, "INBOX", msgs)
    proxy = make_fault_proxy(dovecot.host, dovecot.pop3s_port)
    proxy.cut_after(150_000)  # a clean FIN mid-RETR, as when a server or NAT drops an idle session
    result = backup(vault, account, scheme="pop3s", port=proxy.port, code=None)
    assert proxy.cuts == 1
    assert result["failures"] == []
    assert result["reconnects"] == 1
    assert result["messages"] == 60


def test_interrupted_pop3_run_recovers(
    dovecot: Dovecot, account: Account, vault: Path, make_fault_proxy
) -> None:
    """POP3 through the proxy: a cut mid-RETR; the run reconnects (or reports), the next one completes."""
    assert dovecot.pop3s_port is not None
    rng = random.Random(23)
    msgs = [(make_message(i, rng, size=7000, tag="popfault-"), [], datetime(2009, 9, 9, tzinfo=UTC))
            for i in range(150)]  # fmt: skip
    dovecot.seed(account.user, "INBOX", msgs)
    blobs = {sha(Dovecot.served_form(raw)) for raw, _, _ in msgs}
    proxy = make_fault_proxy(dovecot.host, dovecot.pop3s_port)
    proxy.cut_after(300_000)
    proc = backup_proc(vault, account, "--json", scheme="pop3s", port=proxy.port)
    assert proc.returncode in (0, 1), proc.stderr
    first = json.loads(proc.stdout)
    assert proxy.cuts == 1
    if proc.returncode == 0:
        assert first["reconnects"] >= 1
        assert first["messages"] == 150
    backup(vault, account, scheme="pop3s", port=proxy.port)
    rows = ls(vault, "latest", account.account_name)
    assert len(rows) == 150
    assert {r["blob"] for r in rows} == blobs
    assert stats(vault)["unique_blobs"] == 150
