"""An unreadable file (an I/O error on a dying disk) in a Maildir, an .eml tree or a Thunderbird
folder: the readable messages are imported, every unreadable file is named with its folder,
exit 1, and the vault checks clean."""

from __future__ import annotations

import builtins
import errno
from pathlib import Path
from typing import Any

import pytest

from tests.common import invoke, sha
from tests.localclients.cli import mv_json


def _msg(i: int) -> bytes:
    return f"From: a{i}@example.org\nSubject: s{i}\nMessage-ID: <u{i}@example.org>\n\nbody {i}\n".encode()


def _fail_reading(monkeypatch: pytest.MonkeyPatch, bad: set[Path]) -> None:
    real_open = builtins.open

    def failing(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(str(file)) in bad:
            raise OSError(errno.EIO, "Input/output error")
        return real_open(file, *args, **kwargs)

    # every reader of mailvault.sources.local opens files through builtins.open
    monkeypatch.setattr(builtins, "open", failing)


def _check_clean(vault: Path) -> None:
    check = mv_json("check", vault, "--read-data")
    assert check["ok"] is True or check.get("errors") == [], check


def test_unreadable_files_are_named_and_skipped(
    tmp_path: Path, vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp", ".Work/cur", ".Work/new", ".Work/tmp"):
        (md / sub).mkdir(parents=True)
    good = [md / "cur" / "1.h:2,S", md / "cur" / "3.h:2,", md / ".Work" / "cur" / "4.h:2,S"]
    bad = md / "cur" / "2.h:2,S"
    for i, p in enumerate([*good, bad]):
        p.write_bytes(_msg(i))
    eml = tmp_path / "eml" / "Archive"
    eml.mkdir(parents=True)
    (eml / "a.eml").write_bytes(_msg(10))
    (eml / "b.eml").write_bytes(_msg(11))
    tb = tmp_path / "tb"
    tb.mkdir()
    (tb / "Inbox").write_bytes(b"From x Mon Sep  2 10:00:00 2002\n" + _msg(20) + b"\n")
    (tb / "Inbox.msf").write_bytes(b"")
    (tb / "Sent").write_bytes(b"From x Mon Sep  2 10:00:00 2002\n" + _msg(21) + b"\n")
    (tb / "Sent.msf").write_bytes(b"")
    _fail_reading(monkeypatch, {bad, eml / "b.eml", tb / "Sent"})

    r = invoke("import", vault, md, "--account", "md", code=1)
    assert f"mailvault: {bad} (folder INBOX): cannot read: Input/output error, skipped" in r.stderr
    rows = mv_json("ls", vault, "latest", "--account", "md")
    assert sorted(row["blob"] for row in rows) == sorted(sha(p.read_bytes()) for p in good)

    r = invoke("import", vault, tmp_path / "eml", "--account", "eml", code=1)
    assert f"{eml / 'b.eml'} (folder Archive): cannot read" in r.stderr
    assert [row["blob"] for row in mv_json("ls", vault, "latest", "--account", "eml")] == [sha(_msg(10))]

    r = invoke("import", vault, tb, "--account", "tb", "--format", "thunderbird", code=1)
    assert f"{tb / 'Sent'} (folder Sent): cannot read" in r.stderr
    assert [row["folder"] for row in mv_json("ls", vault, "latest", "--account", "tb")] == ["INBOX"]
    _check_clean(vault)
