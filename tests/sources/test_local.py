"""Local mail stores: mbox, Maildir (Maildir++ and fs layout), eml directories, Thunderbird."""

from __future__ import annotations

import io
import os
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailvault.errors import ConfigError, SourceError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.sources.local import (
    detect_format,
    header_date,
    header_fields,
    iter_local,
    parse_from_line_date,
    split_mbox,
)

MTIME = 1_000_000_000  # 2001-09-09T01:46:40Z
MTIME_DT = datetime.fromtimestamp(MTIME, tz=UTC)


def write(path: Path, data: bytes, mtime: float = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def collect(path: Path, fmt: str = "auto", **kw: bool) -> dict[str, tuple[FolderInfo, list[SourceMessage]]]:
    out: dict[str, tuple[FolderInfo, list[SourceMessage]]] = {}
    for info, msgs in iter_local(path, fmt, **kw):
        assert info.name not in out, f"folder {info.name} yielded twice"
        out[info.name] = (info, list(msgs))
    return out


# ---------------------------------------------------------------------------------------
# Header helpers
# ---------------------------------------------------------------------------------------


def test_header_fields_unfolds_and_stops_at_blank_line() -> None:
    raw = b"From x Sat Jan  3 01:05:34 1996\nSubject: a\n  b\r\nX-Y:z\n\nDate: not a header\n"
    assert header_fields(raw) == [("subject", "a b"), ("x-y", "z")]


def test_header_fields_cap() -> None:
    raw = b"Subject: x\n" + b"X-Pad: " + b"a" * 300_000 + b"\nDate: Mon, 1 Jan 2001 00:00:00 +0000\n\n"
    assert [n for n, _ in header_fields(raw)] == ["subject", "x-pad"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"Received: from a by b; Tue, 2 Jan 2001 10:00:00 +0200\n"
            b"Received: from c by d; Mon, 1 Jan 2001 00:00:00 +0000\n"
            b"Date: Sun, 31 Dec 2000 00:00:00 +0000\n\nbody\n",
            datetime(2001, 1, 2, 8, 0, tzinfo=UTC),
        ),
        # a broken Received date falls back to Date
        (
            b"Received: from a by b; yesterday at noon\nDate: Sun, 31 Dec 2000 00:00:00 +0000\n\n",
            datetime(2000, 12, 31, tzinfo=UTC),
        ),
        # no ';' in Received
        (
            b"Received: from a by b\nDate: Sun, 31 Dec 2000 00:00:00 -0000\n\n",
            datetime(2000, 12, 31, tzinfo=UTC),
        ),
        (b"Date: garbage\n\n", None),
        (b"Date: Sun, 31 Dec 99999 00:00:00 +0000\n\n", None),
        (b"Date: Sun, 31 Dec 2000 00:00:00 +9999\n\n", None),
        (b"Subject: \xff\xfe\x00\nDate\n\n", None),
        (b"", None),
        (b"\x00\x00\x00", None),
        (b"\n\nDate: Sun, 31 Dec 2000 00:00:00 +0000\n", None),
    ],
)
def test_header_date(raw: bytes, expected: datetime | None) -> None:
    got = header_date(raw)
    assert got == expected
    if got is not None:
        assert got.tzinfo is not None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"From sender@example.com Sat Jan  3 01:05:34 1996\n", datetime(1996, 1, 3, 1, 5, 34, tzinfo=UTC)),
        (b"From - Mon Jun  3 12:50:27 1996\r\n", datetime(1996, 6, 3, 12, 50, 27, tzinfo=UTC)),
        (b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n", datetime(2011, 7, 8, 12, 8, 34, tzinfo=UTC)),
        (
            b"From a@b Thu Feb  1 10:00:00 2001 +0200\n",
            datetime(2001, 2, 1, 10, tzinfo=timezone(timedelta(hours=2))),
        ),
        (b"From a@b Thu Feb  1 10:00 PST 2001\n", datetime(2001, 2, 1, 10, tzinfo=UTC)),
        (b"From -\n", None),
        (b"From - \n", None),
        (b"From Russia with love\n", None),
        (b"From x Mon Feb 31 10:00:00 2001\n", None),
    ],
)
def test_parse_from_line_date(line: bytes, expected: datetime | None) -> None:
    assert parse_from_line_date(line) == expected


