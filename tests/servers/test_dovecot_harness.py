"""Proof that the Dovecot harness and the fault proxy do what the integration tests rely on."""

from __future__ import annotations

import os
import poplib
import random
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from tests.fixtures_dovecot import GMAIL_USER
from tests.servers.dovecot import GMAIL_FOLDERS, SPECIAL_FOLDERS, Dovecot, _group_members, find_binary
from tests.servers.proxy import FaultProxy

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.skipif(
        find_binary("dovecot") is None,
        reason="Dovecot not installed (apt-get install dovecot-imapd dovecot-pop3d)",
    ),
]

FOLDERS = ["Entwürfe", "Projects/2002/Q1 & Q2", "日本語", "Sent"]
SYSTEM_FLAGS = [b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Draft"]
KEYWORDS = [b"$Forwarded", b"$Junk", b"$NotJunk", b"Projekt-X", b"$label1"]
_TEXT = bytes(random.Random(0).choice(b"abcdefghij klmnop.,;\xc3\xa4") for _ in range(10_000))


def _message(i: int, rng: random.Random, size: int | None = None) -> bytes:
    """A varied RFC 5322 message: LF or CRLF line endings, 8-bit bytes, blank lines, long bodies."""
    nl = b"\r\n" if i % 3 == 0 else b"\n"
    lines = [
        f"From: Sender {i} <s{i}@example.org>".encode(),
        b"To: rcpt@example.net",
        f"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= #{i}".encode(),
        f"Message-ID: <{i}.{rng.getrandbits(32)}@example.org>".encode(),
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
        b"",
        "Grüße aus Köln — 日本語のテキスト".encode(),
        b"",
    ]
    body_len = size if size is not None else rng.randrange(0, 4000)
    total = sum(len(x) + 1 for x in lines)
    while total < body_len:
        line = _TEXT[rng.randrange(len(_TEXT)) :][: rng.randrange(0, 90)]
        lines.append(line)
        total += len(line) + 1
    return nl.join(lines) + nl


def _seed_set(count: int, seed: int = 7) -> list[tuple[bytes, list[bytes], datetime]]:
    rng = random.Random(seed)
    out = []
    tzs = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))]
    for i in range(count):
        flags = [f for f in SYSTEM_FLAGS if rng.random() < 0.3] + [k for k in KEYWORDS if rng.random() < 0.2]
        date = datetime(2001, 1, 1, tzinfo=rng.choice(tzs)) + timedelta(
            seconds=rng.randrange(0, 20 * 365 * 86400)
        )
        out.append((_message(i, rng), flags, date))
    return out


def _list_special_use(client: IMAPClient) -> dict[str, set[bytes]]:
    """``LIST (SPECIAL-USE) "" "*"`` (RFC 6154 selection option) -> name -> attributes."""
    typ, data = client._imap._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    assert typ == "OK", data
    _, data = client._imap._untagged_response(typ, data, "LIST")
    return {name: set(flags) for flags, _, name in client._proc_folder_list(data)}


def _flagset(flags: tuple[bytes, ...] | list[bytes]) -> set[bytes]:
    return {f.lower() if f.startswith(b"\\") else f for f in flags}


# ----------------------------------------------------------------------------- connections


def test_imaps_login_verifies_ca(dovecot: Dovecot) -> None:
    client = dovecot.imap_client("alice")
    try:
        caps = client.capabilities()
        for cap in (b"IMAP4REV1", b"MULTIAPPEND", b"UIDPLUS", b"SPECIAL-USE", b"CONDSTORE", b"MOVE"):
            assert cap in caps
        if dovecot.zlib_available:
            assert b"COMPRESS=DEFLATE" in caps
        assert client.namespace().personal[0] == ("", "/")
    finally:
        client.logout()
    # The certificate only chains to our CA: the system trust store rejects it ...
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(dovecot.host, port=dovecot.imaps_port, ssl=True, ssl_context=ssl.create_default_context())
    # ... and it names localhost as well as 127.0.0.1.
    client = IMAPClient(
        dovecot.hostname, port=dovecot.imaps_port, ssl=True, ssl_context=dovecot.ssl_context()
    )
    client.login("bob", "secret-bob")
    client.logout()


