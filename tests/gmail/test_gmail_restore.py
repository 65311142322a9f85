"""Restoring into (fake) Gmail: one upload per message, labels for the other folders, \\All last,
APPENDLIMIT, the daily upload budget, throttling and dropped connections."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mailvault.restore
import mailvault.restore.upload
from mailvault.cli import app
from mailvault.restore import RestoreOptions, RestoreResult, restore
from mailvault.restore_journal import Journal
from mailvault.vault.repository import Repository
from tests.gmail.fakegmail import ALL_MAIL, FakeGmail, Message, running
from tests.gmail.helpers import Msg, access, internaldate, make_message, write_snapshot

A, B, C, D, E = (make_message(i) for i in range(1, 6))


def overlapping_snapshot(repo: Repository) -> str:
    """INBOX {A, B}, Work {B, C}, Sent (\\Sent) {D, A}, All Mail (\\All) {A..E}: 5 distinct messages."""
    return write_snapshot(
        repo,
        [
            ("[Gmail]/All Mail", "\\All", [A, B, C, D, E]),  # first in the snapshot, must go last
            ("INBOX", None, [Msg(A, ("\\Seen", "$Forwarded")), Msg(B, ())]),
            ("Work", None, [Msg(B, ()), Msg(C, ("\\Seen", "\\Answered"))]),
            ("Sent", "\\Sent", [Msg(D, ("\\Seen",)), Msg(A, ("\\Seen", "$Forwarded"))]),
        ],
    )


def run_restore(repo: Repository, g: FakeGmail, **options: object) -> RestoreResult:
    return restore(repo, *access(g), RestoreOptions(**options))  # type: ignore[arg-type]


def only(g: FakeGmail, raw: bytes) -> Message:
    found = g.by_raw(raw)
    assert len(found) == 1, f"expected exactly one copy on the server, found {len(found)}"
    return found[0]


def assert_no_duplicates(g: FakeGmail) -> None:
    raws = [m.raw for m in g.messages.values()]
    assert len(raws) == len(set(raws)), "a message was uploaded twice"


def test_each_message_uploaded_once_other_folders_become_labels(repo: Repository, gmail: FakeGmail) -> None:
    overlapping_snapshot(repo)
    r = run_restore(repo, gmail)

    assert r.exit_code == 0, (r.failures, r.warnings, r.budget_exhausted)
    assert r.gmail
    assert not r.failures
    assert r.uploaded == 5
    assert gmail.append_count() == 5
    assert len(gmail.messages) == 5
    assert_no_duplicates(gmail)

    assert only(gmail, A).labels == {"\\Inbox", "\\Sent"}
    assert only(gmail, B).labels == {"\\Inbox", "Work"}
    assert only(gmail, C).labels == {"Work"}
    assert only(gmail, D).labels == {"\\Sent"}
    assert only(gmail, E).labels == set()  # only in All Mail: archived, no label
    assert r.labels_applied == 2  # A +\Sent, B +Work; the others' label came with the upload

    # Flags and INTERNALDATE as in the snapshot (flags are per message in Gmail).
    assert only(gmail, A).flags == {"\\Seen", "$Forwarded"}
    assert only(gmail, C).flags == {"\\Seen", "\\Answered"}
    assert only(gmail, B).flags == set()
    assert only(gmail, E).internaldate == internaldate(E)

    # The folders the client sees.
    # (UIDs follow Gmail's order: C was uploaded into Work before B got the label.)
    assert [m.raw for m in gmail.folder_messages("INBOX")] == [A, B]
    assert {m.raw for m in gmail.folder_messages("Work")} == {B, C}
    assert {m.raw for m in gmail.folder_messages("[Gmail]/Sent Mail")} == {A, D}
    assert {m.raw for m in gmail.folder_messages(ALL_MAIL)} == {A, B, C, D, E}

    # \All is handled last: the only APPEND to All Mail is E, and it is the last one.
    assert [(a.folder, gmail.messages[a.msgid].raw) for a in gmail.appends if a.folder == ALL_MAIL] == [
        (ALL_MAIL, E)
    ]
    assert gmail.appends[-1].folder == ALL_MAIL
    assert [p.target for p in r.folders][-1] == ALL_MAIL
    sent_plan = next(p for p in r.folders if p.source == "Sent")
    assert sent_plan.target == "[Gmail]/Sent Mail"

    # Rerun: nothing to do.
    gmail.reset_counters()
    again = run_restore(repo, gmail)
    assert again.exit_code == 0
    assert again.uploaded == 0
    assert again.labels_applied == 0
    assert gmail.appends == []
    assert gmail.label_stores() == []
    assert len(gmail.messages) == 5


def test_lost_journal_does_not_duplicate(repo: Repository, gmail: FakeGmail) -> None:
    """A rerun without the journal finds the messages already there and uploads nothing."""
    overlapping_snapshot(repo)
    assert run_restore(repo, gmail).exit_code == 0
    gmail.reset_counters()
    jr = Journal(None)
    try:
        r = restore(repo, *access(gmail), RestoreOptions(), journal=jr)
    finally:
        jr.close()
    assert r.exit_code == 0, r.failures
    assert gmail.appends == []
    assert len(gmail.messages) == 5


def test_appendlimit_message_is_reported_not_dropped(repo: Repository) -> None:
    small1, small2 = make_message(11), make_message(12)
    big = make_message(13, size=20_000)
    write_snapshot(
        repo,
        [
            ("INBOX", None, [small1, big, small2]),
            ("[Gmail]/All Mail", "\\All", [small1, big, small2]),
        ],
    )
    with running(appendlimit=10_000) as g:
        r = run_restore(repo, g)
        assert r.exit_code == 1
        assert r.failures, "the oversized message must be reported"
        assert any("APPENDLIMIT" in f and "UID 2" in f and "20" in f for f in r.failures), r.failures
        assert all("APPENDLIMIT" in f for f in r.failures), r.failures
        assert g.append_count() == 2
        assert {m.raw for m in g.messages.values()} == {small1, small2}
        assert g.by_raw(big) == []
        # Rerun: still reported (never silently dropped), nothing else uploaded again.
        g.reset_counters()
        again = run_restore(repo, g)
        assert again.exit_code == 1
        assert any("APPENDLIMIT" in f for f in again.failures)
        assert g.appends == []


class _Clock:
    """Stand-in for ``datetime.datetime`` in mailvault.restore, ``offset`` ahead of the real clock."""

    offset = dt.timedelta(0)

    @staticmethod
    def install(monkeypatch: pytest.MonkeyPatch) -> None:
        class Shifted(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:
                return dt.datetime.now(tz) + _Clock.offset

        _Clock.offset = dt.timedelta(0)
        monkeypatch.setattr(mailvault.restore.upload, "datetime", Shifted)


def test_daily_budget_stops_resumably_and_resumes_the_next_day(
    repo: Repository, gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = [make_message(20 + i, size=300_000) for i in range(6)]  # 1.8 MB; budget 1 MB a day
    write_snapshot(
        repo,
        [
            ("INBOX", None, big[:4]),
            ("Work", None, big[2:]),
            ("[Gmail]/All Mail", "\\All", big),
        ],
    )
    _Clock.install(monkeypatch)

    day1 = run_restore(repo, gmail, max_upload_mb_per_day=1)
    assert day1.exit_code == 1
    assert day1.budget_exhausted
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d")
    assert "rerun after" in day1.budget_exhausted and tomorrow in day1.budget_exhausted
    assert 0 < day1.uploaded_bytes <= 1_000_000
    assert gmail.append_count() == 3  # what fits into 1 MB
    assert_no_duplicates(gmail)

    # Same day again: nothing more goes up.
    gmail.reset_counters()
    same_day = run_restore(repo, gmail, max_upload_mb_per_day=1)
    assert same_day.exit_code == 1
    assert same_day.budget_exhausted
    assert same_day.uploaded == 0
    assert gmail.appends == []

    # The next day: the rest (0.9 MB), never twice, then the labels.
    _Clock.offset = dt.timedelta(days=1)
    gmail.reset_counters()
    day2 = run_restore(repo, gmail, max_upload_mb_per_day=1)
    assert day2.exit_code == 0, (day2.failures, day2.budget_exhausted)
    assert gmail.append_count() == 3
    _Clock.offset = dt.timedelta(0)
    assert len(gmail.messages) == 6
    assert_no_duplicates(gmail)
    for raw in big[:2]:
        assert only(gmail, raw).labels == {"\\Inbox"}
    for raw in big[2:4]:
        assert only(gmail, raw).labels == {"\\Inbox", "Work"}
    for raw in big[4:]:
        assert only(gmail, raw).labels == {"Work"}


def test_budget_default_for_gmail_is_500_mb(repo: Repository, gmail: FakeGmail) -> None:
    write_snapshot(repo, [("INBOX", None, [A])])
    target = mailvault.restore.ImapTarget(lambda: mailvault.restore.connect_imap(*access(gmail)))
    try:
        snap = repo.resolve_snapshot("latest", "old@gmail.com")
        jr = Journal(None)
        job = mailvault.restore._Restore(
            repo, snap, access(gmail)[0], target, jr, RestoreOptions(), mailvault.restore.QUIET
        )
        assert job.budget_bytes == 500_000_000
        jr.close()
    finally:
        target.close()


def test_throttled_appends_back_off_and_complete(
    repo: Repository, gmail: FakeGmail, sleeps: list[float]
) -> None:
    overlapping_snapshot(repo)
    gmail.throttle_next(2)
    r = run_restore(repo, gmail)
    assert r.exit_code == 0, r.failures
    assert gmail.append_attempts == 7  # 2 throttled + 5 stored
    assert gmail.append_count() == 5
    assert_no_duplicates(gmail)
    # Pipelined APPENDs: both throttled answers arrive in one round, then one pause (1 s, doubling
    # for every further round that is throttled again) and both are sent again.
    assert sleeps[:1] == [1.0]
    assert only(gmail, A).labels == {"\\Inbox", "\\Sent"}
    assert only(gmail, B).labels == {"\\Inbox", "Work"}


def test_throttled_again_after_the_pause_backs_off_exponentially(
    repo: Repository, gmail: FakeGmail, sleeps: list[float]
) -> None:
    overlapping_snapshot(repo)
    gmail.throttle_next(7)  # more than one round of pipelined APPENDs: the resent ones are throttled too
    r = run_restore(repo, gmail)
    assert r.exit_code == 0, r.failures
    assert gmail.append_count() == 5
    assert_no_duplicates(gmail)
    assert sleeps[:2] == [1.0, 2.0]  # exponential back-off between rounds


def test_throttled_in_the_middle_of_a_folder_does_not_duplicate(repo: Repository, gmail: FakeGmail) -> None:
    msgs = [make_message(40 + i) for i in range(6)]
    write_snapshot(repo, [("INBOX", None, msgs)])
    gmail.throttle_next(1, after=3)
    r = run_restore(repo, gmail)
    assert r.exit_code == 0, r.failures
    assert gmail.append_count() == 6
    assert len(gmail.messages) == 6
    assert_no_duplicates(gmail)
    # The throttled message is sent again after the pause, behind those already in flight.
    assert sorted(m.raw for m in gmail.folder_messages("INBOX")) == sorted(msgs)


@pytest.mark.parametrize("k", [1, 2, 4, 5])
def test_bye_mid_upload_reconnects_without_duplicates(repo: Repository, gmail: FakeGmail, k: int) -> None:
    overlapping_snapshot(repo)
    gmail.bye_after_appends(k)
    r = run_restore(repo, gmail)
    assert r.exit_code == 0, (r.failures, r.warnings)
    assert gmail.connections >= 2, "the scripted BYE should have forced a reconnect"
    assert gmail.append_count() == 5
    assert len(gmail.messages) == 5
    assert_no_duplicates(gmail)
    assert only(gmail, A).labels == {"\\Inbox", "\\Sent"}
    assert only(gmail, B).labels == {"\\Inbox", "Work"}
    assert only(gmail, E).labels == set()
    # And a rerun finds everything in place.
    gmail.reset_counters()
    assert run_restore(repo, gmail).uploaded == 0
    assert gmail.appends == []


def test_connection_lost_before_append_answer_does_not_duplicate(repo: Repository, gmail: FakeGmail) -> None:
    overlapping_snapshot(repo)
    gmail.bye_after_appends(2, before_ok=True)
    r = run_restore(repo, gmail)
    assert r.exit_code == 0, r.failures
    assert len(gmail.messages) == 5
    assert_no_duplicates(gmail)


def test_message_with_nul_is_refused_and_reported(repo: Repository, gmail: FakeGmail) -> None:
    bad = make_message(50).replace(b"mail", b"ma\x00l", 1)
    good = make_message(51)
    write_snapshot(repo, [("INBOX", None, [good, bad])])
    r = run_restore(repo, gmail)
    assert r.exit_code == 1
    assert len(r.failures) == 1 and "[CANNOT]" in r.failures[0] and "UID 2" in r.failures[0]
    assert {m.raw for m in gmail.messages.values()} == {good}


def test_nonascii_label_and_nested_folder(repo: Repository, gmail: FakeGmail) -> None:
    """A folder whose name needs modified UTF-7 becomes the same label (one encoding for both)."""
    write_snapshot(repo, [("INBOX", None, [A]), ("Projets/Reçus", None, [A, B])])
    r = run_restore(repo, gmail)
    assert r.exit_code == 0, r.failures
    assert "Projets/Re&AOc-us" in gmail.folders
    assert only(gmail, A).labels == {"\\Inbox", "Projets/Re&AOc-us"}
    assert only(gmail, B).labels == {"Projets/Re&AOc-us"}
    assert gmail.append_count() == 2


def test_cli_restore_json_over_implicit_tls(
    repo: Repository, vault_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI end to end against the fake over imaps:// with its own CA."""
    overlapping_snapshot(repo)
    with running(tls=True) as g:
        assert g.ca_file is not None
        monkeypatch.setenv("GMAIL_PW", g.password)
        args = ["restore", str(vault_path), g.url, "--account", "old@gmail.com", "--password-env", "GMAIL_PW"]
        args += ["--ca-file", g.ca_file, "--json", "--quiet"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert doc["gmail"] is True
        assert doc["uploaded"] == 5
        assert doc["labels_applied"] == 2
        assert g.append_count() == 5
        # Budget via the CLI: a tiny one stops with exit 1 and says when to rerun.
        g2 = FakeGmail(tls=True).start()
        try:
            args2 = [
                "restore",
                str(vault_path),
                g2.url,
                "--account",
                "old@gmail.com",
                "--password-env",
                "GMAIL_PW",
            ]
            args2 += ["--ca-file", str(g2.ca_file), "--max-upload-mb-per-day", "1", "--quiet"]
            bigs = [make_message(60, size=600_000), make_message(61, size=600_000)]
            write_snapshot(repo, [("INBOX", None, bigs)], account="big@gmail.com")
            args2[4] = "big@gmail.com"
            res2 = CliRunner().invoke(app, args2)
            assert res2.exit_code == 1, res2.output
            assert re.search(r"rerun after \d{4}-\d\d-\d\d", res2.output), res2.output
            assert g2.append_count() == 1
        finally:
            g2.stop()