# ---------------------------------------------------------------------------------------
# mbox
# ---------------------------------------------------------------------------------------

M1 = b"From: a@example.com\nSubject: one\n\nHello\nFrom the body, unquoted? no: >From quoted\n"
MBOX = (
    b"From a@example.com Sat Jan  3 01:05:34 1996\n"
    + b"From: a@example.com\nSubject: one\n\nHello\n>From the start of a line\n>>From twice\n\n"
    + b"From b@example.com Sun Jan  4 02:00:00 1996\n"
    + b"Subject: two (crlf)\r\nReceived: from x; Mon, 5 Jan 1996 00:00:00 +0000\r\n\r\nbody\r\n\r\n"
    + b"From c@example.com Mon Jan  5 03:00:00 1996\n"
    + b"Subject: three, no blank line before the next From\n\nnul\x00byte\n"
    + b"From d@example.com bad date\n"
    + b"Subject: four\nReceived: from x by y; Tue, 6 Jan 1996 10:00:00 +0100\n"
    + b"Date: Wed, 7 Jan 1996 00:00:00 +0000\n\n"
    + b"From Russia with love\n\n"
    + b"From e@example.com\n"
    + b"Subject: five\nDate: Wed, 7 Jan 1996 00:00:00 +0000\n\ntwo blank lines\n\n\n"
    + b"From f@example.com\n"
    + b"Subject: six, no date, no final newline\n\nend"
)


def test_mbox_split_and_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "Archive.mbox", MBOX)
    folders = collect(path)
    assert list(folders) == ["Archive"]
    info, msgs = folders["Archive"]
    assert info.name_raw == "Archive.mbox"
    assert info.delimiter == "/"
    assert [m.raw for m in msgs] == [
        b"From: a@example.com\nSubject: one\n\nHello\n>From the start of a line\n>>From twice\n",
        b"Subject: two (crlf)\r\nReceived: from x; Mon, 5 Jan 1996 00:00:00 +0000\r\n\r\nbody\r\n",
        b"Subject: three, no blank line before the next From\n\nnul\x00byte\n",
        b"Subject: four\nReceived: from x by y; Tue, 6 Jan 1996 10:00:00 +0100\n"
        b"Date: Wed, 7 Jan 1996 00:00:00 +0000\n",
        # an unquoted From line in a body starts a new message (Python's mailbox rule)
        b"",
        b"Subject: five\nDate: Wed, 7 Jan 1996 00:00:00 +0000\n\ntwo blank lines\n\n",
        b"Subject: six, no date, no final newline\n\nend",
    ]
    assert [m.uid for m in msgs] == [1, 2, 3, 4, 5, 6, 7]
    assert [m.internaldate for m in msgs] == [
        datetime(1996, 1, 3, 1, 5, 34, tzinfo=UTC),
        datetime(1996, 1, 4, 2, 0, 0, tzinfo=UTC),  # the From line wins over Received
        datetime(1996, 1, 5, 3, 0, 0, tzinfo=UTC),
        datetime(1996, 1, 6, 9, 0, 0, tzinfo=UTC),  # From line unparsable -> Received
        MTIME_DT,
        datetime(1996, 1, 7, tzinfo=UTC),  # -> Date
        MTIME_DT,  # -> file mtime
    ]
    assert all(m.internaldate is not None and m.internaldate.tzinfo is not None for m in msgs)
    assert msgs[0].extra["mbox_from_line"] == "From a@example.com Sat Jan  3 01:05:34 1996"


