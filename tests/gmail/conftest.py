"""Fixtures for the Gmail tests: the fake Gmail server, a fresh vault, no real sleeping."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

import mailvault.restore
from mailvault.targets.imap import ImapTarget
from mailvault.vault.repository import Repository
from tests.common import FAST_SCRYPT
from tests.gmail.fakegmail import FakeGmail
from tests.gmail.helpers import VAULT_PASSWORD


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _private_env(cli_env: Path) -> None:
    """A private index cache / restore journal, and the vault password for the CLI."""


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Back-off waits of the restore target, recorded instead of slept.

    ``ImapTarget``'s ``sleep`` default is bound at import time, so patching ``time.sleep`` would
    not reach it: restore's ImapTarget is replaced by one built with a recording ``sleep``."""
    waited: list[float] = []
    monkeypatch.setattr(mailvault.restore, "ImapTarget", functools.partial(ImapTarget, sleep=waited.append))
    return waited


@pytest.fixture
def gmail() -> Iterator[FakeGmail]:
    with FakeGmail() as g:
        yield g


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def repo(vault_path: Path) -> Iterator[Repository]:
    r = Repository.init(str(vault_path), VAULT_PASSWORD.encode(), scrypt=FAST_SCRYPT)
    try:
        yield r
    finally:
        r.close()
