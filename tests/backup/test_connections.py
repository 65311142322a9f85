"""TLS policy and connection errors of ``mailvault backup``: real processes, exit codes, one-line errors.

Every failure must leave the vault exactly as it was: no snapshot, no pack, no lock, no file.
"""

from __future__ import annotations

import json
import random
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.backup.helpers import (
    SERVER_PW_ENV,
    Account,
    backup,
    backup_args,
    backup_proc,
    cli_json,
    cli_proc,
    ls,
    make_message,
)
from tests.common import assert_one_line_error, sha, vault_files
from tests.servers.dovecot import Dovecot


def _seed_two(account: Account) -> list[bytes]:
    rng = random.Random(3)
    raws = [make_message(i, rng, tag="tls-") for i in range(2)]
    account.server.seed(account.user, "INBOX", [(r, [], datetime(2011, 11, 11, tzinfo=UTC)) for r in raws])
    return raws


def _unused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def _assert_fails_untouched(vault: Path, args: list, env: dict, code: int, *needles: str) -> str:
    """The run fails with ``code`` and one ``mailvault: ...`` line, and no file of the vault changed."""
    before = vault_files(vault)
    line = assert_one_line_error(cli_proc(*args, env=env), code, *needles)
    assert vault_files(vault) == before
    return line


def test_starttls_on_the_plain_port(account: Account, vault: Path) -> None:
    raws = _seed_two(account)
    proc = backup_proc(vault, account, "--json", scheme="imap")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["messages"] == 2
    assert result["source"] == account.url("imap")
    rows = ls(vault, "latest", account.account_name)
    assert {r["blob"] for r in rows} == {sha(Dovecot.served_form(r)) for r in raws}


def test_pop3_stls_on_the_plain_port(account: Account, vault: Path) -> None:
    raws = _seed_two(account)
    result = backup(vault, account, scheme="pop3")
    assert result["messages"] == 2
    assert {r["blob"] for r in ls(vault, result["snapshot"])} == {sha(Dovecot.served_form(r)) for r in raws}


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_server_without_starttls_is_refused_unless_allowed(
    dovecot_nostarttls: Dovecot, vault: Path, scheme: str
) -> None:
    # the server without TLS has the same users, but fresh_user lives on the other server: use alice
    account = Account(dovecot_nostarttls, "alice", "secret-alice")
    args = [
        "backup",
        vault,
        account.url(scheme),
        "--password-env",
        SERVER_PW_ENV,
        "--account",
        f"nostls-{scheme}",
    ]
    needle = "offers no STARTTLS" if scheme == "imap" else "offers no STLS"
    _assert_fails_untouched(vault, args, account.env(), 2, needle, "--allow-plaintext")
    assert cli_json("snapshots", vault) == []

    proc = cli_proc(
        "backup", vault, account.url(scheme), "--password-env", SERVER_PW_ENV, "--account", f"nostls-{scheme}",
        "--allow-plaintext", "--json", env=account.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["account"] == f"nostls-{scheme}"
    assert len(cli_json("snapshots", vault)) == 1


@pytest.mark.parametrize("scheme", ["imaps", "imap", "pop3s"])
def test_untrusted_certificate(account: Account, vault: Path, scheme: str) -> None:
    _seed_two(account)
    args = backup_args(vault, account, scheme=scheme, ca=False)
    line = _assert_fails_untouched(vault, args, account.env(), 2, "certificate", "not trusted", "--ca-file")
    assert str(account.server.host) in line
    assert cli_json("snapshots", vault) == []


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_wrong_password(account: Account, vault: Path, scheme: str) -> None:
    _seed_two(account)
    args = backup_args(vault, account, scheme=scheme)
    line = _assert_fails_untouched(vault, args, account.env("not-the-password"), 2, "login", account.user,
                                   "refused")  # fmt: skip
    assert "not-the-password" not in line
    assert cli_json("snapshots", vault) == []


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_unreachable_port(account: Account, vault: Path, scheme: str) -> None:
    port = _unused_port()
    args = backup_args(vault, account, scheme=scheme, port=port)
    _assert_fails_untouched(vault, args, account.env(), 2, "cannot connect", f"127.0.0.1:{port}")
    assert cli_json("snapshots", vault) == []


def test_unresolvable_host(account: Account, vault: Path) -> None:
    args = [
        "backup",
        vault,
        f"imaps://{account.user}@no-such-host.invalid:993",
        "--password-env",
        SERVER_PW_ENV,
    ]
    _assert_fails_untouched(vault, args, account.env(), 2, "no-such-host.invalid")


def test_missing_server_password(account: Account, vault: Path) -> None:
    args = backup_args(vault, account)
    _assert_fails_untouched(vault, args, {SERVER_PW_ENV: ""}, 2, "password")