def test_mbox_matches_python_mailbox(tmp_path: Path) -> None:
    import mailbox

    path = write(tmp_path / "x.mbox", MBOX)
    mb = mailbox.mbox(str(path), create=False)
    try:
        expected = [mb.get_bytes(key, from_=False) for key in mb.iterkeys()]
    finally:
        mb.close()
    # Python treats only "\n" as the blank separator line; our CRLF message keeps one
    # more "\r\n" there. Compare the others.
    ours = [m.raw for _, msgs in iter_local(path) for m in msgs]
    assert len(ours) == len(expected)
    for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
        if i != 1:
            assert a == b


def test_mboxrd_unquoting(tmp_path: Path) -> None:
    path = write(tmp_path / "rd", MBOX)
    (_, msgs) = collect(path, mboxrd=True)["rd"]
    assert (
        msgs[0].raw == b"From: a@example.com\nSubject: one\n\nHello\nFrom the start of a line\n>From twice\n"
    )
    # only lines at the start are touched
    data = b"From x Sat Jan  3 01:05:34 1996\n\nA >From B\n>>>From C\n>Fromage\n > From\n"
    (_, msgs) = collect(write(tmp_path / "rd2", data), mboxrd=True)["rd2"]
    assert msgs[0].raw == b"\nA >From B\n>>From C\n>Fromage\n > From\n"


@pytest.mark.parametrize("name", ["inbox", "INBOX", "Inbox.mbox", "inbox.MBX"])
def test_mbox_inbox_name(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b"From x Sat Jan  3 01:05:34 1996\n\nhi\n")
    assert list(collect(path)) == ["INBOX"]


def test_mbox_other_suffix_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "lists.python.org.txt", b"")
    folders = collect(path)
    assert list(folders) == ["lists.python.org.txt"]
    assert folders["lists.python.org.txt"][1] == []


def test_mbox_preamble_and_bom(tmp_path: Path) -> None:
    # a file that is not an mbox at all is one message, kept whole
    path = write(tmp_path / "plain", b"Subject: x\r\n\r\nbody\r\n\r\n")
    assert [m.raw for m in collect(path, "mbox")["plain"][1]] == [b"Subject: x\r\n\r\nbody\r\n\r\n"]
    # whitespace before the first From line is dropped; a UTF-8 BOM too
    path = write(tmp_path / "bom", b"\xef\xbb\xbfFrom -\nSubject: a\n\nA\n\nFrom -\nSubject: b\n\nB\n")
    assert [m.raw for m in collect(path)["bom"][1]] == [b"Subject: a\n\nA\n", b"Subject: b\n\nB\n"]
    path = write(tmp_path / "ws", b"\n\nFrom -\nSubject: b\n\nB\n")
    assert [m.raw for m in collect(path)["ws"][1]] == [b"Subject: b\n\nB\n"]


def test_mbox_status_flags(tmp_path: Path) -> None:
    data = (
        b"From x Sat Jan  3 01:05:34 1996\nStatus: RO\nX-Status: AF\nSubject: a\n\nA\n\n"
        b"From x Sat Jan  3 01:05:34 1996\nStatus: O\nSubject: b\n\nB\n"
    )
    msgs = collect(write(tmp_path / "m", data))["m"][1]
    assert set(msgs[0].flags) == {"\\Seen", "\\Answered", "\\Flagged"}
    assert msgs[1].flags == ()


