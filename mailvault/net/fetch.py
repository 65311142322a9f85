"""Pipelined ``UID FETCH``: several UID-range commands in flight on one connection.

A request/response loop pays a round trip between batches; over 30–150 ms of network that is
most of a backup's wall time. :class:`FetchPipeline` keeps ``depth`` commands in flight and
hands out every message the moment its response is complete. Responses are matched to
messages by the UID *in* each response, never by order: a server may answer in any order,
split one message's items over several responses (merged; the response with the body wins),
or send unsolicited FETCH responses (flag changes by another session, with or without a UID)
in between: one without a UID, or for a message not asked for, is ignored. Parsing is imapclient's.

:class:`BatchSizer` sizes the batches from the connection's measured round-trip time and
transfer rate: enough bytes in flight to cover the bandwidth-delay product, batches no larger
than the caller's cap.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response

#: Smallest body batch: below this the per-command cost shows, whatever the link.
MIN_BATCH_BYTES = 512 << 10
#: Commands in flight at most (each holds at most one batch of bytes in the server's send queue).
MAX_DEPTH = 8
#: Rate assumed before the first batch has been measured (bytes per second).
INITIAL_RATE = 8 << 20
#: Message size assumed before any was seen (bytes).
INITIAL_AVG_SIZE = 32 << 10


@dataclass
class BatchSizer:
    """Body batch size and pipeline depth from the round-trip time and the measured rate."""

    rtt: float  # seconds
    max_bytes: int
    rate: float = INITIAL_RATE  # bytes per second, a moving estimate
    #: Average message size seen so far (sizes batches of messages whose size is not known yet).
    avg_size: float = INITIAL_AVG_SIZE
    _messages: int = 0
    _bytes: int = 0

    def observe_messages(self, count: int, nbytes: int) -> None:
        self._messages += count
        self._bytes += nbytes
        if self._messages:
            self.avg_size = max(1.0, self._bytes / self._messages)

    def batch_messages(self, limit: int) -> int:
        """Messages of unknown size per batch: :attr:`batch_bytes` at the average size seen."""
        return max(1, min(limit, int(self.batch_bytes / self.avg_size)))

    def observe(self, nbytes: int, seconds: float) -> None:
        """A batch of ``nbytes`` took ``seconds`` from its first to its last byte."""
        if nbytes <= 0 or seconds <= 0:
            return
        sample = nbytes / seconds
        self.rate = sample if self.rate == INITIAL_RATE else 0.7 * self.rate + 0.3 * sample

    @property
    def bdp(self) -> float:
        """Bytes the link holds in one round trip."""
        return self.rate * self.rtt

    @property
    def batch_bytes(self) -> int:
        """Half the bandwidth-delay product (so at least two batches cover a round trip),
        within [:data:`MIN_BATCH_BYTES`, ``max_bytes``]."""
        return int(min(self.max_bytes, max(MIN_BATCH_BYTES, self.bdp / 2)))

    @property
    def depth(self) -> int:
        """Commands in flight: one round trip's worth of batches, plus one being read."""
        return max(2, min(MAX_DEPTH, math.ceil(self.bdp / max(self.batch_bytes, 1)) + 1))


@dataclass
class FetchCommand:
    """One ``UID FETCH`` of the pipeline: its UIDs and what arrived for them."""

    uids: list[int]
    msgset: str
    tag: bytes = b""
    received: dict[int, dict[bytes, Any]] = field(default_factory=dict)
    #: UIDs some response of which came, with or without the wanted item.
    seen: set[int] = field(default_factory=set)
    #: Items of a message that came in a response without the wanted item (a server may split
    #: one message's items over several responses): merged under the wanted item's response.
    partial: dict[int, dict[bytes, Any]] = field(default_factory=dict)
    status: str = ""  # OK / NO / BAD once completed
    text: str = ""
    nbytes: int = 0
    started: float = 0.0


class FetchPipeline:
    """``UID FETCH msgset (items)`` for many message sets over one connection, ``depth`` at a time.

    :meth:`run` yields ``(command, uid, data)`` for every message whose response carried the
    ``want`` item (e.g. ``BODY[]``), as it arrives, and ``(command, None, None)`` once a command
    is complete (``command.status`` then tells OK / NO / BAD; UIDs of it that never came are
    the caller's to report). A network error propagates; the commands in flight are lost with
    the connection (the caller fetches again what it did not get).
    """

    def __init__(
        self, client: imapclient.IMAPClient, items: list[str], want: bytes, *, depth: int = 2
    ) -> None:
        self.client = client
        self.items = seq_to_parenstr_upper(items)
        self.want = want
        self.depth = depth
        self.sent = 0  # commands sent (tests and the round-trip count look at it)

    def run(self, commands: Iterable[FetchCommand]) -> Iterator[tuple[FetchCommand, int | None, Any]]:
        imap = self.client._imap
        todo = iter(commands)
        inflight: deque[FetchCommand] = deque()
        by_uid: dict[int, FetchCommand] = {}
        exhausted = False
        while True:
            while not exhausted and len(inflight) < max(1, self.depth):
                cmd = next(todo, None)
                if cmd is None:
                    exhausted = True
                    break
                cmd.tag = imap._command("UID", "FETCH", cmd.msgset, self.items)
                cmd.started = time.monotonic()
                self.sent += 1
                inflight.append(cmd)
                for uid in cmd.uids:
                    by_uid[uid] = cmd
            if not inflight:
                return
            try:
                imap._get_response()
            except imap.abort:
                raise
            except imap.error as exc:  # a line past imaplib's limit, junk: the stream is lost
                raise imap.abort(f"unreadable FETCH response: {exc}") from None
            if "BYE" in imap.untagged_responses:  # the server is closing the connection
                bye = imap.untagged_responses.pop("BYE")
                raise imap.abort(f"server said BYE: {bye[-1]!r}")
            fetched = imap.untagged_responses.pop("FETCH", None)
            if fetched:
                yield from self._deliver(fetched, by_uid)
            # Tagged answers: commands complete in the order they were sent, but look at all.
            while inflight and imap.tagged_commands.get(inflight[0].tag) is not None:
                cmd = inflight.popleft()
                typ, data = imap.tagged_commands.pop(cmd.tag)
                cmd.status = typ
                cmd.text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
                for uid in cmd.uids:
                    if by_uid.get(uid) is cmd:
                        del by_uid[uid]
                yield cmd, None, None

    def _deliver(
        self, fetched: list[Any], by_uid: dict[int, FetchCommand]
    ) -> Iterator[tuple[FetchCommand, int | None, Any]]:
        try:
            parsed = parse_fetch_response(fetched, False, False)
        except (IMAPClientError, ValueError) as exc:
            raise IMAPClientError(f"unreadable FETCH response: {exc}") from None
        for data in parsed.values():
            uid = data.get(b"UID")
            if not isinstance(uid, int):
                continue  # unsolicited (a flag change by another session): no UID, no body
            cmd = by_uid.get(uid)
            if cmd is None or uid in cmd.received:
                continue  # not asked for (or a second copy)
            cmd.seen.add(uid)
            if data.get(self.want) is None:
                cmd.partial.setdefault(uid, {}).update(data)  # other items only: the body follows
                continue
            merged = {**cmd.partial.pop(uid), **data} if uid in cmd.partial else data
            cmd.received[uid] = merged
            body = merged[self.want]
            cmd.nbytes += len(body) if isinstance(body, bytes | str) else 0
            yield cmd, uid, merged
