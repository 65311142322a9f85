"""Who may talk to the UI: a one-time token, a session cookie, Host/Origin checks and CSRF tokens.

The server prints ``http://127.0.0.1:PORT/?token=T``. The first request carrying ``T`` gets a session
cookie (``HttpOnly; SameSite=Strict``) and ``T`` is spent. Every other request needs that cookie, a
``Host`` header naming the address the server listens on (a DNS-rebinding page has a foreign Host),
and, for anything that changes state, an ``Origin`` of the server itself and the session's CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

COOKIE = "mailvault_session"


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Session:
    id: str
    csrf: str


@dataclass
class Guard:
    """Checks for one running server; ``allowed_hosts`` are ``host:port`` strings."""

    allowed_hosts: frozenset[str]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _spent: bool = False
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_address(cls, host: str, port: int, extra_names: Iterable[str] = ()) -> Guard:
        names = {host, *extra_names}
        if host in ("127.0.0.1", "localhost", "::1"):
            names |= {"127.0.0.1", "localhost"}
        hosts = set()
        for n in names:
            shown = f"[{n}]" if ":" in n else n
            hosts.add(f"{shown}:{port}")
        return cls(frozenset(hosts))

    def host_ok(self, host_header: str | None) -> bool:
        return host_header is not None and host_header.lower() in self.allowed_hosts

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        """State-changing requests must come from our own pages: Origin = http://<our host>."""
        if not origin or not host_header:
            return False
        return origin.lower() in {f"http://{h}" for h in self.allowed_hosts}

    def exchange(self, token: str) -> Session | None:
        """Spend the one-time token; a second use (or a wrong token) gets nothing."""
        with self._lock:
            if self._spent or not _eq(token, self.token):
                return None
            self._spent = True
            session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
            self._sessions[session.id] = session
            return session

    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        with self._lock:
            for sid, session in self._sessions.items():
                if _eq(cookie, sid):
                    return session
        return None

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and _eq(given or "", session.csrf)
