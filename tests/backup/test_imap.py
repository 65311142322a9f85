"""``mailvault backup`` of IMAP accounts against a real Dovecot: content, metadata, incremental runs."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests.backup.helpers import (
    Account,
    backup,
    backup_proc,
    by_key,
    cli_json,
    folder_state,
    ls,
    make_message,
    open_vault,
    random_date,
    server_flags,
    server_messages,
    stats,
)
from tests.common import sha
from tests.servers.dovecot import GMAIL_FOLDERS, SPECIAL_FOLDERS, Dovecot, SeedMessage

FOLDERS = ["INBOX", "Entwürfe", "Projects/2002/Q1 & Q2", "日本語", "Sent"]
RAW_NAMES = {
    "INBOX": "INBOX",
    "Entwürfe": "Entw&APw-rfe",
    "Projects/2002/Q1 & Q2": "Projects/2002/Q1 &- Q2",
    "日本語": "&ZeVnLIqe-",
    "Sent": "Sent",
}
FLAG_POOL = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "$Forwarded", "$label1", "Work"]


def _seed_set(count: int, rng: random.Random, tag: str) -> list[SeedMessage]:
    out: list[SeedMessage] = []
    for i in range(count):
        flags = [f for f in FLAG_POOL if rng.random() < (0.6 if f == "\\Seen" else 0.25)]
        out.append((make_message(i, rng, tag=tag), flags, random_date(rng)))
    return out


def _seed_account(
    account: Account, per_folder: dict[str, int], seed: int = 1
) -> dict[str, list[SeedMessage]]:
    rng = random.Random(seed)
    seeded = {}
    for n, (folder, count) in enumerate(per_folder.items()):
        msgs = _seed_set(count, rng, tag=f"f{n}-")
        account.server.seed(account.user, folder, msgs)
        seeded[folder] = msgs
    return seeded


def _assert_snapshot_matches_server(rows: list[dict], account: Account, folders: list[str]) -> None:
    """Every message the server holds is listed with the served bytes' hash, its flags and INTERNALDATE."""
    listed = by_key(rows)
    expected_keys = set()
    for folder in folders:
        for uid, m in server_messages(account, folder).items():
            expected_keys.add((folder, uid))
            row = listed.get((folder, uid))
            assert row is not None, f"{folder} UID {uid} missing from the snapshot"
            assert row["blob"] == sha(m.body), (folder, uid)
            assert row["size"] == len(m.body)
            assert frozenset(row["flags"]) == m.flags, (folder, uid)
            stored = datetime.fromisoformat(row["internaldate"])
            assert stored == m.internaldate, (folder, uid, row["internaldate"], m.internaldate)
            assert stored.utcoffset() == m.internaldate.utcoffset(), (row["internaldate"], m.internaldate)
    assert set(listed) == expected_keys


