"""Read access to a POP3 mailbox (poplib): listing with UIDL, retrieval, deletion on request.

POP3 serves messages with CRLF line endings and dot-stuffing; poplib removes the
stuffing and the line endings, so the served bytes are rebuilt as the lines joined
by CRLF plus a final CRLF — exactly what travelled on the wire after unstuffing.
Nothing is deleted unless :meth:`Pop3Source.delete` is called, which backup does
only after the snapshot holding those messages is committed.
"""

from __future__ import annotations

import contextlib
import poplib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailvault.errors import ConnectError, ProtocolError

_NETWORK_ERRORS = (OSError, ssl.SSLError, socket.timeout, EOFError)
#: TOP's line count meaning "the whole body" (RFC 1939 TOP: headers, blank line, N body lines).
TOP_ALL_LINES = 2**31 - 1


@dataclass(frozen=True)
class Pop3Entry:
    number: int
    uidl: str | None
    size: int


def _resp_text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


class Pop3Source:
    def __init__(self, connect: Callable[[], poplib.POP3]) -> None:
        self._connect = connect
        self.conn: poplib.POP3 | None = connect()
        self.has_uidl = True
        try:
            self.has_top = "TOP" in self.conn.capa()
        except poplib.error_proto:
            self.has_top = False

    def listing(self) -> list[Pop3Entry]:
        conn = self._require()
        try:
            _resp, lines, _octets = conn.list()
            sizes = {}
            for line in lines:
                num, size = line.split()[:2]
                sizes[int(num)] = int(size)
            uidls: dict[int, str] = {}
            try:
                _resp, ulines, _octets = conn.uidl()
                for line in ulines:
                    num, uidl = line.split(None, 1)
                    uidls[int(num)] = uidl.strip().decode("ascii", "replace")
            except poplib.error_proto:
                self.has_uidl = False
        except poplib.error_proto as exc:
            raise ProtocolError(f"POP3 LIST failed: {_resp_text(exc)}") from None
        except _NETWORK_ERRORS as exc:
            raise ConnectError(f"POP3 connection lost during LIST: {exc}") from None
        return [Pop3Entry(n, uidls.get(n), s) for n, s in sorted(sizes.items())]

    def retrieve(self, number: int) -> bytes:
        """The message's bytes. With TOP advertised, ``TOP n <huge>`` is used instead of RETR:
        servers that keep flags (Dovecot) mark a RETRieved message \\Seen, and a backup must
        not change the mailbox."""
        conn = self._require()
        try:
            if self.has_top:
                _resp, lines, _octets = conn.top(number, TOP_ALL_LINES)
            else:
                _resp, lines, _octets = conn.retr(number)
        except poplib.error_proto as exc:
            text = _resp_text(exc)
            if text.startswith("-ERR EOF"):  # poplib's way of saying the connection closed
                self.conn = None
                raise ConnectError(f"POP3 connection lost during RETR {number}") from None
            raise ProtocolError(f"RETR {number}: {text}") from None
        except _NETWORK_ERRORS as exc:
            self.conn = None
            raise ConnectError(f"POP3 connection lost during RETR {number}: {exc}") from None
        return b"\r\n".join(lines) + b"\r\n"

    def reconnect(self) -> None:
        self.abort()
        self.conn = self._connect()

    def delete(self, numbers: Sequence[int]) -> int:
        """Mark messages deleted and QUIT so the server applies it. Returns how many."""
        conn = self._require()
        try:
            for n in numbers:
                conn.dele(n)
            conn.quit()
        except poplib.error_proto as exc:
            # Leave without QUIT: the server then deletes nothing (RFC 1939 §6).
            self.abort()
            raise ProtocolError(f"POP3 DELE failed, nothing deleted: {_resp_text(exc)}") from None
        except _NETWORK_ERRORS as exc:
            self.conn = None
            raise ConnectError(f"POP3 connection lost during DELE, nothing deleted: {exc}") from None
        self.conn = None
        return len(numbers)

    def _require(self) -> poplib.POP3:
        if self.conn is None:
            self.conn = self._connect()
        return self.conn

    def abort(self) -> None:
        """Close without QUIT (so no deletion is ever applied by accident)."""
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.close()
            self.conn = None

    def close(self) -> None:
        """QUIT politely; no DELE was sent on this connection unless delete() was called."""
        if self.conn is not None:
            try:
                self.conn.quit()
            except (poplib.error_proto, *_NETWORK_ERRORS):
                self.abort()
            self.conn = None
