"""Exporters: Maildir, mbox (mboxrd) and eml; safe paths; round trips through iter_local."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailvault.errors import ConfigError, ExportError
from mailvault.export import folder_parts, mboxrd_escape, open_exporter, safe_component
from mailvault.sources.local import iter_local

DATE = datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)  # 1000000000


def blob(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------
# Folder names -> paths
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "maildir", "expected"),
    [
        ("Sent", False, "Sent"),
        ("..", False, "%2E%2E"),
        (".", False, "%2E"),
        ("", False, "%"),
        (".hidden", False, "%2Ehidden"),
        ("a.b", False, "a.b"),
        ("a\\b", False, "a%5Cb"),
        ("a/b", False, "a%2Fb"),
        ("nul\x00tab\tdel\x7f", False, "nul%00tab%09del%7F"),
        ("c1\x85", False, "c1%C2%85"),
        ("Entwürfe", False, "Entwürfe"),
        ("cur", False, "cur"),
        ("cur", True, "%63ur"),
        ("new", True, "%6Eew"),
        ("tmp", True, "%74mp"),
        ("Entwürfe", True, "Entw&APw-rfe"),
        ("Q1 & Q2", True, "Q1 &- Q2"),
        ("..", True, "%2E%2E"),
    ],
)
def test_safe_component(component: str, maildir: bool, expected: str) -> None:
    assert safe_component(component, maildir=maildir) == expected


def test_long_component_is_shortened() -> None:
    long = "x" * 1000
    safe = safe_component(long)
    assert len(safe.encode()) < 240
    assert safe != safe_component("x" * 999)


def test_folder_parts() -> None:
    assert folder_parts("INBOX.Sent.2019", ".") == ["INBOX", "Sent", "2019"]
    assert folder_parts("a/b", None) == ["a%2Fb"]
    assert folder_parts("a//b/", "/") == ["a", "%", "b", "%"]
    assert folder_parts("../../etc", "/") == ["%2E%2E", "%2E%2E", "etc"]


NASTY = ["..", "../..", "/etc", "a/../../b", ".", "", "\x00", "..\\..", "~", "a/./b", "//", "cur/new/tmp"]


@pytest.mark.parametrize("fmt", ["maildir", "mbox", "eml"])
def test_nasty_folder_names_stay_inside(tmp_path: Path, fmt: str) -> None:
    dest = tmp_path / "out"
    with open_exporter(dest, fmt) as ex:
        for i, name in enumerate(NASTY):
            raw = f"Subject: {i}\n\n".encode()
            ex.add(name, "/", raw, (), DATE, blob(raw))
    outside = [p for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(dest.resolve()) and p != dest]
    assert outside == []
    assert len(files_below(dest)) >= (len(NASTY) if fmt != "mbox" else 1)


def test_symlink_escape_refused(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (dest / "evil").symlink_to(tmp_path / "elsewhere")
    for fmt in ("maildir", "eml", "mbox"):
        ex = open_exporter(dest, fmt)
        with pytest.raises(ExportError, match="outside"):
            ex.add("evil/x", "/", b"x\n", (), DATE, blob(b"x\n"))
        ex.close()
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_bad_format_and_dest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_exporter(tmp_path, "pst")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ExportError):
        open_exporter(tmp_path / "file", "eml")


# ---------------------------------------------------------------------------------------
# Maildir
# ---------------------------------------------------------------------------------------


def test_maildir_export(tmp_path: Path) -> None:
    raw = b"Subject: crlf\r\n\r\nbody\x00\r\n"
    h = blob(raw)
    with open_exporter(tmp_path, "maildir") as ex:
        ex.add("INBOX", "/", raw, ("\\Seen", "\\Answered", "\\Recent", "$Forwarded", "\\Draft"), DATE, h)
        ex.add("Lists.python", ".", raw, ("$Junk", "\\Flagged", "Work", "\\Deleted"), DATE, h)
        ex.add("Lists.python", ".", b"no flags", (), None, blob(b"no flags"))
        ex.add("Entwürfe/cur", "/", b"x", ("work",), DATE, blob(b"x"))
    (inbox,) = (tmp_path / "INBOX" / "cur").iterdir()
    assert inbox.name == f"1000000000.{h[:16]}.1.mailvault:2,DPRS"
    assert inbox.read_bytes() == raw
    assert inbox.stat().st_mtime == 1000000000
    for folder in ("INBOX", "Lists/python", "Entw&APw-rfe/%63ur"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir() if p.is_dir()) == ["cur", "new", "tmp"]
        assert list((tmp_path / folder / "tmp").iterdir()) == []
        assert list((tmp_path / folder / "new").iterdir()) == []
    names = sorted(p.name for p in (tmp_path / "Lists" / "python" / "cur").iterdir())
    assert names[0] == f"1000000000.{h[:16]}.2.mailvault:2,FTab"
    assert names[1].endswith(".3.mailvault:2,")
    assert (tmp_path / "Lists" / "python" / "dovecot-keywords").read_text() == "0 $Junk\n1 Work\n"
    assert (tmp_path / "Entw&APw-rfe" / "%63ur" / "dovecot-keywords").read_text() == "0 work\n"


def test_maildir_never_overwrites(tmp_path: Path) -> None:
    raw = b"Subject: x\n\n"
    with open_exporter(tmp_path, "maildir") as ex:
        ex.add("INBOX", "/", raw, ("\\Seen",), DATE, blob(raw))
    before = files_below(tmp_path)
    with open_exporter(tmp_path, "maildir") as ex, pytest.raises(ExportError, match="exists"):
        ex.add("INBOX", "/", raw, ("\\Seen",), DATE, blob(raw))
    assert files_below(tmp_path) == before


def test_maildir_keyword_limit(tmp_path: Path) -> None:
    flags = [f"kw{i}" for i in range(30)]
    with open_exporter(tmp_path, "maildir") as ex:
        ex.add("INBOX", "/", b"x", flags, DATE, blob(b"x"))
    (msg,) = (tmp_path / "INBOX" / "cur").iterdir()
    assert msg.name.endswith(":2,abcdefghijklmnopqrstuvwxyz")
    ((_info, msgs),) = list(iter_local(tmp_path))
    assert set(next(msgs).flags) == set(flags[:26])


# ---------------------------------------------------------------------------------------
# eml
# ---------------------------------------------------------------------------------------


def test_eml_export(tmp_path: Path) -> None:
    raws = [b"Subject: a\r\n\r\nA\r\n", b"From x Sat Jan  3 01:05:34 1996\nSubject: b\n\nB", b""]
    with open_exporter(tmp_path, "eml") as ex:
        for raw in raws:
            ex.add("Archive/2019", "/", raw, ("\\Seen",), DATE, blob(raw))
        ex.add("INBOX", "/", raws[0], (), None, blob(raws[0]))
    assert files_below(tmp_path) == [
        f"Archive/2019/000001-{blob(raws[0])[:12]}.eml",
        f"Archive/2019/000002-{blob(raws[1])[:12]}.eml",
        f"Archive/2019/000003-{blob(raws[2])[:12]}.eml",
        f"INBOX/000001-{blob(raws[0])[:12]}.eml",
    ]
    first = tmp_path / "Archive" / "2019" / f"000001-{blob(raws[0])[:12]}.eml"
    assert first.read_bytes() == raws[0]
    assert first.stat().st_mtime == 1000000000
    back = {info.name: [m.raw for m in msgs] for info, msgs in iter_local(tmp_path)}
    assert back == {"Archive/2019": raws, "INBOX": [raws[0]]}
    with open_exporter(tmp_path, "eml") as ex, pytest.raises(ExportError, match="exists"):
        ex.add("INBOX", "/", raws[0], (), None, blob(raws[0]))


# ---------------------------------------------------------------------------------------
# mbox
# ---------------------------------------------------------------------------------------


def test_mboxrd_escape() -> None:
    assert mboxrd_escape(b"From a\n>From b\n>>From c\nx From d\n>Fromage\n") == (
        b">From a\n>>From b\n>>>From c\nx From d\n>Fromage\n"
    )
    assert mboxrd_escape(b"a\r\nFrom b\r\n") == b"a\r\n>From b\r\n"


def test_mbox_export_format(tmp_path: Path) -> None:
    local = datetime(2001, 9, 9, 3, 46, 40, tzinfo=timezone(timedelta(hours=2)))
    with open_exporter(tmp_path, "mbox") as ex:
        ex.add("INBOX", "/", b"Subject: a\n\nFrom here\n", ("\\Seen",), local, "0" * 64)
        ex.add("INBOX", "/", b"Subject: b\n\nno newline", (), DATE, "1" * 64)
        ex.add("Lists/python/dev", "/", b"Subject: c\n\n", (), DATE, "2" * 64)
    assert files_below(tmp_path) == ["INBOX.mbox", "Lists/python/dev.mbox"]
    assert (tmp_path / "INBOX.mbox").read_bytes() == (
        b"From MAILER-DAEMON Sun Sep  9 01:46:40 2001\n"
        b"Subject: a\n\n>From here\n\n"
        b"From MAILER-DAEMON Sun Sep  9 01:46:40 2001\n"
        b"Subject: b\n\nno newline\n\n"
    )
    back = {info.name: msgs for info, msgs in iter_local(tmp_path, mboxrd=True)}
    assert [m.internaldate for m in back["INBOX"]] == [DATE, DATE]


def test_mbox_export_date_fallback(tmp_path: Path) -> None:
    raw = b"Date: Mon, 1 Jan 2001 00:00:00 +0000\n\n"
    with open_exporter(tmp_path, "mbox") as ex:
        ex.add("x", None, raw, (), None, blob(raw))
    assert (tmp_path / "x.mbox").read_bytes().startswith(b"From MAILER-DAEMON Mon Jan  1 00:00:00 2001\n")


def test_mbox_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "INBOX.mbox").write_bytes(b"precious")
    with open_exporter(tmp_path, "mbox") as ex, pytest.raises(ExportError, match="exists"):
        ex.add("INBOX", "/", b"x\n", (), DATE, blob(b"x\n"))
    assert (tmp_path / "INBOX.mbox").read_bytes() == b"precious"


def test_mbox_many_folders_reopen(tmp_path: Path) -> None:
    with open_exporter(tmp_path, "mbox") as ex:
        for round_ in range(3):
            for i in range(40):  # more folders than the exporter keeps open
                raw = f"Subject: {round_}\n\n".encode()
                ex.add(f"f{i}", "/", raw, (), DATE, blob(raw))
    back = {info.name: [m.raw for m in msgs] for info, msgs in iter_local(tmp_path, mboxrd=True)}
    assert len(back) == 40
    assert all(v == [b"Subject: 0\n\n", b"Subject: 1\n\n", b"Subject: 2\n\n"] for v in back.values())


TRICKY = [
    b"Subject: plain\n\nhello\n",
    b"Subject: from lines\n\nFrom the start\n>From quoted\n>>From twice\n From not at start\n",
    b"From sender Sat Jan  3 01:05:34 1996\nSubject: envelope kept\n\nx\n",
    b"Subject: crlf\r\n\r\nFrom crlf\r\n>From crlf\r\n\r\n",
    b"Subject: ends with blank lines\n\nx\n\n\n",
    b"Subject: nul\n\n\x00\x01\xff\n",
    b"\n",
    b"",
    b"Subject: headers only\n\n",
    b"Subject: mixed\r\n\nFrom x\r\n",
]


def test_mbox_round_trip(tmp_path: Path) -> None:
    with open_exporter(tmp_path, "mbox") as ex:
        for raw in TRICKY:
            ex.add("INBOX", "/", raw, (), DATE, blob(raw))
    back = [(info.name, [m.raw for m in msgs]) for info, msgs in iter_local(tmp_path, mboxrd=True)]
    assert back == [("INBOX", TRICKY)]
    # also when the file is read directly
    back_file = [m.raw for _, msgs in iter_local(tmp_path / "INBOX.mbox", mboxrd=True) for m in msgs]
    assert back_file == TRICKY


def test_mbox_message_without_final_newline_gains_one(tmp_path: Path) -> None:
    with open_exporter(tmp_path, "mbox") as ex:
        ex.add("INBOX", "/", b"Subject: x\n\nend", (), DATE, "0" * 64)
    (msg,) = [m.raw for _, msgs in iter_local(tmp_path / "INBOX.mbox", mboxrd=True) for m in msgs]
    assert msg == b"Subject: x\n\nend\n"


# ---------------------------------------------------------------------------------------
# Maildir round trip
# ---------------------------------------------------------------------------------------


def build_source_maildir(root: Path) -> None:
    def md(d: Path) -> Path:
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        return d

    def put(path: Path, raw: bytes, mtime: int) -> None:
        path.write_bytes(raw)
        os.utime(path, (mtime, mtime))

    md(root)
    put(root / "cur" / "1.a:2,RS", b"Subject: crlf\r\n\r\nFrom body\r\n", 1_000_000_000)
    put(root / "cur" / "2.b:2,FPabc", b"Subject: kw\n\n\x00nul\n", 1_000_000_100)
    put(root / "new" / "3.c", b"no newline at end", 1_000_000_200)
    put(root / "cur" / "4.d:2,S", b"Subject: crlf\r\n\r\nFrom body\r\n", 1_000_000_300)  # duplicate bytes
    (root / "dovecot-keywords").write_text("0 $Junk\n1 Work\n2 $label1\n")
    put(md(root / ".Entw&APw-rfe") / "cur" / "5.e:2,D", b"Subject: draft\n\n", 1_000_000_400)
    put(md(root / ".Lists.Q1 &- Q2") / "cur" / "6.f:2,T", b"", 1_000_000_500)
    put(md(root / "INBOX" / "Sub") / "cur" / "7.g:2,S", b"Subject: fs layout too\n\n", 1_000_000_600)
    md(root / ".Empty")


def snapshot(root: Path) -> Counter[tuple[str, bytes, frozenset[str], datetime | None]]:
    return Counter(
        (info.name, m.raw, frozenset(m.flags), m.internaldate)
        for info, msgs in iter_local(root)
        for m in msgs
    )


def test_maildir_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_source_maildir(src)
    before = snapshot(src)
    assert len(before) == 7
    assert (
        "Entwürfe",
        b"Subject: draft\n\n",
        frozenset({"\\Draft"}),
        datetime.fromtimestamp(1_000_000_400, UTC),
    ) in before

    out = tmp_path / "out"
    with open_exporter(out, "maildir") as ex:
        for info, msgs in iter_local(src):
            for m in msgs:
                ex.add(info.name, info.delimiter, m.raw, m.flags, m.internaldate, blob(m.raw))
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["Entw&APw-rfe", "INBOX", "Lists"]


def test_escaped_names_read_back_escaped(tmp_path: Path) -> None:
    # Escaping is one-way: the reader shows the escaped component.
    with open_exporter(tmp_path, "maildir") as ex:
        ex.add("a/cur", "/", b"x", (), DATE, blob(b"x"))
        ex.add("..", "/", b"y", (), DATE, blob(b"y"))
    assert sorted(info.name for info, _ in iter_local(tmp_path)) == ["%2E%2E", "a/%63ur"]


def test_eml_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_source_maildir(src)
    out = tmp_path / "out"
    with open_exporter(out, "eml") as ex:
        for info, msgs in iter_local(src):
            for m in msgs:
                ex.add(info.name, info.delimiter, m.raw, m.flags, m.internaldate, blob(m.raw))
    got = Counter((info.name, m.raw) for info, msgs in iter_local(out, "eml") for m in msgs)
    want = Counter((name, raw) for name, raw, _, _ in snapshot(src).elements())
    assert got == want
