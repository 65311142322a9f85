"""Fixtures for the command-line tests: private cache, a vault password, sample mail trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import PASSWORD, MailTree, build_maildir
from tests.common import FAST_SCRYPT


@pytest.fixture
def vault_password() -> str:
    return PASSWORD


@pytest.fixture(autouse=True)
def _cli_env(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private index cache and the vault password in the environment (also for subprocesses)."""
    # In-process 'init' derives the key-file key cheaply (the cost is stored in the key file,
    # so later opens are cheap too). Vaults created by a subprocess keep the default cost.
    monkeypatch.setattr("mailvault.vault.crypto.DEFAULT_SCRYPT", FAST_SCRYPT)


@pytest.fixture
def maildir(tmp_path: Path) -> MailTree:
    """A small Maildir tree full of awkward cases (see helpers.build_maildir)."""
    return build_maildir(tmp_path / "Maildir")