def test_imaps_backup_is_exact_and_leaves_the_server_unchanged(
    dovecot: Dovecot, account: Account, vault: Path
) -> None:
    seeded = _seed_account(account, {"INBOX": 60, "Entwürfe": 30, "Projects/2002/Q1 & Q2": 40, "日本語": 30,
                                     "Sent": 40})  # fmt: skip
    before = server_flags(account, FOLDERS)
    unseen = [k for k, f in before.items() if "\\Seen" not in f]
    assert len(unseen) > 20, "the seed set must hold unseen messages"
    assert {"$Forwarded", "$label1", "Work", "\\Answered", "\\Flagged"} <= set().union(*before.values())

    proc = backup_proc(vault, account, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["exit_code"] == 0
    assert result["messages"] == 200
    assert result["messages_fetched"] == 200
    assert result["new_messages"] == 200
    assert result["failures"] == []
    assert result["account"] == account.account_name

    rows = ls(vault, "latest", account.account_name)
    assert len(rows) == 200
    _assert_snapshot_matches_server(rows, account, FOLDERS)
    # What the server serves is what seed() predicts; and folder names come out decoded.
    for folder, msgs in seeded.items():
        served = Counter(sha(Dovecot.served_form(raw)) for raw, _, _ in msgs)
        assert Counter(r["blob"] for r in rows if r["folder"] == folder) == served
    assert {r["folder"] for r in rows} == set(FOLDERS)
    assert {r["folder"]: r["folder_raw"] for r in rows} == RAW_NAMES

    # The stored bytes read back equal to what the server serves.
    by_blob = {sha(m.body): m.body for f in FOLDERS for m in server_messages(account, f).values()}
    with open_vault(vault) as repo:
        snap = repo.latest_snapshot(account.account_name)
        assert snap is not None
        n = 0
        for _, entry, raw in repo.iter_messages(snap):
            assert raw == by_blob[entry.blob]
            n += 1
        assert n == 200
        # every selectable folder is in the snapshot, empty special-use ones included
        assert {f.name: f.special_use for f in snap.folders} == {
            **{f: None for f in FOLDERS},
            **SPECIAL_FOLDERS,
        }

    # EXAMINE + BODY.PEEK[]: no flag changed on the server, \Seen least of all.
    assert server_flags(account, FOLDERS) == before
    assert cli_json("check", vault, "--read-data")["ok"] is True


def test_incremental_runs(dovecot: Dovecot, account: Account, vault: Path) -> None:
    folders = ["INBOX", "Work/Reports", "Entwürfe"]
    seeded = _seed_account(account, {"INBOX": 20, "Work/Reports": 15, "Entwürfe": 10}, seed=2)
    all_folders = len(folders) + len(SPECIAL_FOLDERS)

    first = backup(vault, account)
    assert first["messages_fetched"] == 45
    assert first["folders"] == all_folders
    snap1 = first["snapshot"]

    # 1. nothing changed: no message fetched, every folder takes the fast path
    second = backup(vault, account)
    assert second["messages_fetched"] == 0
    assert second["bytes_fetched"] == 0
    assert second["new_messages"] == 0
    assert second["folders_unchanged"] == all_folders
    assert second["messages"] == 45
    assert ls(vault, second["snapshot"]) == ls(vault, snap1)

    # 2. one new message: exactly one fetched
    rng = random.Random(99)
    new_raw = make_message(1000, rng, tag="new-")
    (new_uid,) = dovecot.seed(
        account.user, "INBOX", [(new_raw, ["\\Flagged"], datetime(2020, 2, 29, tzinfo=UTC))]
    )
    third = backup(vault, account)
    assert third["messages_fetched"] == 1
    assert third["new_messages"] == 1
    assert third["folders_unchanged"] == all_folders - 1
    rows = by_key(ls(vault, third["snapshot"]))
    assert rows[("INBOX", new_uid)]["blob"] == sha(Dovecot.served_form(new_raw))
    assert rows[("INBOX", new_uid)]["flags"] == ["\\Flagged"]
    assert len(rows) == 46

    # 3. flags changed on the server: the new snapshot has them, no body is fetched
    client = dovecot.imap_client(account.user)
    try:
        client.select_folder("INBOX")
        client.add_flags([1, 2, 3], ["\\Flagged", "Urgent"])
        client.remove_flags([4, 5, 6, 7], ["\\Seen", "$label1", "Work"])
        client.set_flags([new_uid], ["\\Answered", "$Forwarded"])
        client.select_folder("Work/Reports")
        client.add_flags([1], ["Reviewed"])
    finally:
        client.logout()
    fourth = backup(vault, account)
    assert fourth["messages_fetched"] == 0
    assert fourth["bytes_fetched"] == 0
    assert fourth["new_messages"] == 0
    assert fourth["folders_unchanged"] == all_folders - 2
    rows4 = ls(vault, fourth["snapshot"])
    _assert_snapshot_matches_server(rows4, account, folders)
    assert by_key(rows4)[("INBOX", 1)]["flags"] != rows[("INBOX", 1)]["flags"]

    # 4. an expunged message drops out of the new snapshot; the old snapshot keeps it
    gone = 5
    gone_blob = by_key(rows4)[("INBOX", gone)]["blob"]
    client = dovecot.imap_client(account.user)
    try:
        client.select_folder("INBOX")
        client.add_flags([gone], ["\\Deleted"])
        client.expunge()
    finally:
        client.logout()
    fifth = backup(vault, account)
    assert fifth["messages_fetched"] == 0
    assert fifth["messages"] == 45
    rows5 = by_key(ls(vault, fifth["snapshot"]))
    assert ("INBOX", gone) not in rows5
    assert gone_blob not in {r["blob"] for r in rows5.values()}
    assert by_key(ls(vault, fourth["snapshot"]))[("INBOX", gone)]["blob"] == gone_blob
    assert by_key(ls(vault, snap1))[("INBOX", gone)]["blob"] == gone_blob
    _assert_snapshot_matches_server(list(rows5.values()), account, folders)

    # 5. UIDVALIDITY change (folder deleted and recreated with the same mail): re-fetched, no new blob
    blobs_before = stats(vault)["unique_blobs"]
    assert blobs_before == 46
    old_validity = folder_state(account, "Work/Reports")[b"UIDVALIDITY"]
    old_blobs = Counter(r["blob"] for r in rows5.values() if r["folder"] == "Work/Reports")
    client = dovecot.imap_client(account.user)
    try:
        client.delete_folder("Work/Reports")
    finally:
        client.logout()
    dovecot.seed(account.user, "Work/Reports", seeded["Work/Reports"])
    assert folder_state(account, "Work/Reports")[b"UIDVALIDITY"] != old_validity
    sixth = backup(vault, account)
    assert sixth["messages_fetched"] == 15
    assert sixth["new_messages"] == 0
    assert sixth["folders_unchanged"] == all_folders - 1
    assert stats(vault)["unique_blobs"] == blobs_before
    rows6 = ls(vault, sixth["snapshot"])
    assert Counter(r["blob"] for r in rows6 if r["folder"] == "Work/Reports") == old_blobs
    _assert_snapshot_matches_server(rows6, account, folders)
    with open_vault(vault) as repo:
        snap = repo.resolve_snapshot(sixth["snapshot"])
        (work,) = [f for f in snap.folders if f.name == "Work/Reports"]
        assert work.uidvalidity == folder_state(account, "Work/Reports")[b"UIDVALIDITY"]

    # 6. all at once in one folder: an expunge, a new message and a flag change
    extra = make_message(2000, rng, crlf=True, tag="new-")
    client = dovecot.imap_client(account.user)
    try:
        client.select_folder("INBOX")
        client.add_flags([1], ["\\Deleted"])
        client.expunge()
        client.add_flags([2], ["Later"])
        client.append("INBOX", extra, ["\\Draft"], datetime(2019, 1, 2, 3, 4, 5, tzinfo=UTC))
    finally:
        client.logout()
    seventh = backup(vault, account)
    assert seventh["messages_fetched"] == 1
    assert seventh["messages"] == 45
    rows7 = ls(vault, seventh["snapshot"])
    _assert_snapshot_matches_server(rows7, account, folders)
    assert sha(extra) in {r["blob"] for r in rows7}  # APPENDed with CRLF: served as is

    # 7. a folder deleted on the server leaves the new snapshot; the old ones keep it
    client = dovecot.imap_client(account.user)
    try:
        client.delete_folder("Entwürfe")
    finally:
        client.logout()
    eighth = backup(vault, account)
    assert eighth["folders"] == all_folders - 1
    assert "Entwürfe" not in {r["folder"] for r in ls(vault, eighth["snapshot"])}
    assert sum(r["folder"] == "Entwürfe" for r in ls(vault, seventh["snapshot"])) == 10


def test_gmail_like_account(dovecot: Dovecot, gmail_account: Account, vault: Path) -> None:
    rng = random.Random(7)
    msgs = [
        (make_message(i, rng, tag="gm-"), ["\\Seen"] if i % 2 else [], random_date(rng)) for i in range(8)
    ]
    dovecot.seed(gmail_account.user, "INBOX", msgs[:5])
    dovecot.seed(gmail_account.user, "[Gmail]/All Mail", msgs)
    dovecot.seed(gmail_account.user, "[Gmail]/Sent Mail", msgs[6:])
    dovecot.seed(gmail_account.user, "[Gmail]/Starred", msgs[:1])

    result = backup(vault, gmail_account)
    assert result["messages"] == 5 + 8 + 2 + 1
    assert result["new_messages"] == 8
    assert stats(vault)["unique_blobs"] == 8  # the same message in several folders is stored once

    listed = cli_json("snapshots", vault, "--account", gmail_account.account_name)
    assert [s["id"] for s in listed] == [result["snapshot"]]
    assert listed[0]["folders"] == 1 + len(GMAIL_FOLDERS)
    assert listed[0]["messages"] == 16
    assert listed[0]["source"] == {"kind": "imap", "address": gmail_account.url()}
    with open_vault(vault) as repo:
        snap = repo.resolve_snapshot(result["snapshot"])
        specials = {f.name: f.special_use for f in snap.folders}
        counts = {f.name: f.messages for f in snap.folders}
    assert specials == {"INBOX": None, **GMAIL_FOLDERS}  # "[Gmail]" itself is \Noselect: not a folder
    assert counts["[Gmail]/All Mail"] == 8
    assert counts["[Gmail]/Sent Mail"] == 2
    rows = ls(vault, result["snapshot"])
    inbox = {r["blob"] for r in rows if r["folder"] == "INBOX"}
    all_mail = {r["blob"] for r in rows if r["folder"] == "[Gmail]/All Mail"}
    assert inbox < all_mail
    assert all_mail == {sha(Dovecot.served_form(raw)) for raw, _, _ in msgs}


def test_folder_globs(dovecot: Dovecot, account: Account, vault: Path) -> None:
    rng = random.Random(5)
    layout = ["INBOX", "Projects/2002/Q1 & Q2", "Projects/2003", "Archive/2001", "日本語", "Entwürfe"]
    for n, folder in enumerate(layout):
        msgs = [(make_message(i, rng, tag=f"g{n}-"), [], random_date(rng)) for i in range(n + 1)]
        dovecot.seed(account.user, folder, msgs)

    def folders_of(result: dict) -> set[str]:
        """The snapshot's folders (empty ones included), checked against the folders ls shows."""
        with open_vault(vault) as repo:
            names = {f.name for f in repo.resolve_snapshot(result["snapshot"]).folders}
        assert {r["folder"] for r in ls(vault, result["snapshot"])} <= names
        return names

    # several --folder globs (on decoded names), minus an --exclude-folder glob
    r1 = backup(vault, account, "--folder", "INBOX", "--folder", "Projects/*", "--folder", "日本*",
                "--exclude-folder", "*Q1*")  # fmt: skip
    assert folders_of(r1) == {"INBOX", "Projects/2003", "日本語"}
    assert r1["messages"] == 1 + 3 + 5
    assert r1["folders"] == 3

    # only exclusions: everything else, the empty special-use folders included
    r2 = backup(vault, account, "--exclude-folder", "Projects/*", "--exclude-folder", "Trash",
                "--exclude-folder", "Entw?rfe")  # fmt: skip
    assert folders_of(r2) == {"INBOX", "Archive/2001", "日本語"} | set(SPECIAL_FOLDERS) - {"Trash"}
    assert r2["messages"] == 1 + 4 + 5

    # globs are case-sensitive and '/' is matched by '*'
    r3 = backup(vault, account, "--folder", "projects/*", "--folder", "*/2001")
    assert folders_of(r3) == {"Archive/2001"}
    assert r3["messages_fetched"] == 0  # Archive/2001 unchanged since the last run


def test_awkward_folder_names(dovecot: Dovecot, account: Account, vault: Path) -> None:
    names = ['Quote"d', "Back\\slash", "100% sure", "[brackets]", "with.dot", "~tilde", "a*b", " lead space",
             "Ünïcödé & more", "emoji 😀", "Deep/er/and/deeper"]  # fmt: skip
    client = dovecot.imap_client(account.user)
    try:
        for n in names:
            client.create_folder(n)
            client.append(
                n, f"Subject: {n}\r\n\r\nbody of {n}\r\n".encode(), [], datetime(2010, 1, 1, tzinfo=UTC)
            )
    finally:
        client.logout()
    result = backup(vault, account)
    assert result["messages"] == len(names)
    rows = ls(vault, result["snapshot"])
    assert {r["folder"] for r in rows} == set(names)
    for r in rows:
        assert r["blob"] == sha(f"Subject: {r['folder']}\r\n\r\nbody of {r['folder']}\r\n".encode())
    # the second run finds every one of them unchanged (the raw names round-trip through EXAMINE)
    again = backup(vault, account)
    assert again["messages_fetched"] == 0
    assert again["folders_unchanged"] == again["folders"]


def test_message_bigger_than_a_fetch_batch(dovecot: Dovecot, account: Account, vault: Path) -> None:
    rng = random.Random(12)
    big = make_message(0, rng, size=9 << 20, crlf=True, tag="big-")  # > the 8 MiB FETCH batch
    small = [make_message(i, rng, tag="small-") for i in range(1, 4)]
    when = datetime(2018, 8, 8, tzinfo=UTC)
    dovecot.seed(
        account.user, "INBOX", [(small[0], [], when), (big, [], when), *[(m, [], when) for m in small[1:]]]
    )
    result = backup(vault, account)
    assert result["messages"] == 4
    assert result["failures"] == []
    blobs = {r["blob"] for r in ls(vault, result["snapshot"])}
    assert blobs == {sha(Dovecot.served_form(m)) for m in [big, *small]}


def test_recent_is_not_a_stored_flag(dovecot: Dovecot, account: Account, vault: Path) -> None:
    rng = random.Random(13)
    raws = [make_message(i, rng, tag="recent-") for i in range(3)]
    dovecot.seed(account.user, "INBOX", [(r, ["\\Seen"] if i else [], random_date(rng)) for i, r in enumerate(raws)],
                 clear_recent=False)  # fmt: skip
    first = backup(vault, account)
    client = dovecot.imap_client(account.user)
    try:
        client.select_folder("INBOX")  # this session takes the \Recent flags
    finally:
        client.logout()
    second = backup(vault, account)
    for snap in (first, second):
        rows = ls(vault, snap["snapshot"])
        assert all("\\Recent" not in r["flags"] for r in rows), [r["flags"] for r in rows]
    _assert_snapshot_matches_server(ls(vault, second["snapshot"]), account, ["INBOX"])


def test_parallel_connections_give_the_same_snapshot(dovecot: Dovecot, account: Account, vault: Path) -> None:
    """--connections 3 spreads folders over three connections: the same folders and manifests."""
    rng = random.Random(21)
    for folder, n in (("INBOX", 40), ("Work", 30), ("Old/2001", 20)):
        dovecot.seed(account.user, folder, [(make_message(i, rng), [], random_date(rng)) for i in range(n)])
    one = backup(vault, account)
    three = backup(vault, account, "--connections", "3", "--account", "parallel")
    assert one["messages"] == three["messages"] == 90
    assert three["messages_fetched"] == 0 or three["new_messages"] == 0  # all blobs already stored
    with open_vault(vault) as repo:
        a = repo.resolve_snapshot(one["snapshot"])
        b = repo.resolve_snapshot(three["snapshot"])
        assert [f.name for f in a.folders] == [f.name for f in b.folders]
        assert [f.manifest for f in a.folders] == [f.manifest for f in b.folders]
