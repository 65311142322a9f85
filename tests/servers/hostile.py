"""A scripted hostile IMAP server: a well-behaved mailbox except for one chosen kind of nonsense.

Plain TCP on 127.0.0.1, a free port (use ``imap://`` and ``--allow-plaintext``). Every mailbox
holds :attr:`HostileImap.messages` (INBOX) unless a mode changes that. Modes:

``ok``               behaves (the control case)
``huge_literal``     the body literal announces 10**12 bytes, then sends a few and stalls
``short_literal``    the body literal announces more bytes than it sends, then closes
``bad_utf7``         LIST names folders with invalid modified UTF-7 (``&Jjo!``, ``&-&``, ``&AGE``)
``many_folders``     LIST returns 10,000 (empty) folders besides INBOX
``unasked_uid``      every body FETCH answer also carries a message for a UID never asked for
``endless_line``     the answer to the body FETCH is one line that never ends (megabytes, no CRLF)
``stall``            the body FETCH is never answered (the connection stays open)
``bye``              ``* BYE`` in the middle of the body FETCH answer, then close

:attr:`HostileImap.commands` records every command line received.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from typing import Any

MODES = (
    "ok", "huge_literal", "short_literal", "bad_utf7", "many_folders", "unasked_uid", "endless_line",
    "stall", "bye",
)  # fmt: skip
USER, PASSWORD = "victim", "hostile-test-password"


def message(i: int) -> bytes:
    return (
        f"From: sender{i}@example.org\r\nTo: victim@example.org\r\nSubject: message {i}\r\n"
        f"Message-ID: <hostile{i}@example.org>\r\nDate: Mon, 1 Jul 2024 10:00:00 +0000\r\n\r\nbody {i}\r\n"
    ).encode()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def w(self, data: bytes | str) -> None:
        self.wfile.write(data.encode() if isinstance(data, str) else data)
        self.wfile.flush()

    selected_count = 0  # per connection: what the last EXAMINE/SELECT reported

    def handle(self) -> None:
        srv = self.server.owner
        # Answers go out in several writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms to each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.w("* OK [CAPABILITY IMAP4rev1 UIDPLUS LITERAL+] hostile test server ready\r\n")
        while True:
            line = self.rfile.readline(1 << 20)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            srv.commands.append(text)
            tag, _, rest = text.partition(" ")
            verb = rest.split(" ", 1)[0].upper()
            args = rest[len(verb) :].strip()
            try:
                if not self.dispatch(tag, verb, args):
                    return
            except (BrokenPipeError, ConnectionResetError):
                return

    def dispatch(self, tag: str, verb: str, args: str) -> bool:
        srv = self.server.owner
        mode = srv.mode
        if verb == "CAPABILITY":
            self.w("* CAPABILITY IMAP4rev1 UIDPLUS LITERAL+\r\n")
        elif verb == "LOGIN":
            pass
        elif verb == "LOGOUT":
            self.w("* BYE bye\r\n")
            self.w(f"{tag} OK LOGOUT done\r\n")
            return False
        elif verb in ("NOOP", "ENABLE", "ID", "CLOSE", "UNSELECT"):
            pass
        elif verb == "LIST":
            self.w('* LIST (\\HasNoChildren) "/" INBOX\r\n')
            if mode == "bad_utf7":
                for name in ("&Jjo!", "Bad&-&Name", "Tail&AGE", "Ok-Folder"):
                    self.w(f'* LIST (\\HasNoChildren) "/" "{name}"\r\n')
            elif mode == "many_folders":
                chunk = "".join(f'* LIST (\\HasNoChildren) "/" "f{i:05d}"\r\n' for i in range(srv.folders))
                self.w(chunk)
        elif verb in ("EXAMINE", "SELECT", "STATUS"):
            name = args.split(" ", 1)[0].strip('"')
            n = len(srv.messages) if name.upper() == "INBOX" or (mode == "bad_utf7") else 0
            if verb == "STATUS":
                self.w(f'* STATUS "{name}" (MESSAGES {n} UIDNEXT {n + 1} UIDVALIDITY 7)\r\n')
            else:
                self.w(
                    f"* {n} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT {n + 1}] n\r\n"
                )
                self.w("* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n")
                self.selected_count = n
        elif verb == "UID":
            return self.uid(tag, args)
        else:
            self.w(f"{tag} BAD unknown command\r\n")
            return True
        self.w(f"{tag} OK {verb} completed\r\n")
        return True

    def uid(self, tag: str, args: str) -> bool:
        srv = self.server.owner
        sub, _, rest = args.partition(" ")
        n = self.selected_count
        if sub.upper() == "SEARCH":
            self.w("* SEARCH " + " ".join(str(i) for i in range(1, n + 1)) + "\r\n")
            self.w(f"{tag} OK SEARCH done\r\n")
            return True
        if sub.upper() != "FETCH":
            self.w(f"{tag} BAD no\r\n")
            return True
        uids = _parse_set(rest.split(" ", 1)[0], n)
        wants_body = "BODY" in rest.upper() and "PEEK" in rest.upper()
        mode = srv.mode
        for i, uid in enumerate(uids, 1):
            raw = srv.messages[uid - 1]
            if not wants_body:
                self.w(
                    f'* {uid} FETCH (UID {uid} FLAGS (\\Seen) INTERNALDATE "01-Jul-2024 10:00:00 +0000" '
                    f"RFC822.SIZE {len(raw)})\r\n"
                )
                continue
            if mode == "huge_literal":
                self.w(f"* {i} FETCH (UID {uid} BODY[] {{1000000000000}}\r\n")
                self.w(raw)
                time.sleep(srv.stall_seconds)
                return False
            if mode == "short_literal":
                self.w(f"* {i} FETCH (UID {uid} BODY[] {{{len(raw) + 5000}}}\r\n")
                self.w(raw)
                return False
            if mode == "endless_line":
                self.w(f"* {i} FETCH (UID {uid} X-JUNK ")
                block = b"A" * 65536
                deadline = time.monotonic() + srv.stall_seconds
                with contextlib.suppress(OSError):
                    while time.monotonic() < deadline:
                        self.w(block)
                return False
            if mode == "stall":
                time.sleep(srv.stall_seconds)
                return False
            if mode == "bye" and i == 2:
                self.w("* BYE going away in the middle\r\n")
                return False
            self.w(f"* {i} FETCH (UID {uid} BODY[] {{{len(raw)}}}\r\n".encode() + raw + b")\r\n")
            if mode == "unasked_uid":
                ghost = b"From: ghost@example.org\r\nSubject: never asked for\r\n\r\nboo\r\n"
                self.w(f"* 99 FETCH (UID 999 BODY[] {{{len(ghost)}}}\r\n".encode() + ghost + b")\r\n")
        self.w(f"{tag} OK FETCH done\r\n")
        return True


def _parse_set(spec: str, n: int) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition(":")
        lo = int(a) if a != "*" else n
        hi = lo if not b else (n if b == "*" else int(b))
        lo, hi = min(lo, hi), max(lo, hi)
        out.extend(u for u in range(lo, hi + 1) if 1 <= u <= n)
    return out


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HostileImap


class HostileImap:
    def __init__(
        self, mode: str = "ok", messages: int = 3, stall_seconds: float = 60, folders: int = 10_000
    ) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.messages = [message(i) for i in range(1, messages + 1)]
        self.stall_seconds = stall_seconds
        self.folders = folders
        self.commands: list[str] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"imap://{USER}@127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HostileImap:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
