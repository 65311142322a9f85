"""Fixtures for the job-runner tests: a private index cache and the vault password (also for subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.helpers import VAULT_PASSWORD, VAULT_PW_ENV


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _runner_env(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAULT_PW_ENV, VAULT_PASSWORD)
    monkeypatch.delenv("MAILVAULT_CONFIG", raising=False)
