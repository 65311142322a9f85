"""A scripted fake Gmail IMAP server for tests (threaded, in memory, 127.0.0.1, free port).

It speaks the part of IMAP4rev1 that mailvault uses and emulates the Gmail behaviours
mailvault relies on:

* one message store per account; folders are *views*: ``INBOX`` shows the messages with
  the ``\\Inbox`` label, ``[Gmail]/Sent Mail`` those with ``\\Sent``, a user folder ``Work``
  those with the label ``Work``, ``[Gmail]/Starred`` the ``\\Flagged`` ones and
  ``[Gmail]/All Mail`` every message not in Spam or Trash. Each folder hands out its own
  UIDs, in the order messages first appear in it;
* APPEND to a label folder creates one message (one X-GM-MSGID) carrying that label, so it
  also shows in All Mail; APPEND to All Mail creates an archived message without labels;
* ``UID STORE +X-GM-LABELS`` adds labels (the message then shows in those folders; a user
  label that does not exist yet is created, as Gmail does);
* FETCH knows X-GM-LABELS, X-GM-MSGID, X-GM-THRID; LIST carries the special-use
  attributes on ``[Gmail]/...`` and ``\\Noselect`` on ``[Gmail]``;
* APPENDLIMIT=<n> (a synchronising literal over the limit is refused with ``NO [TOOBIG]``
  before the client sends it), LITERAL- (``{n+}`` only for n <= 4096), UIDPLUS
  (``[APPENDUID v uid]``); messages containing NUL are refused with ``NO [CANNOT]``.

Scripted faults: :meth:`FakeGmail.throttle_next` (``NO [THROTTLED]`` to the next n APPENDs,
answered after the literal was read) and :meth:`FakeGmail.bye_after_appends` (``* BYE`` and
close the connection right after the k-th further successful APPEND).

Instrumentation for assertions: :attr:`FakeGmail.appends` (every stored APPEND),
:attr:`FakeGmail.stores`, :attr:`FakeGmail.body_fetches` (per X-GM-MSGID),
:attr:`FakeGmail.commands` and :attr:`FakeGmail.connections`.

Plain TCP by default (use ``imap://`` with ``allow_plaintext``); ``tls=True`` gives implicit
TLS (``imaps://``) with a throwaway self-signed certificate (:attr:`FakeGmail.ca_file`).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import socketserver
import ssl
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DEFAULT_USER = "me@gmail.com"
DEFAULT_PASSWORD = "secret"
DEFAULT_APPENDLIMIT = 35_651_584  # Gmail's
LITERAL_MINUS_MAX = 4096

ALL_MAIL = "[Gmail]/All Mail"
#: System folders: name -> (special-use attribute, label that places a message there).
SYSTEM_FOLDERS: dict[str, tuple[str | None, str | None]] = {
    "INBOX": (None, "\\Inbox"),
    ALL_MAIL: ("\\All", None),
    "[Gmail]/Drafts": ("\\Drafts", "\\Draft"),
    "[Gmail]/Important": ("\\Important", "\\Important"),
    "[Gmail]/Sent Mail": ("\\Sent", "\\Sent"),
    "[Gmail]/Spam": ("\\Junk", "\\Spam"),
    "[Gmail]/Starred": ("\\Flagged", "\\Starred"),
    "[Gmail]/Trash": ("\\Trash", "\\Trash"),
}
#: System labels as X-GM-LABELS spells them (case-insensitive on input).
SYSTEM_LABELS = {lab.lower(): lab for _, lab in SYSTEM_FOLDERS.values() if lab}
PERMANENT_FLAGS = ("\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "\\Seen", "$Forwarded", "\\*")
FLAGS = (
    "\\Answered",
    "\\Flagged",
    "\\Draft",
    "\\Deleted",
    "\\Seen",
    "$Forwarded",
    "$NotPhishing",
    "$Phishing",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# -- the account --------------------------------------------------------------------------------


@dataclass
class Message:
    msgid: int
    thrid: int
    raw: bytes
    internaldate: datetime
    flags: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)  # raw (modified UTF-7) label names, system ones with "\\"

    @property
    def message_id(self) -> str:
        m = re.search(rb"^message-id:[ \t]*(\S+)", _header_block(self.raw), re.IGNORECASE | re.MULTILINE)
        return m.group(1).decode("latin-1") if m else ""


@dataclass
class Folder:
    name: str  # raw (modified UTF-7)
    uidvalidity: int
    special_use: str | None = None
    label: str | None = None  # the label that places a message here (None: All Mail / Starred rules)
    uidnext: int = 1
    uid_of: dict[int, int] = field(default_factory=dict)  # msgid -> uid, insertion (= UID) order

    def contains(self, m: Message) -> bool:
        if self.name == ALL_MAIL:
            return not ({"\\Trash", "\\Spam"} & m.labels)
        if self.name == "[Gmail]/Starred":
            return "\\Flagged" in m.flags
        return self.label is not None and self.label in m.labels

    def uids(self) -> list[tuple[int, int]]:
        """(uid, msgid) in UID order (= message sequence order)."""
        return sorted((u, mid) for mid, u in self.uid_of.items())


@dataclass
class AppendRecord:
    folder: str
    msgid: int
    uid: int
    size: int
    connection: int


@dataclass
class StoreRecord:
    folder: str
    uids: list[int]
    op: str  # e.g. "+X-GM-LABELS"
    values: list[str]


class FakeGmail:
    """The server: ``with FakeGmail() as g: ... g.url`` (or ``start()`` / ``stop()``)."""

    def __init__(
        self,
        *,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        appendlimit: int | None = DEFAULT_APPENDLIMIT,
        multiappend: bool = False,
        tls: bool = False,
        uidvalidity_base: int = 600_000_000,
    ) -> None:
        self.user = user
        self.password = password
        self.appendlimit = appendlimit
        self.multiappend = multiappend
        self.tls = tls
        self.lock = threading.RLock()
        self._validity = itertools.count(uidvalidity_base + 1)
        self._msgids = itertools.count(1_600_000_000_000_000_001)
        self.messages: dict[int, Message] = {}
        self.folders: dict[str, Folder] = {}
        for name, (special, label) in SYSTEM_FOLDERS.items():
            self.folders[name] = Folder(name, next(self._validity), special, label)
        # Instrumentation.
        self.appends: list[AppendRecord] = []
        self.append_attempts = 0
        self.stores: list[StoreRecord] = []
        self.body_fetches: Counter[int] = Counter()
        self.commands: list[tuple[int, str]] = []
        self.connections = 0
        self.logins = 0
        # Faults.
        self._throttle = 0
        self._throttle_after = 0
        self._throttle_code = "THROTTLED"
        self._bye_after: int | None = None
        self._bye_before_ok = False
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._handlers: set[_Handler] = set()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeGmail:
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="fakegmail-")
            cert, key = _self_signed(Path(self._tmp.name))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self._ssl = ctx
            self.ca_file = str(cert)
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.gmail = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fakegmail", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            handlers = list(self._handlers)
        for h in handlers:
            h.drop()
        if self._thread is not None:
            self._thread.join(5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeGmail:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'imaps' if self.tls else 'imap'}://{self.user}@127.0.0.1:{self.port}"

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "UNSELECT", "NAMESPACE", "ID", "CHILDREN", "X-GM-EXT-1", "UIDPLUS"]
        caps += ["LITERAL-", "SPECIAL-USE"]
        if self.multiappend:
            caps.append("MULTIAPPEND")
        if self.appendlimit is not None:
            caps.append(f"APPENDLIMIT={self.appendlimit}")
        return caps

    # -- faults -----------------------------------------------------------------------------
    def throttle_next(self, n: int, *, after: int = 0, code: str = "THROTTLED") -> None:
        """Answer the next ``n`` APPENDs with ``NO [THROTTLED]`` (or ``NO [<code>]``, e.g.
        ``UNAVAILABLE`` or ``LIMIT``; nothing is stored), once ``after`` more APPENDs have succeeded."""
        with self.lock:
            self._throttle = n
            self._throttle_after = after
            self._throttle_code = code

    def bye_after_appends(self, k: int | None, *, before_ok: bool = False) -> None:
        """After ``k`` more successful APPENDs, send ``* BYE`` and close that connection (once).

        ``before_ok``: the k-th message is stored but the connection closes before its tagged OK
        (the client cannot know whether it went through)."""
        with self.lock:
            self._bye_after = k
            self._bye_before_ok = before_ok

    def drop_connections(self) -> None:
        """Close every client connection now (no BYE)."""
        with self.lock:
            handlers = list(self._handlers)
        for h in handlers:
            h.drop()

    # -- seeding and inspection ---------------------------------------------------------------
    def add_message(
        self,
        raw: bytes,
        labels: Iterable[str] = ("\\Inbox",),
        flags: Iterable[str] = (),
        internaldate: datetime | None = None,
        thrid: int | None = None,
    ) -> int:
        """Put a message into the account directly; returns its X-GM-MSGID."""
        with self.lock:
            m = self._new_message(raw, set(flags), internaldate)
            if thrid is not None:
                m.thrid = thrid
            for lab in labels:
                self._add_label(m, lab)
            self._sync()
            return m.msgid

    def create_label(self, name: str) -> None:
        with self.lock:
            self._ensure_label_folder(name)

    def add_labels(self, msgid: int, labels: Iterable[str]) -> None:
        with self.lock:
            for lab in labels:
                self._add_label(self.messages[msgid], lab)
            self._sync()

    def folder_messages(self, name: str) -> list[Message]:
        """The messages a folder shows, in UID order."""
        with self.lock:
            return [self.messages[mid] for _, mid in self.folders[name].uids()]

    def folder_uids(self, name: str) -> list[int]:
        with self.lock:
            return [u for u, _ in self.folders[name].uids()]

    def by_message_id(self, message_id: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages.values() if m.message_id == message_id]

    def by_raw(self, raw: bytes) -> list[Message]:
        with self.lock:
            return [m for m in self.messages.values() if m.raw == raw]

    def append_count(self, folder: str | None = None) -> int:
        return sum(1 for a in self.appends if folder is None or a.folder == folder)

    def label_stores(self) -> list[StoreRecord]:
        return [s for s in self.stores if "X-GM-LABELS" in s.op]

    def reset_counters(self) -> None:
        with self.lock:
            self.appends.clear()
            self.append_attempts = 0
            self.stores.clear()
            self.body_fetches.clear()
            self.commands.clear()

    # -- store internals (call with the lock held) ----------------------------------------------
    def _new_message(self, raw: bytes, flags: set[str], internaldate: datetime | None) -> Message:
        msgid = next(self._msgids)
        m = Message(msgid, msgid, raw, internaldate or datetime.now(UTC).replace(microsecond=0), flags)
        self.messages[msgid] = m
        return m

    def _canonical_label(self, label: str) -> str:
        return SYSTEM_LABELS.get(label.lower(), label) if label.startswith("\\") else label

    def _ensure_label_folder(self, name: str) -> Folder:
        f = self.folders.get(name)
        if f is None:
            parts = name.split("/")
            for i in range(1, len(parts)):  # Gmail creates the parent labels too
                parent = "/".join(parts[:i])
                if parent not in self.folders:
                    self.folders[parent] = Folder(parent, next(self._validity), None, parent)
            f = self.folders[name] = Folder(name, next(self._validity), None, name)
        return f

    def _add_label(self, m: Message, label: str) -> None:
        label = self._canonical_label(label)
        if label == "\\Starred":
            m.flags.add("\\Flagged")
            return
        if not label.startswith("\\") and label.upper() != "INBOX":
            self._ensure_label_folder(label)
        elif label.upper() == "INBOX":
            label = "\\Inbox"
        m.labels.add(label)

    def _remove_label(self, m: Message, label: str) -> None:
        label = self._canonical_label(label)
        if label == "\\Starred":
            m.flags.discard("\\Flagged")
        m.labels.discard("\\Inbox" if label.upper() == "INBOX" else label)

    def _sync(self) -> None:
        """Recompute folder membership: new members get the next UID, leavers are expunged."""
        for f in self.folders.values():
            for mid in [
                mid for mid in f.uid_of if mid not in self.messages or not f.contains(self.messages[mid])
            ]:
                del f.uid_of[mid]
            for mid in sorted(self.messages):
                if mid not in f.uid_of and f.contains(self.messages[mid]):
                    f.uid_of[mid] = f.uidnext
                    f.uidnext += 1

    def _labels_for_append(self, folder: Folder) -> tuple[list[str], set[str]]:
        """(labels, extra flags) a message APPENDed to ``folder`` gets."""
        if folder.name == ALL_MAIL:
            return [], set()
        if folder.name == "[Gmail]/Starred":
            return [], {"\\Flagged"}
        assert folder.label is not None
        return [folder.label], set()


# -- protocol -------------------------------------------------------------------------------------


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    gmail: FakeGmail


class ProtocolFailure(Exception):
    """The client sent something this server cannot parse: answer BAD."""


class _Closed(Exception):
    pass


@dataclass
class _Literal:
    data: bytes


_LITERAL_AT_END = re.compile(rb"\{(\d+)(\+?)\}$")
_PLACEHOLDER = re.compile(rb"\x00L(\d+)\x00")


class _Handler(socketserver.StreamRequestHandler):
    server: _TCPServer
    timeout = 120

    def setup(self) -> None:
        g = self.server.gmail
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delays
        if g._ssl is not None:
            self.request = g._ssl.wrap_socket(self.request, server_side=True)
        super().setup()
        self.g = g
        self.state = "NONAUTH"
        self.selected: str | None = None
        self.readonly = False
        self.closed = False
        with g.lock:
            g.connections += 1
            self.conn_id = g.connections
            g._handlers.add(self)

    def finish(self) -> None:
        with self.g.lock:
            self.g._handlers.discard(self)
        with contextlib.suppress(OSError):
            super().finish()

    def drop(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.request.close()

    # -- I/O --------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.closed:
            raise _Closed
        try:
            self.wfile.write(data)
        except OSError:
            raise _Closed from None

    def line(self, text: str | bytes) -> None:
        self.send((text.encode("utf-8") if isinstance(text, str) else text) + b"\r\n")

    def handle(self) -> None:
        self.line("* OK [CAPABILITY " + " ".join(self.g.capabilities()) + "] Gimap ready (fake)")
        try:
            while not self.closed:
                got = self.read_command()
                if got is None:
                    return
                tag, text, literals = got
                try:
                    self.dispatch(tag, text, literals)
                except ProtocolFailure as exc:
                    self.line(f"{tag} BAD {exc}")
        except (_Closed, OSError, ssl.SSLError):
            return

    def read_command(self) -> tuple[str, bytes, list[bytes]] | None:
        """One command: (tag, text with literal placeholders, literals); None at EOF."""
        parts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw:
                return None
            line = raw.rstrip(b"\r\n")
            m = _LITERAL_AT_END.search(line)
            if not m:
                parts.append(line)
                break
            n, plus = int(m.group(1)), bool(m.group(2))
            parts.append(line[: m.start()] + b"\x00L%d\x00" % len(literals))
            head = b"".join(parts)
            tag = head.split(b" ", 1)[0].decode("ascii", "replace")
            if not plus:
                refusal = self.refuse_literal(head, n)
                if refusal is not None:
                    # The client will not send the literal nor the rest of the command.
                    self.line(f"{tag} {refusal}")
                    return self.read_command()
                self.line("+ go ahead")
            data = self.rfile.read(n)
            if len(data) < n:
                return None
            if plus and n > LITERAL_MINUS_MAX:
                # RFC 7888: a non-synchronising literal over 4096 octets is an error.
                self.rfile.readline(1 << 20)  # rest of the command
                self.line(f"{tag} BAD [TOOBIG] non-synchronising literal over {LITERAL_MINUS_MAX} octets")
                return self.read_command()
            literals.append(data)
        text = b"".join(parts)
        tag, _, rest = text.partition(b" ")
        return tag.decode("ascii", "replace"), rest, literals

    def refuse_literal(self, head: bytes, n: int) -> str | None:
        words = head.split(b" ", 2)
        if len(words) > 1 and words[1].upper() == b"APPEND":
            limit = self.g.appendlimit
            if limit is not None and n > limit:
                return f"NO [TOOBIG] Message too large ({n} > APPENDLIMIT {limit})"
        return None

    # -- dispatch ---------------------------------------------------------------------------
    def dispatch(self, tag: str, text: bytes, literals: list[bytes]) -> None:
        tokens = _tokenize(text, literals)
        if not tokens or not isinstance(tokens[0], str):
            raise ProtocolFailure("missing command")
        cmd = tokens[0].upper()
        args = tokens[1:]
        uid = False
        if cmd == "UID":
            if not args or not isinstance(args[0], str):
                raise ProtocolFailure("UID needs a command")
            uid, cmd, args = True, args[0].upper(), args[1:]
        with self.g.lock:
            self.g.commands.append((self.conn_id, ("UID " if uid else "") + cmd))
        handler = getattr(self, f"cmd_{cmd.replace('-', '_').lower()}", None)
        if handler is None:
            raise ProtocolFailure(f"unknown command {cmd}")
        need = _COMMAND_STATES.get(cmd, ("AUTH", "SELECTED"))
        if self.state not in need:
            raise ProtocolFailure(f"{cmd} not allowed now")
        if uid and cmd not in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"):
            raise ProtocolFailure(f"UID {cmd} is not a thing")
        if cmd in ("FETCH", "STORE", "SEARCH"):
            handler(tag, args, uid)
        else:
            handler(tag, args)

    # -- any state ----------------------------------------------------------------------------
    def cmd_capability(self, tag: str, args: list[Any]) -> None:
        self.line("* CAPABILITY " + " ".join(self.g.capabilities()))
        self.line(f"{tag} OK Thats all she wrote! (Success)")

    def cmd_noop(self, tag: str, args: list[Any]) -> None:
        self.line(f"{tag} OK Success")

    def cmd_id(self, tag: str, args: list[Any]) -> None:
        self.line('* ID ("name" "GImap" "vendor" "Google, Inc." "support-url" "http://example.invalid")')
        self.line(f"{tag} OK Success")

    def cmd_logout(self, tag: str, args: list[Any]) -> None:
        self.line("* BYE LOGOUT Requested")
        self.line(f"{tag} OK 73 good day (Success)")
        self.closed = True

    def cmd_login(self, tag: str, args: list[Any]) -> None:
        if len(args) != 2:
            raise ProtocolFailure("LOGIN user password")
        user, password = (_text(a) for a in args)
        if user != self.g.user or password != self.g.password:
            self.line(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
            return
        self.state = "AUTH"
        with self.g.lock:
            self.g.logins += 1
        self.line(f"{tag} OK {user} authenticated (Success)")

    # -- authenticated ------------------------------------------------------------------------
    def cmd_namespace(self, tag: str, args: list[Any]) -> None:
        self.line('* NAMESPACE (("" "/")) NIL NIL')
        self.line(f"{tag} OK Success")

    def cmd_list(self, tag: str, args: list[Any], verb: str = "LIST") -> None:
        if len(args) != 2:
            raise ProtocolFailure(f"{verb} reference pattern")
        ref, pattern = (_text(a) for a in args)
        if pattern == "":
            self.line(f'* {verb} (\\Noselect) "/" ""')
            self.line(f"{tag} OK Success")
            return
        rx = _wildcard(ref + pattern)
        with self.g.lock:
            names = sorted(self.g.folders, key=_list_order)
            rows = []
            if any(n.startswith("[Gmail]/") for n in names) and rx.fullmatch("[Gmail]"):
                rows.append(("[Gmail]", ["\\HasChildren", "\\Noselect"]))
            for n in names:
                if not rx.fullmatch(n):
                    continue
                f = self.g.folders[n]
                children = any(o.startswith(n + "/") for o in names)
                attrs = ["\\HasChildren" if children else "\\HasNoChildren"]
                if f.special_use:
                    attrs.insert(0, f.special_use)
                rows.append((n, attrs))
        rows.sort(key=lambda r: _list_order(r[0]))
        for name, attrs in rows:
            self.line(f'* {verb} ({" ".join(attrs)}) "/" {_quote(name)}')
        self.line(f"{tag} OK Success")

    def cmd_lsub(self, tag: str, args: list[Any]) -> None:
        self.cmd_list(tag, args, "LSUB")

    def cmd_create(self, tag: str, args: list[Any]) -> None:
        if len(args) != 1:
            raise ProtocolFailure("CREATE mailbox")
        name = _text(args[0]).rstrip("/")
        with self.g.lock:
            if name.upper() == "INBOX" or name in self.g.folders:
                self.line(f"{tag} NO [ALREADYEXISTS] Duplicate folder name {name} (Failure)")
                return
            if name.startswith("[Gmail]") or not name or "//" in name:
                self.line(f"{tag} NO [CANNOT] Folder name is not allowed. (Failure)")
                return
            self.g._ensure_label_folder(name)
        self.line(f"{tag} OK Success")

    def cmd_status(self, tag: str, args: list[Any]) -> None:
        if len(args) != 2 or not isinstance(args[1], list):
            raise ProtocolFailure("STATUS mailbox (items)")
        name = self._folder_name(_text(args[0]))
        with self.g.lock:
            f = self.g.folders.get(name)
            if f is None:
                self.line(f"{tag} NO [NONEXISTENT] Unknown Mailbox: {name} (Failure)")
                return
            msgs = [self.g.messages[mid] for _, mid in f.uids()]
            values = {
                "MESSAGES": len(msgs),
                "RECENT": 0,
                "UIDNEXT": f.uidnext,
                "UIDVALIDITY": f.uidvalidity,
                "UNSEEN": sum(1 for m in msgs if "\\Seen" not in m.flags),
            }
        out = []
        for item in args[1]:
            key = _text(item).upper()
            if key not in values:
                raise ProtocolFailure(f"unknown STATUS item {key}")
            out.append(f"{key} {values[key]}")
        self.line(f"* STATUS {_quote(name)} ({' '.join(out)})")
        self.line(f"{tag} OK Success")

    def cmd_select(self, tag: str, args: list[Any], readonly: bool = False) -> None:
        if len(args) != 1:
            raise ProtocolFailure("SELECT mailbox")
        name = self._folder_name(_text(args[0]))
        self.state, self.selected = "AUTH", None
        with self.g.lock:
            f = self.g.folders.get(name)
            if f is None or name == "[Gmail]":
                self.line(f"{tag} NO [NONEXISTENT] Unknown Mailbox: {name} (Failure)")
                return
            exists, uidvalidity, uidnext = len(f.uid_of), f.uidvalidity, f.uidnext
        self.line(f"* FLAGS ({' '.join(FLAGS)})")
        if readonly:
            self.line("* OK [PERMANENTFLAGS ()] Flags permitted.")
        else:
            self.line(f"* OK [PERMANENTFLAGS ({' '.join(PERMANENT_FLAGS)})] Flags permitted.")
        self.line(f"* OK [UIDVALIDITY {uidvalidity}] UIDs valid.")
        self.line(f"* {exists} EXISTS")
        self.line("* 0 RECENT")
        self.line(f"* OK [UIDNEXT {uidnext}] Predicted next UID.")
        self.state, self.selected, self.readonly = "SELECTED", name, readonly
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        self.line(f"{tag} OK [{mode}] {name} selected. (Success)")

    def cmd_examine(self, tag: str, args: list[Any]) -> None:
        self.cmd_select(tag, args, readonly=True)

    def cmd_append(self, tag: str, args: list[Any]) -> None:
        if not args:
            raise ProtocolFailure("APPEND mailbox [flags] [date] literal")
        name = self._folder_name(_text(args[0]))
        items: list[tuple[set[str], datetime | None, bytes]] = []
        rest = args[1:]
        while rest:
            flags: set[str] = set()
            date = None
            if isinstance(rest[0], list):
                flags = {_text(f) for f in rest[0]}
                rest = rest[1:]
            if rest and isinstance(rest[0], str):
                date = _parse_internaldate(rest[0])
                rest = rest[1:]
            if not rest or not isinstance(rest[0], _Literal):
                raise ProtocolFailure("APPEND expects a message literal")
            items.append((flags, date, rest[0].data))
            rest = rest[1:]
        if not items:
            raise ProtocolFailure("APPEND without a message")
        if len(items) > 1 and not self.g.multiappend:
            raise ProtocolFailure("MULTIAPPEND is not supported")
        g = self.g
        bye = False
        with g.lock:
            g.append_attempts += 1
            f = g.folders.get(name)
            if f is None or name == "[Gmail]":
                self.line(f"{tag} NO [TRYCREATE] Folder doesn't exist. (Failure)")
                return
            if g._throttle > 0 and g._throttle_after <= 0:
                g._throttle -= 1
                self.line(
                    f"{tag} NO [{g._throttle_code}] Account exceeded command or bandwidth limits. (Failure)"
                )
                return
            for _, _, raw in items:
                if b"\x00" in raw:
                    self.line(f"{tag} NO [CANNOT] Message contains NUL characters (Failure)")
                    return
                if g.appendlimit is not None and len(raw) > g.appendlimit:
                    self.line(f"{tag} NO [TOOBIG] Message too large (Failure)")
                    return
            labels, extra = g._labels_for_append(f)
            uids = []
            for flags, date, raw in items:
                m = g._new_message(raw, {x for x in flags if x.lower() != "\\recent"} | extra, date)
                for lab in labels:
                    g._add_label(m, lab)
                g._sync()
                uid = f.uid_of.get(m.msgid)
                assert uid is not None
                uids.append(uid)
                g.appends.append(AppendRecord(name, m.msgid, uid, len(raw), self.conn_id))
            g._throttle_after -= 1
            if g._bye_after is not None:
                g._bye_after -= 1
                if g._bye_after <= 0:
                    g._bye_after = None
                    bye = True
            validity = f.uidvalidity
        uidset = ",".join(str(u) for u in uids)
        if bye and g._bye_before_ok:
            self.line("* BYE [UNAVAILABLE] System Error (fake: scripted disconnect)")
            self.drop()
            return
        self.line(f"{tag} OK [APPENDUID {validity} {uidset}] (Success)")
        if bye:
            self.line("* BYE [UNAVAILABLE] System Error (fake: scripted disconnect)")
            self.drop()

    # -- selected -------------------------------------------------------------------------------
    def cmd_close(self, tag: str, args: list[Any]) -> None:
        self.state, self.selected = "AUTH", None
        self.line(f"{tag} OK Returned to authenticated state. (Success)")

    cmd_unselect = cmd_close

    def cmd_search(self, tag: str, args: list[Any], uid: bool) -> None:
        crit = [_text(a).upper() if isinstance(a, str) else a for a in args]
        with self.g.lock:
            view = self._view()
            if crit == ["ALL"]:
                hits = view
            elif len(crit) == 2 and crit[0] == "UID" and isinstance(crit[1], str):
                hits = self._resolve(view, crit[1], True)
            elif len(crit) == 3 and crit[0] == "HEADER":
                # RFC 3501: the header field contains the string (case-insensitive substring).
                field, needle = _text(args[1]).lower().encode(), _text(args[2]).lower().encode()
                hits = [
                    (seq, u, m)
                    for seq, u, m in view
                    if any(
                        line.lower().startswith(field + b":") and needle in line.lower()
                        for line in _header_block(m.raw).splitlines()
                    )
                ]
            else:
                raise ProtocolFailure("this fake only searches ALL, UID <set> and HEADER <field> <string>")
        nums = [str(u if uid else seq) for seq, u, _ in hits]
        self.line("* SEARCH" + "".join(" " + n for n in nums))
        self.line(f"{tag} OK SEARCH completed (Success)")

    def cmd_fetch(self, tag: str, args: list[Any], uid: bool) -> None:
        if len(args) < 2 or not isinstance(args[0], str):
            raise ProtocolFailure("FETCH set items")
        spec = args[1]
        items = [_text(i).upper() for i in spec] if isinstance(spec, list) else [_text(spec).upper()]
        macros = {
            "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
            "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
            "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
        }
        if len(items) == 1 and items[0] in macros:
            items = macros[items[0]]
        if uid and "UID" not in items:
            items.insert(0, "UID")
        out: list[bytes] = []
        with self.g.lock:
            view = self._view()
            for seq, u, m in self._resolve(view, args[0], uid):
                parts: list[bytes] = []
                for item in items:
                    parts.append(self._fetch_item(item, u, m))
                out.append(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
        for chunk in out:
            self.send(chunk)
        self.line(f"{tag} OK Success")

    def _fetch_item(self, item: str, uid: int, m: Message) -> bytes:
        if item == "UID":
            return b"UID %d" % uid
        if item == "FLAGS":
            return ("FLAGS (" + " ".join(sorted(m.flags)) + ")").encode()
        if item == "INTERNALDATE":
            return b'INTERNALDATE "' + _format_internaldate(m.internaldate).encode() + b'"'
        if item == "RFC822.SIZE":
            return b"RFC822.SIZE %d" % len(m.raw)
        if item == "X-GM-LABELS":
            return ("X-GM-LABELS (" + " ".join(_quote(x) for x in sorted(m.labels)) + ")").encode()
        if item == "X-GM-MSGID":
            return b"X-GM-MSGID %d" % m.msgid
        if item == "X-GM-THRID":
            return b"X-GM-THRID %d" % m.thrid
        peek = ".PEEK[" in item
        if item in ("RFC822", "RFC822.HEADER"):
            data = m.raw if item == "RFC822" else _header_block(m.raw)
            if item == "RFC822":
                self._body_fetched(m, seen=True)
            return item.encode() + b" " + _literal(data)
        if item.startswith(("BODY[", "BODY.PEEK[")):
            section = item[item.index("[") + 1 : item.rindex("]")]
            partial = item[item.rindex("]") + 1 :]
            if partial:
                raise ProtocolFailure("partial fetches are not supported here")
            name = "BODY[" + section + "]"
            if section == "":
                self._body_fetched(m, seen=not peek)
                data = m.raw
            elif section == "HEADER":
                data = _header_block(m.raw)
            elif section.startswith("HEADER.FIELDS"):
                fields = re.findall(r"[^\s()]+", section[section.index("(") :])
                if section.startswith("HEADER.FIELDS.NOT"):
                    raise ProtocolFailure("HEADER.FIELDS.NOT is not supported here")
                data = _header_fields(m.raw, fields)
            elif section == "TEXT":
                data = m.raw[len(_header_block(m.raw)) :]
            else:
                raise ProtocolFailure(f"unsupported section {section}")
            return name.encode() + b" " + _literal(data)
        raise ProtocolFailure(f"unsupported FETCH item {item}")

    def _body_fetched(self, m: Message, *, seen: bool) -> None:
        self.g.body_fetches[m.msgid] += 1
        if seen and not self.readonly:
            m.flags.add("\\Seen")

    def cmd_store(self, tag: str, args: list[Any], uid: bool) -> None:
        if len(args) != 3 or not isinstance(args[0], str) or not isinstance(args[1], str):
            raise ProtocolFailure("STORE set op values")
        if self.readonly:
            self.line(f"{tag} NO [CANNOT] Mailbox is read-only (Failure)")
            return
        op = args[1].upper()
        silent = op.endswith(".SILENT")
        op = op.removesuffix(".SILENT")
        values = [_text(v) for v in (args[2] if isinstance(args[2], list) else [args[2]])]
        what = op.lstrip("+-")
        if what not in ("FLAGS", "X-GM-LABELS"):
            raise ProtocolFailure(f"unsupported STORE {op}")
        g = self.g
        lines = []
        with g.lock:
            assert self.selected is not None
            targets = self._resolve(self._view(), args[0], uid)
            g.stores.append(StoreRecord(self.selected, [u for _, u, _ in targets], op, values))
            for _, _, m in targets:
                if what == "FLAGS":
                    vals = {v for v in values if v.lower() != "\\recent"}
                    if op.startswith("+"):
                        m.flags |= vals
                    elif op.startswith("-"):
                        m.flags -= vals
                    else:
                        m.flags = vals
                else:
                    if not op.startswith(("+", "-")):
                        for lab in list(m.labels):
                            g._remove_label(m, lab)
                    for v in values:
                        (g._remove_label if op.startswith("-") else g._add_label)(m, v)
            g._sync()
            if not silent:
                view = {u: seq for seq, u, _ in self._view()}
                for _, u, m in targets:
                    body = self._fetch_item(what, u, m).decode()
                    seq = view.get(u)
                    if seq is not None:
                        lines.append(f"* {seq} FETCH (UID {u} {body})" if uid else f"* {seq} FETCH ({body})")
        for ln in lines:
            self.line(ln)
        self.line(f"{tag} OK Success")

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _folder_name(name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name

    def _view(self) -> list[tuple[int, int, Message]]:
        """(seq, uid, message) of the selected folder."""
        assert self.selected is not None
        f = self.g.folders.get(self.selected)
        if f is None:
            return []
        return [(i, u, self.g.messages[mid]) for i, (u, mid) in enumerate(f.uids(), 1)]

    @staticmethod
    def _resolve(
        view: list[tuple[int, int, Message]], spec: str, by_uid: bool
    ) -> list[tuple[int, int, Message]]:
        if not view:
            return []
        key = 1 if by_uid else 0
        star = view[-1][key]
        wanted: set[int] = set()
        ranges: list[tuple[int, int]] = []
        for part in spec.split(","):
            try:
                if ":" in part:
                    a, b = (star if x == "*" else int(x) for x in part.split(":", 1))
                    ranges.append((min(a, b), max(a, b)))
                else:
                    wanted.add(star if part == "*" else int(part))
            except ValueError:
                raise ProtocolFailure(f"bad sequence set {spec!r}") from None
        return [row for row in view if row[key] in wanted or any(a <= row[key] <= b for a, b in ranges)]


_COMMAND_STATES: dict[str, tuple[str, ...]] = {
    "CAPABILITY": ("NONAUTH", "AUTH", "SELECTED"),
    "NOOP": ("NONAUTH", "AUTH", "SELECTED"),
    "ID": ("NONAUTH", "AUTH", "SELECTED"),
    "LOGOUT": ("NONAUTH", "AUTH", "SELECTED"),
    "LOGIN": ("NONAUTH",),
    "CLOSE": ("SELECTED",),
    "UNSELECT": ("SELECTED",),
    "SEARCH": ("SELECTED",),
    "FETCH": ("SELECTED",),
    "STORE": ("SELECTED",),
}


# -- parsing and formatting -------------------------------------------------------------------------


def _tokenize(text: bytes, literals: list[bytes]) -> list[Any]:
    """Command arguments: atoms and quoted strings as str, literals as _Literal, lists as list.

    An atom keeps ``[...]`` sections whole (``BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]``)."""
    stack: list[list[Any]] = [[]]
    i, n = 0, len(text)
    while i < n:
        c = text[i : i + 1]
        if c == b" ":
            i += 1
        elif c == b"(":
            stack.append([])
            i += 1
        elif c == b")":
            if len(stack) == 1:
                raise ProtocolFailure("unbalanced )")
            done = stack.pop()
            stack[-1].append(done)
            i += 1
        elif c == b'"':
            out = bytearray()
            i += 1
            while True:
                if i >= n:
                    raise ProtocolFailure("unterminated quoted string")
                ch = text[i]
                if ch == 0x5C:  # backslash
                    out.append(text[i + 1])
                    i += 2
                elif ch == 0x22:
                    i += 1
                    break
                else:
                    out.append(ch)
                    i += 1
            stack[-1].append(out.decode("utf-8", "surrogateescape"))
        elif c == b"\x00":
            m = _PLACEHOLDER.match(text, i)
            if not m:
                raise ProtocolFailure("NUL in command")
            stack[-1].append(_Literal(literals[int(m.group(1))]))
            i = m.end()
        else:
            j = i
            depth = 0
            while j < n:
                ch = text[j : j + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")"):
                    break
                j += 1
            stack[-1].append(text[i:j].decode("utf-8", "surrogateescape"))
            i = j
    if len(stack) != 1:
        raise ProtocolFailure("unbalanced (")
    return stack[0]


def _text(value: Any) -> str:
    if isinstance(value, _Literal):
        return value.data.decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        return value
    raise ProtocolFailure("expected a string")


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _wildcard(pattern: str) -> re.Pattern[str]:
    rx = "".join(".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch) for ch in pattern)
    return re.compile(rx, re.IGNORECASE if pattern.upper().startswith("INBOX") else 0)


def _list_order(name: str) -> tuple[int, str]:
    return (0 if name == "INBOX" else 2 if name.startswith("[Gmail]") else 1, name)


def _header_block(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[: i + len(sep)]
    return raw


def _header_fields(raw: bytes, fields: list[str]) -> bytes:
    wanted = {f.lower().encode() for f in fields}
    out: list[bytes] = []
    keep = False
    for ln in _header_block(raw).splitlines(keepends=True):
        if ln in (b"\r\n", b"\n"):
            break
        if ln[:1] in (b" ", b"\t"):
            if keep:
                out.append(ln)
            continue
        keep = ln.split(b":", 1)[0].strip().lower() in wanted
        if keep:
            out.append(ln)
    return b"".join(out) + b"\r\n"


def _format_internaldate(d: datetime) -> str:
    off = d.utcoffset() or timedelta(0)
    mins = int(off.total_seconds()) // 60
    sign = "-" if mins < 0 else "+"
    mins = abs(mins)
    return (
        f"{d.day:02d}-{_MONTHS[d.month - 1]}-{d.year:04d} {d.hour:02d}:{d.minute:02d}:{d.second:02d} "
        f"{sign}{mins // 60:02d}{mins % 60:02d}"
    )


def _parse_internaldate(s: str) -> datetime:
    m = re.fullmatch(r"\s*(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", s)
    if not m or m.group(2).title() not in _MONTHS:
        raise ProtocolFailure(f"bad date-time {s!r}")
    off = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    tz = timezone(-off if m.group(7) == "-" else off)
    return datetime(
        int(m.group(3)),
        _MONTHS.index(m.group(2).title()) + 1,
        int(m.group(1)),
        int(m.group(4)),
        int(m.group(5)),
        int(m.group(6)),
        tzinfo=tz,
    )


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (it is its own CA): (cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake gmail")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[FakeGmail]:
    """``with running(appendlimit=1000) as g: ...``"""
    g = FakeGmail(**kwargs).start()
    try:
        yield g
    finally:
        g.stop()


__all__ = ["ALL_MAIL", "DEFAULT_PASSWORD", "DEFAULT_USER", "FakeGmail", "Message", "running"]
