"""Fixtures for the job-runner tests: a private index cache and the vault password (also for subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.helpers import VAULT_PASSWORD, VAULT_PW_ENV


@pytest.fixture(autouse=True)
def _runner_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(tmp_path / "mv-cache"))
    monkeypatch.setenv("MAILVAULT_PASSWORD", VAULT_PASSWORD)
    monkeypatch.setenv(VAULT_PW_ENV, VAULT_PASSWORD)
    monkeypatch.delenv("MAILVAULT_DEBUG", raising=False)
    monkeypatch.delenv("MAILVAULT_CONFIG", raising=False)
