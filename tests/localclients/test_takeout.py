"""Google Takeout mbox through the CLI: one folder per label, each message stored once, flags
from the state labels, INTERNALDATE from the ``From`` line, CRLF bytes kept; a restore into the
fake Gmail uploads each message once and gives it its labels."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailvault.net import mutf7
from tests.common import sha
from tests.gmail.fakegmail import FakeGmail, running
from tests.gmail.helpers import make_message
from tests.localclients.builders import strip_envelope, takeout_date, takeout_mbox
from tests.localclients.cli import mv, mv_json

SYSTEM_FOLDER = {"inbox": "INBOX", "sent": "Sent", "drafts": "Drafts", "spam": "Spam", "trash": "Trash"}
SYSTEM_LABEL = {
    "inbox": "\\Inbox",
    "sent": "\\Sent",
    "drafts": "\\Draft",
    "spam": "\\Spam",
    "trash": "\\Trash",
}
STATE = {"opened", "unread", "archived", "starred", "important"}


def expected_folders(labels: Sequence[str]) -> set[str]:
    low = [lab.lower() for lab in labels]
    if "chat" in low:
        return {"Chats"}
    out = {SYSTEM_FOLDER[x] for x in low if x in SYSTEM_FOLDER}
    out |= {
        lab
        for lab in labels
        if lab.lower() not in SYSTEM_FOLDER
        and lab.lower() not in STATE
        and not lab.startswith(("Category ", "IMAP_"))
    }
    if not {"spam", "trash"} & set(low):
        out.add("All Mail")
    return out


def expected_flags(labels: Sequence[str]) -> set[str]:
    low = {lab.lower() for lab in labels}
    flags = set()
    if "unread" not in low:
        flags.add("\\Seen")
    if "starred" in low:
        flags.add("\\Flagged")
    if "imap_$forwarded" in low:
        flags.add("$Forwarded")
    return flags


def expected_gmail_labels(labels: Sequence[str]) -> set[str]:
    """The labels the message must carry on the Gmail server after a restore."""
    low = [lab.lower() for lab in labels]
    if "chat" in low:
        return {"Chats"}
    out = {SYSTEM_LABEL[x] for x in low if x in SYSTEM_LABEL}
    if "important" in low:
        out.add("\\Important")
    out |= {
        lab
        for lab in labels
        if lab.lower() not in SYSTEM_FOLDER
        and lab.lower() not in STATE
        and not lab.startswith(("Category ", "IMAP_"))
    }
    return out


LABEL_SETS: list[list[str]] = [
    ["Inbox", "Opened", "Important"],
    ["Inbox", "Unread", "Category Updates"],
    ["Sent", "Opened"],
    ["Sent", "Work", "Starred"],
    ["Archived", "Work/Clients", "Opened"],
    ["Inbox", "Work", "Work/Clients", "IMAP_$Forwarded"],
    ["Drafts"],
    ["Spam", "Unread"],
    ["Trash", "Opened"],
    ["Archived"],
    ["Inbox", "Reisen, 2020", "Ünïcode label"],
    ["Chat"],
    [],
]


def _items(messages: list[bytes], seed: int) -> list[tuple[bytes, list[str]]]:
    rng = random.Random(seed)
    return [
        (raw, LABEL_SETS[i % len(LABEL_SETS)] if i < len(LABEL_SETS) else rng.choice(LABEL_SETS))
        for i, raw in enumerate(messages)
    ]


def _import_and_check(
    vault: Path, mbox: Path, items: list[tuple[bytes, list[str]]], expected: list[bytes]
) -> None:
    out = mv_json("import", vault, mbox, "--account", "me@gmail.com")
    assert out["format"] == "takeout"
    distinct = {sha(m) for m in expected}
    assert out["messages"] == len(expected)
    assert out["new_messages"] == len(distinct)  # each message stored once, whatever its labels
    rows = mv_json("ls", vault, "latest", "--account", "me@gmail.com")
    got: dict[str, set[str]] = {}
    for r in rows:
        got.setdefault(r["folder"], set()).add(r["blob"])
    want: dict[str, set[str]] = {}
    for (_raw, labels), message in zip(items, expected, strict=True):
        for folder in expected_folders(labels):
            want.setdefault(folder, set()).add(sha(message))
    assert got == want
    first: dict[str, dict[str, object]] = {}
    for r in rows:
        first.setdefault(r["blob"], r)
    for i, ((_raw, labels), message) in enumerate(zip(items, expected, strict=True)):
        row = first[sha(message)]
        assert set(row["flags"]) == expected_flags(labels), (labels, row)  # type: ignore[arg-type]
        assert row["internaldate"] == takeout_date(i).isoformat()
        gm = set(row.get("labels", []))  # type: ignore[arg-type]
        assert gm == expected_gmail_labels(labels) - {"Chats"}, (labels, gm)
    snaps = mv_json("snapshots", vault)
    assert {s["source"]["kind"] for s in snaps} == {"takeout"}


def _restore_and_check(
    vault: Path,
    g: FakeGmail,
    items: list[tuple[bytes, list[str]]],
    expected: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GMAIL_PW", g.password)
    doc = mv_json(
        "restore",
        vault,
        g.url,
        "--account",
        "me@gmail.com",
        "--password-env",
        "GMAIL_PW",
        "--allow-plaintext",
        "--quiet",
    )
    assert doc["gmail"] is True
    distinct = {sha(m): labels for (_r, labels), m in zip(items, expected, strict=True)}
    assert g.append_count() == len(distinct), "a message was uploaded more than once"
    assert doc["uploaded"] == len(distinct)
    on_server = Counter(sha(m.raw) for m in g.messages.values())
    assert set(on_server) == set(distinct) and max(on_server.values()) == 1
    for m in g.messages.values():
        labels = distinct[sha(m.raw)]
        server_labels = {mutf7.decode(lab) for lab in m.labels}  # the fake keeps modified UTF-7
        assert server_labels == expected_gmail_labels(labels), (labels, m.labels)
        assert m.flags == expected_flags(labels), (labels, m.flags)


def test_takeout_labels_and_gmail_restore(
    tmp_path: Path, vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _items([make_message(i, seed=7) for i in range(40)], seed=1)
    data, expected = takeout_mbox(items)
    mbox = tmp_path / "All mail Including Spam and Trash.mbox"
    mbox.write_bytes(data)
    _import_and_check(vault, mbox, items, expected)
    # A second import of the same file adds no message bytes.
    again = mv_json("import", vault, mbox, "--account", "me@gmail.com")
    assert again["new_messages"] == 0
    with running() as g:
        _restore_and_check(vault, g, items, expected, monkeypatch)


@pytest.mark.corpus
def test_takeout_from_corpus_a(
    corpus: Path, tmp_path: Path, vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted((corpus / "spamassassin" / "easy_ham_2").iterdir())[:120]
    files += sorted((corpus / "spamassassin" / "spam").iterdir())[:60]
    messages = []
    for p in files:
        raw = strip_envelope(p.read_bytes())
        if b"\nFrom " in raw or b"\r" in raw:  # keep the test about labels, not mbox quoting
            continue
        messages.append(raw)
    items = _items(messages, seed=2)
    data, expected = takeout_mbox(items)
    mbox = tmp_path / "Takeout" / "Mail" / "All mail Including Spam and Trash.mbox"
    mbox.parent.mkdir(parents=True)
    mbox.write_bytes(data)
    _import_and_check(vault, mbox, items, expected)
    with running() as g:
        _restore_and_check(vault, g, items, expected, monkeypatch)


@pytest.mark.corpus
def test_takeout_real_sample(corpus: Path, vault: Path) -> None:
    src = corpus / "takeout" / "dogsheep" / "small.gmail.mbox"
    data = src.read_bytes()
    # The messages as the file holds them: CRLF, the separator blank line not included.
    chunks = [b"From " + c for c in data[5:].split(b"\r\n\r\nFrom ")]
    messages = [c.split(b"\r\n", 1)[1] for c in chunks]
    messages = [m if m.endswith(b"\r\n") else m + b"\r\n" for m in messages]
    messages[-1] = messages[-1].removesuffix(b"\r\n")  # the last one keeps its own ending
    out = mv_json("import", vault, src, "--account", "dogsheep")
    assert out["format"] == "takeout" and out["messages"] == 6
    rows = mv_json("ls", vault, "latest", "--account", "dogsheep")
    assert Counter(r["folder"] for r in rows) == {"All Mail": 4, "Chats": 2}
    blobs = {r["blob"] for r in rows}
    assert len(blobs) == 6
    assert all(b"\r\n" in m for m in messages)
    unread = [r for r in rows if r["uid"] in ("1277085061787347926", "1278212428183604564")]
    assert len(unread) == 2 and all("\\Seen" not in r["flags"] for r in unread)
    assert rows[0]["internaldate"] == "2008-08-05T08:00:23+00:00"
    check = mv_json("check", vault, "--read-data")
    assert check["ok"] is True or check.get("errors") == [], check


def test_takeout_zip_and_tgz_archives(tmp_path: Path, vault: Path) -> None:
    """The download itself (``takeout-….zip`` / ``.tgz``) imports without unpacking, like its mbox."""
    import tarfile
    import zipfile

    items = _items([make_message(i, seed=9) for i in range(15)], seed=3)
    data, expected = takeout_mbox(items)
    member = "Takeout/Mail/All mail Including Spam and Trash.mbox"
    zpath = tmp_path / "takeout-20241201T101010Z-001.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Takeout/archive_browser.html", "<html></html>")
        zf.writestr(member, data)
    src = tmp_path / "src"
    (src / "Takeout" / "Mail").mkdir(parents=True)
    (src / member).write_bytes(data)
    tpath = tmp_path / "takeout-20241201T101010Z-001.tgz"
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(src / "Takeout", arcname="Takeout")
    for account, path in (("zip", zpath), ("tgz", tpath)):
        out = mv_json("import", vault, path, "--account", account)
        assert out["format"] == "takeout" and out["messages"] == len(expected)
        rows = mv_json("ls", vault, "latest", "--account", account)
        assert {r["blob"] for r in rows} == {sha(m) for m in expected}
        assert "INBOX" in {r["folder"] for r in rows}
    stores = mv_json("discover", tmp_path)
    archives = sorted(s["path"] for s in stores if s["format"] == "takeout" and s["estimate"])
    assert archives == sorted([str(zpath), str(tpath)])
    # An archive that holds no mail is refused, and a plain zip is no mail at all.
    empty = tmp_path / "takeout-empty.tgz"
    (tmp_path / "drive").mkdir()
    (tmp_path / "drive" / "notes.txt").write_text("no mail here")
    with tarfile.open(empty, "w:gz") as tf:
        tf.add(tmp_path / "drive", arcname="Takeout/Drive")
    proc = mv("import", vault, empty, "--account", "e", code=2)
    assert "no Takeout mail" in proc.stderr
    assert "e" not in {s["account"] for s in mv_json("snapshots", vault)}
