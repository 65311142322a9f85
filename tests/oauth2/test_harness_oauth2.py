"""The Dovecot harness's OAuth2 support (``Dovecot(..., oauth2=True)``), checked with plain imapclient/poplib."""

from __future__ import annotations

import base64
import json
import poplib
import urllib.request
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers.dovecot import Dovecot, DovecotError
from tests.servers.oauth2 import IntrospectionServer

pytestmark = pytest.mark.dovecot


def _imaps(server: Dovecot) -> IMAPClient:
    return IMAPClient(
        server.host, port=server.imaps_port, ssl=True, ssl_context=server.ssl_context(), timeout=30
    )


def test_xoauth2_and_oauthbearer_log_in(oauth2_dovecot: Dovecot, oauth2_empty_user: tuple[str, str]) -> None:
    server = oauth2_dovecot
    user, password = oauth2_empty_user
    token = server.issue_oauth2_token(user)

    client = _imaps(server)
    assert {b"AUTH=XOAUTH2", b"AUTH=OAUTHBEARER", b"AUTH=PLAIN"} <= set(client.capabilities())
    client.oauth2_login(user, token)
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.logout()

    client = _imaps(server)
    client.oauthbearer_login(user, token)
    client.logout()

    server.imap_client(user, oauth2_token=token).logout()  # the harness's own client
    server.imap_client(user).logout()  # passwords keep working
    server.imap_client(user, password=password, ssl=False, starttls=True).logout()


def test_pop3_xoauth2(oauth2_dovecot: Dovecot, oauth2_empty_user: tuple[str, str]) -> None:
    server = oauth2_dovecot
    user, _ = oauth2_empty_user
    token = server.issue_oauth2_token(user)
    conn = poplib.POP3_SSL(server.host, server.pop3s_port, context=server.ssl_context(), timeout=30)
    try:
        sasl = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
        assert conn._shortcmd(f"AUTH XOAUTH2 {sasl}").startswith(b"+OK")  # type: ignore[attr-defined]
        assert conn.stat() == (0, 0)
    finally:
        conn.quit()


def test_revoked_unknown_and_foreign_tokens_are_refused(
    oauth2_dovecot: Dovecot, oauth2_empty_user: tuple[str, str], oauth2_source: str
) -> None:
    server = oauth2_dovecot
    assert server.oauth2 is not None
    user, _ = oauth2_empty_user
    token = server.issue_oauth2_token(user)
    server.imap_client(user, oauth2_token=token).logout()
    seen = server.oauth2.lookup_count(token)

    server.revoke_oauth2_token(token)
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        server.imap_client(user, oauth2_token=token)
    assert server.oauth2.lookup_count(token) == seen + 1  # no cache: asked again

    with pytest.raises(LoginError):
        server.imap_client(user, oauth2_token="mvtok-unknown")
    with pytest.raises(LoginError):  # a valid token names its own user only
        server.imap_client(oauth2_source, oauth2_token=server.issue_oauth2_token(user))
    with pytest.raises(LoginError):  # a token is no password
        server.imap_client(user, password=server.issue_oauth2_token(user))

    server.issue_oauth2_token(user, token)  # re-issuing brings it back
    server.imap_client(user, oauth2_token=token).logout()


def test_introspection_endpoint_answers_like_rfc7662(oauth2_dovecot: Dovecot) -> None:
    endpoint = oauth2_dovecot.oauth2
    assert endpoint is not None and endpoint.running
    token = endpoint.issue("someone")

    def ask(data: bytes | None, query: str = "") -> dict[str, object]:
        with urllib.request.urlopen(endpoint.url + query, data=data, timeout=10) as resp:
            return dict(json.load(resp))

    assert ask(f"token={token}".encode()) == {
        "active": True,
        "username": "someone",
        "scope": "mail",
        "token_type": "Bearer",
    }
    assert ask(None, f"?token={token}")["active"] is True
    endpoint.revoke(token)
    assert ask(f"token={token}".encode()) == {"active": False}
    assert endpoint.lookup_count(token) == 3


def test_enable_oauth2_on_a_running_instance_keeps_ports(tmp_path: Path) -> None:
    with Dovecot(tmp_path) as server:
        server.add_user("pat", "secret-pat")
        assert server.oauth2 is None
        with pytest.raises(DovecotError):
            server.issue_oauth2_token("pat")
        client = _imaps(server)
        assert b"AUTH=XOAUTH2" not in client.capabilities()
        client.logout()
        assert "oauth2" not in server.conf_file.read_text()

        ports = (server.imap_port, server.imaps_port, server.pop3_port, server.pop3s_port)
        endpoint = server.enable_oauth2()
        assert isinstance(endpoint, IntrospectionServer) and endpoint.running
        assert (server.imap_port, server.imaps_port, server.pop3_port, server.pop3s_port) == ports
        server.imap_client("pat", oauth2_token=server.issue_oauth2_token("pat")).logout()
        server.imap_client("pat").logout()
    assert not endpoint.running  # cleanup() stopped it
