"""Apple Mail through the CLI: V10 trees (nested mailboxes, plist flags, .partial.emlx with
Attachments/), the real samples of the corpus, bad .emlx files, exported ``Name.mbox`` bundles."""

from __future__ import annotations

import base64
import email
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.common import assert_one_line_error, invoke, sha
from tests.common import mv as mv_proc
from tests.localclients.builders import Partial, build_v10, emlx, received_date, strip_envelope
from tests.localclients.cli import mv, mv_json


def _rows(vault: Path, account: str) -> list[dict[str, object]]:
    return mv_json("ls", vault, "latest", "--account", account)  # type: ignore[no-any-return]


def _exported(vault: Path, account: str, dest: Path) -> dict[str, list[bytes]]:
    invoke("export", vault, "latest", dest, "--account", account, "--format", "eml", "--quiet")
    out: dict[str, list[bytes]] = {}
    for p in sorted(dest.rglob("*.eml")):
        out.setdefault(p.parent.relative_to(dest).as_posix(), []).append(p.read_bytes())
    return out


def _leaves(raw: bytes) -> dict[str, bytes]:
    """Decoded bytes of every leaf part, by IMAP part number."""
    out: dict[str, bytes] = {}

    def walk(msg: email.message.Message, number: str) -> None:
        if msg.is_multipart():
            for i, part in enumerate(msg.get_payload(), 1):  # type: ignore[union-attr]
                walk(part, f"{number}.{i}" if number else str(i))
        else:
            data = msg.get_payload(decode=True)
            out[number or "1"] = data if isinstance(data, bytes) else b""

    walk(email.message_from_bytes(raw), "")
    return out


def _attachment(i: int, size: int) -> bytes:
    return bytes((j * 31 + i) % 256 for j in range(size))


def _multipart(i: int, data: bytes) -> bytes:
    """A message whose base64 part is encoded as Apple Mail does (76 columns, LF), so a rebuilt
    .partial.emlx gives the original bytes back."""
    b64 = base64.b64encode(data)
    body = b"\n".join(b64[k : k + 76] for k in range(0, len(b64), 76))
    return (
        (
            f"From: a{i}@example.org\nTo: b@example.org\nSubject: report {i}\n"
            f"Message-ID: <report{i}@example.org>\nDate: Mon, 2 Sep 2002 10:{i % 60:02d}:00 +0000\n"
            'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="Apple-Mail=_B0"\n\n'
            "--Apple-Mail=_B0\nContent-Type: text/plain; charset=us-ascii\n\nSee the attached report.\n\n"
            "--Apple-Mail=_B0\nContent-Transfer-Encoding: base64\n"
            f"Content-Disposition: attachment;\n\tfilename=report{i}.bin\n"
            f"Content-Type: application/octet-stream;\n\tname=report{i}.bin\n\n"
        ).encode()
        + body
        + b"\n--Apple-Mail=_B0--\n"
    )


def _plain(i: int) -> bytes:
    return (
        f"From: sender{i}@example.org\nTo: me@example.org\nSubject: note {i}\n"
        f"Message-ID: <note{i}@example.org>\nDate: Tue, 3 Sep 2002 11:{i % 60:02d}:00 +0000\n\n"
        f"Body of note {i}.\n"
    ).encode()


def _check_full(
    vault: Path, account: str, tree_full: dict[str, list[tuple[bytes, set[str]]]], tmp: Path
) -> None:
    rows = _rows(vault, account)
    got = Counter((str(r["folder"]), str(r["blob"]), frozenset(r["flags"])) for r in rows)  # type: ignore[arg-type]
    for folder, items in tree_full.items():
        for raw, flags in items:
            key = (folder, sha(raw), frozenset(flags))
            assert got[key] >= 1, (
                f"{folder}: message {sha(raw)[:12]} with flags {sorted(flags)} not in the vault"
            )
    exported = _exported(vault, account, tmp / "export")
    for folder, items in tree_full.items():
        have = Counter(sha(b) for b in exported[folder])
        for raw, _flags in items:
            assert have[sha(raw)] >= 1, f"{folder}: export lost the exact bytes of {sha(raw)[:12]}"


