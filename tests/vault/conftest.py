"""Fixtures for the vault unit tests: a private index cache and fast key derivation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailvault.vault.repository import Repository, VaultParams
from tests.common import FAST_SCRYPT
from tests.vault.helpers import PASSWORD


@pytest.fixture(autouse=True)
def _private_cache(private_cache: Path) -> Path:
    """Every test gets its own index cache directory (never the user's)."""
    return private_cache


@pytest.fixture
def make_repo(vault_location: str) -> Iterator[Callable[..., Repository]]:
    """Create the vault at ``vault_location`` (encrypted, cheap scrypt) and return it open."""
    opened: list[Repository] = []

    def make(password: bytes | None = PASSWORD, params: VaultParams | None = None) -> Repository:
        repo = Repository.init(vault_location, password, params, scrypt=FAST_SCRYPT)
        opened.append(repo)
        return repo

    yield make
    for repo in opened:
        repo.close()


@pytest.fixture
def reopen(vault_location: str) -> Iterator[Callable[..., Repository]]:
    """Open the vault at ``vault_location`` again (a fresh Repository object)."""
    opened: list[Repository] = []

    def do(password: bytes | None = PASSWORD) -> Repository:
        repo = Repository.open(vault_location, (lambda: password) if password is not None else None)
        opened.append(repo)
        return repo

    yield do
    for repo in opened:
        repo.close()
