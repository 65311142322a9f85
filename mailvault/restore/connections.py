"""The restore's target connections, opened ahead of use in background threads.

Over a link with latency a TLS login costs several round trips. The first connection starts
while the vault is still being opened (its key derivation takes a moment); once it has logged
in — so a wrong password is tried once, not once per connection — the others start in
parallel, while the folders are planned and created.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from mailvault.net.imap import GMAIL_CONNECTION_LIMIT
from mailvault.restore.procs import Workers
from mailvault.targets.imap import ImapTarget


class Connections:
    """Hands out logged-in :class:`ImapTarget` connections: one opened ahead if there is one,
    else a new one. :meth:`close` logs out the ones never handed out."""

    def __init__(self, connect: Callable[[], ImapTarget]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._ready: deque[Future[ImapTarget]] = deque()
        self._closed = False
        #: Restore worker processes started along (see :func:`mailvault.restore.connect_ahead`).
        self.workers = Workers([])

    def ahead(
        self, count: int, *, after_first: int = 0, prepare: Callable[[ImapTarget], None] | None = None
    ) -> None:
        """Start ``count`` connections in the background; with ``after_first``, that many more
        once the first of them has logged in (at most Gmail's limit in all, on Gmail). ``prepare``
        runs on the first one once it is in (an error there is left to the next command)."""
        if count <= 0:
            return
        first = self._start(prepare)
        if after_first <= 0:
            for _ in range(count - 1):
                self._start()
            return

        def more(f: Future[ImapTarget]) -> None:
            if f.exception() is not None:
                return  # the error surfaces when the connection is taken
            extra = count - 1 + after_first
            if f.result().gmail:
                extra = min(extra, GMAIL_CONNECTION_LIMIT - 1)
            for _ in range(extra):
                self._start()

        first.add_done_callback(more)

    def _start(self, prepare: Callable[[ImapTarget], None] | None = None) -> Future[ImapTarget]:
        fut: Future[ImapTarget] = Future()
        with self._lock:
            if self._closed:
                fut.cancel()
                return fut
            self._ready.append(fut)

        def run() -> None:
            try:
                conn = self._connect()
            except BaseException as exc:  # handed to whoever takes it
                fut.set_exception(exc)
                return
            if prepare is not None:
                with contextlib.suppress(Exception):
                    prepare(conn)
            fut.set_result(conn)

        threading.Thread(target=run, name="mailvault-connect", daemon=True).start()
        return fut

    def take(self) -> ImapTarget:
        """A logged-in connection (the oldest one opened ahead, or a new one)."""
        with self._lock:
            fut = self._ready.popleft() if self._ready else None
        return fut.result() if fut is not None else self._connect()

    def close(self) -> None:
        """Log out the connections opened ahead and never taken (in parallel); stop the workers."""
        for w in self.workers.procs:
            w.stop()
        with self._lock:
            self._closed = True
            left, self._ready = list(self._ready), deque()
        threads = []
        for fut in left:

            def drop(f: Future[ImapTarget] = fut) -> None:
                with contextlib.suppress(BaseException):
                    f.result().close()

            t = threading.Thread(target=drop, name="mailvault-logout", daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=30)
        self.workers.close()