def test_starttls_on_plain_port(dovecot: Dovecot) -> None:
    client = IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False, timeout=10)
    assert b"STARTTLS" in client.capabilities()
    client.starttls(dovecot.ssl_context())
    assert isinstance(client._imap.sock, ssl.SSLSocket)
    client.login("carol", "secret-carol")
    client.logout()
    client = dovecot.imap_client("carol", ssl=False, starttls=True)
    assert isinstance(client._imap.sock, ssl.SSLSocket)
    client.logout()
    # plaintext login is allowed too (disable_plaintext_auth = no)
    dovecot.imap_client("carol", ssl=False).logout()


def test_pop3s_and_pop3_stls(dovecot: Dovecot, fresh_user: tuple[str, str]) -> None:
    user, password = fresh_user
    dovecot.seed(user, "INBOX", [(b"Subject: pop\n\nhello\n", [], datetime(2020, 5, 1, tzinfo=UTC))])
    pop = poplib.POP3_SSL(dovecot.host, dovecot.pop3s_port, context=dovecot.ssl_context(), timeout=10)
    pop.user(user)
    pop.pass_(password)
    assert pop.stat()[0] == 1
    assert pop.retr(1)[1] == [b"Subject: pop", b"", b"hello"]
    pop.quit()
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    assert "STLS" in pop.capa()
    pop.stls(context=dovecot.ssl_context())
    pop.user(user)
    pop.pass_(password)
    assert pop.stat()[0] == 1
    pop.quit()


def test_variant_without_starttls(dovecot_nostarttls: Dovecot) -> None:
    server = dovecot_nostarttls
    assert server.imaps_port is None
    assert server.pop3s_port is None
    client = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=10)
    assert b"STARTTLS" not in client.capabilities()
    with pytest.raises(IMAPClientError):
        client.starttls(ssl.create_default_context())
    client.login("alice", "secret-alice")
    client.logout()
    pop = poplib.POP3(server.host, server.pop3_port, timeout=10)
    assert "STLS" not in pop.capa()
    pop.quit()


def test_wrong_password_fails_fast_even_after_many_failures(dovecot: Dovecot) -> None:
    # Anvil's penalty would delay the 3rd, 4th, 5th... attempt by 2, 4, 8... s. What remains is
    # Dovecot's fixed ~0.5 s per failure (failed auths are flushed on a 500 ms timer).
    for _ in range(5):
        start = time.monotonic()
        with pytest.raises(LoginError):
            dovecot.imap_client("alice", password="wrong")
        assert time.monotonic() - start < 1.0
    with pytest.raises(LoginError):
        dovecot.imap_client("nosuchuser", password="x")
    start = time.monotonic()
    dovecot.imap_client("alice").logout()
    assert time.monotonic() - start < 1.0, "anvil auth penalty still active"


# ----------------------------------------------------------------------------- folders


def test_special_use_folders_of_ordinary_user(dovecot: Dovecot, fresh_user: tuple[str, str]) -> None:
    client = dovecot.imap_client(fresh_user[0])
    try:
        special = _list_special_use(client)
        assert {name: attrs - {b"\\HasNoChildren", b"\\HasChildren"} for name, attrs in special.items()} == {
            name: {use.encode()} for name, use in SPECIAL_FOLDERS.items()
        }
        subscribed = {name for _, _, name in client.list_sub_folders()}
        assert set(SPECIAL_FOLDERS) <= subscribed
        assert client.find_special_folder(b"\\Sent") == "Sent"
    finally:
        client.logout()


def test_gmail_like_user_folders(dovecot: Dovecot) -> None:
    client = dovecot.imap_client(GMAIL_USER)
    try:
        special = _list_special_use(client)
        assert {name: attrs - {b"\\HasNoChildren", b"\\HasChildren"} for name, attrs in special.items()} == {
            name: {use.encode()} for name, use in GMAIL_FOLDERS.items()
        }
        names = {name for _, _, name in client.list_folders()}
        assert set(GMAIL_FOLDERS) <= names
        assert not names & set(SPECIAL_FOLDERS), "a gmail-like user has no plain Sent/Trash/..."
        client.select_folder("[Gmail]/All Mail")
    finally:
        client.logout()


