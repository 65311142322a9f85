"""Fixtures for the backup integration tests (real Dovecot, real CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailvault.vault.repository import Repository
from tests.backup.helpers import FAST_SCRYPT, VAULT_PASSWORD, Account
from tests.servers.dovecot import Dovecot


@pytest.fixture(autouse=True)
def _backup_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private index cache and the vault password in the environment (also for subprocesses)."""
    monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(tmp_path / "mv-cache"))
    monkeypatch.setenv("MAILVAULT_PASSWORD", VAULT_PASSWORD)
    monkeypatch.delenv("MAILVAULT_DEBUG", raising=False)


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    """A new, empty, encrypted vault (cheap key derivation)."""
    path = tmp_path / "vault"
    Repository.init(str(path), VAULT_PASSWORD.encode(), scrypt=FAST_SCRYPT).close()
    return path


@pytest.fixture
def account(dovecot: Dovecot, fresh_user: tuple[str, str]) -> Account:
    return Account(dovecot, *fresh_user)


@pytest.fixture
def gmail_account(dovecot: Dovecot, fresh_gmail_user: tuple[str, str]) -> Account:
    return Account(dovecot, *fresh_gmail_user)
