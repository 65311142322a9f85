"""Transport and file-system safety of ``mailvault backup`` (real Dovecot, real processes):
``--allow-plaintext`` warns on every run, and a local vault's files are 0600 and its directories 0700."""

from __future__ import annotations

import random
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.backup.helpers import SERVER_PW_ENV, Account, backup_args, cli_proc, make_message
from tests.common import mv
from tests.servers.dovecot import Dovecot


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_allow_plaintext_warns_on_every_run(dovecot_nostarttls: Dovecot, vault: Path, scheme: str) -> None:
    account = Account(dovecot_nostarttls, "alice", "secret-alice")
    args = ["backup", vault, account.url(scheme), "--password-env", SERVER_PW_ENV, "--allow-plaintext",
            "--account", f"plain-{scheme}", "--json"]  # fmt: skip
    for _ in range(2):
        proc = cli_proc(*args, env=account.env())
        assert proc.returncode == 0, proc.stderr
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("mailvault: warning:")]
        assert len(warnings) == 1, proc.stderr
        assert "without TLS (--allow-plaintext)" in warnings[0] and account.password not in proc.stderr


def test_allow_plaintext_warns_even_when_starttls_is_used(account: Account, vault: Path) -> None:
    proc = cli_proc(*backup_args(vault, account, "--allow-plaintext", scheme="imap"), env=account.env())
    assert proc.returncode == 0, proc.stderr
    assert "mailvault: warning: --allow-plaintext is set" in proc.stderr, proc.stderr
    quiet = cli_proc(*backup_args(vault, account, scheme="imap"), env=account.env())
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr


def test_local_vault_files_are_private(account: Account, tmp_path: Path) -> None:
    account.server.seed(
        account.user,
        "INBOX",
        [
            (make_message(i, random.Random(i), tag="perm-"), [], datetime(2012, 1, 1, tzinfo=UTC))
            for i in range(3)
        ],
    )
    vault = tmp_path / "private-vault"
    mv("init", vault)
    proc = cli_proc(*backup_args(vault, account), env=account.env())
    assert proc.returncode == 0, proc.stderr
    paths = [vault, *vault.rglob("*")]
    assert any(p.is_file() and "data" in p.parts for p in paths)
    for p in paths:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
