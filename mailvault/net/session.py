"""Connections to mail servers: URL parsing, TLS policy, authentication, error mapping.

The one place that opens IMAP connections (POP3: :mod:`mailvault.net.pop3`, same policy). Policy:

* ``imaps://`` and ``pop3s://`` use implicit TLS; ``imap://`` and ``pop3://`` must
  upgrade with STARTTLS / STLS, and a server that does not offer it is refused
  unless the user passed ``--allow-plaintext`` (never a silent downgrade).
* Certificates are verified against the system store, or only against
  ``--ca-file`` when one is given; host names are checked.
* Secrets come from :mod:`mailvault.passwords` and appear in no message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.tls import IMAP4_TLS

from mailvault.errors import AuthError, ConfigError, ConnectError, ProtocolError, TLSError
from mailvault.net.sasl import NOT_CONNECTED_HINT, pick_sasl

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mailvault.net.providers import Provider

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
DEFAULT_TIMEOUT = 60.0
#: The largest literal (one message body) accepted from a server. A bigger announcement is refused
#: before any memory is set aside for it: a hostile or broken server cannot make us allocate 10**12 bytes.
MAX_LITERAL = 2 << 30


def default_timeout() -> float:
    """Seconds a connection may stay silent: ``MAILVAULT_TIMEOUT`` or 60."""
    value = os.environ.get("MAILVAULT_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise ConfigError(f"MAILVAULT_TIMEOUT must be a number of seconds, not {value!r}") from None


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # imap | imaps | pop3 | pop3s
    user: str
    host: str
    port: int
    #: The preset or config provider this endpoint came from (``gmail:me@gmail.com``), else "".
    provider: str = ""

    @property
    def protocol(self) -> str:
        return "imap" if self.scheme.startswith("imap") else "pop3"

    @property
    def implicit_tls(self) -> bool:
        return self.scheme.endswith("s")

    @property
    def address(self) -> str:
        """The URL without any secret, for display and for snapshots."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{self.user}@{host}:{self.port}"

    @property
    def account(self) -> str:
        return f"{self.user}@{self.host}"


