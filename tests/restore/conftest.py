"""Fixtures for the restore integration tests (real Dovecot, real CLI in a subprocess).

``vault`` (a new, empty, cheap vault) comes from :mod:`tests.fixtures_env`."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.restore.helpers import VAULT_PASSWORD, Account
from tests.servers.dovecot import Dovecot

_seq = itertools.count(1)


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _restore_env(cli_env: Path) -> Path:
    """A private cache dir (index cache and restore journal) and the vault password, also for subprocesses."""
    return cli_env


@pytest.fixture
def cache_dir(_restore_env: Path) -> Path:
    return _restore_env


@pytest.fixture
def make_account(dovecot: Dovecot) -> Callable[..., Account]:
    """``make_account(gmail_like=False)``: a new, empty, unique user on the session's Dovecot."""

    def make(gmail_like: bool = False) -> Account:
        name = f"r{'g' if gmail_like else 'u'}{next(_seq)}-{secrets.token_hex(3)}"
        password = f"secret-{name}"
        dovecot.add_user(name, password, gmail_like=gmail_like)
        return Account(dovecot, name, password)

    return make


@pytest.fixture
def source(make_account: Callable[..., Account]) -> Account:
    """The account a snapshot is taken of (an ordinary user: Sent, Drafts, Trash, Junk, Archive)."""
    return make_account()


@pytest.fixture
def target(dovecot: Dovecot, fresh_user: tuple[str, str]) -> Account:
    """An empty account to restore into."""
    return Account(dovecot, *fresh_user)


@pytest.fixture
def gmail_target(dovecot: Dovecot, fresh_gmail_user: tuple[str, str]) -> Account:
    """An empty gmail-like account (``[Gmail]/...`` SPECIAL-USE folders, no plain Sent)."""
    return Account(dovecot, *fresh_gmail_user)
