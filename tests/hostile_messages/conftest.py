"""Fixtures for the hostile-input tests: the vault password and a private cache for every CLI child."""

from __future__ import annotations

from pathlib import Path

import pytest

VAULT_PASSWORD = "hostile messages vault password"


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _hostile_env(cli_env: Path) -> Path:
    return cli_env
