"""Fixtures for the backup integration tests (real Dovecot, real CLI).

``vault`` (a new, empty, cheap vault) comes from :mod:`tests.fixtures_env`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backup.helpers import VAULT_PASSWORD, Account
from tests.servers.dovecot import Dovecot


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _backup_env(cli_env: Path) -> None:
    """A private index cache and the vault password in the environment (also for subprocesses)."""


@pytest.fixture
def account(dovecot: Dovecot, fresh_user: tuple[str, str]) -> Account:
    return Account(dovecot, *fresh_user)


@pytest.fixture
def gmail_account(dovecot: Dovecot, fresh_gmail_user: tuple[str, str]) -> Account:
    return Account(dovecot, *fresh_gmail_user)
