"""A loopback TCP proxy that forwards bytes both ways and injects faults on demand.

It never looks at the bytes, so TLS (IMAPS, or STARTTLS after the plain greeting) passes through
untouched; point the client at ``proxy.port`` and keep verifying the server's certificate as usual
(the certificate names 127.0.0.1/localhost, which is also where the proxy listens).

Faults are counted on the server→client direction (``direction="c2s"``: client→server, e.g. to cut
inside an APPEND upload), from the moment they are armed:

* ``cut_after(n)``: forward ``n`` more bytes to the client, then close both sockets (FIN, or RST with
  ``rst=True``). If no connection is active, it applies to the next one, counted from its first byte.
* ``stall_after(n, seconds)``: forward ``n`` more bytes, then forward nothing (either way) for
  ``seconds``, then carry on.

A fault fires on ``times`` connections (default one) and is then disarmed, so a client's reconnect goes
through cleanly. ``reset()`` disarms everything, zeroes the counters and (by default) drops live
connections.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field

_CHUNK = 65536


@dataclass
class _Fault:
    kind: str  # "cut" | "stall"
    nbytes: int
    direction: str = "s2c"  # the bytes counted: "s2c" (server to client) or "c2s"
    seconds: float = 0.0
    rst: bool = False
    times: int | None = 1  # None: every connection
    # connection id -> bytes still to forward before firing, for connections that claimed the fault
    remaining: dict[int, int] = field(default_factory=dict)


class _Conn:
    def __init__(self, cid: int, client: socket.socket, server: socket.socket):
        self.id = cid
        self.client = client
        self.server = server
        self.closed = threading.Event()
        self.bytes_s2c = 0
        self.bytes_c2s = 0

    def kill(self, rst: bool = False) -> None:
        """Wake the pump and make it close both sockets (with an RST when ``rst``)."""
        self.closed.set()
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                if rst:
                    # linger 0: close() sends RST; SHUT_RD only wakes the selector, sends nothing
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                else:
                    s.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port`` in background threads."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, 0))
        self._listener.listen(64)
        self.host: str = listen_host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._conns: dict[int, _Conn] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._next_id = 0
        self.connections = 0  # accepted so far
        self.cuts = 0  # faults of kind "cut" that fired
        self.stalls = 0
        self.bytes_s2c = 0
        self.bytes_c2s = 0
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"FaultProxy:{self.port}", daemon=True
        )
        self._acceptor.start()

    # ----------------------------------------------------------------- control
    def cut_after(
        self, nbytes: int, *, rst: bool = False, times: int | None = 1, direction: str = "s2c"
    ) -> None:
        """Close client and server sockets once ``nbytes`` more bytes went server→client (or
        client→server with ``direction="c2s"``)."""
        self._arm(_Fault("cut", nbytes, rst=rst, times=times, direction=direction))

    def stall_after(self, nbytes: int, seconds: float, *, times: int | None = 1) -> None:
        """Stop forwarding for ``seconds`` once ``nbytes`` more bytes went server→client."""
        self._arm(_Fault("stall", nbytes, seconds=seconds, times=times))

    def drop_connections(self, rst: bool = False) -> None:
        """Close every live connection now."""
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            c.kill(rst)

    def reset(self, *, drop_connections: bool = True) -> None:
        """Disarm all faults, zero the counters and (by default) drop live connections."""
        with self._lock:
            self._faults.clear()
            self.connections = self.cuts = self.stalls = self.bytes_s2c = self.bytes_c2s = 0
        if drop_connections:
            self.drop_connections()

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close() does not)
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop_connections()
        self._acceptor.join(timeout=5)
        for t in list(self._threads):
            t.join(timeout=5)

    stop = close

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals
    def _arm(self, fault: _Fault) -> None:
        if fault.nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        with self._lock:
            # A fault armed mid-connection counts from now for every live connection.
            for cid in self._conns:
                if fault.times is None or len(fault.remaining) < fault.times:
                    fault.remaining[cid] = fault.nbytes
            self._faults.append(fault)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._next_id += 1
                conn = _Conn(self._next_id, client, server)
                self._conns[conn.id] = conn
                self.connections += 1
                for fault in self._faults:
                    if fault.times is None or len(fault.remaining) < fault.times:
                        fault.remaining[conn.id] = fault.nbytes
            t = threading.Thread(
                target=self._pump, args=(conn,), name=f"FaultProxy:{self.port}#{conn.id}", daemon=True
            )
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()

    def _next_fault(self, conn: _Conn, direction: str) -> tuple[_Fault, int] | None:
        """The armed fault of ``conn`` that fires first, with its remaining byte budget."""
        best: tuple[_Fault, int] | None = None
        for fault in self._faults:
            if fault.direction != direction:
                continue
            rem = fault.remaining.get(conn.id)
            if rem is not None and rem >= 0 and (best is None or rem < best[1]):
                best = (fault, rem)
        return best

    def _fire(self, fault: _Fault, conn: _Conn) -> None:
        fault.remaining[conn.id] = -1  # fired on this connection
        if fault.times is not None and len(fault.remaining) >= fault.times:
            fired_everywhere = all(v < 0 for v in fault.remaining.values())
            if fired_everywhere:
                self._faults.remove(fault)

    def _forward(self, conn: _Conn, data: bytes, direction: str = "s2c") -> bool:
        """Send data on, applying the faults of that direction. False once the connection is cut."""
        dst = conn.client if direction == "s2c" else conn.server
        while data:
            with self._lock:
                nxt = self._next_fault(conn, direction)
                if nxt is None or nxt[1] > len(data):
                    take = len(data)
                    fault = None
                else:
                    fault, take = nxt
                for f in self._faults:
                    if f.direction != direction:
                        continue
                    rem = f.remaining.get(conn.id)
                    if rem is not None and rem >= 0:
                        f.remaining[conn.id] = rem - take
                if fault is not None:
                    self._fire(fault, conn)
                    if fault.kind == "cut":
                        self.cuts += 1
                    else:
                        self.stalls += 1
                if direction == "s2c":
                    self.bytes_s2c += take
                else:
                    self.bytes_c2s += take
            if take:
                dst.sendall(data[:take])
                if direction == "s2c":
                    conn.bytes_s2c += take
                else:
                    conn.bytes_c2s += take
            data = data[take:]
            if fault is not None:
                if fault.kind == "cut":
                    conn.kill(fault.rst)
                    return False
                # stall: nothing moves until the time is up (or the proxy is closed / the conn killed)
                if conn.closed.wait(fault.seconds) or self._stopping.is_set():
                    return False
        return True

    def _pump(self, conn: _Conn) -> None:
        sel = selectors.DefaultSelector()
        sel.register(conn.client, selectors.EVENT_READ, "c2s")
        sel.register(conn.server, selectors.EVENT_READ, "s2c")
        open_dirs = {"c2s", "s2c"}
        try:
            while open_dirs and not conn.closed.is_set():
                for key, _ in sel.select(timeout=0.5):
                    direction = key.data
                    src = conn.client if direction == "c2s" else conn.server
                    dst = conn.server if direction == "c2s" else conn.client
                    try:
                        data = src.recv(_CHUNK)
                    except OSError:
                        data = b""
                        open_dirs.clear()
                    if not data:
                        # half-close: pass the FIN on, keep the other direction flowing
                        open_dirs.discard(direction)
                        sel.unregister(src)
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
                        continue
                    if not self._forward(conn, data, direction):
                        open_dirs.clear()
                        break
        except OSError:
            pass
        finally:
            sel.close()
            conn.closed.set()
            for s in (conn.client, conn.server):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.pop(conn.id, None)
                # a fault this connection claimed but never reached moves on to the next connection
                for f in self._faults:
                    if f.remaining.get(conn.id, -1) >= 0:
                        del f.remaining[conn.id]
