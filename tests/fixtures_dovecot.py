"""pytest plugin: a real Dovecot (IMAP/POP3 over plain, STARTTLS and TLS) and a fault-injecting proxy.

Fixtures:

* ``dovecot`` (session): one running :class:`~tests.servers.dovecot.Dovecot` with users ``alice``, ``bob``,
  ``carol`` (password ``secret-<name>``) and the gmail-like ``gmailuser`` (``secret-gmailuser``).
  Shared by the whole session: tests that write mail should use ``fresh_user``.
* ``dovecot_nostarttls`` (session, started on first use): a second instance with ``ssl = no`` — no
  STARTTLS, no IMAPS/POP3S — and the same users.
* ``fresh_user`` / ``fresh_gmail_user``: a new, empty, unique user on ``dovecot``; ``(name, password)``.
* ``fault_proxy``: a :class:`~tests.servers.proxy.FaultProxy` in front of ``dovecot``'s IMAPS port.
* ``make_fault_proxy``: ``make_fault_proxy(host, port) -> FaultProxy`` for any other target.

Every test that uses one of these fixtures gets the ``dovecot`` marker (``-m "not dovecot"`` skips them).
Without the ``dovecot`` binary they are skipped with the reason.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator

import pytest

from tests.servers.dovecot import Dovecot, find_binary
from tests.servers.proxy import FaultProxy

USERS = ("alice", "bob", "carol")
GMAIL_USER = "gmailuser"
_DOVECOT_FIXTURES = {"dovecot", "dovecot_nostarttls", "fresh_user", "fresh_gmail_user", "fault_proxy"}
_user_seq = itertools.count(1)


def _require_dovecot() -> None:
    missing = [b for b in ("dovecot", "doveadm", "doveconf") if find_binary(b) is None]
    if missing:
        pytest.skip(
            f"Dovecot not installed ({', '.join(missing)} not found; apt-get install dovecot-imapd dovecot-pop3d)"
        )


def _start(tmp_path_factory: pytest.TempPathFactory, *, starttls: bool) -> Dovecot:
    _require_dovecot()
    server = Dovecot(
        tmp_path_factory.mktemp("dovecot" if starttls else "dovecot-nostarttls"), starttls=starttls
    )
    for name in USERS:
        server.add_user(name, f"secret-{name}")
    server.add_user(GMAIL_USER, f"secret-{GMAIL_USER}", gmail_like=True)
    return server.start()


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    server = _start(tmp_path_factory, starttls=True)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def dovecot_nostarttls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    server = _start(tmp_path_factory, starttls=False)
    try:
        yield server
    finally:
        server.cleanup()


def _new_user(server: Dovecot, gmail_like: bool) -> tuple[str, str]:
    name = f"{'gm' if gmail_like else 'u'}{next(_user_seq)}-{secrets.token_hex(3)}"
    password = f"secret-{name}"
    server.add_user(name, password, gmail_like=gmail_like)
    return name, password


@pytest.fixture
def fresh_user(dovecot: Dovecot) -> tuple[str, str]:
    """A new empty user (name, password) on the session's Dovecot."""
    return _new_user(dovecot, gmail_like=False)


@pytest.fixture
def fresh_gmail_user(dovecot: Dovecot) -> tuple[str, str]:
    """A new empty gmail-like user (``[Gmail]/...`` SPECIAL-USE folders) on the session's Dovecot."""
    return _new_user(dovecot, gmail_like=True)


@pytest.fixture
def make_fault_proxy() -> Iterator[Callable[[str, int], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port)
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()


@pytest.fixture
def fault_proxy(dovecot: Dovecot) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session Dovecot's IMAPS port (TLS passes through)."""
    assert dovecot.imaps_port is not None
    with FaultProxy(dovecot.host, dovecot.imaps_port) as proxy:
        yield proxy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _DOVECOT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.dovecot)
