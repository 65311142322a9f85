"""A tiny OAuth2 token-introspection endpoint (RFC 7662) for Dovecot's ``oauth2`` passdb.

:class:`IntrospectionServer` listens on loopback (a threaded ``http.server`` on an ephemeral port) and
maps bearer tokens to user names. Dovecot 2.3's oauth2 passdb (``introspection_mode = post``) POSTs
``token=<token>`` to :attr:`IntrospectionServer.url` and gets JSON back:

* a known, unrevoked token: ``{"active": true, "username": USER, "scope": "mail"}``;
* anything else (unknown or revoked): ``{"active": false}`` — with ``active_attribute = active`` and
  ``active_value = true`` Dovecot refuses the login.

A ``GET URL?token=<token>`` (``introspection_mode = get``) gets the same answers. Every token asked
about is recorded in :attr:`IntrospectionServer.lookups`, in order. Thread-safe: tokens may be issued and
revoked while Dovecot is asking.

Used through :class:`~tests.servers.dovecot.Dovecot` (``Dovecot(..., oauth2=True)``), which starts and
stops it and writes the matching ``dovecot-oauth2.conf.ext``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlsplit

HOST = "127.0.0.1"
PATH = "/introspect"


class IntrospectionServer:
    """Token -> user map served as an RFC 7662 introspection endpoint on ``127.0.0.1``."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # token -> user (active)
        self._revoked: set[str] = set()
        self.lookups: list[str] = []  # every token asked about, in order
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        from tests.servers.idp import TestIdP

        #: The authorization server on the same port (tests/servers/idp.py); tokens are shared.
        self.idp = TestIdP(self)

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("introspection server not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"

    def start(self) -> IntrospectionServer:
        if self._httpd is not None:
            return self
        # A restart binds the same port again (Dovecot's config names it).
        httpd = ThreadingHTTPServer((self.host, self._port or 0), _handler_for(self))
        httpd.daemon_threads = True
        httpd.block_on_close = False  # keep-alive handler threads must not hold up close()
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="oauth2-introspect", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> IntrospectionServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ tokens
    def issue(self, user: str, token: str | None = None) -> str:
        """Make ``token`` (default: a fresh random one) a valid token of ``user``; returns it."""
        token = token or f"mvtok-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = user
            self._revoked.discard(token)
        return token

    def revoke(self, token: str) -> None:
        """From now on ``token`` introspects as inactive (no caching: Dovecot asks on every login)."""
        with self._lock:
            self._tokens.pop(token, None)
            self._revoked.add(token)

    def user_of(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)

    def lookup_count(self, token: str | None = None) -> int:
        with self._lock:
            return len(self.lookups) if token is None else self.lookups.count(token)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _introspect(self, token: str) -> dict[str, object]:
        with self._lock:
            self.lookups.append(token)
            user = self._tokens.get(token)
        if user is None or self.idp.expired(token):
            return {"active": False}
        return {"active": True, "username": user, "scope": "mail", "token_type": "Bearer"}


def _handler_for(server: IntrospectionServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Dovecot's http-client expects

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            path = urlsplit(self.path).path
            if path in ("/token", "/device"):
                form = {k: v[0] for k, v in parse_qs(body).items()}
                if path == "/device":
                    self._send(*server.idp.device(form))
                else:
                    self._send(*server.idp.token(form, self._basic()))
                return
            self._answer(parse_qs(body).get("token", [None])[0])

        def _basic(self) -> tuple[str, str] | None:
            auth = self.headers.get("Authorization") or ""
            if not auth.lower().startswith("basic "):
                return None
            user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            return unquote_plus(user), unquote_plus(secret)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/authorize":
                status, headers, payload = server.idp.authorize(query)
                self._send(status, payload or {}, headers)
                return
            if parts.path == "/device":
                ok = server.idp.approve_device(query.get("user_code", ""), query.get("user"))
                self._send(200 if ok else 404, {"approved": ok})
                return
            token = parse_qs(urlsplit(self.path).query).get("token", [None])[0]
            if token is None:  # introspection_mode = auth: "Authorization: Bearer TOKEN"
                auth = self.headers.get("Authorization") or ""
                if auth.lower().startswith("bearer "):
                    token = auth[7:].strip()
            self._answer(token)

        def _answer(self, token: str | None) -> None:
            if urlsplit(self.path).path != PATH:
                self._send(404, {"error": "not_found"})
            elif not token:
                self._send(400, {"error": "invalid_request"})
            else:
                self._send(200, server._introspect(token))

        def _send(
            self, status: int, payload: dict[str, object], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


__all__ = ["IntrospectionServer"]
