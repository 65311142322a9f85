"""Fixtures for the search tests: a private cache (the search index lives there) and the vault password."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.common import FAST_SCRYPT

VAULT_PASSWORD = "search tests vault password"


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _search_env(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("mailvault.vault.crypto.DEFAULT_SCRYPT", FAST_SCRYPT)
    return cli_env