# ----------------------------------------------------------------------------- seeding


def test_seed_200_messages_roundtrip(dovecot: Dovecot, fresh_user: tuple[str, str]) -> None:
    user, _ = fresh_user
    messages = _seed_set(200)
    per_folder = {folder: messages[i::4] for i, folder in enumerate(FOLDERS)}
    uids = {folder: dovecot.seed(user, folder, msgs) for folder, msgs in per_folder.items()}

    # On disk: Maildir++ with modified UTF-7 names
    maildir = dovecot.home(user) / "Maildir"
    on_disk = set(os.listdir(maildir))
    assert {".Entw&APw-rfe", ".Projects.2002.Q1 &- Q2", ".&ZeVnLIqe-", ".Sent"} <= on_disk
    raw, _, date = per_folder["日本語"][0]
    stored = (maildir / ".&ZeVnLIqe-" / "cur").iterdir()
    first = min(stored, key=lambda p: int(p.name.split(".")[0]))
    assert first.read_bytes() == raw.replace(b"\r\n", b"\n")
    assert int(first.stat().st_mtime) == int(date.timestamp())

    client = dovecot.imap_client(user)
    client.normalise_times = False  # aware datetimes, as the server says them
    try:
        listed = {name for _, _, name in client.list_folders()}
        assert set(FOLDERS) <= listed
        subscribed = {name for _, _, name in client.list_sub_folders()}
        assert set(FOLDERS) <= subscribed
        assert b"\\Sent" in _list_special_use(client)["Sent"]
        for folder, msgs in per_folder.items():
            assert uids[folder] == list(range(1, len(msgs) + 1))
            client.select_folder(folder, readonly=True)
            data = client.fetch(client.search(), ["FLAGS", "INTERNALDATE", "BODY.PEEK[]", "RFC822.SIZE"])
            assert len(data) == len(msgs)
            for uid, (raw, flags, date) in zip(uids[folder], msgs, strict=True):
                got = data[uid]  # imapclient keys by UID
                served = got[b"BODY[]"]
                assert served == Dovecot.served_form(raw)
                assert b"\n" not in served.replace(b"\r\n", b"")  # every line ending is CRLF
                assert got[b"RFC822.SIZE"] == len(served)
                assert _flagset(got[b"FLAGS"]) == _flagset(flags)
                assert got[b"INTERNALDATE"] == date
    finally:
        client.logout()


def test_seed_edge_bytes_served_form(dovecot: Dovecot, fresh_user: tuple[str, str]) -> None:
    """What Dovecot serves for awkward stored bytes — Dovecot.served_form() predicts it."""
    user, _ = fresh_user
    cases = [
        b"Subject: a\n\nA\rB\r\r\nC\n",  # lone CR stays, CR CR LF -> CR LF
        b"Subject: b\n\nno newline at end",
        b"Subject: c\r\n\r\nX\r\n\r\n",  # CRLF input comes back byte-identical
        b"Subject: d\n\n\x00nul\xff\n",  # NUL is served as 0x80 in BODY[]
        b"",
        b"Subject: e\n\nlone CR at end\r",
    ]
    when = datetime(2020, 1, 1, tzinfo=UTC)
    uids = dovecot.seed(user, "INBOX", [(c, [], when) for c in cases])
    client = dovecot.imap_client(user)
    try:
        client.select_folder("INBOX", readonly=True)
        data = client.fetch(uids, ["BODY.PEEK[]", "RFC822.SIZE"])
        for uid, raw in zip(uids, cases, strict=True):
            assert data[uid][b"BODY[]"] == Dovecot.served_form(raw), raw
            assert data[uid][b"RFC822.SIZE"] == len(Dovecot.served_form(raw))
        assert Dovecot.served_form(cases[0]) == b"Subject: a\r\n\r\nA\rB\r\nC\r\n"
        assert Dovecot.served_form(cases[2]) == cases[2]
    finally:
        client.logout()
    with pytest.raises(ValueError):
        dovecot.seed(user, "INBOX", [(b"x", [b"\\Recent"], when)])
    with pytest.raises(ValueError):
        dovecot.seed(user, "INBOX", [(b"x", [b"bad keyword"], when)])


