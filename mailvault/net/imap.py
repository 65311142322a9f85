"""IMAP protocol helpers shared by sources and targets (parsing is imapclient's)."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from imapclient.response_parser import parse_response

from mailvault.errors import ConnectError, ProtocolError
from mailvault.net import mutf7
from mailvault.net.commands import append, uid_fetch, uid_set
from mailvault.net.connections import (
    AUTO,
    AUTO_CONNECTIONS,
    GMAIL_CONNECTION_LIMIT,
    connection_count,
    parse_connections,
)
from mailvault.net.session import logout_quietly

T = TypeVar("T")

__all__ = [
    "AUTO",
    "AUTO_CONNECTIONS",
    "GMAIL_CONNECTION_LIMIT",
    "NETWORK_ERRORS",
    "SPECIAL_USE",
    "ImapConnection",
    "ListedFolder",
    "Throttled",
    "append",
    "connection_count",
    "parse_connections",
    "server_text",
    "text",
    "uid_fetch",
    "uid_set",
]


# -- one reconnecting IMAP connection, shared by sources and targets -------------------------------

log = logging.getLogger(__name__)

#: What a dropped or broken connection raises.
NETWORK_ERRORS = (OSError, ssl.SSLError, socket.timeout, IMAPClientAbortError, EOFError)
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")


class Throttled(Exception):
    """The server asked us to slow down ([THROTTLED], [OVERQUOTA] on rate)."""


def text(value: Any) -> str:
    """An IMAP atom, string or literal as str (UTF-8, undecodable bytes replaced)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def server_text(exc: BaseException) -> str:
    """The server's answer carried by an imapclient error, without its ``b'...'`` wrapping."""
    t = text(exc.args[0]) if exc.args else str(exc)
    if len(t) >= 3 and t[0] == "b" and t[1] in "'\"" and t[-1] == t[1]:
        t = t[2:-1]
    return t.strip()


@dataclass
class ListedFolder:
    name: str  # decoded from modified UTF-7
    name_raw: str  # as the server spells it
    delimiter: str | None
    special_use: str | None
    attributes: tuple[str, ...] = ()
    #: LIST-STATUS (RFC 5819): MESSAGES, UIDNEXT, UIDVALIDITY (and HIGHESTMODSEQ) as LIST returned them.
    status: dict[str, int] | None = None

    @property
    def selectable(self) -> bool:
        return not any(a.lower() in ("\\noselect", "\\nonexistent") for a in self.attributes)


