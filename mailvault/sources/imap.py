"""Read-only access to an IMAP account: folders, per-folder state, metadata and bodies.

Never changes the server: folders are opened with EXAMINE, bodies fetched with
``BODY.PEEK[]`` (which does not set ``\\Seen``). Parsing is imapclient's; this
module only decides what to ask for, in batches sized by bytes, and reconnects
when the connection drops.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from mailvault.errors import ConnectError, ProtocolError, RemoteError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.net import mutf7
from mailvault.net.imap import uid_fetch, uid_set
from mailvault.net.session import logout_quietly

log = logging.getLogger(__name__)

SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
#: Default FETCH batch limits: whichever is reached first.
BATCH_BYTES = 8 << 20
BATCH_COUNT = 1000
MAX_RETRIES = 3

_NETWORK_ERRORS = (OSError, ssl.SSLError, socket.timeout, IMAPClientAbortError, EOFError)


@dataclass
class RemoteFolder:
    info: FolderInfo
    attributes: tuple[str, ...] = ()


@dataclass
class FolderState:
    """What EXAMINE says about a folder."""

    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    exists: int


@dataclass
class MessageMeta:
    uid: int
    flags: tuple[str, ...]
    internaldate: datetime | None
    size: int
    labels: tuple[str, ...] = ()
    gm_msgid: int | None = None
    gm_thrid: int | None = None


@dataclass
class FetchFailure:
    uid: int
    reason: str


@dataclass
class ImapStats:
    reconnects: int = 0
    bytes_fetched: int = 0
    messages_fetched: int = 0
    failures: list[str] = field(default_factory=list)


def _s(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class ImapSource:
    """An IMAP account opened read-only. ``connect`` opens a logged-in client (used to reconnect)."""

    def __init__(
        self,
        connect: Callable[[], imapclient.IMAPClient],
        *,
        batch_bytes: int = BATCH_BYTES,
        batch_count: int = BATCH_COUNT,
    ) -> None:
        self._connect = connect
        self.batch_bytes = batch_bytes
        self.batch_count = batch_count
        self.stats = ImapStats()
        self._client: imapclient.IMAPClient | None = None
        self._selected: str | None = None
        self._uidvalidity: int | None = None
        self.capabilities: set[str] = set()
        self._open()

    # -- connection ---------------------------------------------------------------------
    def _open(self) -> None:
        client = self._connect()
        self.capabilities = {_s(c).upper() for c in client.capabilities()}
        if "CONDSTORE" in self.capabilities and "ENABLE" in self.capabilities:
            try:
                client.enable("CONDSTORE")
            except IMAPClientError:
                self.capabilities.discard("CONDSTORE")
        self._client = client
        self._selected = None

    @property
    def client(self) -> imapclient.IMAPClient:
        if self._client is None:
            self._open()
        assert self._client is not None
        return self._client

    @property
    def gmail(self) -> bool:
        return "X-GM-EXT-1" in self.capabilities

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.capabilities

    def close(self) -> None:
        if self._client is not None:
            logout_quietly(self._client)
            self._client = None

    def _reconnect(self) -> None:
        if self._client is not None:
            try:
                self._client.shutdown()
            except Exception:  # already broken
                log.debug("shutdown of a broken connection failed", exc_info=True)
            self._client = None
        self.stats.reconnects += 1
        folder, validity = self._selected, self._uidvalidity
        self._open()
        if folder is not None:
            state = self._examine(folder)
            if validity is not None and state.uidvalidity != validity:
                raise ProtocolError(f"UIDVALIDITY of {mutf7.decode(folder)!r} changed during the backup")

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; on a dropped connection reconnect (re-EXAMINE) and retry."""
        for attempt in range(MAX_RETRIES + 1):
            try:
                return fn()
            except _NETWORK_ERRORS as exc:
                if attempt == MAX_RETRIES:
                    raise ConnectError(f"{what}: connection lost {attempt + 1} times ({exc})") from None
                log.info("%s: connection lost (%s); reconnecting", what, exc)
                try:
                    self._reconnect()
                except RemoteError:
                    if attempt + 1 >= MAX_RETRIES:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- folders ------------------------------------------------------------------------
    def folders(self) -> list[RemoteFolder]:
        """Every selectable folder, with its special-use attribute."""
        listing = self._retrying("LIST", lambda: self.client.list_folders())  # noqa: PLW0108 - client changes on reconnect
        out = []
        for flags, delim, name in listing:
            attrs = tuple(_s(f) for f in flags)
            if any(a.lower() in ("\\noselect", "\\nonexistent") for a in attrs):
                continue
            raw = _s(name)
            special = next((a for a in attrs if a.lower() in {s.lower() for s in SPECIAL_USE}), None)
            delimiter = _s(delim) if delim is not None else None
            out.append(RemoteFolder(FolderInfo(mutf7.decode(raw), raw, delimiter, special), attrs))
        return out

    def examine(self, name_raw: str) -> FolderState:
        """EXAMINE (read-only SELECT) a folder and return its state."""
        state: FolderState = self._retrying(
            f"EXAMINE {mutf7.decode(name_raw)}", lambda: self._examine(name_raw)
        )
        return state

    def _examine(self, name_raw: str) -> FolderState:
        info = dict(self.client.select_folder(name_raw, readonly=True))
        self._selected = name_raw

        def num(key: bytes) -> int | None:
            v = info.get(key)
            if isinstance(v, list | tuple):
                v = v[0] if v else None
            return int(v) if v is not None else None

        state = FolderState(
            uidvalidity=num(b"UIDVALIDITY"),
            uidnext=num(b"UIDNEXT"),
            highestmodseq=num(b"HIGHESTMODSEQ") if self.condstore else None,
            exists=num(b"EXISTS") or 0,
        )
        self._uidvalidity = state.uidvalidity
        return state

    # -- fetching -------------------------------------------------------------------------
    def _fetch(self, msgset: str, items: list[str], modifiers: list[str] | None = None) -> dict[int, Any]:
        return uid_fetch(self.client, msgset, items, modifiers)

    def _meta_items(self) -> list[str]:
        items = ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE"]
        if self.gmail:
            items += ["X-GM-LABELS", "X-GM-MSGID", "X-GM-THRID"]
        return items

    def _meta(self, uid: int, d: dict[bytes, Any]) -> MessageMeta:
        labels = tuple(mutf7.decode(_s(x)) for x in d.get(b"X-GM-LABELS", ()) or ())
        date = d.get(b"INTERNALDATE")
        return MessageMeta(
            uid=uid,
            # \Recent is a session flag (RFC 3501 2.3.2), not part of the message: never stored.
            flags=tuple(f for f in (_s(x) for x in d.get(b"FLAGS", ())) if f.lower() != "\\recent"),
            internaldate=date if isinstance(date, datetime) else None,
            size=int(d.get(b"RFC822.SIZE", 0) or 0),
            labels=labels,
            gm_msgid=int(d[b"X-GM-MSGID"]) if b"X-GM-MSGID" in d else None,
            gm_thrid=int(d[b"X-GM-THRID"]) if b"X-GM-THRID" in d else None,
        )

    def metadata(self, changedsince: int | None = None) -> dict[int, MessageMeta]:
        """Flags, INTERNALDATE, size (and Gmail fields) of every message of the examined folder,
        or with ``changedsince`` only of those whose flags changed since that mod-sequence."""
        modifiers = [f"CHANGEDSINCE {changedsince}"] if changedsince is not None else None
        raw = self._retrying("FETCH flags", lambda: self._fetch("1:*", self._meta_items(), modifiers))
        return {uid: self._meta(uid, d) for uid, d in raw.items()}

    def all_uids(self) -> list[int]:
        return sorted(int(u) for u in self._retrying("UID SEARCH", lambda: self.client.search("ALL")))

    def fetch(self, metas: Sequence[MessageMeta]) -> Iterator[SourceMessage | FetchFailure]:
        """Bodies of the given messages (BODY.PEEK[]), in batches bounded by bytes and count.

        Flags and INTERNALDATE come from the metadata fetch that produced ``metas``; asking
        for them again would double the parsing, which is the CPU cost of a backup.
        """
        items = ["BODY.PEEK[]"]
        batch: list[MessageMeta] = []
        size = 0
        for meta in metas:
            if batch and (size + meta.size > self.batch_bytes or len(batch) >= self.batch_count):
                yield from self._fetch_batch(batch, items)
                batch, size = [], 0
            batch.append(meta)
            size += meta.size
        if batch:
            yield from self._fetch_batch(batch, items)

    def _fetch_batch(
        self, batch: list[MessageMeta], items: list[str]
    ) -> Iterator[SourceMessage | FetchFailure]:
        msgset = uid_set([m.uid for m in batch])
        try:
            response = self._retrying("FETCH bodies", lambda: self._fetch(msgset, items))
        except IMAPClientError as exc:
            if len(batch) == 1:
                yield FetchFailure(batch[0].uid, f"server said: {_s(exc)}")
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
                body = _s(body).encode("utf-8", "surrogateescape")
            self.stats.bytes_fetched += len(body)
            self.stats.messages_fetched += 1
            yield SourceMessage(
                uid=meta.uid,
                raw=body,
                flags=meta.flags,
                internaldate=meta.internaldate,
                labels=meta.labels,
                gm_msgid=meta.gm_msgid,
                gm_thrid=meta.gm_thrid,
            )
