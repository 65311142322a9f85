"""How IMAP connections are opened (real Dovecot): the greeting's capability list saves a round
trip, never across STARTTLS; LOGOUT is sent without waiting for the goodbye."""

from __future__ import annotations

from mailvault.net.session import Credentials, TLSPolicy, connect_imap, logout_quietly, parse_url
from tests.backup.helpers import Account


def _open(account: Account, scheme: str) -> object:
    assert account.server.ca_file is not None
    port = account.server.imaps_port if scheme == "imaps" else account.server.imap_port
    endpoint = parse_url(account.url(scheme, port))
    return connect_imap(
        endpoint, Credentials(password=account.password.encode), TLSPolicy(str(account.server.ca_file))
    )


def test_implicit_tls_takes_the_greetings_capabilities(account: Account) -> None:
    client = _open(account, "imaps")
    imap = client._imap  # type: ignore[attr-defined]
    # One command only: LOGIN. Stock imaplib sends CAPABILITY first (tag 1, LOGIN tag 2).
    assert imap.tagnum == 1
    assert "IMAP4REV1" in imap.capabilities
    # After LOGIN the server's post-login list is the one in use (Dovecot adds e.g. CONDSTORE).
    caps = client.capabilities()  # type: ignore[attr-defined]
    assert b"CONDSTORE" in caps and b"LOGINDISABLED" not in caps
    assert client.list_folders()  # type: ignore[attr-defined]
    logout_quietly(client)  # type: ignore[arg-type]


def test_starttls_asks_again_after_tls(account: Account) -> None:
    client = _open(account, "imap")
    imap = client._imap  # type: ignore[attr-defined]
    # STARTTLS, then CAPABILITY over TLS (imaplib's own), then LOGIN: the greeting's list (sent in
    # the clear) is not used after TLS.
    assert imap.tagnum == 3
    assert client.list_folders()  # type: ignore[attr-defined]
    logout_quietly(client)  # type: ignore[arg-type]
