"""Fixtures for the interoperability tests: a real Cyrus IMAP beside the session's Dovecot.

* ``cyrus`` (session): one running :class:`~tests.servers.cyrus.Cyrus`; skipped with the reason when
  ``cyrus-imapd``/``sasl2-bin`` are missing or the tests do not run as root.
* ``cyrus_account`` / ``dovecot_account``: a new, empty, unique user on either server.
* ``ca_bundle``: one PEM file trusting both servers' test CAs (``migrate`` takes one ``--ca-file``).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.restore.helpers import VAULT_PASSWORD, Account
from tests.servers.cyrus import Cyrus, missing_reason
from tests.servers.dovecot import Dovecot

_seq = itertools.count(1)


@pytest.fixture(scope="session")
def cyrus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cyrus]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = Cyrus(tmp_path_factory.mktemp("cyrus")).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _interop_env(cli_env: Path) -> Path:
    """A private cache dir and the vault password, also for subprocesses."""
    return cli_env


def _name(prefix: str) -> str:
    return f"{prefix}{next(_seq)}-{secrets.token_hex(3)}"


@pytest.fixture
def cyrus_account(cyrus: Cyrus) -> Account:
    name = _name("cy")
    cyrus.add_user(name, f"secret-{name}")
    return Account(cyrus, name, f"secret-{name}")  # type: ignore[arg-type]


@pytest.fixture
def make_dovecot_account(dovecot: Dovecot) -> Iterator[object]:
    def make() -> Account:
        name = _name("dv")
        dovecot.add_user(name, f"secret-{name}")
        return Account(dovecot, name, f"secret-{name}")

    yield make


@pytest.fixture
def ca_bundle(cyrus: Cyrus, dovecot: Dovecot, tmp_path: Path) -> Path:
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(dovecot.ca_file.read_bytes() + cyrus.ca_file.read_bytes())
    return bundle
