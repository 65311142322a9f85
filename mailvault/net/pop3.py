"""Opening POP3 connections: implicit TLS or STLS (never a silent downgrade), USER/PASS or SASL
(XOAUTH2 / OAUTHBEARER). The URL, TLS policy and error mapping are :mod:`mailvault.net.session`'s."""

from __future__ import annotations

import base64
import contextlib
import poplib
import ssl

from mailvault.errors import AuthError, ProtocolError, TLSError
from mailvault.net.sasl import NOT_CONNECTED_HINT, pick_sasl, sasl_response
from mailvault.net.session import (
    Credentials,
    Endpoint,
    TLSPolicy,
    _text,
    _where,
    default_timeout,
    map_network_error,
)

#: poplib refuses lines longer than 2048 bytes; real mail has longer ones.
POP3_MAX_LINE = 16 << 20


def connect_pop3(
    ep: Endpoint, creds: Credentials, tls: TLSPolicy, *, timeout: float | None = None
) -> poplib.POP3:
    """Open, secure and log in a POP3 connection, or raise a RemoteError."""
    timeout = default_timeout() if timeout is None else timeout
    poplib._MAXLINE = max(poplib._MAXLINE, POP3_MAX_LINE)  # type: ignore[attr-defined]
    conn: poplib.POP3
    try:
        if ep.implicit_tls:
            conn = poplib.POP3_SSL(ep.host, ep.port, timeout=timeout, context=tls.context())
        else:
            conn = poplib.POP3(ep.host, ep.port, timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        raise map_network_error(ep, exc) from None
    except poplib.error_proto as exc:
        raise ProtocolError(f"{_where(ep)}: {_text(exc.args[0] if exc.args else exc)}") from None
    try:
        if not ep.implicit_tls:
            try:
                caps = conn.capa()
            except poplib.error_proto:
                caps = {}
            if "STLS" in caps:
                conn.stls(tls.context())
                if tls.allow_plaintext:
                    tls.plaintext_warning(ep, used=False)
            elif not tls.allow_plaintext:
                raise TLSError(
                    f"{_where(ep)} offers no STLS; refusing to log in without TLS "
                    "(use pop3s://, or --allow-plaintext to accept that risk)"
                )
            else:
                tls.plaintext_warning(ep, used=True)
        try:
            if creds.oauth2_token is not None:
                _pop3_oauth2(conn, ep, creds)
            else:
                if creds.password is None:
                    raise AuthError(f"no password for {ep.account}")
                conn.user(ep.user)
                conn.pass_(creds.password().decode("utf-8"))
        except poplib.error_proto as exc:
            raise AuthError(
                f"login as {ep.user} at {_where(ep)} refused: {_text(exc.args[0] if exc.args else exc)}"
            ) from None
        return conn
    except (OSError, ssl.SSLError) as exc:
        _pop_close(conn)
        raise map_network_error(ep, exc) from None
    except poplib.error_proto as exc:
        _pop_close(conn)
        raise ProtocolError(f"{_where(ep)}: {_text(exc.args[0] if exc.args else exc)}") from None
    except BaseException:
        _pop_close(conn)
        raise


def _pop3_auth(conn: poplib.POP3, mech: str, response: bytes) -> None:
    """RFC 5034 AUTH in two steps (``AUTH MECH``, ``+``, then the response on a line of its own), so a
    long token never makes an over-long command line."""
    conn._shortcmd(f"AUTH {mech}")  # type: ignore[attr-defined]
    resp = conn._shortcmd(base64.b64encode(response).decode("ascii"))  # type: ignore[attr-defined]
    if not resp.startswith(b"+OK"):
        # "+ <base64 JSON error>": a refused token is a SASL challenge (RFC 7628), which poplib
        # takes for success. An empty response ends the exchange with the -ERR.
        with contextlib.suppress(poplib.error_proto):
            conn._shortcmd("")  # type: ignore[attr-defined]
        raise poplib.error_proto(b"-ERR the server refused the OAuth2 token")


def _pop3_oauth2(conn: poplib.POP3, ep: Endpoint, creds: Credentials) -> None:
    assert creds.oauth2_token is not None
    try:
        offered = {m.upper() for m in conn.capa().get("SASL", [])}
    except poplib.error_proto:
        offered = set()
    mech = pick_sasl(creds.sasl, offered)
    token = creds.oauth2_token()
    try:
        _pop3_auth(conn, mech, sasl_response(mech, ep.user, token.decode()))
    except poplib.error_proto:
        if creds.oauth2_refresh is None:
            raise
        token = creds.oauth2_refresh()
        _pop3_auth(conn, mech, sasl_response(mech, ep.user, token.decode()))
    try:  # a cheap command: Exchange accepts a token, then fails on the mailbox
        conn.stat()
    except poplib.error_proto as exc:
        if "not connected" in _text(exc.args[0] if exc.args else exc).lower():
            raise AuthError(f"login as {ep.user} at {_where(ep)}: {NOT_CONNECTED_HINT}") from None
        raise


def _pop_close(conn: poplib.POP3) -> None:
    with contextlib.suppress(Exception):
        conn.close()