class _Lines(io.RawIOBase):
    """A binary stream that records how far it has been read."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.served = 0

    def readable(self) -> bool:
        return True

    def __iter__(self) -> Iterator[bytes]:
        for line in self.lines:
            self.served += 1
            yield line


def test_split_mbox_streams() -> None:
    lines = [b"From a Sat Jan  3 01:05:34 1996\n", b"x\n", b"\n"] * 1000
    stream = _Lines(lines)
    it = split_mbox(stream)  # type: ignore[arg-type]
    first = next(it)
    assert first == (lines[0], b"x\n")
    assert stream.served <= 5
    assert sum(1 for _ in it) == 999


def test_iter_local_is_lazy(tmp_path: Path) -> None:
    write(tmp_path / "a" / "1.eml", b"Subject: a\n\n")
    gen = iter_local(tmp_path, "eml")
    assert isinstance(gen, types.GeneratorType)
    info, msgs = next(gen)
    assert info.name == "a"
    assert isinstance(msgs, types.GeneratorType)


# ---------------------------------------------------------------------------------------
# Maildir
# ---------------------------------------------------------------------------------------


def make_maildir(d: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)


def test_maildirpp(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    make_maildir(root)
    write(root / "cur" / "1000.M1P1.host:2,SR", b"Subject: one\r\n\r\nCRLF body\r\n", mtime=1000)
    write(root / "cur" / "1001.M2P1.host,S=12:2,", b"Subject: two\n\nLF body\n", mtime=1001)
    write(root / "new" / "1002.M3P1.host", b"Subject: new\n\n\x00nul\n", mtime=1002)
    write(root / "tmp" / "1003.M4P1.host", b"Subject: being delivered\n\n")
    write(root / "cur" / "0999.M0P1.host:2,FPTDbay", b"", mtime=999)  # empty message kept
    for junk in (
        "dovecot-uidlist",
        "dovecot-keywords",
        "dovecot.index",
        "dovecot.index.log",
        "subscriptions",
        "maildirfolder",
        ".mbsyncstate",
        ".uidvalidity",
    ):
        write(root / junk, b"")
    write(root / "dovecot-uidlist", b"3 V1234567890 N42 G0123456789abcdef\n1 :1000.M1P1.host\n")
    write(root / "dovecot-keywords", b"0 $Junk\n1 Work\n25 Last\nbad line\n")

    sent = root / ".Sent"
    make_maildir(sent)
    write(sent / "maildirfolder", b"")
    write(sent / "cur" / "2000.x,U=17:2,S", b"Subject: sent\n\n")

    sub = root / ".Projects.Q1 &- Q2"
    make_maildir(sub)
    write(sub / "cur" / "3000.y:2,", b"Subject: q\n\n")

    entw = root / ".Entw&APw-rfe"
    make_maildir(entw)
    write(entw / "new" / "4000.z", b"Subject: draft\n\n")

    broken = root / ".A&B"  # not valid modified UTF-7: kept as is
    make_maildir(broken)
    (root / ".notmuch" / "xapian").mkdir(parents=True)  # not a maildir

    assert detect_format(root) == "maildir"
    folders = collect(root)
    assert sorted(folders) == ["A&B", "Entwürfe", "INBOX", "Projects/Q1 & Q2", "Sent"]

    info, msgs = folders["INBOX"]
    assert info == FolderInfo(name="INBOX", name_raw=".", delimiter="/", uidvalidity=1234567890, uidnext=42)
    assert [m.uid for m in msgs] == [
        "0999.M0P1.host",
        "1000.M1P1.host",
        "1001.M2P1.host,S=12",
        "1002.M3P1.host",
    ]
    assert [m.raw for m in msgs] == [
        b"",
        b"Subject: one\r\n\r\nCRLF body\r\n",
        b"Subject: two\n\nLF body\n",
        b"Subject: new\n\n\x00nul\n",
    ]
    assert set(msgs[0].flags) == {"\\Flagged", "$Forwarded", "\\Deleted", "\\Draft", "Work", "$Junk"}
    assert "Last" not in msgs[0].flags
    assert msgs[0].extra == {"maildir_unknown_flags": "y"}
    assert set(msgs[1].flags) == {"\\Seen", "\\Answered"}
    assert msgs[2].flags == ()
    assert msgs[3].flags == ()
    assert [m.internaldate for m in msgs] == [
        datetime.fromtimestamp(t, tz=UTC) for t in (999, 1000, 1001, 1002)
    ]

    info, msgs = folders["Sent"]
    assert info.name_raw == ".Sent"
    assert info.uidvalidity is None
    assert msgs[0].uid == "2000.x,U=17"
    assert msgs[0].extra == {"mbsync_uid": 17}
    assert msgs[0].flags == ("\\Seen",)

    assert folders["Projects/Q1 & Q2"][0].name_raw == ".Projects.Q1 &- Q2"
    assert folders["Entwürfe"][0].name_raw == ".Entw&APw-rfe"
    assert [m.raw for m in folders["Entwürfe"][1]] == [b"Subject: draft\n\n"]
    assert folders["A&B"][1] == []


def test_maildir_fs_layout(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    make_maildir(root / "INBOX")
    write(root / "INBOX" / "cur" / "1.a:2,S", b"Subject: in\n\n")
    make_maildir(root / "Archive")
    make_maildir(root / "Archive" / "2019")
    write(root / "Archive" / "2019" / "cur" / "2.b:2,", b"Subject: 2019\n\n")
    make_maildir(root / "Lists" / "python" / "dev")  # Lists and Lists/python are containers only
    write(root / "Lists" / "python" / "dev" / "new" / "3.c", b"Subject: dev\n\n")
    make_maildir(root / "Entw&APw-rfe" / "Q1 &- Q2")
    write(root / "Archive" / ".mbsyncstate", b"")
    write(root / ".mbsyncstate", b"")
    assert detect_format(root) == "maildir"
    folders = collect(root)
    assert sorted(folders) == ["Archive", "Archive/2019", "Entwürfe/Q1 & Q2", "INBOX", "Lists/python/dev"]
    assert folders["Lists/python/dev"][0].name_raw == "Lists/python/dev"
    assert folders["Entwürfe/Q1 & Q2"][0].name_raw == "Entw&APw-rfe/Q1 &- Q2"
    assert [m.raw for m in folders["Archive/2019"][1]] == [b"Subject: 2019\n\n"]
    assert folders["INBOX"][1][0].flags == ("\\Seen",)


def test_maildir_deep_detection(tmp_path: Path) -> None:
    make_maildir(tmp_path / "a" / "b" / "c")
    assert detect_format(tmp_path) == "maildir"
    assert list(collect(tmp_path)) == ["a/b/c"]


def test_maildir_requires_directory(tmp_path: Path) -> None:
    path = write(tmp_path / "f", b"")
    with pytest.raises(SourceError):
        iter_local(path, "maildir")


# ---------------------------------------------------------------------------------------
# Directories of single-message files
# ---------------------------------------------------------------------------------------

SPAMASSASSIN_LIKE = (
    b"From 12a1mailbot1@web.de  Thu Aug 22 13:17:22 2002\n"
    b"Return-Path: <12a1mailbot1@web.de>\n"
    b"Received: from mail.example.com by x; Thu, 22 Aug 2002 18:26:25 +0700 (ICT)\n"
    b"Date: Wed, 21 Aug 2002 00:00:00 +0000\n"
    b"Subject: spam\n\nbuy\n"
)


def test_eml_tree(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write(root / "loose.eml", b"Subject: loose\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\n\r\nx\r\n")
    write(root / "spam" / "00001.7c53336b37003a9286aba55d2945844c", SPAMASSASSIN_LIKE)
    write(root / "spam" / "00002.b3e3a31f9d4ea1aa9bd2bf8ec1fe3c9b", b"Subject: no date\n\n")
    write(root / "spam" / "README.md", b"# not a message\n")
    write(root / "spam" / ".hidden", b"Subject: hidden\n\n")
    write(root / "mh" / "inbox" / "1", b"Subject: 1\n\n")
    write(root / "mh" / "inbox" / "10", b"Subject: 10\n\n")
    write(root / "mh" / "inbox" / "2", b"Subject: 2\n\x00\n")
    write(root / "mh" / "inbox" / ".mh_sequences", b"unseen: 1-2\n")
    write(root / "Inbox" / "x.EML", b"Subject: top inbox dir\n\n")
    write(root / "broken" / "bad", b"\xff\xfe garbage: \x00\nReceived: ; \nDate: 99\n\n")
    (root / "empty").mkdir()
    assert detect_format(root) == "eml"
    # top-level loose files and a top-level "Inbox" directory both are INBOX: both yielded
    pairs = [(info.name, info.name_raw, [m.uid for m in msgs]) for info, msgs in iter_local(root)]
    assert ("INBOX", ".", ["loose.eml"]) in pairs
    assert ("INBOX", "Inbox", ["x.EML"]) in pairs
    (root / "Inbox" / "x.EML").unlink()
    folders = collect(root)
    assert sorted(folders) == ["INBOX", "broken", "mh/inbox", "spam"]

    spam = folders["spam"][1]
    assert [m.uid for m in spam] == [
        "00001.7c53336b37003a9286aba55d2945844c",
        "00002.b3e3a31f9d4ea1aa9bd2bf8ec1fe3c9b",
    ]
    assert spam[0].raw == SPAMASSASSIN_LIKE  # the envelope From line is kept
    assert spam[0].internaldate == datetime(2002, 8, 22, 11, 26, 25, tzinfo=UTC)
    assert spam[1].internaldate == MTIME_DT
    mh = folders["mh/inbox"]
    assert mh[0].name_raw == "mh/inbox"
    assert [m.uid for m in mh[1]] == ["1", "2", "10"]
    assert mh[1][1].raw == b"Subject: 2\n\x00\n"
    assert folders["broken"][1][0].internaldate == MTIME_DT


def test_eml_dir_with_mbox_files(tmp_path: Path) -> None:
    write(tmp_path / "Sent.mbox", b"From x Sat Jan  3 01:05:34 1996\n\nsent\n")
    write(tmp_path / "inbox.mbox", b"From x Sat Jan  3 01:05:34 1996\n\nin\n")
    write(tmp_path / "sub" / "Old.mbx", b"From x Sat Jan  3 01:05:34 1996\n\nold\n")
    folders = collect(tmp_path)
    assert {name: [m.raw for m in msgs] for name, (_, msgs) in folders.items()} == {
        "INBOX": [b"\nin\n"],
        "Sent": [b"\nsent\n"],
        "sub/Old": [b"\nold\n"],
    }


def test_single_eml_file(tmp_path: Path) -> None:
    path = write(tmp_path / "msg.eml", SPAMASSASSIN_LIKE)
    assert detect_format(path) == "eml"
    for fmt in ("auto", "eml"):
        folders = collect(path, fmt)
        assert list(folders) == ["INBOX"]
        (msg,) = folders["INBOX"][1]
        assert msg.raw == SPAMASSASSIN_LIKE
        assert msg.uid == "msg.eml"
    # the same file read as mbox drops the envelope line
    (msg,) = collect(path, "mbox")["msg.eml"][1]
    assert msg.raw == SPAMASSASSIN_LIKE.split(b"\n", 1)[1]


# ---------------------------------------------------------------------------------------
# Thunderbird
# ---------------------------------------------------------------------------------------


def test_thunderbird(tmp_path: Path) -> None:
    root = tmp_path / "Local Folders"
    write(
        root / "Inbox",
        b"From - Mon Jun  3 12:50:27 1996\n"
        b"X-Mozilla-Status: 1005\nX-Mozilla-Status2: 00000000\nX-Mozilla-Keys: $label1 work     \n"
        b"Subject: in\n\nFrom the desk of\n\n"
        b"From - Tue Jun  4 12:50:27 1996\nX-Mozilla-Status: 0008\nSubject: expunged\n\nbye\n",
    )
    write(root / "Inbox.msf", b'// <!-- <mdb:mork:z v="1.4"/> -->\n')
    write(root / "Trash", b"")
    write(root / "Trash.msf", b"")
    write(root / "Archives", b"")
    write(root / "Archives.sbd" / "2019", b"From - Mon Jun  3 12:50:27 1996\nSubject: old\n\nold\n")
    write(root / "Archives.sbd" / "2019.msf", b"")
    write(root / "Archives.sbd" / "2019.sbd" / "Q1", b"From - Mon Jun  3 12:50:27 1996\n\nq1\n")
    write(root / "Archives.sbd" / "2019.sbd" / "Inbox", b"From - Mon Jun  3 12:50:27 1996\n\nnested\n")
    write(root / "msgFilterRules.dat", b'version="9"\n')
    write(root / "filterlog.html", b"<html>")
    write(root / "popstate.dat", b"# POP3 State File\n")
    assert detect_format(root) == "thunderbird"
    assert detect_format(tmp_path) == "thunderbird"
    folders = collect(root)
    assert sorted(folders) == [
        "Archives",
        "Archives/2019",
        "Archives/2019/Inbox",
        "Archives/2019/Q1",
        "INBOX",
        "Trash",
    ]
    info, msgs = folders["INBOX"]
    assert info.name_raw == "Inbox"
    assert [m.raw for m in msgs] == [
        b"X-Mozilla-Status: 1005\nX-Mozilla-Status2: 00000000\nX-Mozilla-Keys: $label1 work     \n"
        b"Subject: in\n",  # the blank line before a From line is the separator
        # an unquoted From line in a body starts a message: mbox is ambiguous
        b"",
        b"X-Mozilla-Status: 0008\nSubject: expunged\n\nbye\n",
    ]
    assert set(msgs[0].flags) == {"\\Seen", "\\Flagged", "$Forwarded", "$label1", "work"}
    assert msgs[2].flags == ("\\Deleted",)
    assert msgs[0].internaldate == datetime(1996, 6, 3, 12, 50, 27, tzinfo=UTC)
    assert folders["Archives/2019"][0].name_raw == "Archives.sbd/2019"
    assert folders["Archives/2019/Q1"][0].name_raw == "Archives.sbd/2019.sbd/Q1"
    assert [m.raw for m in folders["Archives/2019/Q1"][1]] == [b"\nq1\n"]
    assert folders["Trash"][1] == []


def test_thunderbird_detected_by_sbd_only(tmp_path: Path) -> None:
    write(tmp_path / "Foo.sbd" / "Bar", b"From - Mon Jun  3 12:50:27 1996\n\nbar\n")
    assert detect_format(tmp_path) == "thunderbird"
    assert list(collect(tmp_path)) == ["Foo/Bar"]


# ---------------------------------------------------------------------------------------
# Errors and detection
# ---------------------------------------------------------------------------------------


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "x", b"")) == "mbox"
    (tmp_path / "d" / "new").mkdir(parents=True)
    assert detect_format(tmp_path / "d") == "maildir"
    (tmp_path / "e").mkdir()
    assert detect_format(tmp_path / "e") == "eml"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as exc:
        detect_format(tmp_path / "nope")
    assert "\n" not in str(exc.value)
    with pytest.raises(SourceError):
        iter_local(tmp_path / "nope")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        iter_local(tmp_path, "pst")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    path = write(tmp_path / "locked.mbox", b"From x\n\n")
    real_open = builtins.open

    def deny(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(SourceError, match="Permission denied"):
        for _, msgs in iter_local(path):
            list(msgs)


def test_special_file() -> None:
    with pytest.raises(SourceError, match="not a regular file"):
        iter_local("/dev/null")


# ---------------------------------------------------------------------------------------
# The torture corpus
# ---------------------------------------------------------------------------------------


@pytest.mark.corpus
def test_torture_corpus() -> None:
    corpus = os.environ.get("MAILVAULT_CORPUS")
    if not corpus:
        pytest.skip("MAILVAULT_CORPUS is not set (point it at ../shared/corpus)")
    torture = Path(corpus) / "torture"
    if not torture.is_dir():
        pytest.skip(f"{torture} does not exist")
    files = sorted(p for p in torture.rglob("*") if p.is_file() and p.name != "README.md")
    assert len(files) > 300
    mboxes = 0
    for path in files:
        if path.name.endswith(".mbox.txt"):
            msgs = [m for _, ms in iter_local(path, "mbox") for m in ms]
            assert msgs, path
            assert all(m.raw in path.read_bytes() for m in msgs)
            mboxes += len(msgs)
            continue
        folders = list(iter_local(path, "eml"))
        assert len(folders) == 1
        (msg,) = list(folders[0][1])
        assert msg.raw == path.read_bytes(), path
        assert msg.internaldate is not None and msg.internaldate.tzinfo is not None
    assert mboxes >= 39
