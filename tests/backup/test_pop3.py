"""``mailvault backup pop3s://...`` against a real Dovecot: UIDL increments, header dates, deletion."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.backup.helpers import (
    Account,
    backup,
    backup_proc,
    by_key,
    ls,
    make_message,
    pop3,
    pop3_count,
    server_messages,
    stats,
)
from tests.common import sha, vault_files
from tests.servers.dovecot import Dovecot

CET = timezone(timedelta(hours=1))
PDT = timezone(timedelta(hours=-7))


def _pop3_set(count: int) -> tuple[list[tuple[bytes, list[str], datetime]], dict[str, datetime], set[str]]:
    """Messages with Date/Received headers; the expected snapshot date per served blob; the old blobs.

    The seeded INTERNALDATE (file mtime) is the same for all of them and neither old nor new: a POP3
    server has no INTERNALDATE, so the backup must take the date from the first Received header,
    else from Date.
    """
    rng = random.Random(30)
    now = datetime.now(UTC).replace(microsecond=0)
    mtime = now - timedelta(days=400)
    msgs: list[tuple[bytes, list[str], datetime]] = []
    expected: dict[str, datetime] = {}
    old: set[str] = set()
    for i in range(count):
        kind = i % 6
        date = received = None
        if kind in (0, 1):  # old by Date only
            date = datetime(2001, 3, 4, 10, i % 60, tzinfo=CET)
            want: datetime | None = date
        elif kind == 2:  # Received (2001) wins over a newer Date
            received = datetime(2001, 7, 8, 9, 10, 11, tzinfo=PDT)
            date = now - timedelta(days=1)
            want = received
        elif kind == 3:  # Received (today) wins over an old Date: new
            received = now - timedelta(hours=2)
            date = datetime(2001, 1, 1, tzinfo=UTC)
            want = received
        else:  # new by Date
            date = (now - timedelta(days=i % 10)).astimezone(CET)
            want = date
        if i in (4, 10):  # no date header at all: the backup time is taken, so never "old"
            date = None
            want = None
        raw = make_message(i, rng, date=date, received=received, tag="pop-")
        blob = sha(Dovecot.served_form(raw))
        if want is not None:
            expected[blob] = want
            if want < now - timedelta(days=30):
                old.add(blob)
        msgs.append((raw, ["\\Seen"] if i % 4 == 0 else [], mtime))
    return msgs, expected, old


def _uidls(account: Account) -> list[str]:
    conn = pop3(account)
    try:
        return [line.split()[1].decode() for line in conn.uidl()[1]]
    finally:
        conn.quit()


def test_pop3s_backup_incremental_and_delete_after_days(
    dovecot: Dovecot, account: Account, vault: Path
) -> None:
    msgs, expected, old = _pop3_set(300)
    dovecot.seed(account.user, "INBOX", msgs)
    served = {sha(m.body): m.body for m in server_messages(account, "INBOX").values()}
    assert len(served) == 300
    uidls = _uidls(account)
    assert len(uidls) == 300

    first = backup(vault, account, scheme="pop3s")
    assert first["messages"] == 300
    assert first["messages_fetched"] == 300
    assert first["new_messages"] == 300
    assert first["folders"] == 1
    assert first["deleted"] == 0
    rows = ls(vault, first["snapshot"], account.account_name)
    assert len(rows) == 300
    assert {r["folder"] for r in rows} == {"INBOX"}
    assert sorted(r["uid"] for r in rows) == sorted(uidls)  # POP3 messages are filed by UIDL
    # the bytes POP3 serves are the bytes IMAP serves: every blob is a served message, each once
    assert Counter(r["blob"] for r in rows) == Counter(set(served))
    for r in rows:
        assert r["size"] == len(served[r["blob"]])
        got = datetime.fromisoformat(r["internaldate"])
        want = expected.get(r["blob"])
        if want is None:  # no date header: the time of the backup
            assert abs(got - datetime.now(UTC)) < timedelta(minutes=5)
        else:
            assert got == want, (r["uid"], r["internaldate"], want)
            assert got.utcoffset() == want.utcoffset(), (r["internaldate"], want)

    # second run: nothing fetched, nothing deleted, everything still on the server
    second = backup(vault, account, scheme="pop3s")
    assert second["messages_fetched"] == 0
    assert second["bytes_fetched"] == 0
    assert second["messages"] == 300
    assert ls(vault, second["snapshot"]) == rows
    assert pop3_count(account) == 300

    # --delete-after-days 30: only the old messages go, and only after the snapshot holding them
    assert 80 <= len(old) <= 200
    fourth = backup(vault, account, "--delete-after-days", "30", scheme="pop3s")
    assert fourth["deleted"] == len(old)
    assert fourth["messages_fetched"] == 0
    assert pop3_count(account) == 300 - len(old)
    remaining = {sha(m.body) for m in server_messages(account, "INBOX").values()}
    assert remaining == set(served) - old
    assert by_key(ls(vault, fourth["snapshot"])) == by_key(rows)  # the snapshot still lists them all
    assert stats(vault)["unique_blobs"] == 300

    # the next run reflects the server; the earlier snapshots keep the deleted mail
    fifth = backup(vault, account, scheme="pop3s")
    assert fifth["messages"] == 300 - len(old)
    assert fifth["deleted"] == 0
    assert {r["blob"] for r in ls(vault, fifth["snapshot"])} == set(served) - old
    assert len(ls(vault, fourth["snapshot"])) == 300


@pytest.mark.parametrize("days", ["1000000", "999999999999"])
def test_pop3_delete_after_huge_number_of_days_deletes_nothing(
    dovecot: Dovecot, account: Account, vault: Path, days: str
) -> None:
    rng = random.Random(9)
    raws = [make_message(i, rng, date=datetime(1971, 1, 1, tzinfo=UTC), tag="huge-") for i in range(3)]
    dovecot.seed(account.user, "INBOX", [(r, [], datetime(2001, 1, 1, tzinfo=UTC)) for r in raws])
    proc = backup_proc(vault, account, "--delete-after-days", days, "--json", scheme="pop3s")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["messages"] == 3
    assert result["deleted"] == 0
    assert pop3_count(account) == 3


@pytest.mark.parametrize("days", ["0", "1"])
def test_pop3_delete_after_days_small(dovecot: Dovecot, account: Account, vault: Path, days: str) -> None:
    """N=0 deletes every dated message (all are in the past); N=1 keeps today's."""
    rng = random.Random(8)
    now = datetime.now(UTC)
    dates = [datetime(2001, 1, 1, tzinfo=UTC), now - timedelta(days=3), now - timedelta(minutes=10)]
    raws = [make_message(i, rng, date=d, tag=f"d{days}-") for i, d in enumerate(dates)]
    dovecot.seed(account.user, "INBOX", [(r, [], now) for r in raws])
    result = backup(vault, account, "--delete-after-days", days, scheme="pop3s")
    assert result["messages"] == 3
    assert result["deleted"] == (3 if days == "0" else 2)
    assert pop3_count(account) == 3 - result["deleted"]


def test_delete_after_days_is_refused_for_imap(account: Account, vault: Path) -> None:
    before = vault_files(vault)
    proc = backup_proc(vault, account, "--delete-after-days", "3", scheme="imaps")
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert "POP3" in proc.stderr
    assert vault_files(vault) == before
