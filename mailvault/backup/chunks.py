"""A chunk of a folder: its UIDs' metadata and the bodies the vault lacks, fetched and stored.

This is the per-message work of an IMAP backup, the same wherever it runs: on any connection of
the backup's process (:mod:`mailvault.backup.imap`), storing into the vault writer, or in a
worker process (:mod:`mailvault.backup.worker`), which hashes and splits each message for the
parent to store (:class:`mailvault.vault.writer.PreparedMessage`). It needs a source with the
folder selected and a ``store`` function: raw bytes -> (blob id, newly stored).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from mailvault.model import header_block, message_id
from mailvault.prefetch import prefetch
from mailvault.progress import Bar
from mailvault.sources.imap import Fetched, FetchFailure, ImapSource, MessageMeta
from mailvault.vault.snapshots import ManifestEntry, ManifestRows
from mailvault.vault.writer import PreparedMessage

#: Stores a message's raw bytes: (hex blob id, whether it was new to the vault).
Store = Callable[[bytes], tuple[str, bool]]


@dataclass
class ChunkOutcome:
    """A chunk's manifest rows (in UID order) and what happened on the way; from a worker
    process, also the messages it prepared for the parent to store."""

    rows: ManifestRows
    new_messages: int = 0
    failures: list[str] = field(default_factory=list)
    prepared: list[PreparedMessage] = field(default_factory=list)


class ChunkRunner:
    """Runs chunks, storing with ``store`` (thread-safe: a process's connections share it)."""

    def __init__(
        self, store: Store, *, batch_bytes: int, gm_known: dict[int, tuple[str, int]] | None = None
    ) -> None:
        self.store = store
        self.batch_bytes = batch_bytes
        self._lock = threading.Lock()
        #: Gmail: X-GM-MSGID -> (blob, size) of messages already stored (All Mail is not fetched twice).
        self.gm_known: dict[int, tuple[str, int]] = {} if gm_known is None else gm_known
        self._fetched_bytes = 0  # shown beside the progress bar

    def run(
        self,
        src: ImapSource,
        folder: str,
        chunk: list[int],
        known: dict[int, ManifestEntry],
        since: int | None,
        bar: Bar,
    ) -> ChunkOutcome:
        """Chunk ``chunk`` of the folder selected on ``src`` (``folder``: its name, for messages).
        ``known``: the previous snapshot's entries (popped as they are used); ``since``: its
        HIGHESTMODSEQ when CONDSTORE tells flag changes since then (None: all flags are asked)."""
        out = ChunkOutcome(ManifestRows())
        if src.gmail:
            entries = self._gmail(src, folder, chunk, known, since, bar, out)
        else:
            entries = self._direct(src, folder, chunk, known, since, bar, out)
        entries.sort(key=lambda e: int(e.uid))
        for e in entries:
            out.rows.add(e)
        return out

    def _direct(
        self,
        src: ImapSource,
        folder: str,
        chunk: list[int],
        known: dict[int, ManifestEntry],
        since: int | None,
        bar: Bar,
        out: ChunkOutcome,
    ) -> list[ManifestEntry]:
        """Flags of the known messages (CHANGEDSINCE with CONDSTORE), then the new ones with their
        metadata and bodies in one pipelined FETCH."""
        old = [u for u in chunk if u in known]
        new = [u for u in chunk if u not in known]
        entries: list[ManifestEntry] = []
        if old:
            meta = src.metadata(old, changedsince=since) if since is not None else src.metadata(old)
            for uid in old:
                e = known.pop(uid)
                m = meta.get(uid)
                if m is not None:
                    entries.append(_refresh(e, m))
                elif since is not None:
                    entries.append(e)  # unchanged since the last snapshot
                # else: expunged between SEARCH and FETCH
                bar.update()
        if new:
            handled = self._store_fetched(folder, src.fetch_new(new), entries, bar, out)
            bar.update(len(new) - handled)  # expunged meanwhile
        return entries

    def _gmail(
        self,
        src: ImapSource,
        folder: str,
        chunk: list[int],
        known: dict[int, ManifestEntry],
        since: int | None,
        bar: Bar,
        out: ChunkOutcome,
    ) -> list[ManifestEntry]:
        """Metadata first (X-GM-MSGID), then only the bodies no other label has brought."""
        if since is not None:
            meta = src.metadata(chunk, changedsince=since)
            # New UIDs without a newer mod-sequence: ask for their metadata too.
            meta.update(src.metadata([u for u in chunk if u not in known and u not in meta]))
        else:
            meta = src.metadata(chunk)
        entries: list[ManifestEntry] = []
        to_fetch: list[MessageMeta] = []
        for uid in chunk:
            e = known.pop(uid, None)
            m = meta.get(uid)
            if e is not None:
                if m is not None:
                    entries.append(_refresh(e, m))
                elif since is not None:
                    entries.append(e)  # unchanged since the last snapshot
                bar.update()
                continue
            if m is None:
                bar.update()  # expunged meanwhile
                continue
            hit = self.gm_known.get(m.gm_msgid) if m.gm_msgid is not None else None
            if hit is not None:  # the same message in another label, already stored
                entries.append(_entry(m, hit[0], hit[1]))
                bar.update()
            else:
                to_fetch.append(m)
        if to_fetch:
            self._store_fetched(folder, src.fetch(to_fetch), entries, bar, out)
        return entries

    def _store_fetched(
        self,
        folder: str,
        source: Iterator[Fetched | FetchFailure],
        entries: list[ManifestEntry],
        bar: Bar,
        out: ChunkOutcome,
    ) -> int:
        """Store messages as a producer thread fetches them (network and parsing overlap storing);
        returns how many messages came (stored or failed)."""
        fetched = prefetch(
            source,
            max_cost=self.batch_bytes,
            cost=lambda i: len(i.raw) if isinstance(i, Fetched) else 0,
        )
        handled = 0
        for item in fetched:
            bar.update()
            handled += 1
            if isinstance(item, FetchFailure):
                out.failures.append(f"{folder} UID {item.uid}: {item.reason}")
                continue
            m = item.meta
            blob, new = self.store(item.raw)
            if new:
                out.new_messages += 1
            with self._lock:
                self._fetched_bytes += len(item.raw)
            entries.append(_entry(m, blob, len(item.raw), message_id(header_block(item.raw)) or None))
            if m.gm_msgid is not None:
                self.gm_known.setdefault(m.gm_msgid, (blob, len(item.raw)))
            bar.set_postfix(f"{self._fetched_bytes >> 20} MiB")
        return handled


def _entry(m: MessageMeta, blob: str, size: int, mid: str | None = None) -> ManifestEntry:
    return ManifestEntry(
        m.uid,
        blob,
        list(m.flags),
        m.internaldate,
        size,
        list(m.labels),
        m.gm_msgid,
        m.gm_thrid,
        message_id=mid,
    )


def _refresh(e: ManifestEntry, m: MessageMeta | None) -> ManifestEntry:
    if m is None:
        return e
    flags = list(m.flags)
    labels = list(m.labels) if m.labels or e.labels else e.labels
    if flags == e.flags and labels == e.labels:
        return e
    return replace(e, flags=flags, labels=labels)