class ImapConnection:
    """A logged-in IMAP connection that survives drops.

    ``connect`` opens and logs in a fresh client. :meth:`retrying` runs an operation; when
    the connection breaks it reconnects, selects again the folder that was selected (a
    changed UIDVALIDITY is an error: UIDs would mean other messages) and retries, up to
    ``max_retries`` times; a :class:`Throttled` answer is retried after an exponential pause.
    """

    #: Seconds before the first retry after a drop (doubling, at most 5).
    network_backoff = 0.5

    def __init__(
        self,
        connect: Callable[[], imapclient.IMAPClient],
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 4,
    ) -> None:
        self._connect = connect
        self._sleep = sleep
        self.max_retries = max_retries
        self.reconnects = 0
        self.throttle_waits = 0.0
        self._client: imapclient.IMAPClient | None = None
        self._selected: str | None = None
        self._readonly = False
        self._validity: int | None = None
        self.capabilities: set[str] = set()
        #: Commands sent without waiting for their answer: (name, tag, sent at). Settled (their
        #: answers read, :meth:`_settled` called) before the next command that waits.
        self._pending: list[tuple[str, bytes, float]] = []
        #: Round-trip time measured on this connection (seconds; None until a command told it).
        self.rtt: float | None = None
        self._open()

    def _open(self) -> None:
        client = self._connect()
        self.capabilities = {text(c).upper() for c in client.capabilities()}
        self._client = client
        self._selected = None
        self._pending = []
        self._after_open(client)

    def _after_open(self, client: imapclient.IMAPClient) -> None:
        """Hook for ENABLE and the like."""

    def _send_pending(self, name: str, *args: str) -> None:
        """Send a command whose answer is read later (pipelined behind the next ones)."""
        assert self._client is not None
        tag = self._client._imap._command(name, *args)
        self._pending.append((name, tag, time.monotonic()))

    def _settle(self) -> None:
        """Read the answers of the commands sent with :meth:`_send_pending`."""
        pending, self._pending = self._pending, []
        assert self._client is not None
        for name, tag, sent in pending:
            try:
                typ, data = self._client._imap._command_complete(name, tag)
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                typ, data = "BAD", [str(exc).encode()]
            self._measured(time.monotonic() - sent)
            self._settled(name, typ, data)

    def _settled(self, name: str, typ: str, data: list[Any]) -> None:
        """Hook: the answer of a pipelined command (``typ`` OK / NO / BAD)."""

    def _measured(self, seconds: float) -> None:
        """A small command took ``seconds`` from sending to its answer: an upper bound of the RTT."""
        self.rtt = seconds if self.rtt is None else min(self.rtt, seconds)

    @property
    def client(self) -> imapclient.IMAPClient:
        if self._client is None:
            self._open()
        assert self._client is not None
        if self._pending:
            self._settle()
        return self._client

    @property
    def selected(self) -> str | None:
        """The raw name of the folder selected on this connection (None: none)."""
        return self._selected

    @property
    def gmail(self) -> bool:
        return "X-GM-EXT-1" in self.capabilities

    def close(self) -> None:
        if self._client is not None:
            logout_quietly(self._client)
            self._client = None

    def _select_raw(self, name_raw: str, *, readonly: bool) -> dict[bytes, Any]:
        info = dict(self.client.select_folder(name_raw, readonly=readonly))
        self._selected, self._readonly = name_raw, readonly
        v = info.get(b"UIDVALIDITY")
        self._validity = int(v[0] if isinstance(v, list | tuple) else v) if v is not None else None
        return info

    def _reconnect(self, why: str) -> None:
        log.info("reconnecting: %s", why)
        if self._client is not None:
            with contextlib.suppress(Exception):  # it is broken already
                self._client.shutdown()
            self._client = None
        self.reconnects += 1
        folder, readonly, validity = self._selected, self._readonly, self._validity
        self._open()
        if folder is not None:  # later commands expect the folder still selected
            self._select_raw(folder, readonly=readonly)
            if validity is not None and self._validity != validity:
                raise ProtocolError(f"UIDVALIDITY of {mutf7.decode(folder)!r} changed while we were working")
        self._after_reconnect()

    def _after_reconnect(self) -> None:
        """Hook: note that an operation in flight may or may not have completed."""

    def retrying(self, what: str, fn: Callable[[], T]) -> T:
        delay = 1.0
        backoff = self.network_backoff
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except Throttled as exc:
                if attempt == self.max_retries:
                    raise ProtocolError(f"{what}: the server keeps throttling ({exc})") from None
                self.throttle_waits += delay
                self._sleep(delay)
                delay = min(delay * 2, 300)
            except NETWORK_ERRORS as exc:
                backoff = self.recover(what, exc, attempt, backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def recover(self, what: str, exc: BaseException, attempt: int, backoff: float) -> float:
        """After a network error on try ``attempt`` (0-based) of ``what``: give up (ConnectError)
        once :attr:`max_retries` is reached, else wait ``backoff`` and reconnect; returns the next
        backoff."""
        if attempt >= self.max_retries:
            raise ConnectError(f"{what}: connection lost {attempt + 1} times ({exc})") from None
        if backoff:
            self._sleep(backoff)
            backoff = min(backoff * 2, 5)
        try:
            self._reconnect(f"{what}: {exc}")
        except ConnectError:
            if attempt + 1 >= self.max_retries:
                raise
        return backoff

    def _list_args(self, with_status: bool) -> tuple[str, ...] | None:
        """The extended LIST command's arguments, or None when the server has only plain LIST."""
        if not {"SPECIAL-USE", "LIST-EXTENDED"} <= self.capabilities:
            return None
        # RFC 6154: ask for the special-use attributes; plain LIST need not carry them.
        # RFC 5819: with LIST-STATUS, every folder's STATUS comes in the same round trip.
        ret = "SPECIAL-USE"
        if with_status and "LIST-STATUS" in self.capabilities:
            items = "MESSAGES UIDNEXT UIDVALIDITY" + (
                " HIGHESTMODSEQ" if "CONDSTORE" in self.capabilities else ""
            )
            ret += f" STATUS ({items})"
        return ('""', '"*"', "RETURN", f"({ret})")

    def _list_result(
        self, client: imapclient.IMAPClient, typ: str, dat: list[Any], args: tuple[str, ...]
    ) -> tuple[Any, dict[str, dict[str, int]]] | None:
        """The folders and statuses of an answered extended LIST (None: it was refused)."""
        if typ != "OK":
            return None
        typ, dat = client._imap._untagged_response(typ, dat, "LIST")
        statuses = client._imap.untagged_responses.pop("STATUS", []) if "STATUS" in args[-1] else []
        return client._proc_folder_list(dat), _parse_statuses(statuses)

    def _list(self, with_status: bool) -> tuple[Any, dict[str, dict[str, int]]]:
        client = self.client
        args = self._list_args(with_status)
        if args is not None:
            typ, dat = client._imap._simple_command("LIST", *args)
            got = self._list_result(client, typ, dat, args)
            if got is not None:
                return got
        return client.list_folders(), {}

    def personal_namespace(self) -> tuple[str, str | None]:
        """(prefix, delimiter) of the personal namespace (RFC 2342); ("", None) when unknown.

        Dovecot answers ``("", "/")``; Cyrus and Courier ``("INBOX.", ".")``: folders live below INBOX."""
        if "NAMESPACE" not in self.capabilities:
            return "", None
        try:
            ns = self.retrying("NAMESPACE", lambda: self.client.namespace())  # noqa: PLW0108
        except IMAPClientError:
            return "", None
        return _personal(ns.personal)

    def list_folders(self, *, with_status: bool = False) -> list[ListedFolder]:
        """LIST "" "*" with decoded names and the special-use attribute (RFC 6154); with
        ``with_status`` and LIST-STATUS offered, each folder's STATUS too."""
        return self._listed(self.retrying("LIST", lambda: self._list(with_status)))

    def namespace_and_folders(
        self, *, with_status: bool = False
    ) -> tuple[tuple[str, str | None], list[ListedFolder]]:
        """:meth:`personal_namespace` and :meth:`list_folders` in one round trip: NAMESPACE and
        LIST pipelined behind whatever was sent without waiting (ENABLE). Falls back to one
        command at a time when the server lacks the extensions or the pipelined try fails."""
        args = self._list_args(with_status)
        if args is not None and self._client is not None:
            try:
                got = self._pipelined_start(args)
            except NETWORK_ERRORS:
                got = None  # the one-at-a-time path below reconnects
            if got is not None:
                return got
        return self.personal_namespace(), self.list_folders(with_status=with_status)

    def _pipelined_start(
        self, args: tuple[str, ...]
    ) -> tuple[tuple[str, str | None], list[ListedFolder]] | None:
        client = self._client
        assert client is not None
        imap = client._imap
        ns_tag = imap._command("NAMESPACE") if "NAMESPACE" in self.capabilities else None
        list_tag = imap._command("LIST", *args)
        self._settle()
        namespace: tuple[str, str | None] = ("", None)
        if ns_tag is not None:
            try:
                typ, dat = imap._command_complete("NAMESPACE", ns_tag)
            except IMAPClientAbortError:
                raise
            except IMAPClientError:
                typ, dat = "BAD", []
            if typ == "OK":
                typ, dat = imap._untagged_response(typ, dat, "NAMESPACE")
                with contextlib.suppress(ValueError, TypeError, IndexError, IMAPClientError):
                    parsed = parse_response(dat)
                    namespace = _personal(parsed[0] if parsed else None)
        try:
            typ, dat = imap._command_complete("LIST", list_tag)
        except IMAPClientAbortError:
            raise
        except IMAPClientError:
            return None
        got = self._list_result(client, typ, dat, args)
        return None if got is None else (namespace, self._listed(got))

    def _listed(self, got: tuple[Any, dict[str, dict[str, int]]]) -> list[ListedFolder]:
        listing, statuses = got
        specials = {s.lower(): s for s in SPECIAL_USE}
        out = []
        for flags, delim, name in listing:
            attrs = tuple(text(f) for f in flags)
            raw = text(name)
            special = next((specials[a.lower()] for a in attrs if a.lower() in specials), None)
            out.append(
                ListedFolder(
                    mutf7.decode(raw), raw, text(delim) if delim else None, special, attrs, statuses.get(raw)
                )
            )
        return out


def _personal(personal: Any) -> tuple[str, str | None]:
    """(prefix, delimiter) of the first personal namespace of a NAMESPACE answer."""
    if personal:
        prefix, delim = personal[0]
        return text(prefix), text(delim) if delim else None
    return "", None


def _parse_statuses(data: list[Any]) -> dict[str, dict[str, int]]:
    """Untagged STATUS responses (parsed by imapclient) as {raw folder name: {item: number}}."""
    out: dict[str, dict[str, int]] = {}
    for item in data:
        try:
            parsed = parse_response([item] if isinstance(item, bytes) else list(item))
            name, values = parsed[0], parsed[-1]
            pairs = list(values)
            out[text(name)] = {text(pairs[i]).upper(): int(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)}
        except (ValueError, TypeError, IndexError, ProtocolError, IMAPClientError):
            continue  # a STATUS we cannot read: that folder is EXAMINEd as usual
    return out
