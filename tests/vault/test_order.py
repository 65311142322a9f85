"""Messages go into compression blocks in Date order (mailvault/vault/order.py): the writer holds a
window of them back, sorts it, and only then packs it — ids, bytes and format unchanged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailvault.vault.format import sha256
from mailvault.vault.order import date_key
from mailvault.vault.repository import Repository
from tests.vault.helpers import make_message, write_snapshot

MakeRepo = Callable[..., Repository]


@pytest.mark.parametrize(
    ("head", "minutes_after_ref"),
    [
        (b"Date: Mon, 4 Mar 2002 10:07:00 +0100\r\n", 0),
        (b"date: 4 Mar 2002 10:07:59 -0700\r\n", 0),  # no weekday, lower case, seconds ignored
        (b"Date:Mon,  4 March 2002 10:08 +0000\r\n", 1),  # long month name, no seconds
        (b"Date: Mon, 04 Mar 02 11:07:00 GMT\r\n", 60),  # two-digit year
        (b"DATE: MON, 4 MAR 2002 10:09:00 +0100\r\n", 2),  # upper case, as some old mailers write
    ],
)
def test_date_key_reads_the_usual_forms(head: bytes, minutes_after_ref: int) -> None:
    ref = date_key(b"Date: Mon, 4 Mar 2002 10:07:00 +0100\r\n\r\nbody")
    assert ref is not None
    raw = b"Received: from x\r\n" + head + b"Subject: s\r\n\r\nbody\r\n"
    assert date_key(raw) == ref + minutes_after_ref
    assert date_key(head + b"\r\nbody") == ref + minutes_after_ref  # Date as the first line


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: no date\r\n\r\nbody\r\n",
        b"Date: yesterday, around noon\r\n\r\n",
        b"Date: 4 Foo 2002 10:07:00\r\n\r\n",
        b"",
        b"X" * 20000 + b"\r\nDate: 4 Mar 2002 10:07:00 +0000\r\n",  # past the first 16 KiB
    ],
)
def test_date_key_is_none_without_a_readable_date(raw: bytes) -> None:
    assert date_key(raw) is None


def _dated(i: int, day: int, *, seed: int = 0) -> bytes:
    raw = make_message(i, seed=seed)
    return raw.replace(b"Date: Mon, 4 Mar 2002", b"Date: Mon, %d Mar 2002" % day, 1)


def _block_order(repo: Repository, blobs: list[bytes]) -> list[bytes]:
    """``blobs`` as they lie in the packs: by pack, block and offset (here all in one pack)."""
    where = {}
    for b in blobs:
        loc = repo.locate(b)
        assert loc is not None
        where[b] = (loc.pack_id, loc.block_no, loc.offset)
    return sorted(blobs, key=where.__getitem__)


def test_messages_lie_in_date_order_across_folders_and_read_back_exact(make_repo: MakeRepo) -> None:
    repo = make_repo()
    # Two folders written one after the other; their dates interleave (and run backwards in INBOX).
    inbox = [_dated(i, 28 - 2 * i) for i in range(12)]
    sent = [_dated(100 + i, 5 + 2 * i, seed=1) for i in range(12)]
    undated = [b"Subject: undated %d\r\n\r\nno date here\r\n" % i for i in range(3)]
    write_snapshot(repo, {"INBOX": [undated[0], *inbox, undated[1]], "Sent": [*sent, undated[2]]})
    every = [*inbox, *sent, *undated]
    for raw in every:
        assert repo.read_blob(sha256(raw)) == raw
    by_date = sorted(inbox + sent, key=lambda r: date_key(r) or 0)
    ids = [sha256(r) for r in every]
    # Dated messages by Date, then the undated ones in the order they came.
    assert _block_order(repo, ids) == [sha256(r) for r in [*by_date, *undated]]


def test_held_back_messages_count_as_stored_and_a_full_window_is_packed(make_repo: MakeRepo) -> None:
    repo = make_repo()
    with repo.lock():
        writer = repo.writer()
        writer._window_limit = 30_000  # a small window: ~15 of these 2 kB messages
        msgs = [_dated(i, 1 + (i * 7) % 28) for i in range(40)]
        first_id, new = writer.add(msgs[0])
        assert new and writer.has(bytes.fromhex(first_id))
        assert writer.add(msgs[0]) == (first_id, False)  # held back, still deduplicated
        assert writer.packs_written == 0 and writer._window
        for raw in msgs[1:]:
            writer.add(raw)
        assert len(writer._window) < 20  # windows were handed on as they filled
        writer.flush()
        assert not writer._window
    for raw in msgs:
        assert repo.read_blob(sha256(raw)) == raw
