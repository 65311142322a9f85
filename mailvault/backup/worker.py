"""A backup worker process: chunks of folders fetched, hashed and split by a process of its own.

Started by :mod:`mailvault.backup.procs` as ``python -m mailvault.backup.worker``; messages over
its pipes (:mod:`mailvault.workers`), in this order:

* ``("login", LoginSetup)``: log in to the source (the parent's own login has succeeded first,
  so a wrong password is tried once) -> ``("ready",)`` or ``("error", text)``;
* ``("params", sia_min_part)``: the vault's single-instance threshold (no answer);
* ``("chunk", ChunkTask)`` any number of times: EXAMINE the folder (its UIDVALIDITY checked),
  run the chunk (:class:`mailvault.backup.chunks.ChunkRunner`, the same code as the parent's
  connections) with every new message hashed and split for the parent to store ->
  ``("rows", ChunkOutcome, (messages fetched, bytes fetched, reconnects))``;
  ``("raise", MailvaultError)``: the backup fails as it would in the parent;
  ``("error", text)``: the parent gives the chunk to another connection.

End-of-file on its stdin (the parent is done with it, or died) ends it. It never opens the vault.
"""

from __future__ import annotations

import sys
from typing import Any

from mailvault.backup.chunks import ChunkRunner
from mailvault.backup.procs import ChunkTask, LoginSetup
from mailvault.errors import MailvaultError, ProtocolError
from mailvault.net import mutf7
from mailvault.net.session import Credentials, TLSPolicy, connect_imap
from mailvault.progress import QUIET
from mailvault.sources.imap import ImapSource
from mailvault.vault.writer import PreparedMessage, prepare_message
from mailvault.workers import serve


class _Worker:
    def __init__(self) -> None:
        self.source: ImapSource | None = None
        self.batch_bytes = 0
        self.sia_min_part = 0
        self._prepared: list[PreparedMessage] = []

    def handle(self, msg: tuple[Any, ...]) -> tuple[Any, ...] | None:
        kind = msg[0]
        try:
            if kind == "login":
                return self._login(msg[1])
            if kind == "params":
                self.sia_min_part = int(msg[1])
                return None
            if kind == "chunk":
                return self._chunk(msg[1])
        except MailvaultError as exc:
            return ("raise", exc) if kind == "chunk" else ("error", exc.message)
        except Exception as exc:  # anything else: the parent has the chunk done elsewhere
            return ("error", f"{type(exc).__name__}: {exc}")
        return ("error", f"unknown message {kind!r}")

    def _login(self, s: LoginSetup) -> tuple[Any, ...]:
        secret = s.secret
        if s.auth_kind == "oauth2":
            creds = Credentials(oauth2_token=lambda: secret, sasl=s.sasl)
        else:
            creds = Credentials(password=lambda: secret)
        tls = TLSPolicy(s.ca_file, s.allow_plaintext, warn=lambda _m: None)  # the parent warned
        self.batch_bytes = s.batch_bytes
        self.source = ImapSource(lambda: connect_imap(s.endpoint, creds, tls), batch_bytes=s.batch_bytes)
        _ = self.source.client  # log in now
        return ("ready",)

    def _store(self, raw: bytes) -> tuple[str, bool]:
        m = prepare_message(raw, self.sia_min_part)
        self._prepared.append(m)
        return m.blob_id.hex(), False  # whether it is new, the parent's writer tells

    def _chunk(self, t: ChunkTask) -> tuple[Any, ...]:
        src = self.source
        assert src is not None
        if src.selected != t.folder_raw:
            state = src.examine(t.folder_raw)
            if state.uidvalidity != t.uidvalidity:
                raise ProtocolError(
                    f"UIDVALIDITY of {mutf7.decode(t.folder_raw)!r} changed while we were working"
                )
        runner = ChunkRunner(self._store, batch_bytes=self.batch_bytes)
        self._prepared = []
        before = (src.stats.messages_fetched, src.stats.bytes_fetched, src.reconnects)
        out = runner.run(src, t.folder, t.uids, t.known, t.since, QUIET.bar("", 0))
        out.prepared, self._prepared = self._prepared, []
        after = (src.stats.messages_fetched, src.stats.bytes_fetched, src.reconnects)
        return ("rows", out, tuple(a - b for a, b in zip(after, before, strict=True)))


def main() -> int:
    worker = _Worker()
    try:
        return serve(worker.handle)
    finally:
        if worker.source is not None:
            worker.source.close()


if __name__ == "__main__":
    sys.exit(main())
