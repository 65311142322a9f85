"""A loopback TCP proxy that adds latency and (optionally) a bandwidth cap, for the benchmarks.

``LatencyProxy(upstream_host, upstream_port, rtt_ms=30)`` listens on 127.0.0.1 (a free port) and
forwards every connection to the upstream server, holding each chunk for half the RTT in each
direction (30 ms RTT = 15 ms each way) and, with ``bandwidth_mbit``, serialising each direction
at that rate. The bytes pass through unchanged (so TLS works end to end through it), except with
``gmail=True``: then the server's CAPABILITY lists (untagged ``* CAPABILITY`` lines and
``[CAPABILITY ...]`` response codes) are rewritten to what Gmail advertises for uploads: no
MULTIAPPEND, ``LITERAL-`` instead of ``LITERAL+``, ``APPENDLIMIT=35651584``, and no STARTTLS
(so this profile is put in front of a server's plain port, and clients log in without TLS,
loopback only). It also hides COMPRESS=DEFLATE (Gmail has it, but the proxy has to read the
stream). Its client side is checked against those rules: a non-synchronising literal
over 4096 octets counts as a violation (:attr:`ProxyStats.literal_violations`); so does a
second message in one APPEND (MULTIAPPEND).

:class:`ProxyStats` counts, per proxy: connections, client commands, bytes each way, and client
*turns*: bursts of client data separated by at least ``turn_gap`` seconds of client silence
(default: 0.8 RTT; a client waiting for an answer is silent for a whole RTT). A client that waits for an answer before each command shows one
turn per command; a pipelining client shows a turn only where it really waits. The counts are
what the round-trip test in ``tests/restore/test_pipeline.py`` asserts on.

Run on its own (``python bench/latency_proxy.py --rtt-ms 30 --gmail HOST PORT``) it prints its port
and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

GMAIL_APPENDLIMIT = 35_651_584
LITERAL_MINUS_MAX = 4096
_LITERAL_AT_END = re.compile(rb"\{(\d+)(\+?)\}\r\n$")
_CAPS_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


def gmail_capabilities(caps: bytes) -> bytes:
    """A space-separated capability list as Gmail's profile shows it (see the module doc)."""
    out: list[bytes] = []
    for cap in caps.split():
        up = cap.upper()
        if up in (b"MULTIAPPEND", b"STARTTLS", b"LOGINDISABLED") or up.startswith(
            (b"APPENDLIMIT", b"COMPRESS")
        ):
            continue
        out.append(b"LITERAL-" if up == b"LITERAL+" else cap)
    out.append(b"APPENDLIMIT=%d" % GMAIL_APPENDLIMIT)
    return b" ".join(out)


def rewrite_line(line: bytes) -> bytes:
    """One server line (with its CRLF) with its capability list rewritten to Gmail's profile."""
    if line[:13].upper() == b"* CAPABILITY ":
        body = line[13:].rstrip(b"\r\n")
        return b"* CAPABILITY " + gmail_capabilities(body) + b"\r\n"
    return _CAPS_CODE.sub(lambda m: b"[CAPABILITY " + gmail_capabilities(m.group(1)) + b"]", line)


