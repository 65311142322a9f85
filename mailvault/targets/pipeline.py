"""Uploading a folder's messages with pipelined APPENDs (mailvault/net/append.py), keeping the
guarantees of one-at-a-time uploads:

* every answer is matched to its message: OK (with APPENDUID) goes to ``on_done`` in groups
  (the caller journals each group), NO names the message (``on_refused``); a refused
  MULTIAPPEND is sent again one message per command, to find the culprit;
* ``[THROTTLED]`` answers are sent again after an exponential pause;
* a dropped connection: every command sent but not answered may or may not have been stored.
  After reconnecting (same folder, same UIDVALIDITY), those messages are looked for in the
  folder — one FETCH of (Message-ID, size) for the whole folder rather than a search per
  message — and only the ones not there are sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailvault.errors import ConnectError, ProtocolError
from mailvault.net import mutf7
from mailvault.net.append import Answer, AppendStream
from mailvault.net.imap import NETWORK_ERRORS, text
from mailvault.targets.answers import appenduids, is_throttle
from mailvault.targets.imap import AppendItem, ImapTarget

#: Messages whose answer may be outstanding at once.
DEFAULT_WINDOW = 1000
#: Completed messages handed to ``on_done`` at once (one journal transaction).
DONE_GROUP = 200


@dataclass
class Done:
    key: Any
    item: AppendItem
    uid: int | None


Unit = list[tuple[Any, AppendItem]]


class AppendPipeline:
    """Pipelined uploads into one (selected) folder of ``target``; see the module doc."""

    def __init__(
        self,
        target: ImapTarget,
        folder_raw: str,
        *,
        on_done: Callable[[list[Done]], None],
        on_refused: Callable[[Any, AppendItem, str], None],
        window: int = DEFAULT_WINDOW,
        group_count: int = 1,
        group_bytes: int = 4 << 20,
    ) -> None:
        self.target = target
        self.folder_raw = folder_raw
        self.on_done = on_done
        self.on_refused = on_refused
        self.window = max(1, window)
        self.group_count = group_count if target.multiappend else 1
        self.group_bytes = group_bytes
        self._stream: AppendStream | None = None
        self._group: Unit = []
        self._group_size = 0
        self._sent: dict[bytes, Unit] = {}
        self._in_flight = 0
        self._done: list[Done] = []
        self._throttled: Unit = []
        self._singles: Unit = []
        self._drops = 0
        #: Round trips spent on synchronising literals (for tests and the bench).
        self.continuations = 0

    @staticmethod
    def usable(folder_raw: str) -> bool:
        """Whether a folder name can be pipelined (an ASCII, i.e. modified UTF-7, name)."""
        return folder_raw.isascii()

    # -- submitting ---------------------------------------------------------------------
    def submit(self, key: Any, item: AppendItem) -> None:
        if self._group and (
            len(self._group) >= self.group_count or self._group_size + len(item.raw) > self.group_bytes
        ):
            self._send_group()
        self._group.append((key, item))
        self._group_size += len(item.raw)
        if len(self._group) >= self.group_count:
            self._send_group()

    def finish(self) -> None:
        """Send what is left, wait for every answer, retry throttled and split refused batches."""
        delay = 1.0
        attempts = 0
        while True:
            if self._group:
                self._send_group()
            self._guarded(self._drain)
            if self._singles:
                singles, self._singles = self._singles, []
                for unit in singles:
                    self._send([unit])
                continue
            if self._throttled:
                attempts += 1
                if attempts > self.target.max_retries:
                    raise ProtocolError(
                        f"APPEND to {mutf7.decode(self.folder_raw)}: the server keeps throttling"
                    )
                self.target.throttle_waits += delay
                self.target._sleep(delay)
                delay = min(delay * 2, 300)
                retry, self._throttled = self._throttled, []
                for unit in retry:
                    self._send([unit])
                continue
            break
        self._flush_done()

    def _send_group(self) -> None:
        group, self._group, self._group_size = self._group, [], 0
        self._send(group)

    def _send(self, unit: Unit) -> None:
        def go() -> None:
            stream = self._stream_now()
            tag = stream.send([(i.raw, i.flags, i.date) for _, i in unit])
            self._sent[tag] = unit
            self._in_flight += len(unit)
            self.continuations = stream.continuations
            while self._in_flight > self.window:
                self._handle(stream.wait_oldest())
            self._handle(stream.completed())

        self._guarded(go, unit)

    def _stream_now(self) -> AppendStream:
        if self._stream is None:
            self._stream = AppendStream(self.target.client, self.folder_raw, self.target.capabilities)
            self._stream.continuations = self.continuations
        return self._stream

    def _drain(self) -> None:
        if self._stream is not None:
            self._handle(self._stream.drain())
            self.continuations = self._stream.continuations

    # -- answers ------------------------------------------------------------------------
    def _handle(self, answers: list[tuple[bytes, Answer]]) -> None:
        for tag, ans in answers:
            unit = self._sent.pop(tag)
            self._in_flight -= len(unit)
            if ans.ok:
                uids = appenduids(ans.text, len(unit))
                self._done += [Done(k, i, u) for (k, i), u in zip(unit, uids, strict=True)]
                continue
            answer = text(ans.text).strip()
            if is_throttle(answer):
                self._throttled += unit
            elif len(unit) > 1:  # MULTIAPPEND is all or nothing: find the culprit
                self._singles += unit
            else:
                key, item = unit[0]
                self.on_refused(key, item, answer or ans.typ)
        if len(self._done) >= DONE_GROUP:
            self._flush_done()

    def _flush_done(self) -> None:
        if self._done:
            done, self._done = self._done, []
            self.target.stats.appended += len(done)
            self.target.stats.bytes_appended += sum(len(d.item.raw) for d in done)
            self.on_done(done)

    # -- dropped connections ------------------------------------------------------------
    def _guarded(self, fn: Callable[[], None], unit: Unit | None = None) -> None:
        """Run ``fn``; after a dropped connection reconnect, settle what was in flight and
        retry ``fn`` (at most the target's ``max_retries`` drops in all)."""
        while True:
            try:
                fn()
                return
            except NETWORK_ERRORS as exc:
                uncertain = self._abandon()
                if unit is not None and not any(unit is u for u in uncertain):
                    # fn died before (or while) sending its unit: settle it as uncertain too
                    uncertain.append(unit)
                self._recover(exc, uncertain)
                if unit is not None:
                    return  # the unit was settled (found, or sent again) by _recover

    def _abandon(self) -> list[Unit]:
        units = list(self._sent.values())
        self._sent.clear()
        self._in_flight = 0
        if self._stream is not None:
            self.continuations = self._stream.continuations
            self._stream.abandon()
        self._stream = None
        return units

    def _recover(self, exc: BaseException, uncertain: list[Unit]) -> None:
        self._drops += 1
        what = f"APPEND to {mutf7.decode(self.folder_raw)}"
        if self._drops > self.target.max_retries:
            raise ConnectError(f"{what}: connection lost {self._drops} times ({exc})") from None
        if self.target.network_backoff:
            self.target._sleep(min(self.target.network_backoff * 2 ** (self._drops - 1), 5))
        try:
            self.target._reconnect(f"{what}: {exc}")
        except NETWORK_ERRORS as again:  # IMAPClientAbortError is one of them
            self._recover(again, uncertain)
            return
        self.target._uncertain = False  # settled here, message by message
        items = [ki for unit in uncertain for ki in unit]
        if not items:
            return
        try:
            where = self.target.locate([i.raw for _, i in items])
        except NETWORK_ERRORS as again:
            self._recover(again, uncertain)
            return
        for (key, item), uid in zip(items, where, strict=True):
            if uid is not None:
                self._done.append(Done(key, item, uid))
            else:
                self._send([(key, item)])
