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
