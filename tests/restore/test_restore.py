"""``mailvault restore`` into a real Dovecot over IMAPS: exactness, idempotence, plans and folder mapping.

Every comparison goes through :func:`~tests.restore.helpers.read_account`, a plain imapclient reader.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.restore.helpers import (
    Account,
    Msg,
    assert_same,
    backup,
    counts,
    list_folders,
    make_message,
    random_date,
    read_account,
    restore,
    seed_set,
)
from tests.servers.dovecot import GMAIL_FOLDERS, SPECIAL_FOLDERS

#: The awkward folders of the main scenario (UTF-7 names, hierarchy, '&', CJK) and their sizes.
LAYOUT = {"INBOX": 120, "Entwürfe": 40, "Projects/2002/Q1 & Q2": 60, "日本語": 40, "Sent": 40}


def _seed(account: Account, layout: dict[str, int], seed: int = 1) -> None:
    rng = random.Random(seed)
    account.seed(
        {folder: seed_set(n, rng, tag=f"{account.user}-{i}-") for i, (folder, n) in enumerate(layout.items())}
    )


def test_restore_into_empty_account_is_exact_and_idempotent(
    source: Account, target: Account, vault: Path
) -> None:
    _seed(source, LAYOUT)
    b = backup(vault, source)
    assert b["messages"] == sum(LAYOUT.values())

    r = restore(vault, target)
    assert r["uploaded"] == sum(LAYOUT.values()) == r["messages"]
    assert r["failures"] == [] and r["warnings"] == [], r
    assert not r["dry_run"]

    want = read_account(source)
    got = read_account(target)
    # The same folder set: both are ordinary users, so the auto-created special folders match too.
    assert set(got) == set(want), (sorted(got), sorted(want))
    assert set(SPECIAL_FOLDERS) <= set(got)
    for folder in want:
        assert_same(want[folder], got[folder], folder)
    assert {f for f, bag in want.items() if bag} == set(LAYOUT)
    # The custom keywords and $Forwarded made it (PERMANENTFLAGS has \*).
    all_flags = {f for bag in got.values() for (_, flags, _) in bag for f in flags}
    assert {"\\Seen", "\\Answered", "\\Flagged", "$Forwarded", "$label1", "Work", "project-x"} <= all_flags

    before = counts(target)
    again = restore(vault, target)
    assert again["uploaded"] == 0 and again["uploaded_bytes"] == 0, again
    assert again["failures"] == []
    assert counts(target) == before


def test_dry_run_changes_nothing_and_prints_the_plan(source: Account, target: Account, vault: Path) -> None:
    _seed(source, LAYOUT)
    backup(vault, source)
    want = read_account(source)
    before_folders = list_folders(target, selectable_only=False)  # the first login creates the specials
    assert sum(counts(target).values()) == 0

    plan = restore(vault, target, "--dry-run")
    assert plan["dry_run"] is True
    assert plan["uploaded"] == 0 and plan["failures"] == []
    assert list_folders(target, selectable_only=False) == before_folders
    assert sum(counts(target).values()) == 0

    by_source = {p["source"]: p for p in plan["folders"]}
    assert set(by_source) == set(want)
    for name, p in by_source.items():
        assert p["target"] == name
        assert p["messages"] == sum(want[name].values()), p
        assert p["bytes"] == sum(len(m[0]) * n for m, n in want[name].items()), p
        assert p["already"] == 0
        assert p["create"] is (name not in before_folders), p
    assert {n for n, p in by_source.items() if p["create"]} == {"Entwürfe", "Projects/2002/Q1 & Q2", "日本語"}
    assert plan["messages"] == sum(LAYOUT.values())
    assert plan["bytes"] == sum(len(m[0]) * n for bag in want.values() for m, n in bag.items())

    # The real run afterwards does what the plan said; a second plan has nothing left to do.
    done = restore(vault, target)
    assert done["uploaded"] == plan["messages"]
    replan = restore(vault, target, "--dry-run")
    assert all(not p["create"] and p["already"] == p["messages"] for p in replan["folders"]), replan[
        "folders"
    ]


def test_gmail_like_target_gets_sent_by_special_use(
    source: Account, gmail_target: Account, vault: Path
) -> None:
    _seed(source, {"Sent": 10, "INBOX": 12, "Work": 7, "Projects/Q1 & Q2": 5, "Entwürfe": 3})
    backup(vault, source)
    want = read_account(source)

    r = restore(vault, gmail_target)
    assert r["failures"] == [], r["failures"]
    assert r["uploaded"] == 37
    sent_plan = next(p for p in r["folders"] if p["source"] == "Sent")
    assert sent_plan["target"] == "[Gmail]/Sent Mail" and not sent_plan["create"], sent_plan

    got = read_account(gmail_target)
    assert "Sent" not in list_folders(gmail_target, selectable_only=False)
    assert_same(want["Sent"], got["[Gmail]/Sent Mail"], "Sent -> [Gmail]/Sent Mail")
    for folder in ("INBOX", "Work", "Projects/Q1 & Q2", "Entwürfe"):
        assert_same(want[folder], got[folder], folder)
    # The source's other special folders went to their [Gmail] counterparts; \Archive has none there.
    mapped = {p["source"]: p["target"] for p in r["folders"]}
    assert mapped["Drafts"] == "[Gmail]/Drafts"
    assert mapped["Trash"] == "[Gmail]/Trash"
    assert mapped["Junk"] == "[Gmail]/Spam"
    assert set(got) == set(GMAIL_FOLDERS) | {"INBOX", "Work", "Projects/Q1 & Q2", "Entwürfe", "Archive"}
    assert sum(sum(bag.values()) for bag in got.values()) == 37


def test_map_folder_glob_and_into(source: Account, make_account: Callable[..., Account], vault: Path) -> None:
    layout = {"INBOX": 6, "Work": 5, "Projects/A": 4, "Projects/B": 3}
    _seed(source, layout)
    backup(vault, source)
    want = read_account(source)

    # --folder GLOB selects; --map renames one of the selected folders (into a new hierarchy).
    t1 = make_account()
    r = restore(vault, t1, "--folder", "Projects/*", "--map", "Projects/A=Archive 2021/Alpha")
    assert sorted(p["source"] for p in r["folders"]) == ["Projects/A", "Projects/B"]
    assert r["uploaded"] == 7
    got = read_account(t1)
    assert_same(want["Projects/A"], got["Archive 2021/Alpha"], "--map")
    assert_same(want["Projects/B"], got["Projects/B"], "--folder")
    assert "Projects/A" not in got and "Work" not in got
    assert sum(got["INBOX"].values()) == 0

    # Several globs and maps at once; INBOX mapped away from INBOX.
    t2 = make_account()
    r = restore(
        vault, t2, "--folder", "INBOX", "--folder", "W*", "--map", "INBOX=Old Inbox", "--map", "Work=Job"
    )
    assert r["uploaded"] == 11
    got = read_account(t2)
    assert_same(want["INBOX"], got["Old Inbox"], "INBOX=Old Inbox")
    assert_same(want["Work"], got["Job"], "Work=Job")
    assert sum(got["INBOX"].values()) == 0 and "Work" not in got and "Projects/A" not in got

    # --into: every message of the snapshot in one folder, nothing else created.
    t3 = make_account()
    folders_before = set(list_folders(t3, selectable_only=False))
    r = restore(vault, t3, "--into", "Restored/Everything")
    assert r["uploaded"] == sum(layout.values())
    got = read_account(t3)
    union: Counter[Msg] = Counter()
    for bag in want.values():
        union += bag
    assert_same(union, got["Restored/Everything"], "--into")
    created = set(list_folders(t3, selectable_only=False)) - folders_before
    assert created <= {"Restored", "Restored/Everything"}, created
    assert all(not bag for name, bag in got.items() if name != "Restored/Everything")
    # A rerun of the same --into restore adds nothing.
    assert restore(vault, t3, "--into", "Restored/Everything")["uploaded"] == 0
    assert sum(counts(t3).values()) == sum(layout.values())


def test_byte_identical_messages_in_one_folder_are_both_restored(
    source: Account, target: Account, vault: Path
) -> None:
    rng = random.Random(6)
    twin = make_message(1, rng, tag="twin-")
    date = random_date(rng)
    others = seed_set(5, rng, tag="other-")
    source.seed({"INBOX": [(twin, ["\\Seen"], date), *others, (twin, ["\\Seen"], date)]})
    backup(vault, source)
    want = read_account(source, ["INBOX"])["INBOX"]
    assert max(want.values()) == 2  # the reader sees the twins as one element of multiplicity 2

    r = restore(vault, target)
    assert r["uploaded"] == 7
    got = read_account(target, ["INBOX"])["INBOX"]
    assert_same(want, got, "INBOX")
    assert restore(vault, target)["uploaded"] == 0
    assert counts(target)["INBOX"] == 7


def test_parallel_connections_restore_is_exact(source: Account, target: Account, vault: Path) -> None:
    """--connections 3 spreads the folders over three connections: same result, nothing twice."""
    _seed(source, LAYOUT, seed=7)
    backup(vault, source)
    r = restore(vault, target, "--connections", "3")
    assert r["uploaded"] == sum(LAYOUT.values()), r
    assert r["failures"] == [] and r["warnings"] == [], r
    want, got = read_account(source), read_account(target)
    for folder in LAYOUT:
        assert_same(want[folder], got[folder], folder)
    again = restore(vault, target, "--connections", "3")
    assert again["uploaded"] == 0, again