def test_seed_appends_to_existing_folder_and_keywords(dovecot: Dovecot, fresh_user: tuple[str, str]) -> None:
    user, _ = fresh_user
    when = datetime(2010, 6, 15, 12, 0, tzinfo=UTC)
    assert dovecot.seed(user, "INBOX", [(b"Subject: 1\n\na\n", [b"alpha"], when)]) == [1]
    # an APPEND by a client in between: Dovecot adds its own keywords to dovecot-keywords
    dovecot.seed_append(user, "INBOX", [(b"Subject: 2\r\n\r\nb\r\n", [b"beta", b"\\Seen"], when)])
    assert dovecot.seed(user, "INBOX", [(b"Subject: 3\n\nc\n", ["gamma", "alpha", "\\Flagged"], when)]) == [3]
    client = dovecot.imap_client(user)
    try:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search())
        assert _flagset(flags[1]) == {b"alpha"}
        assert _flagset(flags[2]) == {b"beta", b"\\seen"}
        assert _flagset(flags[3]) == {b"gamma", b"alpha", b"\\flagged"}
    finally:
        client.logout()


def test_seed_append_roundtrip(dovecot: Dovecot, fresh_user: tuple[str, str]) -> None:
    user, _ = fresh_user
    rng = random.Random(3)
    msgs = [(_message(i, rng).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), fl, d) for i, (_, fl, d) in
            enumerate(_seed_set(30))]  # fmt: skip
    uids = dovecot.seed_append(user, "Projects/2002/Q1 & Q2", msgs)
    assert uids == list(range(1, 31))
    client = dovecot.imap_client(user)
    client.normalise_times = False
    try:
        client.select_folder("Projects/2002/Q1 & Q2", readonly=True)
        data = client.fetch(client.search(), ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
        for uid, (raw, flags, date) in zip(uids, msgs, strict=True):
            assert data[uid][b"BODY[]"] == raw
            assert _flagset([f for f in data[uid][b"FLAGS"] if f != b"\\Recent"]) == _flagset(flags)
            assert data[uid][b"INTERNALDATE"] == date
    finally:
        client.logout()


def test_seed_gmail_folder(dovecot: Dovecot, fresh_gmail_user: tuple[str, str]) -> None:
    user, _ = fresh_gmail_user
    when = datetime(2015, 3, 3, 3, 3, 3, tzinfo=UTC)
    dovecot.seed(user, "[Gmail]/All Mail", [(b"Subject: g\n\ng\n", [b"\\Seen"], when)] * 3)
    client = dovecot.imap_client(user)
    try:
        assert client.select_folder("[Gmail]/All Mail", readonly=True)[b"EXISTS"] == 3
        assert b"\\All" in _list_special_use(client)["[Gmail]/All Mail"]
    finally:
        client.logout()


def test_seed_10k_messages_is_fast(dovecot: Dovecot, fresh_user: tuple[str, str], record_property) -> None:
    user, _ = fresh_user
    rng = random.Random(11)
    date = datetime(2012, 1, 1, tzinfo=UTC)
    msgs = [(_message(i, rng, size=rng.randrange(500, 6000)), [b"\\Seen"] if i % 2 else [], date)
            for i in range(10_000)]  # fmt: skip
    start = time.perf_counter()
    uids = dovecot.seed(user, "Bulk", msgs)
    elapsed = time.perf_counter() - start
    record_property("seed_10k_seconds", round(elapsed, 2))
    print(f"\nseeded 10,000 messages in {elapsed:.2f} s")
    assert uids == list(range(1, 10_001))
    client = dovecot.imap_client(user)
    try:
        assert client.select_folder("Bulk", readonly=True)[b"EXISTS"] == 10_000
        assert len(client.search(["SEEN"])) == 5_000
    finally:
        client.logout()
    assert elapsed < 15, f"seeding 10k messages took {elapsed:.1f} s"


# ----------------------------------------------------------------------------- proxy


def _seed_big(dovecot: Dovecot, user: str, count: int = 10, size: int = 100_000) -> None:
    rng = random.Random(5)
    date = datetime(2019, 1, 1, tzinfo=UTC)
    dovecot.seed(user, "INBOX", [(_message(i, rng, size=size), [], date) for i in range(count)])


def test_proxy_forwards_tls_and_cut_drops_connection_mid_fetch(
    dovecot: Dovecot, fresh_user: tuple[str, str], fault_proxy: FaultProxy
) -> None:
    user, _ = fresh_user
    _seed_big(dovecot, user)
    client = dovecot.imap_client(user, port=fault_proxy.port)  # TLS verified end to end through the proxy
    client.select_folder("INBOX")
    assert len(client.fetch(client.search(), ["BODY.PEEK[]"])) == 10  # ~1 MB passes untouched

    fault_proxy.cut_after(250_000)
    with pytest.raises((OSError, IMAPClientError, ssl.SSLError)):
        client.fetch(client.search(), ["BODY.PEEK[]"])
    assert fault_proxy.cuts == 1
    with pytest.raises((OSError, IMAPClientError, ssl.SSLError)):  # the connection is gone for good
        client.noop()

    # one-shot: reconnecting works
    client = dovecot.imap_client(user, port=fault_proxy.port)
    client.select_folder("INBOX")
    assert len(client.fetch(client.search(), ["BODY.PEEK[]"])) == 10
    client.logout()
    assert fault_proxy.connections == 2


def test_proxy_cut_armed_before_connecting(
    dovecot: Dovecot, fresh_user: tuple[str, str], fault_proxy: FaultProxy
) -> None:
    user, _ = fresh_user
    _seed_big(dovecot, user, count=3)
    fault_proxy.cut_after(50_000, rst=True)
    client = dovecot.imap_client(user, port=fault_proxy.port)
    client.select_folder("INBOX")
    with pytest.raises((OSError, IMAPClientError, ssl.SSLError)):
        client.fetch(client.search(), ["BODY.PEEK[]"])
    assert fault_proxy.cuts == 1
    assert 50_000 <= fault_proxy.bytes_s2c <= 50_000 + 100  # exactly the budget (+ nothing after)
    fault_proxy.reset()
    assert fault_proxy.cuts == 0


def test_proxy_stall_and_plain_starttls(
    dovecot: Dovecot, fresh_user: tuple[str, str], make_fault_proxy
) -> None:
    user, password = fresh_user
    proxy = make_fault_proxy(dovecot.host, dovecot.imap_port)
    client = IMAPClient(proxy.host, port=proxy.port, ssl=False, timeout=10)
    client.starttls(dovecot.ssl_context())
    client.login(user, password)
    proxy.stall_after(0, 1.0)
    start = time.monotonic()
    client.noop()
    assert time.monotonic() - start >= 0.9
    assert proxy.stalls == 1
    start = time.monotonic()
    client.noop()  # one-shot
    assert time.monotonic() - start < 0.5
    client.logout()


def test_proxy_cut_every_connection(dovecot: Dovecot, make_fault_proxy) -> None:
    proxy = make_fault_proxy(dovecot.host, dovecot.imaps_port)
    proxy.cut_after(0, times=None)
    for _ in range(3):
        with pytest.raises((OSError, IMAPClientError, ssl.SSLError)):
            IMAPClient(proxy.host, port=proxy.port, ssl=True, ssl_context=dovecot.ssl_context(), timeout=5)
    assert proxy.cuts == 3
    proxy.reset()
    IMAPClient(proxy.host, port=proxy.port, ssl=True, ssl_context=dovecot.ssl_context(), timeout=5).logout()


# ----------------------------------------------------------------------------- lifecycle


def test_own_instance_start_stop_leaves_nothing_behind(tmp_path) -> None:
    server = Dovecot(tmp_path / "dv")
    server.add_user("zed", "pw")
    server.start()
    try:
        client = server.imap_client("zed")  # spawns imap + login children
        client.select_folder("INBOX")
        pgid = server.pid
        assert pgid is not None
        assert len(_group_members(pgid)) > 1
        assert "starting up" in server.log_text()
    finally:
        server.stop()
    assert _group_members(pgid) == []
    for port in (server.imap_port, server.imaps_port, server.pop3_port, server.pop3s_port):
        with pytest.raises(OSError):
            socket.create_connection((server.host, port), timeout=1).close()
    server.stop()  # idempotent