def parse_url(url: str, providers: Mapping[str, Provider] | None = None) -> Endpoint:
    """Parse ``imap[s]://user@host[:port]``, ``pop3[s]://user@host[:port]``, or a provider address
    ``PROVIDER:ADDRESS`` / ``PROVIDER+pop3:ADDRESS`` (``gmail:me@gmail.com``; presets, or ``providers``
    as a config file extends them)."""
    from mailvault.net.providers import resolve_address, split_address

    if split_address(url) is not None and url.partition(":")[0].lower() not in DEFAULT_PORTS:
        provider, protocol, address = resolve_address(url, providers)
        p_scheme, p_host, p_port = provider.server(protocol)
        return Endpoint(p_scheme, address, p_host, p_port, provider.name)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad server URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(f"bad server URL {url!r}: scheme must be imap, imaps, pop3 or pop3s")
    if parts.password is not None:
        raise ConfigError("do not put a password in the URL; use --password-env or --password-command")
    netloc = parts.netloc
    if "@" not in netloc:
        raise ConfigError(f"bad server URL {url!r}: no user name (expected {scheme}://user@host)")
    user = unquote(netloc.rpartition("@")[0])
    host = parts.hostname or ""
    if not user or not host:
        raise ConfigError(f"bad server URL {url!r}: expected {scheme}://user@host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"bad server URL {url!r}: unexpected path or query")
    return Endpoint(scheme, user, host, port or DEFAULT_PORTS[scheme])


@dataclass
class Credentials:
    """How to authenticate; callables are asked on every (re)connect."""

    password: Callable[[], bytes] | None = None
    oauth2_token: Callable[[], bytes] | None = None
    #: Asked once when the server refuses a token the client thought valid: a fresh token, or
    #: an error (e.g. "sign in again"). None: no second try.
    oauth2_refresh: Callable[[], bytes] | None = None
    #: SASL mechanism for tokens: "" (XOAUTH2 where offered, else OAUTHBEARER), xoauth2, oauthbearer.
    sasl: str = ""


def _stderr_warning(message: str) -> None:
    print(f"mailvault: warning: {message}", file=sys.stderr, flush=True)


@dataclass
class TLSPolicy:
    ca_file: str | None = None
    allow_plaintext: bool = False
    _ctx: ssl.SSLContext | None = field(default=None, repr=False)
    #: Where the --allow-plaintext warning goes (once per policy, i.e. once per run).
    warn: Callable[[str], None] = field(default=_stderr_warning, repr=False)
    _warned: bool = field(default=False, repr=False)

    def plaintext_warning(self, ep: Endpoint, *, used: bool) -> None:
        """--allow-plaintext is a risk on every run, used or not: say so, once per run."""
        if self._warned:
            return
        self._warned = True
        if used:
            self.warn(
                f"logging in to {_where(ep)} without TLS (--allow-plaintext): the password and the mail "
                "cross the network unencrypted"
            )
        else:
            self.warn(
                f"--allow-plaintext is set for {_where(ep)}: STARTTLS was used this time, but a server "
                "(or anyone in between) that hides STARTTLS would get the password unencrypted"
            )

    def context(self) -> ssl.SSLContext:
        if self._ctx is None:
            try:
                self._ctx = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load CA file {self.ca_file}: {exc}") from None
        return self._ctx


def _where(ep: Endpoint) -> str:
    return f"{ep.host}:{ep.port}"


#: OpenSSL verification results with a message of their own (X509_V_ERR_*).
_X509_NOT_YET_VALID = 9
_X509_EXPIRED = 10
_X509_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address


def map_network_error(ep: Endpoint, exc: BaseException) -> Exception:
    """Translate a low-level exception into a one-line mailvault error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _X509_EXPIRED:
            return TLSError(f"TLS certificate of {_where(ep)} has expired; refusing to connect")
        if code == _X509_NOT_YET_VALID:
            return TLSError(
                f"TLS certificate of {_where(ep)} is not valid yet; refusing to connect (check the clock)"
            )
        if code in _X509_NAME_MISMATCH:
            return TLSError(
                f"TLS certificate of {_where(ep)} is not for {ep.host!r} ({exc.verify_message}); "
                "refusing to connect (use the host name the certificate names)"
            )
        return TLSError(
            f"TLS certificate of {_where(ep)} is not trusted ({exc.verify_message}); "
            "use --ca-file for a private CA"
        )
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS with {_where(ep)} failed: {exc.reason or exc}")
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot resolve host {ep.host}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ConnectError(f"connection to {_where(ep)} timed out")
    if isinstance(exc, OSError):
        return ConnectError(f"cannot connect to {_where(ep)}: {exc.strerror or exc}")
    return ProtocolError(f"{_where(ep)}: {exc}")


def _text(value: object) -> str:
    """Server text for a message: bytes decoded, imapclient's ``b'...'`` wrapping removed."""
    if isinstance(value, BaseException) and value.args:
        value = value.args[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    text = str(value).strip()
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        text = text[2:-1]
    return text


# -- IMAP --------------------------------------------------------------------------------------


def _guard_literals(client: imapclient.IMAPClient, ep: Endpoint) -> None:
    """Refuse literals over :data:`MAX_LITERAL` before imaplib reads (and allocates) them."""
    imap = client._imap
    read = imap.read

    def guarded(size: int) -> bytes:
        if size > MAX_LITERAL:
            raise ProtocolError(
                f"{_where(ep)} announced a literal of {size:,} bytes, more than any message may have "
                f"({MAX_LITERAL >> 20} MiB); refusing it"
            )
        data: bytes = read(size)
        return data

    imap.read = guarded


class _GreetingCapabilities:
    """imaplib asks CAPABILITY right after the greeting, a round trip per connection. A server
    that listed them in the greeting's ``[CAPABILITY ...]`` response code (RFC 3501 §7.1; Dovecot,
    Gmail and Exchange do) has answered already: that list is used, as imaplib would use the
    command's answer. Only at the greeting: later (after STARTTLS) imaplib asks as it always does,
    so nothing sent before TLS can stand in for the capabilities after it."""

    untagged_responses: dict[str, list[bytes | None]]
    capabilities: tuple[str, ...]
    _encoding: str
    _greeted = False

    def _get_capabilities(self) -> None:
        if not self._greeted:
            self._greeted = True
            listed = self.untagged_responses.pop("CAPABILITY", None)
            if listed and listed[-1]:
                self.capabilities = tuple(str(listed[-1], self._encoding).upper().split())
                return
        super()._get_capabilities()  # type: ignore[misc]


class _TLSConnection(_GreetingCapabilities, IMAP4_TLS):  # type: ignore[misc]
    pass


class _PlainConnection(_GreetingCapabilities, IMAP4WithTimeout):  # type: ignore[misc]
    pass


class _Client(imapclient.IMAPClient):  # type: ignore[misc]
    """imapclient's client on the connection classes above."""

    def _create_IMAP4(self) -> IMAP4WithTimeout | IMAP4_TLS:
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _TLSConnection(self.host, self.port, self.ssl_context, connect_timeout)
        return _PlainConnection(self.host, self.port, connect_timeout)


def connect_imap(
    ep: Endpoint, creds: Credentials, tls: TLSPolicy, *, timeout: float | None = None
) -> imapclient.IMAPClient:
    """Open, secure and log in an IMAP connection, or raise a RemoteError."""
    timeout = default_timeout() if timeout is None else timeout
    try:
        client = _Client(
            ep.host,
            port=ep.port,
            ssl=ep.implicit_tls,
            ssl_context=tls.context() if ep.implicit_tls else None,
            timeout=timeout,
        )
    except (OSError, ssl.SSLError) as exc:
        raise map_network_error(ep, exc) from None
    except IMAPClientError as exc:
        raise ProtocolError(f"{_where(ep)}: {exc}") from None
    _guard_literals(client, ep)
    if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        # imapclient sets imaplib's debug level to 5, so imaplib formats a repr() of every response,
        # every message body included, for a logger that drops it: a twentieth of a backup's CPU.
        client._imap.debug = 0
    # Pipelined commands are small writes in a row: Nagle's algorithm would hold each one back
    # until the previous one is acknowledged, a round trip per command.
    with contextlib.suppress(OSError, AttributeError):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if not ep.implicit_tls:
            if client.has_capability("STARTTLS"):
                client.starttls(tls.context())
                if tls.allow_plaintext:
                    tls.plaintext_warning(ep, used=False)
            elif not tls.allow_plaintext:
                raise TLSError(
                    f"{_where(ep)} offers no STARTTLS; refusing to log in without TLS "
                    "(use imaps://, or --allow-plaintext to accept that risk)"
                )
            else:
                tls.plaintext_warning(ep, used=True)
        _imap_login(client, ep, creds)
        client.normalise_times = False
        client.folder_encode = False
        return client
    except (OSError, ssl.SSLError) as exc:
        _close_quietly(client)
        raise map_network_error(ep, exc) from None
    except IMAPClientError as exc:
        _close_quietly(client)
        raise ProtocolError(f"{_where(ep)}: {_text(exc)}") from None
    except BaseException:
        _close_quietly(client)
        raise


def _imap_oauth2(client: imapclient.IMAPClient, ep: Endpoint, creds: Credentials) -> None:
    assert creds.oauth2_token is not None
    offered = {
        c.decode("ascii", "replace").upper()[5:]
        for c in client.capabilities()
        if c.upper().startswith(b"AUTH=")
    }
    mech = pick_sasl(creds.sasl, offered)
    token = creds.oauth2_token()
    for attempt in (1, 2):
        try:
            if mech == "OAUTHBEARER":
                client.oauthbearer_login(ep.user, token.decode())
            else:
                client.oauth2_login(ep.user, token.decode())
            break
        except LoginError:
            if attempt == 2 or creds.oauth2_refresh is None:
                raise
            token = creds.oauth2_refresh()
    try:  # a cheap command: Exchange accepts a token, then fails every command on the mailbox
        client.list_folders("", "")
    except IMAPClientError as exc:
        if "not connected" in _text(exc).lower():
            raise AuthError(f"login as {ep.user} at {_where(ep)}: {NOT_CONNECTED_HINT}") from None
        raise


def _imap_login(client: imapclient.IMAPClient, ep: Endpoint, creds: Credentials) -> None:
    try:
        if creds.oauth2_token is not None:
            _imap_oauth2(client, ep, creds)
        else:
            if creds.password is None:
                raise AuthError(f"no password for {ep.account}")
            client.login(ep.user, creds.password().decode("utf-8"))
    except LoginError as exc:
        raise AuthError(f"login as {ep.user} at {_where(ep)} refused: {_text(exc)}") from None


def _close_quietly(client: imapclient.IMAPClient) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection
        client.shutdown()


def logout_quietly(client: imapclient.IMAPClient) -> None:
    """LOGOUT without waiting for the server's goodbye, then close: every command that mattered
    has had its tagged answer (an APPEND is stored once it is OK), so there is nothing left to
    hear and no round trip to wait for."""
    try:
        client._imap.send(client._imap._new_tag() + b" LOGOUT\r\n")
    except Exception:  # the connection may already be gone
        log.debug("LOGOUT not sent", exc_info=True)
    _close_quietly(client)
