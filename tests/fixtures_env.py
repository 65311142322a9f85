"""Fixtures shared by the test packages: a private index cache, the vault password, a cheap vault.

A package turns them on with its own autouse fixture (``_backup_env(cli_env)`` and so on) and names
its vault password by overriding :func:`vault_password`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.common import init_vault


@pytest.fixture
def vault_password() -> str:
    """The vault password of a package's tests (the packages override this)."""
    return "mailvault tests vault password"


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache directory (index cache, restore journal) in MAILVAULT_CACHE_DIR, never the user's."""
    cache = tmp_path / "mv-cache"
    monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def cli_env(private_cache: Path, monkeypatch: pytest.MonkeyPatch, vault_password: str) -> Path:
    """:func:`private_cache`, the vault password in MAILVAULT_PASSWORD and no MAILVAULT_DEBUG, in the
    environment (so also for subprocesses); returns the cache directory."""
    monkeypatch.setenv("MAILVAULT_PASSWORD", vault_password)
    monkeypatch.delenv("MAILVAULT_DEBUG", raising=False)
    return private_cache


@pytest.fixture
def vault(tmp_path: Path, vault_password: str) -> Path:
    """A new, empty, encrypted vault (cheap key derivation; the cost is stored in the key file)."""
    path = tmp_path / "vault"
    init_vault(path, vault_password)
    return path
