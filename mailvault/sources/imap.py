"""Read-only access to an IMAP account: folders, per-folder state, metadata and bodies.

Never changes the server: folders are opened with EXAMINE, bodies fetched with
``BODY.PEEK[]`` (which does not set ``\\Seen``). Parsing is imapclient's; this
module only decides what to ask for, in batches sized by bytes, and reconnects
when the connection drops.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError

from mailvault.model import FolderInfo
from mailvault.net import mutf7
from mailvault.net.fetch import BatchSizer, FetchCommand, FetchPipeline
from mailvault.net.imap import NETWORK_ERRORS, ImapConnection, ListedFolder, text, uid_fetch, uid_set

#: Default FETCH batch limits: whichever is reached first.
BATCH_BYTES = 4 << 20
BATCH_COUNT = 1000
MAX_RETRIES = 3
#: Round-trip time assumed until one was measured on the connection.
DEFAULT_RTT = 0.05

log = logging.getLogger(__name__)


@dataclass
class RemoteFolder:
    info: FolderInfo
    attributes: tuple[str, ...] = ()
    #: The folder's state as LIST-STATUS gave it (None: EXAMINE will tell).
    listed: FolderState | None = None


@dataclass
class FolderState:
    """What EXAMINE says about a folder."""

    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    exists: int


@dataclass(slots=True)
class MessageMeta:
    """What FETCH says about a message, kept small: one per message of a folder chunk."""

    uid: int
    flags: tuple[str, ...]
    internaldate: str | None  # ISO 8601 with the server's offset
    size: int
    labels: tuple[str, ...] = ()
    gm_msgid: int | None = None
    gm_thrid: int | None = None


@dataclass(slots=True)
class Fetched:
    meta: MessageMeta
    raw: bytes


@dataclass(slots=True)
class FetchFailure:
    uid: int
    reason: str


@dataclass
class ImapStats:
    bytes_fetched: int = 0
    messages_fetched: int = 0


class ImapSource(ImapConnection):
    """An IMAP account opened read-only. ``connect`` opens a logged-in client (used to reconnect)."""

    network_backoff = 0.0  # a backup reconnects at once; the server did not ask us to wait

    def __init__(
        self,
        connect: Callable[[], imapclient.IMAPClient],
        *,
        batch_bytes: int = BATCH_BYTES,
        batch_count: int = BATCH_COUNT,
    ) -> None:
        self.batch_bytes = batch_bytes
        self.batch_count = batch_count
        self.stats = ImapStats()
        self._listing: list[ListedFolder] | None = None
        #: The personal namespace as :meth:`prepare` found it (None: not asked yet).
        self.namespace: tuple[str, str | None] | None = None
        self._sizer: BatchSizer | None = None
        #: Pipelined FETCH commands sent (the tests count them).
        self.fetch_commands = 0
        super().__init__(connect, max_retries=MAX_RETRIES)

    def _after_open(self, client: imapclient.IMAPClient) -> None:
        if "CONDSTORE" in self.capabilities and "ENABLE" in self.capabilities:
            # Not waited for: its answer is read before the next command that waits, so the
            # NAMESPACE and LIST of a backup share its round trip.
            self._send_pending("ENABLE", "CONDSTORE")

    def _settled(self, name: str, typ: str, data: list[Any]) -> None:
        if name == "ENABLE" and typ != "OK":
            self.capabilities.discard("CONDSTORE")

    @property
    def condstore(self) -> bool:
        if self._pending:
            self._settle()  # a refused ENABLE takes CONDSTORE away
        return "CONDSTORE" in self.capabilities

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        return self.retrying(what, fn)

    # -- folders ------------------------------------------------------------------------
    def folders(self) -> list[RemoteFolder]:
        """Every selectable folder, with its special-use attribute."""
        listed = self._listing if self._listing is not None else self.list_folders(with_status=True)
        self._listing = None
        return [
            RemoteFolder(
                FolderInfo(f.name, f.name_raw, f.delimiter, f.special_use), f.attributes, _listed(f.status)
            )
            for f in listed
            if f.selectable
        ]

    def prepare(self) -> tuple[str, str | None]:
        """The personal namespace, with the folder list (LIST-STATUS) asked in the same round trip;
        :meth:`folders` then returns that list once."""
        self.namespace, self._listing = self.namespace_and_folders(with_status=True)
        return self.namespace

    def examine(self, name_raw: str) -> FolderState:
        """EXAMINE (read-only SELECT) a folder and return its state."""
        info = self.retrying(
            f"EXAMINE {mutf7.decode(name_raw)}", lambda: self._select_raw(name_raw, readonly=True)
        )

        def num(key: bytes) -> int | None:
            v = info.get(key)
            if isinstance(v, list | tuple):
                v = v[0] if v else None
            return int(v) if v is not None else None

        return FolderState(
            uidvalidity=num(b"UIDVALIDITY"),
            uidnext=num(b"UIDNEXT"),
            highestmodseq=num(b"HIGHESTMODSEQ") if self.condstore else None,
            exists=num(b"EXISTS") or 0,
        )

    # -- fetching -------------------------------------------------------------------------
    def _fetch(self, msgset: str, items: list[str], modifiers: list[str] | None = None) -> dict[int, Any]:
        return uid_fetch(self.client, msgset, items, modifiers)

    def _meta_items(self) -> list[str]:
        items = ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE"]
        if self.gmail:
            items += ["X-GM-LABELS", "X-GM-MSGID", "X-GM-THRID"]
        return items

    def _meta(self, uid: int, d: dict[bytes, Any], size: int | None = None) -> MessageMeta:
        labels = tuple(mutf7.decode(text(x)) for x in d.get(b"X-GM-LABELS", ()) or ())
        date = d.get(b"INTERNALDATE")
        return MessageMeta(
            uid=uid,
            # \Recent is a session flag (RFC 3501 2.3.2), not part of the message: never stored.
            flags=tuple(
                sys.intern(f) for f in (text(x) for x in d.get(b"FLAGS", ())) if f.lower() != "\\recent"
            ),
            internaldate=date.isoformat() if isinstance(date, datetime) else None,
            size=size if size is not None else int(d.get(b"RFC822.SIZE", 0) or 0),
            labels=labels,
            gm_msgid=int(d[b"X-GM-MSGID"]) if b"X-GM-MSGID" in d else None,
            gm_thrid=int(d[b"X-GM-THRID"]) if b"X-GM-THRID" in d else None,
        )

    def metadata(self, uids: Sequence[int], changedsince: int | None = None) -> dict[int, MessageMeta]:
        """Flags, INTERNALDATE, size (and Gmail fields) of the given messages of the examined
        folder, or with ``changedsince`` only of those whose flags changed since that
        mod-sequence. Callers ask for a chunk of UIDs at a time: memory stays bounded."""
        if not uids:
            return {}
        modifiers = [f"CHANGEDSINCE {changedsince}"] if changedsince is not None else None
        msgset = uid_set(uids)
        raw = self._retrying("FETCH flags", lambda: self._fetch(msgset, self._meta_items(), modifiers))
        return {uid: self._meta(uid, d) for uid, d in raw.items()}

    def all_uids(self) -> list[int]:
        return sorted(int(u) for u in self._retrying("UID SEARCH", lambda: self.client.search("ALL")))

    def fetch(self, metas: Sequence[MessageMeta]) -> Iterator[Fetched | FetchFailure]:
        """Bodies of the given messages (BODY.PEEK[]), pipelined: several UID-range FETCH commands
        in flight, batches sized by the connection's round-trip time and rate, bounded by
        ``batch_bytes`` and ``batch_count``. Bodies come in the order the server sends them.

        Flags and INTERNALDATE come from the metadata fetch that produced ``metas``; asking
        for them again would double the parsing, which is the CPU cost of a backup. A dropped
        connection is reopened and what did not arrive is asked again; a batch the server
        refuses is narrowed down one command at a time (:meth:`_fetch_batch`).
        """
        return self._fetch_pipelined([m.uid for m in metas], {m.uid: m for m in metas})

    def fetch_new(self, uids: Sequence[int]) -> Iterator[Fetched | FetchFailure]:
        """Messages nothing is known of yet (a new folder, new UIDs): metadata and body in the same
        pipelined FETCH, one round of parsing and no metadata round trip. A UID with no answer at
        all was expunged meanwhile and is left out, as :meth:`metadata` would."""
        return self._fetch_pipelined(list(uids), None)

    def _fetch_pipelined(
        self, uids: list[int], metas: dict[int, MessageMeta] | None
    ) -> Iterator[Fetched | FetchFailure]:
        done: set[int] = set()
        refused: list[list[int]] = []
        if self._sizer is None:  # one per connection: what it learnt carries over to the next chunk
            self._sizer = BatchSizer(self.rtt or DEFAULT_RTT, self.batch_bytes)
        sizer = self._sizer
        attempt, backoff = 0, self.network_backoff
        while True:
            todo = [u for u in uids if u not in done]
            if not todo:
                break
            try:
                yield from self._pipelined(todo, metas, done, refused, sizer)
                break
            except NETWORK_ERRORS as exc:
                backoff = self.recover("FETCH bodies", exc, attempt, backoff)
                attempt += 1
            except IMAPClientError as exc:
                # A response imapclient cannot read: the commands still in flight would answer into
                # the next ones, so the connection is renewed, and what is left goes one command at
                # a time, halved down to the message that fails.
                self._reconnect(f"unreadable FETCH response: {exc}")
                refused.append([u for u in uids if u not in done])
                done.update(uids)
        for batch in refused:  # narrowed down one command at a time
            if not batch:
                continue
            try:
                known = [metas[u] for u in batch] if metas is not None else self._metadata_list(batch)
            except IMAPClientError as exc:
                for u in batch:
                    yield FetchFailure(u, f"server said: {text(exc)}")
                continue
            yield from self._fetch_batch(known, ["BODY.PEEK[]"])

    def _metadata_list(self, uids: list[int]) -> list[MessageMeta]:
        meta = self.metadata(uids)
        return [meta[u] for u in uids if u in meta]

    def _batches(
        self, uids: list[int], metas: dict[int, MessageMeta] | None, sizer: BatchSizer
    ) -> Iterator[FetchCommand]:
        """UID-range batches, each as big as the sizer says when the pipeline asks for it (sizes
        from the metadata, else the average size seen so far)."""
        batch: list[int] = []
        size = 0.0
        for uid in uids:
            msg_size = metas[uid].size if metas is not None else sizer.avg_size
            if batch and (size + msg_size > sizer.batch_bytes or len(batch) >= self.batch_count):
                yield FetchCommand(batch, uid_set(batch))
                batch, size = [], 0
            batch.append(uid)
            size += msg_size
        if batch:
            yield FetchCommand(batch, uid_set(batch))

    def _pipelined(
        self,
        uids: list[int],
        metas: dict[int, MessageMeta] | None,
        done: set[int],
        refused: list[list[int]],
        sizer: BatchSizer,
    ) -> Iterator[Fetched | FetchFailure]:
        # New messages: their metadata in the same response (RFC822.SIZE aside: the body tells it).
        meta_items = [i for i in self._meta_items() if i != "RFC822.SIZE"]
        items = ["BODY.PEEK[]"] if metas is not None else [*meta_items, "BODY.PEEK[]"]
        pipeline = FetchPipeline(self.client, items, b"BODY[]", depth=sizer.depth)
        last = time.monotonic()
        try:
            for cmd, uid, data in pipeline.run(self._batches(uids, metas, sizer)):
                if uid is not None:
                    body = data[b"BODY[]"]
                    if not isinstance(body, bytes):
                        body = text(body).encode("utf-8", "surrogateescape")
                    done.add(uid)
                    self.stats.bytes_fetched += len(body)
                    self.stats.messages_fetched += 1
                    meta = metas[uid] if metas is not None else self._meta(uid, data, len(body))
                    yield Fetched(meta, body)
                    continue
                now = time.monotonic()
                sizer.observe(cmd.nbytes, now - max(cmd.started, last))
                sizer.observe_messages(len(cmd.received), cmd.nbytes)
                last = now
                pipeline.depth = sizer.depth
                missing = [u for u in cmd.uids if u not in cmd.received]
                done.update(missing)
                if cmd.status != "OK":
                    if missing:
                        refused.append(missing)
                    continue
                for u in missing:
                    if metas is not None or u in cmd.seen:
                        yield FetchFailure(u, "server returned no body (message expunged meanwhile?)")
        finally:
            self.fetch_commands += pipeline.sent

    def _fetch_batch(self, batch: list[MessageMeta], items: list[str]) -> Iterator[Fetched | FetchFailure]:
        msgset = uid_set([m.uid for m in batch])
        try:
            response = self._retrying("FETCH bodies", lambda: self._fetch(msgset, items))
        except IMAPClientError as exc:
            if len(batch) == 1:
                yield FetchFailure(batch[0].uid, f"server said: {text(exc)}")
                return
            # Narrow the failure down: fetch the batch in halves.
            half = len(batch) // 2
            yield from self._fetch_batch(batch[:half], items)
            yield from self._fetch_batch(batch[half:], items)
            return
        for meta in batch:
            d = response.pop(meta.uid, None)
            body = d.get(b"BODY[]") if d else None
            if body is None:
                yield FetchFailure(meta.uid, "server returned no body (message expunged meanwhile?)")
                continue
            if not isinstance(body, bytes):
                body = text(body).encode("utf-8", "surrogateescape")
            self.stats.bytes_fetched += len(body)
            self.stats.messages_fetched += 1
            yield Fetched(meta, body)


def _listed(status: dict[str, int] | None) -> FolderState | None:
    """A folder's state from LIST-STATUS, if it gave every item a backup compares."""
    if not status or not {"MESSAGES", "UIDNEXT", "UIDVALIDITY"} <= status.keys():
        return None
    return FolderState(
        uidvalidity=status["UIDVALIDITY"],
        uidnext=status["UIDNEXT"],
        highestmodseq=status.get("HIGHESTMODSEQ"),
        exists=status["MESSAGES"],
    )
