"""Fixtures of the auth unit tests: a private cache and the vault password in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _auth_env(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILVAULT_CONFIG", raising=False)
