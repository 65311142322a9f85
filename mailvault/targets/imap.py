"""Writing to an IMAP server: folder discovery and creation, APPEND (MULTIAPPEND where
advertised), APPENDUID, Gmail labels, throttling answers.

Parsing is imapclient's; the only text this module reads itself is the response codes
``[APPENDUID v uids]``, ``[THROTTLED]`` / ``[UNAVAILABLE]`` / ``[LIMIT]`` (back off), ``[OVERQUOTA]``,
``APPENDLIMIT=n``, and the verification FETCH's answers when they have exactly the form
``n (UID u RFC822.SIZE s INTERNALDATE "d")`` with the date we sent (anything else: imapclient).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from imapclient.response_parser import parse_fetch_response

from mailvault.model import header_block, message_id
from mailvault.net import mutf7
from mailvault.net.imap import (
    NETWORK_ERRORS,
    ImapConnection,
    ListedFolder,
    server_text,
    text,
    uid_fetch,
    uid_set,
)
from mailvault.net.imap import append as imap_append
from mailvault.targets.answers import (
    OverQuota,
    Rejected,
    already_exists,
    appenduids,
    refusal,
)

__all__ = ["AppendItem", "ImapTarget", "OverQuota", "Rejected", "SelectedState", "TargetFolder"]

MAX_RETRIES = 5

#: A folder of the target as LIST shows it.
TargetFolder = ListedFolder


@dataclass
class SelectedState:
    uidvalidity: int
    exists: int
    permanent_flags: tuple[str, ...]

    @functools.cached_property
    def _perm_lower(self) -> frozenset[str]:
        return frozenset(f.lower() for f in self.permanent_flags)

    def allows(self, flag: str) -> bool:
        """Whether PERMANENTFLAGS lets this flag or keyword be stored."""
        if flag.lower() == "\\recent":
            return False
        perm = self._perm_lower
        if flag.lower() in perm:
            return True
        return not flag.startswith("\\") and "\\*" in perm


@dataclass
class AppendItem:
    raw: bytes
    flags: Sequence[str]
    date: datetime | None


@dataclass
class TargetStats:
    appended: int = 0
    bytes_appended: int = 0


class ImapTarget(ImapConnection):
    """An IMAP account we write to."""

    network_backoff = 1.0

    def __init__(
        self, connect: Callable[[], imapclient.IMAPClient], *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.stats = TargetStats()
        self._uncertain = False  # an APPEND may have landed without its answer reaching us
        self._listing: tuple[tuple[str, str | None], list[TargetFolder]] | None = None
        super().__init__(connect, sleep=sleep, max_retries=MAX_RETRIES)

    def _after_reconnect(self) -> None:
        self._uncertain = True

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        return self.retrying(what, fn)

    @property
    def multiappend(self) -> bool:
        return "MULTIAPPEND" in self.capabilities

    @property
    def uidplus(self) -> bool:
        return "UIDPLUS" in self.capabilities

    @property
    def append_limit(self) -> int | None:
        for c in self.capabilities:
            if c.startswith("APPENDLIMIT="):
                try:
                    return int(c.split("=", 1)[1])
                except ValueError:
                    return None
        return None

    # -- folders ------------------------------------------------------------------------
    def folders(self) -> list[TargetFolder]:
        return self.list_folders()

    def prefetch_listing(self) -> None:
        """NAMESPACE and LIST now, pipelined (:meth:`listing` hands them out once): run while the
        vault is still being opened, the plan then costs no round trip."""
        self._listing = self.namespace_and_folders()

    def listing(self) -> tuple[tuple[str, str | None], list[TargetFolder]]:
        """(personal namespace prefix and delimiter, folders): prefetched, or asked now in one
        round trip."""
        got, self._listing = self._listing, None
        return got if got is not None else self.namespace_and_folders()

    def create(self, name_raw: str) -> None:
        def go() -> None:
            try:
                self.client.create_folder(name_raw)
            except IMAPClientError as exc:
                answer = server_text(exc)
                if already_exists(answer):
                    return
                raise Rejected(answer) from None

        self._retrying(f"CREATE {mutf7.decode(name_raw)}", go)

    def message_count(self, name_raw: str) -> int:
        """STATUS MESSAGES of a folder (not selected)."""
        got = self._retrying(
            f"STATUS {mutf7.decode(name_raw)}", lambda: self.client.folder_status(name_raw, [b"MESSAGES"])
        )
        return int(got.get(b"MESSAGES", 0))

    def settle(self, name_raw: str, quiet: float, *, limit: float = 60.0) -> None:
        """Wait until the folder's message count has not changed for ``quiet`` seconds (at most
        ``limit``): uploads a killed connection left in the network still reach the server after
        it died, and a duplicate check made before they land would miss them."""
        deadline = time.monotonic() + limit
        last, since = self.message_count(name_raw), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            time.sleep(min(0.1, quiet))
            now = self.message_count(name_raw)
            if now != last:
                last, since = now, time.monotonic()

    def create_many(self, names_raw: Sequence[str]) -> dict[str, str] | None:
        """CREATE every folder of ``names_raw`` in one round trip (the commands pipelined, their
        answers read afterwards, in order). Returns the refusals as {name: server text}; a folder
        that already exists counts as created. None when the pipelined try broke off (a dropped
        connection): the caller then creates the folders one at a time (:meth:`create`), which
        reconnects, and finds those already made as existing."""
        if not names_raw:
            return {}
        try:
            client = self.client
            imap = client._imap
            sent = [(name, imap._command("CREATE", client._normalise_folder(name))) for name in names_raw]
            refused: dict[str, str] = {}
            for name, tag in sent:
                try:
                    typ, data = imap._command_complete("CREATE", tag)
                except IMAPClientAbortError:
                    raise
                except IMAPClientError as exc:  # BAD
                    typ, data = "BAD", [str(exc).encode()]
                if typ != "OK":
                    answer = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
                    if not already_exists(answer):
                        refused[name] = f"{typ} {answer}".strip()
            return refused
        except NETWORK_ERRORS:
            return None

    def select(self, name_raw: str) -> SelectedState:
        info = self.retrying(
            f"SELECT {mutf7.decode(name_raw)}", lambda: self._select_raw(name_raw, readonly=False)
        )
        perm = tuple(text(f) for f in info.get(b"PERMANENTFLAGS", ()))
        return SelectedState(int(info[b"UIDVALIDITY"]), int(info.get(b"EXISTS", 0)), perm)

    def existing_keys(self) -> list[tuple[int, str, int]]:
        """(UID, Message-ID, size) of every message in the selected folder, for duplicate checks."""

        def go() -> dict[int, Any]:
            return uid_fetch(self.client, "1:*", ["RFC822.SIZE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])

        data = self._retrying("FETCH Message-IDs", go)
        out = []
        for uid, d in data.items():
            header = b""
            for k, v in d.items():
                if isinstance(k, bytes) and k.startswith(b"BODY[HEADER"):
                    header = v or b""
            out.append((int(uid), message_id(header), int(d.get(b"RFC822.SIZE", 0))))
        return out

    def bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The bytes of some messages of the selected folder (BODY.PEEK[])."""

        def go() -> dict[int, Any]:
            return uid_fetch(self.client, uid_set(uids), ["BODY.PEEK[]"])

        data = self._retrying("FETCH bodies", go)
        return {int(u): d.get(b"BODY[]") or b"" for u, d in data.items()}

    def find(self, raw: bytes) -> int | None:
        """UID of a message with this one's Message-ID and size (or, without a Message-ID, the
        same bytes) in the selected folder, if any."""
        msgid = message_id(header_block(raw))
        if not msgid:  # no Message-ID: the same bytes, among messages of the same size
            same_size = self.client.search(["LARGER", str(len(raw) - 1), "SMALLER", str(len(raw) + 1)])
            if not same_size:
                return None
            hits = [u for u, body in self.bodies([int(u) for u in same_size]).items() if body == raw]
            return max(hits) if hits else None
        uids = self.client.search(["HEADER", "Message-ID", msgid])
        if not uids:
            return None
        sizes = uid_fetch(self.client, uid_set([int(u) for u in uids]), ["RFC822.SIZE"])
        hits = [int(u) for u, d in sizes.items() if int(d.get(b"RFC822.SIZE", -1)) == len(raw)]
        return max(hits) if hits else None

    def locate(self, raws: Sequence[bytes]) -> list[int | None]:
        """Like :meth:`find` for several messages: the UID of each one already in the selected
        folder, or None. Beyond a few messages, one FETCH of every (Message-ID, size) in the
        folder replaces a SEARCH per message; a UID is handed out once."""
        if len(raws) <= 4:
            return [self.find(raw) for raw in raws]
        by_key: dict[tuple[str, int], list[int]] = {}
        for uid, mid, size in sorted(self.existing_keys()):
            if mid:
                by_key.setdefault((mid, size), []).append(uid)
        out: list[int | None] = []
        for raw in raws:
            mid = message_id(header_block(raw))
            if not mid:
                out.append(self.find(raw))
                continue
            uids = by_key.get((mid, len(raw)))
            out.append(uids.pop() if uids else None)
        return out

    # -- appending ----------------------------------------------------------------------
    def append_batch(self, folder_raw: str, items: Sequence[AppendItem]) -> list[int | None]:
        """APPEND items (one MULTIAPPEND when advertised); return the new UIDs (None if unknown).

        Raises :class:`Rejected` if the server refuses (MULTIAPPEND is all-or-nothing:
        the caller retries one by one to find the culprit)."""

        def go() -> list[int | None]:
            if self._uncertain:
                # The connection broke while an APPEND was in flight: it may have been stored
                # before the answer was lost. Look before sending it again (a MULTIAPPEND is
                # all or nothing, so its first message tells for the whole batch).
                self._uncertain = False
                first = self.find(items[0].raw)
                if first is not None:
                    found = [first] + [self.find(i.raw) for i in items[1:]]
                    return found
            try:
                if len(items) > 1 and self.multiappend:
                    resp = imap_append(self.client, folder_raw, [(i.raw, i.flags, i.date) for i in items])
                else:
                    uids: list[int | None] = []
                    for it in items:
                        r = imap_append(self.client, folder_raw, [(it.raw, it.flags, it.date)])
                        uids.extend(appenduids(r, 1))
                    return uids
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                raise refusal(exc) from None
            return appenduids(resp, len(items))

        uids: list[int | None] = self._retrying(f"APPEND to {mutf7.decode(folder_raw)}", go)
        self.stats.appended += len(items)
        self.stats.bytes_appended += sum(len(i.raw) for i in items)
        return uids

    def verify(
        self, sent: Mapping[int, tuple[int, datetime | None]]
    ) -> dict[int, tuple[int, datetime | None]]:
        """Freshly appended messages of the selected folder (UID -> the size and INTERNALDATE we
        sent) whose stored size or INTERNALDATE differ: UID -> (stored size, stored date).

        One ``UID FETCH (RFC822.SIZE INTERNALDATE)`` for all of them, parsed by imapclient (we
        never parse IMAP responses ourselves)."""
        if not sent:
            return {}
        msgset = uid_set(list(sent))

        def go() -> list[Any]:
            imap = self.client._imap
            tag = imap._command("UID", "FETCH", msgset, "(RFC822.SIZE INTERNALDATE)")
            typ, data = imap._command_complete("FETCH", tag)
            self.client._checkok("fetch", typ, data)
            return list(imap._untagged_response(typ, data, "FETCH")[1])

        lines = self._retrying("FETCH verify", go)
        data = parse_fetch_response(lines, self.client.normalise_times, True)
        out: dict[int, tuple[int, datetime | None]] = {}
        for uid, d in data.items():
            size, stored = int(d.get(b"RFC822.SIZE", 0)), d.get(b"INTERNALDATE")
            want = sent.get(int(uid))
            if want is None:
                continue
            # INTERNALDATE has whole seconds; a snapshot date may carry microseconds (file mtimes).
            wanted = want[1].replace(microsecond=0) if want[1] is not None else None
            date_differs = wanted is not None and isinstance(stored, datetime) and stored != wanted
            if size != want[0] or date_differs:
                out[int(uid)] = (size, stored if date_differs else None)
        return out

    def add_labels(self, uids: Sequence[int], labels: Sequence[str]) -> None:
        """Gmail: STORE +X-GM-LABELS on messages of the selected folder."""
        if not uids or not labels:
            return

        def go() -> None:
            try:
                self.client.add_gmail_labels(list(uids), list(labels), silent=True)
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                raise refusal(exc) from None

        self._retrying("STORE X-GM-LABELS", go)
