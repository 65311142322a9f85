"""A fault-injecting HTTP proxy in front of an S3 endpoint (the moto server), on loopback.

Point ``AWS_ENDPOINT_URL`` at ``proxy.url``. Each request is forwarded to the real endpoint unless a
fault is drawn for it (each with probability ``rate``, seeded):

* ``500`` — ``InternalError``; ``503`` — ``SlowDown`` (both with S3's XML error body);
* ``reset`` — the request is read, then the connection is closed with an RST, no response;
* ``lost-response`` — the request is forwarded (it takes effect), then the connection is reset
  before the response: the client cannot know it succeeded;
* ``stall`` — the response is held back ``stall_seconds``, then sent;
* ``short`` — the request is forwarded, the real status and headers are sent, then only part of the
  body (at least one byte short) and the connection is closed. Only for responses with a body.

``outage()`` makes every request fail (connection reset) until ``restore()``; ``outage_after(n)``
starts one after ``n`` more requests. Counters: ``requests``, ``faults`` (Counter by kind).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("500", "503", "reset", "lost-response", "stall", "short")
_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
}
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class S3FaultProxy:
    def __init__(self, target_url: str, *, rate: float = 0.0, seed: int = 0, kinds: tuple[str, ...] = KINDS,
                 stall_seconds: float = 1.5) -> None:  # fmt: skip
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate = rate
        self.kinds = kinds
        self.stall_seconds = stall_seconds
        self._rng = random.Random(seed)
        self._drawn = self._faulted = 0  # requests drawn for a fault while rate > 0, and faults given
        self._lock = threading.Lock()
        self.requests = 0
        self.faults: Counter[str] = Counter()
        self._outage = False
        self._outage_in: int | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="S3FaultProxy", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control
    def outage(self) -> None:
        with self._lock:
            self._outage = True

    def outage_after(self, n: int) -> None:
        with self._lock:
            self._outage_in = n

    def restore(self) -> None:
        with self._lock:
            self._outage = False
            self._outage_in = None

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = rate

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> S3FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _draw(self) -> str | None:
        with self._lock:
            self.requests += 1
            if self._outage_in is not None:
                self._outage_in -= 1
                if self._outage_in <= 0:
                    self._outage, self._outage_in = True, None
            if self._outage:
                self.faults["outage"] += 1
                return "outage"
            if self.rate <= 0:
                return None
            # Random draws, but never more than one fault behind rate x requests: a short CI run
            # still sees the configured share (a plain Bernoulli draw fell below it in ~1 run of 7).
            self._drawn += 1
            behind = self._drawn * self.rate - self._faulted >= 1.0
            if not behind and self._rng.random() >= self.rate:
                return None
            self._faulted += 1
            kind = self._rng.choice(self.kinds)
            self.faults[kind] += 1
            return kind

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.close()

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += h.rfile.read(size)
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = self._read_body(h)
        kind = self._draw()
        if kind in ("reset", "outage"):
            self._reset(h)
            return
        if kind in _ERRORS:
            status, code, message = _ERRORS[kind]
            xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                   f"<RequestId>fault</RequestId></Error>").encode()  # fmt: skip
            h.send_response(status)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(xml)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(xml)
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.target, timeout=60)
        try:
            conn.request(h.command, h.path, body=body if body or h.command in ("PUT", "POST") else None,
                         headers=headers)  # fmt: skip
            resp = conn.getresponse()
            data = resp.read()
            resp_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
            status = resp.status
        finally:
            conn.close()
        if kind == "short" and (not data or h.command == "HEAD"):
            kind = None  # nothing to cut: forward as is
            with self._lock:
                self.faults["short"] -= 1
        if kind == "lost-response":
            self._reset(h)
            return
        if kind == "stall":
            time.sleep(self.stall_seconds)
        h.send_response(status)
        for k, v in resp_headers:
            if k.lower() != "content-length":
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if kind == "short":
            h.wfile.write(data[: self._rng_cut(len(data))])
            h.wfile.flush()
            self._reset(h)
            return
        h.wfile.write(data)

    def _rng_cut(self, n: int) -> int:
        with self._lock:
            return self._rng.randrange(0, n)
