"""Fixtures for the hostile-input tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _hostile_env(cli_env: Path) -> Path:
    return cli_env
