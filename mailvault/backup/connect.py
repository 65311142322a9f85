"""The first IMAP connection of a backup: opened, and its folder list asked, before (or while) the
vault is opened."""

from __future__ import annotations

import threading

from mailvault.backup.common import BackupOptions
from mailvault.backup.procs import BackupWorkers, worker_count
from mailvault.net.session import Credentials, Endpoint, TLSPolicy, connect_imap
from mailvault.sources.imap import ImapSource


def open_source(
    endpoint: Endpoint, creds: Credentials, tls: TLSPolicy, options: BackupOptions, *, prepare: bool = False
) -> ImapSource:
    """A logged-in read-only source; with ``prepare``, its namespace and folder list asked too."""
    source = ImapSource(lambda: connect_imap(endpoint, creds, tls), batch_bytes=options.batch_bytes)
    if prepare:
        try:
            source.prepare()
        except BaseException:
            source.close()
            raise
    return source


class EarlySource:
    """The backup's first IMAP connection, opened (login, ENABLE, NAMESPACE, LIST-STATUS) on a
    thread while the caller does something slow, such as deriving the vault key with scrypt.

    :meth:`take` returns it (or raises what opening it raised); :meth:`discard` closes one never
    taken. Only for credentials that do not need the vault (passwords, token commands)."""

    def __init__(
        self, endpoint: Endpoint, creds: Credentials, tls: TLSPolicy, options: BackupOptions
    ) -> None:
        #: Worker processes (:mod:`mailvault.backup.procs`), started now so that their start-up
        #: is over by the time the folders are planned; they may log in once this connection has.
        self.workers = BackupWorkers(worker_count(options.connections))
        self._result: ImapSource | None = None
        self._error: BaseException | None = None
        self._taken = False
        self._lock = threading.Lock()

        def work() -> None:
            try:
                source = open_source(endpoint, creds, tls, options, prepare=True)
            except BaseException as exc:  # handed to take()
                self._error = exc
                self.workers.close()
                return
            self.workers.allow_login(endpoint, creds, tls, options.batch_bytes)
            with self._lock:
                abandoned = self._taken
                self._result = source
            if abandoned:  # discarded while it was connecting
                source.close()

        self._thread = threading.Thread(target=work, name="mailvault-connect", daemon=True)
        self._thread.start()

    def take(self) -> ImapSource:
        self._thread.join()
        self._taken = True
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def discard(self) -> None:
        """Close the connection if it was never taken; one still connecting closes when it is
        done (a daemon thread: the process does not wait for it)."""
        self.workers.close()
        with self._lock:
            if self._taken:
                return
            self._taken = True
            source = self._result
        if source is not None:
            source.close()
