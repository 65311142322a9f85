"""Restore over several connections (a big, empty target folder split in parts) gives exactly the
account a one-connection restore gives: same messages, flags and INTERNALDATEs, byte for byte.

(An interrupted split restore resuming without duplicates is tests/restore/test_resume.py: its
1,500-message folder is split by the default ``--connections auto``.)"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from tests.restore.helpers import (
    Account,
    assert_same,
    backup,
    counts,
    make_message,
    read_account,
    restore,
    seed_set,
)
from tests.servers.dovecot import SeedMessage


def test_split_restore_equals_one_connection_restore(
    source: Account, make_account: Callable[..., Account], vault: Path
) -> None:
    rng = random.Random(12)
    big = seed_set(700, rng, tag="big-")
    # Byte-identical copies in one folder (told apart by their position, not by their bytes)
    # and messages without a Message-ID: parts must keep every copy.
    twin = make_message(9999, rng, tag="twin-")
    no_id = [
        (f"From: a@example.org\r\nSubject: no id {i}\r\n\r\nbody {i % 3}\r\n".encode(), ["\\Seen"], big[i][2])
        for i in range(20)
    ]
    extra: list[SeedMessage] = [(twin, ["\\Flagged"], big[0][2]), (twin, [], big[1][2]), *no_id]
    source.seed({"INBOX": big[:350] + extra + big[350:], "Lists/small": seed_set(40, rng, tag="s-")})
    backup(vault, source)
    want = read_account(source, ["INBOX", "Lists/small"])

    one, four = make_account(), make_account()
    r1 = restore(vault, one, "--connections", "1")
    r4 = restore(vault, four, "--connections", "4")
    assert r1["failures"] == r4["failures"] == []
    assert r1["uploaded"] == r4["uploaded"] == 700 + len(extra) + 40
    parts = {f["target"]: f["parts"] for f in r4["folders"]}
    assert parts["INBOX"] > 1, parts  # really split
    assert {f["target"]: f["parts"] for f in r1["folders"]}["INBOX"] == 1

    got1 = read_account(one, ["INBOX", "Lists/small"])
    got4 = read_account(four, ["INBOX", "Lists/small"])
    for folder in want:
        assert_same(want[folder], got1[folder], f"{folder}, one connection")
        assert_same(want[folder], got4[folder], f"{folder}, four connections")

    # A rerun finds everything in the journal: nothing is uploaded, nothing doubles.
    again = restore(vault, four, "--connections", "4")
    assert again["uploaded"] == 0 and again["already_there"] == again["messages"]
    assert counts(four)["INBOX"] == 350 + len(extra) + 350
