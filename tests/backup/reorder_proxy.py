"""A loopback proxy in front of an IMAP server's *plain* port that makes the server's FETCH answers
awkward, as a server may legally send them, for the pipelined body FETCH of a backup:

* the untagged responses of every ``UID FETCH ... BODY.PEEK[]`` command are held until that
  command's tagged answer and then sent in reverse order;
* before them come unsolicited FETCH responses: one without a UID (``* 1 FETCH (FLAGS (\\Seen))``),
  one with the UID of a message of the same command but FLAGS only (the message's own response,
  which carries its flags, must win), one for a UID nobody asked for;
* with ``corrupt_uid``, that message's body responses are made unreadable (a hostile server);
* STARTTLS is hidden (the proxy reads the stream; loopback, ``--allow-plaintext``);
* it records how many body FETCH commands the client had in flight at once (pipelining).

Only the body FETCH commands are touched: the metadata FETCH (flags, INTERNALDATE) passes as it is.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_UID = re.compile(rb"UID (\d+)")


@dataclass
class ReorderStats:
    body_fetches: int = 0
    max_in_flight: int = 0
    reversed_responses: int = 0
    injected: int = 0
    in_flight: set[bytes] = field(default_factory=set)


class ReorderProxy:
    def __init__(self, host: str, port: int, *, corrupt_uid: int | None = None) -> None:
        self.upstream = (host, port)
        #: Every body FETCH response of this UID is made unreadable (an unbalanced parenthesis).
        self.corrupt_uid = corrupt_uid
        self.stats = ReorderStats()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._closed = False

    def __enter__(self) -> ReorderProxy:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            body_tags: set[bytes] = set()
            for target in (self._up, self._down):
                t = threading.Thread(target=target, args=(client, server, body_tags), daemon=True)
                t.start()
                self._threads.append(t)

    # -- client -> server: note the tags of body FETCH commands ---------------------------------
    def _up(self, client: socket.socket, server: socket.socket, body_tags: set[bytes]) -> None:
        buf = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    parts = line.split(b" ")
                    fetch = len(parts) > 3 and parts[1].upper() == b"UID" and parts[2].upper() == b"FETCH"
                    if fetch and b"BODY.PEEK[]" in line.upper():
                        with self._lock:
                            body_tags.add(parts[0])
                            self.stats.body_fetches += 1
                            self.stats.in_flight.add(parts[0])
                            n = len(self.stats.in_flight)
                            self.stats.max_in_flight = max(self.stats.max_in_flight, n)
                    server.sendall(line + b"\r\n")
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

    # -- server -> client: whole responses (lines with their literals) ---------------------------
    def _down(self, client: socket.socket, server: socket.socket, body_tags: set[bytes]) -> None:
        reader = server.makefile("rb")
        held: list[bytes] = []
        try:
            while True:
                response = self._response(reader)
                if response is None:
                    break
                if response.startswith(b"* ") and b" FETCH " in response[:40] and body_tags:
                    held.append(response)  # body FETCH data (only body FETCHes are in flight then)
                    continue
                tag = response.split(b" ", 1)[0]
                if tag in body_tags:
                    self._let_up_catch_up(client)
                    client.sendall(self._awkward(held) + response)
                    held = []
                    with self._lock:
                        body_tags.discard(tag)
                        self.stats.in_flight.discard(tag)
                    continue
                if b"CAPABILITY" in response.upper():  # no STARTTLS: the proxy must read the stream
                    response = re.sub(rb" (STARTTLS|LOGINDISABLED|COMPRESS=\S+)(?=[ \]\r])", b"", response)
                client.sendall(b"".join(held) + response)
                held = []
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

    @staticmethod
    def _let_up_catch_up(client: socket.socket) -> None:
        """Before a body FETCH's answer is released: whatever the client has sent by now (a next
        command it pipelined before this answer) is first read by the other thread, so the
        in-flight count does not depend on how the two threads are scheduled on a loaded machine.
        (On loopback, data sent is in our receive buffer when the client's send returns.)"""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and select.select([client], [], [], 0)[0]:
            time.sleep(0.001)
        time.sleep(0.02)  # the reading thread registers what it read

    def _awkward(self, held: list[bytes]) -> bytes:
        """The held responses reversed, unsolicited FETCH responses before them."""
        out: list[bytes] = []
        uids = [m.group(1) for r in held if (m := _UID.search(r[:200]))]
        if uids:
            out.append(b"* 1 FETCH (FLAGS (\\Seen))\r\n")
            out.append(b"* 1 FETCH (UID " + uids[-1] + b" FLAGS (\\Flagged $Unsolicited))\r\n")
            out.append(b"* 2 FETCH (UID 999999 FLAGS (\\Deleted $Unsolicited))\r\n")
            with self._lock:
                self.stats.injected += 3
        if len(held) > 1:
            with self._lock:
                self.stats.reversed_responses += len(held)
        if self.corrupt_uid is not None:
            mark = b"(UID %d " % self.corrupt_uid
            held = [r.replace(mark, b"(" + mark, 1) if mark in r[:200] else r for r in held]
        out.extend(reversed(held))
        return b"".join(out)

    @staticmethod
    def _response(reader: object) -> bytes | None:
        parts: list[bytes] = []
        while True:
            line = reader.readline()  # type: ignore[attr-defined]
            if not line:
                return None
            parts.append(line)
            m = _LITERAL.search(line)
            if not m:
                return b"".join(parts)
            parts.append(reader.read(int(m.group(1))))  # type: ignore[attr-defined]
