"""Fixtures for the OAuth2 (XOAUTH2) tests: one Dovecot with an ``oauth2`` passdb for the whole session.

* ``oauth2_dovecot`` (session): a :class:`~tests.servers.dovecot.Dovecot` started with ``oauth2=True``;
  tokens come from ``oauth2_dovecot.issue_oauth2_token(user)``.
* ``oauth2_source`` (session): a user on it seeded with :data:`SEEDED` messages per folder.
* ``oauth2_empty_user``: a new, empty user on it; ``(name, password)``.
* ``vault`` (from :mod:`tests.fixtures_env`): a new, empty vault (cheap key derivation); the vault
  password is in the environment.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.servers.dovecot import Dovecot, SeedMessage, find_binary

VAULT_PASSWORD = "oauth2 tests vault password"
#: The seeded source account: folder -> message count (20 in all).
SEEDED = {"INBOX": 14, "Work": 6}
_seq = itertools.count(1)


def _new_user(server: Dovecot, prefix: str) -> tuple[str, str]:
    name = f"{prefix}{next(_seq)}-{secrets.token_hex(3)}"
    password = f"secret-{name}"
    server.add_user(name, password)
    return name, password


def make_message(i: int, rng: random.Random, tag: str) -> SeedMessage:
    nl = b"\r\n" if i % 2 else b"\n"
    body = [" ".join(rng.choices(["mail", "vault", "token", "bearer", "Grüße"], k=9)) for _ in range(i + 3)]
    lines = [
        f"From: Sender {i} <s{i}@example.org>",
        "To: rcpt@example.net",
        f"Subject: oauth2 {tag} #{i}",
        f"Message-ID: <{tag}{i}.{rng.getrandbits(40):x}@example.org>",
        f"Date: Mon, {1 + i % 28} Mar 2021 10:{i % 60:02d}:00 +0100",
        "",
        *body,
    ]
    raw = nl.join(line.encode() for line in lines) + nl
    when = datetime(2021, 3, 1, tzinfo=UTC) + timedelta(hours=i)
    return raw, ["\\Seen"] if i % 3 else [], when


@pytest.fixture(scope="session")
def oauth2_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    missing = [b for b in ("dovecot", "doveadm", "doveconf") if find_binary(b) is None]
    if missing:
        pytest.skip(f"Dovecot not installed ({', '.join(missing)} not found)")
    server = Dovecot(tmp_path_factory.mktemp("dovecot-oauth2"), oauth2=True)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def oauth2_source(oauth2_dovecot: Dovecot) -> str:
    """A user holding :data:`SEEDED` messages (never changed by the tests); returns the user name."""
    user, _ = _new_user(oauth2_dovecot, "oasrc")
    rng = random.Random(2)
    for n, (folder, count) in enumerate(SEEDED.items()):
        oauth2_dovecot.seed(user, folder, [make_message(i, rng, f"{folder}-{n}") for i in range(count)])
    return user


@pytest.fixture
def oauth2_empty_user(oauth2_dovecot: Dovecot) -> tuple[str, str]:
    return _new_user(oauth2_dovecot, "oadst")


@pytest.fixture
def vault_password() -> str:
    return VAULT_PASSWORD


@pytest.fixture(autouse=True)
def _oauth2_env(cli_env: Path) -> None:
    """A private index cache and the vault password in the environment (also for subprocesses)."""
