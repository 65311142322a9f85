"""The restore's duplicate check on the target side: messages already in a folder that the journal
does not account for."""

from __future__ import annotations

import hashlib

from mailvault.model import header_block, message_id
from mailvault.targets.imap import ImapTarget


class ExistingMessages:
    """Messages already in a target folder that the journal does not account for — put there by
    another tool, or by a run whose journal was lost or killed between APPEND and journal.

    A source message matches one of them by Message-ID and size, or, without a Message-ID,
    by the same bytes (fetched only for target messages of the same size and no Message-ID).
    """

    def __init__(self, target: ImapTarget) -> None:
        self._target = target
        self._by_id: dict[tuple[str, int], list[int]] = {}
        self._by_size: dict[int, list[int]] = {}  # no Message-ID
        self._hashes: dict[int, str] = {}

    def load(self, journaled: set[int]) -> None:
        for uid, mid, size in self._target.existing_keys():
            if uid in journaled:
                continue
            if mid:
                self._by_id.setdefault((mid, size), []).append(uid)
            else:
                self._by_size.setdefault(size, []).append(uid)

    def __bool__(self) -> bool:
        return bool(self._by_id) or bool(self._by_size)

    def take(self, raw: bytes, blob: str) -> int | None:
        """The UID of a matching target message (then no longer available), or None."""
        mid = message_id(header_block(raw))
        if mid:
            uids = self._by_id.get((mid, len(raw)))
            return uids.pop() if uids else None
        candidates = self._by_size.get(len(raw))
        if not candidates:
            return None
        unknown = [u for u in candidates if u not in self._hashes]
        if unknown:
            for uid, body in self._target.bodies(unknown).items():
                self._hashes[uid] = hashlib.sha256(body).hexdigest()
        for uid in candidates:
            if self._hashes.get(uid) == blob:
                candidates.remove(uid)
                return uid
        return None
