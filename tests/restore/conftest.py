"""Fixtures for the restore integration tests (real Dovecot, real CLI in a subprocess)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from mailvault.vault.repository import Repository
from tests.restore.helpers import FAST_SCRYPT, VAULT_PASSWORD, Account
from tests.servers.dovecot import Dovecot

_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _restore_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache dir (index cache and restore journal) and the vault password, also for subprocesses."""
    cache = tmp_path / "mv-cache"
    monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(cache))
    monkeypatch.setenv("MAILVAULT_PASSWORD", VAULT_PASSWORD)
    monkeypatch.delenv("MAILVAULT_DEBUG", raising=False)
    return cache


@pytest.fixture
def cache_dir(_restore_env: Path) -> Path:
    return _restore_env


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    """A new, empty, encrypted vault (cheap key derivation; the cost is stored in the key file)."""
    path = tmp_path / "vault"
    Repository.init(str(path), VAULT_PASSWORD.encode(), scrypt=FAST_SCRYPT).close()
    return path


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
