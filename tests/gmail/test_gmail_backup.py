"""Backing up (fake) Gmail: labels and ids recorded, each message downloaded and stored once
(All Mail and the label folders cost nothing extra), and a round trip into a second account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailvault.backup import BackupOptions, BackupResult, backup
from mailvault.cli import app
from mailvault.restore import RestoreOptions, restore
from mailvault.vault.repository import Repository
from tests.gmail.fakegmail import ALL_MAIL, FakeGmail, running
from tests.gmail.helpers import access, internaldate, make_message

INBOX_WORK, INBOX, SENT, ARCHIVED, STARRED_WORK, TRASHED, NONASCII = (
    make_message(100 + i, size=4000 + 500 * i, seed=7) for i in range(7)
)


def seed(g: FakeGmail) -> dict[bytes, int]:
    """Seven messages in typical Gmail places; returns raw -> X-GM-MSGID."""
    spec: list[tuple[bytes, tuple[str, ...], tuple[str, ...]]] = [
        (INBOX_WORK, ("\\Inbox", "Work", "\\Important"), ("\\Seen",)),
        (INBOX, ("\\Inbox",), ()),
        (SENT, ("\\Sent",), ("\\Seen",)),
        (ARCHIVED, (), ("\\Seen", "$Forwarded")),
        (STARRED_WORK, ("Work",), ("\\Seen", "\\Flagged")),
        (TRASHED, ("\\Trash",), ("\\Seen",)),
        (NONASCII, ("Projets/Re&AOc-us", "\\Inbox"), ()),
    ]
    return {
        raw: g.add_message(
            raw, labels, flags, internaldate(raw), thrid=4242 if raw in (INBOX, SENT) else None
        )
        for raw, labels, flags in spec
    }


def run_backup(repo: Repository, g: FakeGmail, **options: object) -> BackupResult:
    return backup(repo, *access(g), BackupOptions(account="me@gmail.com", **options))  # type: ignore[arg-type]


def ls_json(vault: Path, snapshot: str) -> list[dict[str, object]]:
    res = CliRunner().invoke(app, ["ls", str(vault), snapshot, "--json"])
    assert res.exit_code == 0, res.output
    rows: list[dict[str, object]] = json.loads(res.stdout)
    return rows


def test_backup_records_labels_and_ids_and_downloads_each_message_once(
    repo: Repository, vault_path: Path, gmail: FakeGmail
) -> None:
    ids = seed(gmail)
    r = run_backup(repo, gmail)
    assert r.exit_code == 0, r.failures

    # Every message body was fetched exactly once, though most show in 2-4 folders.
    assert dict(gmail.body_fetches) == {mid: 1 for mid in ids.values()}
    assert r.messages_fetched == 7
    assert r.bytes_fetched == sum(len(raw) for raw in ids)
    assert r.new_messages == 7
    # All Mail (and every label folder) reuses the blobs: the snapshot counts 7 distinct messages
    # in more folder entries than that.
    assert r.messages > 7

    rows = ls_json(vault_path, r.snapshot)
    folders = {row["folder"] for row in rows}
    assert {"INBOX", "Work", ALL_MAIL, "[Gmail]/Sent Mail", "[Gmail]/Trash", "[Gmail]/Starred"} <= folders
    assert "Projets/Reçus" in folders
    assert "[Gmail]" not in folders  # \Noselect
    blobs = {row["blob"] for row in rows}
    assert len(blobs) == 7
    by_msgid: dict[int, list[dict[str, object]]] = {}
    for row in rows:
        assert isinstance(row["gm_msgid"], int), row
        by_msgid.setdefault(row["gm_msgid"], []).append(row)
    assert set(by_msgid) == set(ids.values())
    for raw, mid in ids.items():
        for row in by_msgid[mid]:
            assert row["size"] == len(raw)
            assert len({r["blob"] for r in by_msgid[mid]}) == 1  # one blob per Gmail message
    inbox_work = by_msgid[ids[INBOX_WORK]]
    assert {row["folder"] for row in inbox_work} == {"INBOX", "Work", "[Gmail]/Important", ALL_MAIL}
    for row in inbox_work:
        assert sorted(row["labels"]) == ["Work", "\\Important", "\\Inbox"]  # type: ignore[arg-type]
    assert sorted(by_msgid[ids[NONASCII]][0]["labels"]) == ["Projets/Reçus", "\\Inbox"]  # type: ignore[arg-type]
    archived = by_msgid[ids[ARCHIVED]]
    assert [row["folder"] for row in archived] == [ALL_MAIL]
    assert "labels" not in archived[0]
    assert sorted(archived[0]["flags"]) == ["$Forwarded", "\\Seen"]  # type: ignore[arg-type]
    assert [row["folder"] for row in by_msgid[ids[TRASHED]]] == ["[Gmail]/Trash"]  # not in All Mail
    assert by_msgid[ids[INBOX]][0]["gm_thrid"] == 4242
    assert by_msgid[ids[SENT]][0]["gm_thrid"] == 4242


def test_incremental_backup_fetches_only_new_gmail_messages(repo: Repository, gmail: FakeGmail) -> None:
    ids = seed(gmail)
    first = run_backup(repo, gmail)
    assert first.exit_code == 0
    stored_after_first = first.new_bytes_stored

    # Nothing changed: no body is downloaded again.
    gmail.reset_counters()
    second = run_backup(repo, gmail)
    assert second.exit_code == 0
    assert sum(gmail.body_fetches.values()) == 0
    assert second.new_messages == 0
    assert second.messages == first.messages

    # A known message gets a new label (a new folder with a new UID), a new one arrives in the
    # INBOX (so it is in INBOX and All Mail): only the new one is downloaded, once.
    gmail.add_labels(ids[INBOX], ["Later"])
    fresh = make_message(200, seed=7)
    fresh_id = gmail.add_message(fresh, ["\\Inbox"])
    gmail.reset_counters()
    third = run_backup(repo, gmail)
    assert third.exit_code == 0
    assert dict(gmail.body_fetches) == {fresh_id: 1}
    assert third.new_messages == 1
    assert third.messages == first.messages + 3  # Later/INBOX copy, fresh in INBOX and All Mail
    assert third.new_bytes_stored < stored_after_first
    snap = repo.resolve_snapshot(third.snapshot)
    later = next(f for f in snap.folders if f.name == "Later")
    (entry,) = repo.read_manifest(later)
    assert entry.gm_msgid == ids[INBOX]
    assert sorted(entry.labels) == ["Later", "\\Inbox"]


@pytest.mark.parametrize("multiappend", [False, True])
def test_round_trip_gmail_to_gmail(repo: Repository, gmail: FakeGmail, multiappend: bool) -> None:
    """Back up one (fake) Gmail account and restore it into another: same messages, labels, flags,
    dates; one upload per message."""
    seed(gmail)
    b = run_backup(repo, gmail)
    assert b.exit_code == 0
    with running(multiappend=multiappend) as target:
        r = restore(repo, *access(target), RestoreOptions(account="me@gmail.com"))
        assert r.exit_code == 0, (r.failures, r.warnings)
        assert target.append_count() == 7
        assert len(target.messages) == 7

        def state(g: FakeGmail) -> set[tuple[bytes, frozenset[str], frozenset[str], str]]:
            return {
                (m.raw, frozenset(m.labels), frozenset(m.flags), m.internaldate.isoformat())
                for m in g.messages.values()
            }

        assert state(target) == state(gmail)
        assert {m.raw for m in target.folder_messages("[Gmail]/Starred")} == {STARRED_WORK}
        assert {m.raw for m in target.folder_messages("[Gmail]/Trash")} == {TRASHED}
        assert TRASHED not in {m.raw for m in target.folder_messages(ALL_MAIL)}
        target.reset_counters()
        again = restore(repo, *access(target), RestoreOptions(account="me@gmail.com"))
        assert again.uploaded == 0
        assert target.appends == [] and target.label_stores() == []
