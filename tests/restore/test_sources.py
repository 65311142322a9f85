"""Restoring snapshots of other origins (POP3), and ``mailvault migrate`` (backup + restore, rerun to catch up)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from tests.restore.helpers import (
    PW_ENV,
    SOURCE_PW_ENV,
    Account,
    assert_same,
    backup,
    bodies,
    counts,
    make_message,
    mv_json,
    read_account,
    restore,
    seed_set,
)

ALICE_LAYOUT = {"INBOX": 40, "Entwürfe": 10, "Projects/2002/Q1 & Q2": 15, "日本語": 8, "Sent": 12}


def test_pop3_snapshot_restores_into_inbox_with_the_received_date(
    source: Account, target: Account, vault: Path
) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    expected: dict[bytes, datetime] = {}  # the seeded raw bytes -> the INTERNALDATE the restore must set
    seeded = []
    for i in range(12):
        received = datetime(2003, 1 + i, 3 + i, 10, 20, 30, tzinfo=timezone(timedelta(hours=-5 + i)))
        date = received - timedelta(minutes=7)
        if i % 3 == 2:  # no Received header: the Date header decides
            raw = make_message(i, rng, tag="pop-", date=date)
            expected[raw] = date
        else:
            raw = make_message(i, rng, tag="pop-", date=date, received=received)
            expected[raw] = received
        # The source's own INTERNALDATE (file mtime) is recent: POP3 cannot see it anyway.
        seeded.append((raw, ["\\Seen"] if i % 2 else [], now - timedelta(hours=i)))
    source.seed({"INBOX": seeded})

    b = backup(vault, source, scheme="pop3s")
    assert b["messages"] == 12
    r = restore(vault, target)
    assert r["uploaded"] == 12 and r["failures"] == [] and r["warnings"] == [], r
    assert [(p["source"], p["target"]) for p in r["folders"]] == [("INBOX", "INBOX")]

    got = read_account(target)["INBOX"]
    want_bodies = bodies(read_account(source, ["INBOX"])["INBOX"])
    assert bodies(got) == want_bodies
    # The seeded messages are CRLF already, so the served bytes are the seeded bytes.
    assert set(want_bodies) == set(expected)
    for body, flags, internaldate in got:
        assert internaldate == expected[body], (body[:120], internaldate, expected[body])
        assert flags == (), flags  # POP3 has no flags to restore
    assert sum(counts(target).values()) == 12


def _migrate(source: Account, target: Account, vault: Path, *extra: str) -> dict:
    return dict(
        mv_json(
            "migrate", source.url(), target.url(), "--vault", vault,
            "--source-password-env", SOURCE_PW_ENV, "--target-password-env", PW_ENV,
            "--ca-file", source.server.ca_file, "--quiet", *extra,
            env={SOURCE_PW_ENV: source.password, PW_ENV: target.password},
        )
    )  # fmt: skip


def test_migrate_then_catch_up_appends_exactly_the_new_messages(
    source: Account, target: Account, vault: Path
) -> None:
    rng = random.Random(8)
    source.seed({f: seed_set(n, rng, tag=f"m{i}-") for i, (f, n) in enumerate(ALICE_LAYOUT.items())})
    total = sum(ALICE_LAYOUT.values())

    first = _migrate(source, target, vault)
    assert first["exit_code"] == 0
    assert first["backup"]["messages"] == total
    assert first["restore"]["uploaded"] == total and first["restore"]["failures"] == []
    want = read_account(source)
    got = read_account(target)
    assert set(got) == set(want)
    for folder in want:
        assert_same(want[folder], got[folder], folder)
    before = counts(target)

    new = {"INBOX": seed_set(6, rng, tag="new-inbox-"), "日本語": seed_set(4, rng, tag="new-jp-")}
    source.seed(new)
    second = _migrate(source, target, vault)
    assert second["exit_code"] == 0
    assert second["restore"]["uploaded"] == 10, second["restore"]
    assert second["restore"]["skipped_existing"] == 0
    after = counts(target)
    assert sum(after.values()) == sum(before.values()) + 10
    assert after["INBOX"] == before["INBOX"] + 6 and after["日本語"] == before["日本語"] + 4
    want = read_account(source)
    got = read_account(target)
    for folder in want:
        assert_same(want[folder], got[folder], folder)
    # A third run has nothing to do.
    assert _migrate(source, target, vault)["restore"]["uploaded"] == 0


def test_catch_up_keeps_a_second_identical_copy_when_the_target_also_got_new_mail(
    source: Account, make_account: Callable[..., Account], vault: Path
) -> None:
    """A migration rerun while the new server already receives mail (the usual MX switch-over).

    The source gains a byte-identical second copy of a message that is already restored, and the target
    gains an unrelated message of its own. The rerun must upload the second copy: the source folder then
    holds it twice, so the restored folder must too.
    """
    target = make_account()
    rng = random.Random(9)
    msgs = seed_set(5, rng, tag="dup-")
    source.seed({"INBOX": msgs})
    _migrate(source, target, vault)

    target.server.seed(target.user, "INBOX", seed_set(1, rng, tag="arrived-at-target-"))
    source.seed({"INBOX": [msgs[2]]})  # the same bytes, flags and date once more
    second = _migrate(source, target, vault)

    want = read_account(source, ["INBOX"])["INBOX"]
    got = read_account(target, ["INBOX"])["INBOX"]
    assert max(want.values()) == 2
    missing = sum((want - got).values())
    assert missing == 0, (
        f"{missing} source message(s) missing on the target after the rerun "
        f"(restore: uploaded={second['restore']['uploaded']}, "
        f"skipped_existing={second['restore']['skipped_existing']})"
    )
    assert sum(got.values()) == sum(want.values()) + 1


def test_imported_messages_without_a_date_restore_without_spurious_warnings(
    target: Account, vault: Path, tmp_path: Path
) -> None:
    """A message with neither Received nor Date takes its file's mtime; IMAP dates have whole seconds."""
    rng = random.Random(10)
    tree = tmp_path / "eml"
    tree.mkdir()
    mtime = datetime(2012, 3, 4, 5, 6, 7, 891011, tzinfo=UTC).timestamp()
    for i in range(3):
        raw = make_message(i, rng, tag="nodate-").replace(b"\r\nDate: ", b"\r\nX-Old-Date: ")
        path = tree / f"{i}.eml"
        path.write_bytes(raw)
        os.utime(path, (mtime, mtime))
    mv_json("import", vault, tree, "--account", "local", "--format", "eml")

    r = restore(vault, target)
    assert r["uploaded"] == 3
    got = read_account(target, ["INBOX"])["INBOX"]
    assert {d for _, _, d in got} == {datetime(2012, 3, 4, 5, 6, 7, tzinfo=UTC)}
    assert r["warnings"] == [], r["warnings"]