class _LineScanner:
    """Splits one direction of an IMAP stream into lines and literals (a literal's bytes are
    never looked at), calling ``on_line(line) -> bytes`` for every line outside a literal."""

    def __init__(self, on_line: Callable[[bytes], bytes]) -> None:
        self._on_line = on_line
        self._buf = b""
        self._literal = 0

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        buf = self._buf + data
        pos = 0
        while pos < len(buf):
            if self._literal:
                take = min(self._literal, len(buf) - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._literal -= take
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = buf[pos : end + 2]
            pos = end + 2
            m = _LITERAL_AT_END.search(line)
            if m:
                self._literal = int(m.group(1))
            out.append(self._on_line(line))
        self._buf = buf[pos:]
        return b"".join(out)


@dataclass
class ProxyStats:
    connections: int = 0
    commands: int = 0
    client_turns: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    literal_violations: list[str] = field(default_factory=list)
    #: Commands by verb (``UID`` for UID FETCH and the like); plain connections only (not TLS).
    verbs: Counter[str] = field(default_factory=Counter)
    #: The client turns (connection, turn number) in which each verb was sent: how many waits
    #: a verb cost (plain connections only).
    verb_turns: dict[str, set[tuple[int, int]]] = field(default_factory=dict)

    def reset(self) -> None:
        self.connections = self.commands = self.client_turns = self.bytes_up = self.bytes_down = 0
        self.literal_violations.clear()
        self.verbs.clear()
        self.verb_turns.clear()


class _ClientSide:
    """Watches the client's stream: commands, turns, the Gmail profile's literal rules."""

    def __init__(self, proxy: LatencyProxy) -> None:
        self.proxy = proxy
        self.continuing = False  # the previous line ended with a literal: same command
        self.append_literals = 0
        self.is_append = False
        self.last = -1e9
        self.turn = 0
        self.scanner = _LineScanner(self._line)

    def chunk(self, data: bytes, now: float) -> None:
        st = self.proxy.stats
        if now - self.last >= self.proxy.turn_gap:
            st.client_turns += 1
            self.turn += 1
        self.last = now
        st.bytes_up += len(data)
        self.scanner.feed(data)

    def _line(self, line: bytes) -> bytes:
        st = self.proxy.stats
        if not self.continuing:
            st.commands += 1
            parts = line.split(b" ", 2)
            self.append_literals = 0
            self.is_append = len(parts) > 1 and parts[1].upper() == b"APPEND"
            if len(parts) > 1:
                verb = parts[1].rstrip(b"\r\n").upper().decode("ascii", "replace")
                st.verbs[verb] += 1
                st.verb_turns.setdefault(verb, set()).add((id(self), self.turn))
        m = _LITERAL_AT_END.search(line)
        self.continuing = m is not None
        if m and self.proxy.gmail and self.is_append:
            self.append_literals += 1
            if self.append_literals > 1:
                st.literal_violations.append("MULTIAPPEND used (a second message in one APPEND)")
            if m.group(2) and int(m.group(1)) > LITERAL_MINUS_MAX:
                st.literal_violations.append(f"non-synchronising literal of {m.group(1).decode()} octets")
        return line


class LatencyProxy:
    """See the module doc. ``start()`` runs it on a background thread; ``stop()`` ends it."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        rtt_ms: float = 30.0,
        bandwidth_mbit: float | None = None,
        gmail: bool = False,
        turn_gap: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the latency proxy listens on loopback only")
        self.upstream = (upstream_host, upstream_port)
        self.delay = rtt_ms / 2000.0
        self.rate = bandwidth_mbit * 1e6 / 8 if bandwidth_mbit else None  # bytes per second
        self.gmail = gmail
        self.turn_gap = turn_gap if turn_gap is not None else max(1.6 * self.delay, 0.005)
        self.host = host
        self.stats = ProxyStats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def describe(self) -> str:
        bw = f", {self.rate * 8 / 1e6:g} Mbit/s each way" if self.rate else ", no bandwidth cap"
        prof = ", Gmail capability profile" if self.gmail else ""
        return f"{self.delay * 2000:g} ms RTT ({self.delay * 1000:g} ms each way){bw}{prof}"

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> LatencyProxy:
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if not self.port:
            raise RuntimeError("latency proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # -- one connection -----------------------------------------------------------------
    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.close()
            return
        client = _ClientSide(self)
        down = _LineScanner(rewrite_line) if self.gmail else None

        def up(data: bytes, now: float) -> bytes:
            client.chunk(data, now)
            return data

        def downstream(data: bytes, now: float) -> bytes:
            self.stats.bytes_down += len(data)
            return down.feed(data) if down is not None else data

        tasks = [
            asyncio.ensure_future(self._pump(c_reader, s_writer, up)),
            asyncio.ensure_future(self._pump(s_reader, c_writer, downstream)),
        ]
        try:
            await asyncio.gather(*tasks)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            for w in (c_writer, s_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transform: Callable[[bytes, float], bytes],
    ) -> None:
        """Read chunks, hold each for the one-way delay (and the link's serialisation time), write."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

        async def read() -> None:
            while True:
                data = await reader.read(65536)
                now = loop.time()
                if not data:
                    await queue.put((now, None))
                    return
                out = transform(data, time.monotonic())
                await queue.put((now, out))

        reading = asyncio.ensure_future(read())
        link_free = 0.0
        try:
            while True:
                t, data = await queue.get()
                due = t + self.delay
                if data and self.rate:
                    link_free = max(link_free, t) + len(data) / self.rate
                    due = max(due, link_free + self.delay)
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                if data:
                    writer.write(data)
                    await writer.drain()
        finally:
            reading.cancel()


def main() -> int:
    ap = argparse.ArgumentParser(description="loopback latency/bandwidth proxy (see the module doc)")
    ap.add_argument("upstream_host")
    ap.add_argument("upstream_port", type=int)
    ap.add_argument("--rtt-ms", type=float, default=30.0)
    ap.add_argument("--bandwidth-mbit", type=float)
    ap.add_argument("--gmail", action="store_true", help="rewrite CAPABILITY to Gmail's upload profile")
    args = ap.parse_args()
    proxy = LatencyProxy(
        args.upstream_host,
        args.upstream_port,
        rtt_ms=args.rtt_ms,
        bandwidth_mbit=args.bandwidth_mbit,
        gmail=args.gmail,
    ).start()
    print(f"listening on 127.0.0.1:{proxy.port}: {proxy.describe()}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