def test_v10_tree_small(tmp_path: Path, vault: Path) -> None:
    """Nested mailboxes, plist flags, INTERNALDATE from date-received, partials rebuilt byte-exact."""
    folders = {
        "INBOX": [_plain(i) for i in range(6)] + [_multipart(i, _attachment(i, 3000 + i)) for i in range(3)],
        "Work": [_plain(i) for i in range(10, 13)],
        "Work/Clients": [_multipart(i, _attachment(i, 500)) for i in range(20, 24)],
        "Sent Messages": [_plain(30)],
    }
    tree = build_v10(tmp_path / "home", folders, partial_every=1)
    assert sum(len(v) for v in tree.partial.values()) == 7
    out = mv("import", vault, tmp_path / "home" / "Library" / "Mail", "--account", "mac", "--json")
    result = mv_json("snapshots", vault)
    assert len(result) == 1
    rows = _rows(vault, "mac")
    assert {str(r["folder"]) for r in rows} == {"INBOX", "Work", "Work/Clients", "Sent Messages"}
    assert len(rows) == sum(len(v) for v in folders.values()), out.stdout
    _check_full(vault, "mac", tree.full, tmp_path)
    # The partials come back exactly: the attachment was re-encoded as Mail had received it.
    blobs = Counter((str(r["folder"]), str(r["blob"])) for r in rows)
    for folder, partials in tree.partial.items():
        for p in partials:
            assert blobs[(folder, sha(p.original))] == 1, f"{folder}: partial not rebuilt to the original"
    # INTERNALDATE is the plist's date-received (one hour apart per ROWID, from 1001 on).
    dates = {str(r["internaldate"]) for r in rows}
    assert dates == {received_date(rowid).isoformat() for rowid in range(1001, 1001 + len(rows))}
    snap = mv_json("snapshots", vault)[0]
    assert snap["messages"] == len(rows)


@pytest.mark.corpus
def test_v10_tree_from_corpus_a(corpus: Path, tmp_path: Path, vault: Path) -> None:
    sa = corpus / "spamassassin"

    def take(folder: str, n: int, *, attachments: bool = False) -> list[bytes]:
        out = []
        for p in sorted((sa / folder).iterdir()):
            raw = strip_envelope(p.read_bytes())
            if attachments and b"base64" not in raw.lower():
                continue
            out.append(raw)
            if len(out) == n:
                break
        return out

    folders = {
        "INBOX": take("easy_ham", 120),
        "Lists": take("easy_ham_2", 60),
        "Lists/Work": take("hard_ham", 40),
        "Lists/Work/Attachments": take("spam_2", 30, attachments=True) + take("spam", 30, attachments=True),
        "Junk": take("spam", 50),
    }
    tree = build_v10(tmp_path / "home", folders, partial_every=2)
    partials: list[tuple[str, Partial]] = [(f, p) for f, ps in tree.partial.items() for p in ps]
    assert len(partials) >= 10, "the corpus slice has too few base64 attachments for partial tests"

    mv("import", vault, tmp_path / "home" / "Library" / "Mail" / "V10", "--account", "mac", "--quiet")
    rows = _rows(vault, "mac")
    assert len(rows) == sum(len(v) for v in folders.values())
    _check_full(vault, "mac", tree.full, tmp_path)

    # Rebuilt partials: same decoded attachment bytes as the original, no Apple stub header left.
    exported = _exported(vault, "mac", tmp_path / "export2")
    full_hashes = {sha(raw) for items in tree.full.values() for raw, _ in items}
    for folder, p in partials:
        candidates = [b for b in exported[folder] if sha(b) not in full_hashes]
        want = {n: sha(data) for n, (_name, data) in p.files.items()}
        match = [b for b in candidates if {n: sha(d) for n, d in _leaves(b).items() if n in want} == want]
        assert match, f"{folder}: no rebuilt message carries the attachments of a partial"
        assert all(b"X-Apple-Content-Length" not in b for b in match)
    check = mv_json("check", vault, "--read-data")
    assert check["ok"] is True or check.get("errors") == [], check


@pytest.mark.corpus
def test_real_samples(corpus: Path, tmp_path: Path, vault: Path) -> None:
    """The corpus samples: damaged files are named (file + folder), the rest is imported, exit 1."""
    src = corpus / "applemail"
    proc = mv("import", vault, src, "--account", "samples", "--quiet", code=1)
    err = proc.stderr
    for needle in (
        "114893.partial.emlx (folder input): attachment part(s) 2.2, 2.4, 2.6, 2.8 not found",
        "136153.partial.emlx (folder input): byte count 3007 does not match",
        "invalid.emlx (folder skip-emlx): not an emlx message, skipped",
        "broken2.emlx (folder terhechte-emlx): no byte-count line",
    ):
        assert needle in err, err
    rows = _rows(vault, "samples")
    assert len(rows) == 17  # 18 .emlx files; invalid.emlx holds no message
    # A full .emlx gives its bytes exactly.
    data = (src / "partial-emlx-converter" / "input" / "Messages" / "114862.emlx").read_bytes()
    count = int(data.split(b"\n", 1)[0])
    exact = data.split(b"\n", 1)[1][:count]
    assert sha(exact) in {r["blob"] for r in rows}
    # 114892 rebuilt: every attachment file is back in its part.
    exported = _exported(vault, "samples", tmp_path / "out")
    attach = src / "partial-emlx-converter" / "input" / "Attachments" / "114892"
    want = {d.name: sha(next(d.iterdir()).read_bytes()) for d in attach.iterdir()}
    found = [
        b
        for bs in exported.values()
        for b in bs
        if {n: sha(x) for n, x in _leaves(b).items() if n in want} == want
    ]
    assert len(found) == 2  # 114892 and 114894 carry the same four files
    check = mv_json("check", vault, "--read-data")
    assert check["ok"] is True or check.get("errors") == [], check


