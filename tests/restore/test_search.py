"""Find and recover against a real Dovecot: ``restore --search``, ``export --search`` and ``diff``.

The expected answers come from the server itself (the independent imapclient reader) and from
what the test did to the account, never from mailvault's index.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from tests.common import mv_json
from tests.restore.helpers import (
    Account,
    Msg,
    assert_same,
    backup,
    counts,
    make_message,
    random_date,
    read_account,
    restore,
)
from tests.servers.dovecot import SeedMessage

FOLDERS = {"INBOX": (8, 12), "Projects/2019": (5, 9), "Archive": (0, 6)}  # (alpha, other) messages


def _seed(account: Account) -> None:
    """Messages whose subject says "alpha" (the ones searched for) and others, with flags and dates."""
    rng = random.Random(10)
    flag_pool = ["\\Seen", "\\Answered", "\\Flagged", "$Forwarded", "Work"]
    layout: dict[str, list[SeedMessage]] = {}
    for f, (alpha, other) in FOLDERS.items():
        msgs: list[SeedMessage] = []
        for i in range(alpha + other):
            tag = f"alpha-{f}" if i < alpha else f"omega-{f}"
            flags = [x for x in flag_pool if rng.random() < 0.4]
            msgs.append((make_message(i, rng, tag=tag), flags, random_date(rng)))
        layout[f] = msgs
    account.seed(layout)


def _alpha(bag: Counter[Msg]) -> Counter[Msg]:
    return Counter({m: n for m, n in bag.items() if b"alpha-" in m[0].split(b"\r\n\r\n", 1)[0]})


def test_restore_search_puts_exactly_the_matches_into_an_empty_account(
    source: Account, target: Account, vault: Path
) -> None:
    _seed(source)
    backup(vault, source)
    want = {f: _alpha(bag) for f, bag in read_account(source, FOLDERS).items()}
    n_alpha = sum(a for a, _ in FOLDERS.values())
    assert sum(sum(b.values()) for b in want.values()) == n_alpha

    plan = restore(vault, target, "--search", "subject:alpha", "--dry-run")
    assert plan["dry_run"] and plan["messages"] == n_alpha and plan["uploaded"] == 0
    assert {p["source"]: p["messages"] for p in plan["folders"]} == {
        f: a for f, (a, _) in FOLDERS.items() if a
    }
    assert sum(counts(target).values()) == 0

    r = restore(vault, target, "--search", "subject:alpha")
    assert r["uploaded"] == n_alpha and r["failures"] == [], r
    got = read_account(target)
    for folder in FOLDERS:
        if want[folder]:
            assert_same(want[folder], got[folder], folder)  # bytes, flags and INTERNALDATE
        else:
            assert folder not in got or not got[folder]  # no match there: not even created
    assert sum(sum(b.values()) for b in got.values()) == n_alpha

    again = restore(vault, target, "--search", "subject:alpha")
    assert again["uploaded"] == 0, again

    # --into: every match into one folder
    r = restore(vault, target, "--search", "subject:alpha -in:INBOX", "--into", "Found")
    found = read_account(target, ["Found"])["Found"]
    assert found == want["Projects/2019"] + want["Archive"]
    assert r["uploaded"] == sum(want["Projects/2019"].values())


def test_export_search_writes_exactly_the_matches(source: Account, vault: Path, tmp_path: Path) -> None:
    _seed(source)
    backup(vault, source)
    want = Counter()
    for bag in read_account(source, FOLDERS).values():
        for (body, _flags, _date), n in _alpha(bag).items():
            want[hashlib.sha256(body).hexdigest()] += n
    dest = tmp_path / "out"
    r = mv_json(
        "export", vault, "latest", dest, "--account", source.account_name, "--search", "subject:alpha"
    )
    assert r["messages"] == sum(want.values())
    files = [p for p in dest.rglob("*") if p.is_file() and p.parent.name in ("cur", "new")]
    assert Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in files) == want


def test_diff_lists_exactly_the_deleted_and_the_flagged(source: Account, vault: Path) -> None:
    _seed(source)
    first = backup(vault, source)
    listing = mv_json("ls", vault, first["snapshot"], "--account", source.account_name)
    by_folder: dict[str, list[dict[str, object]]] = {}
    for m in listing:
        by_folder.setdefault(str(m["folder"]), []).append(m)
    deleted = {"INBOX": by_folder["INBOX"][:3], "Archive": by_folder["Archive"][:2]}
    unflagged = [
        m for m in by_folder["INBOX"][3:] + by_folder["Projects/2019"] if "\\Flagged" not in m["flags"]
    ]
    flagged = unflagged[:3]
    assert len(flagged) == 3

    client = source.server.imap_client(source.user)
    try:
        for folder, msgs in deleted.items():
            client.select_folder(folder)
            client.delete_messages([int(m["uid"]) for m in msgs])  # type: ignore[call-overload]
            client.expunge()
        for m in flagged:
            client.select_folder(str(m["folder"]))
            client.add_flags([int(m["uid"])], [b"\\Flagged"])  # type: ignore[call-overload]
    finally:
        client.logout()
    second = backup(vault, source)

    d = mv_json("diff", vault, first["snapshot"], second["snapshot"])
    assert (d["added"], d["removed"], d["flags_changed"]) == (0, 5, 3), json.dumps(d)[:2000]
    removed = {(f["folder"], m["blob"]) for f in d["folders"] for m in f["removed"]}
    assert removed == {(f, m["blob"]) for f, msgs in deleted.items() for m in msgs}
    changed = {(f["folder"], c["blob"]): c for f in d["folders"] for c in f["flags_changed"]}
    assert set(changed) == {(m["folder"], m["blob"]) for m in flagged}
    for m in flagged:
        c = changed[(m["folder"], m["blob"])]
        assert c["before"] == sorted(m["flags"]) and c["after"] == sorted([*m["flags"], "\\Flagged"])

    # The same story told by search: gone:yes = the five deleted, is:flagged grew by three.
    gone = mv_json("search", vault, "gone:yes")
    assert {(h["folder"], h["blob"]) for h in gone} == removed
    assert {h["snapshot"] for h in gone} == {first["snapshot"]}
    flagged_now = {(h["folder"], h["blob"]) for h in mv_json("search", vault, "is:flagged")}
    assert {(m["folder"], m["blob"]) for m in flagged} <= flagged_now
