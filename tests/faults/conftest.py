"""Fixtures of the fault matrix: every test here carries the ``faults`` marker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.harness import VAULT_PASSWORD


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _faults_env(cli_env: Path) -> Path:
    """A private cache and the vault password in the environment (also for subprocesses)."""
    return cli_env


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def vault_at(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """``vault_at(name)``: the location of a (not yet existing) vault called ``name``, in a local
    directory or under a prefix of one fresh S3 bucket."""
    if request.param == "s3":
        base: str = request.getfixturevalue("s3_vault_url")
        return lambda name: f"{base}-{name}"
    return lambda name: str(tmp_path / f"vault-{name}")


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """``fresh_cache(name)``: point MAILVAULT_CACHE_DIR (index cache, restore journal) at a new directory."""

    def make(name: str) -> Path:
        path = tmp_path / f"cache-{name}"
        monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(path))
        return path

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.faults)