def test_bad_emlx_named_exit_1_vault_clean(tmp_path: Path, vault: Path) -> None:
    box = tmp_path / "V10" / "ACCOUNT" / "INBOX.mbox" / "X" / "Data" / "Messages"
    box.mkdir(parents=True)
    good = _plain(1)
    (box / "1.emlx").write_bytes(emlx(good, ["\\Seen"], 1_200_000_000))
    wrong = emlx(_plain(2), ["\\Flagged"], 1_200_000_000)
    (box / "2.emlx").write_bytes(b"9999      " + wrong[wrong.index(b"\n") :])
    (box / "3.emlx").write_bytes(b"this is not an emlx file at all\n")
    os.symlink("4.emlx", box / "4.emlx")  # a loop: open() fails
    proc = mv("import", vault, tmp_path / "V10", "--account", "bad", code=1)
    assert "2.emlx (folder INBOX): byte count 9999 does not match the file" in proc.stderr
    assert "3.emlx (folder INBOX): not an emlx message, skipped" in proc.stderr
    assert "4.emlx (folder INBOX): cannot read" in proc.stderr
    rows = _rows(vault, "bad")
    assert sorted(str(r["uid"]) for r in rows) == ["1", "2"]
    by_uid = {str(r["uid"]): r for r in rows}
    assert by_uid["1"]["blob"] == sha(good) and by_uid["1"]["flags"] == ["\\Seen"]
    assert by_uid["2"]["flags"] == ["\\Flagged"]  # the plist was found after the fallback
    check = mv_json("check", vault, "--read-data")
    assert check["ok"] is True or check.get("errors") == [], check


def test_exported_mbox_bundles(tmp_path: Path, vault: Path) -> None:
    """Mail's File > Export Mailbox: ``Name.mbox/mbox`` (+ Info.plist), nested bundles."""
    a = tmp_path / "Export" / "Projects.mbox"
    b = a / "Old.mbox"
    b.mkdir(parents=True)
    (a / "Info.plist").write_bytes(b"<plist/>")
    msgs = [_plain(i) for i in range(4)]
    (a / "mbox").write_bytes(b"".join(b"From x@y Mon Sep  2 10:00:00 2002\n" + m + b"\n" for m in msgs[:3]))
    (b / "mbox").write_bytes(b"From x@y Mon Sep  2 10:00:00 2002\n" + msgs[3] + b"\n")
    mv("import", vault, tmp_path / "Export", "--account", "bundle", "--quiet")
    rows = _rows(vault, "bundle")
    assert Counter(str(r["folder"]) for r in rows) == {"Projects": 3, "Projects/Old": 1}
    assert {str(r["blob"]) for r in rows} == {sha(m) for m in msgs}


@pytest.mark.parametrize(
    ("name", "data", "what"),
    [
        ("report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
        ("mail.zip", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(200), "zip"),
        ("blob", bytes(range(256)) * 8, "binary"),
        ("notes.txt", b"just some notes\nno headers here\n", "no mail"),
    ],
)
def test_non_mail_file_refused(tmp_path: Path, vault: Path, name: str, data: bytes, what: str) -> None:
    p = tmp_path / name
    p.write_bytes(data)
    proc = mv_proc("import", vault, p, "--account", "x", code=2)
    assert_one_line_error(proc, 2, "not a mail file", what)
    assert mv_json("snapshots", vault) == []


def test_pst_before_pst_support_is_refused(
    tmp_path: Path, vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailvault.sources.detect as detect

    monkeypatch.setattr(detect, "pst_available", lambda: False)
    p = tmp_path / "Outlook.pst"
    p.write_bytes(b"!BDN" + bytes(508))
    result = invoke("import", vault, p, "--account", "x", code=2)
    assert "Outlook PST/OST" in result.stderr
    assert mv_json("snapshots", vault) == []
