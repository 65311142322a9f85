"""ImapTarget.find: after a connection dropped between an APPEND and its answer, the restore looks for
the message before sending it again — by Message-ID and size, or by its bytes when it has no ID."""

from __future__ import annotations

from datetime import UTC, datetime

from mailvault.net.session import Credentials, TLSPolicy, connect_imap, parse_url
from mailvault.targets.imap import AppendItem, ImapTarget
from tests.restore.helpers import Account


def _target(account: Account) -> ImapTarget:
    ep = parse_url(account.url())
    return ImapTarget(
        lambda: connect_imap(
            ep, Credentials(password=account.password.encode), TLSPolicy(str(account.server.ca_file))
        )
    )


def test_find_by_message_id_and_by_bytes(target: Account) -> None:
    with_id = b"From: a@example.org\r\nMessage-ID: <find-1@example.org>\r\nSubject: x\r\n\r\nhello\r\n"
    without = b"From: a@example.org\r\nSubject: no id\r\n\r\nsame size body 1\r\n"
    other = b"From: a@example.org\r\nSubject: no id\r\n\r\nsame size body 2\r\n"  # same length, other bytes
    t = _target(target)
    try:
        t.select("INBOX")
        assert t.find(with_id) is None and t.find(without) is None
        when = datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC)
        uids = t.append_batch("INBOX", [AppendItem(with_id, [], when), AppendItem(without, [], when)])
        assert t.find(with_id) == uids[0]
        assert t.find(without) == uids[1]
        assert t.find(other) is None
    finally:
        t.close()


def test_verify_reports_only_messages_stored_otherwise(target: Account) -> None:
    """ImapTarget.verify: one FETCH; a size or INTERNALDATE other than the one sent is reported
    (with the server's value), a message stored as sent is not — also when the date we sent has
    another offset than the server answers in, or carries microseconds."""
    from datetime import timedelta, timezone

    msgs = [b"From: a@example.org\r\nSubject: v%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]
    when = datetime(2019, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    t = _target(target)
    try:
        t.select("INBOX")
        uids = t.append_batch("INBOX", [AppendItem(m, [], when) for m in msgs])
        assert all(isinstance(u, int) for u in uids)
        a, b, c = (int(u) for u in uids if u is not None)
        sizes = {u: len(m) for u, m in zip((a, b, c), msgs, strict=True)}
        # As sent (the date also as the same instant in UTC, and with microseconds): nothing.
        same = {
            a: (sizes[a], when),
            b: (sizes[b], when.astimezone(UTC)),
            c: (sizes[c], when.replace(microsecond=5)),
        }
        assert t.verify(same) == {}
        # Another size, another date: reported, with what the server stored.
        later = when + timedelta(hours=1)
        got = t.verify({a: (sizes[a] + 1, when), b: (sizes[b], later), c: (sizes[c], None)})
        assert set(got) == {a, b}
        assert got[a] == (sizes[a], None)
        assert got[b][0] == sizes[b] and got[b][1] == when
    finally:
        t.close()
