"""Fixtures for the client-store tests (Apple Mail, Google Takeout, discover): private cache, vault password."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.common import FAST_SCRYPT

VAULT_PASSWORD = "local clients test vault"


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _env(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mailvault.vault.crypto.DEFAULT_SCRYPT", FAST_SCRYPT)


@pytest.fixture
def corpus() -> Path:
    if not os.environ.get("MAILVAULT_CORPUS"):
        pytest.skip("set MAILVAULT_CORPUS=/path/to/shared/corpus to run the corpus tier")
    root = Path(os.environ["MAILVAULT_CORPUS"])
    if not (root / "spamassassin").is_dir():
        pytest.fail(f"MAILVAULT_CORPUS={root} has no spamassassin/ folder")
    return root
