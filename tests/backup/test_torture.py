"""The torture set (malformed, binary, huge-header mail) through IMAP and POP3: stored byte-exact as served.

Needs ``MAILVAULT_CORPUS`` (the shared corpus directory holding ``torture/``).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.backup.helpers import Account, backup, by_key, ls, open_vault, pop3, server_messages
from tests.common import sha
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.corpus


def _torture_files() -> list[Path]:
    corpus = os.environ.get("MAILVAULT_CORPUS")
    if not corpus:
        pytest.skip("MAILVAULT_CORPUS is not set (point it at the shared corpus dir holding torture/)")
    root = Path(corpus) / "torture"
    if not root.is_dir():
        pytest.skip(f"MAILVAULT_CORPUS={corpus} has no torture/ directory")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name != "README.md"
        and not (
            p.parent.name == "mbox" and p.parent.parent.name == "mimekit" and p.name.endswith(".mbox.txt")
        )
    )
    assert len(files) > 300, f"only {len(files)} torture files under {root}"
    return files


@pytest.fixture
def torture(dovecot: Dovecot, account: Account) -> dict[int, tuple[Path, bytes]]:
    """Every single-message torture file seeded into the account's INBOX: uid -> (file, raw bytes)."""
    files = _torture_files()
    raws = [p.read_bytes() for p in files]
    uids = dovecot.seed(account.user, "INBOX", [(r, [], datetime(2002, 2, 2, tzinfo=UTC)) for r in raws])
    return {uid: (p, raw) for uid, p, raw in zip(uids, files, raws, strict=True)}


def test_torture_set_imap_byte_exact(
    account: Account, vault: Path, torture: dict[int, tuple[Path, bytes]]
) -> None:
    served = server_messages(account, "INBOX")
    assert set(served) == set(torture)
    # the awkward cases are really there, as served
    bodies = [m.body for m in served.values()]
    assert any(b"\x80" in b and b"\x00" in torture[uid][1] for uid, b in zip(served, bodies, strict=True))
    assert any(len(b.split(b"\r\n\r\n", 1)[0]) > 200_000 for b in bodies)  # flanker/long-header.eml
    assert any(max(b.split(b"\r\n\r\n", 1)[0]) >= 0x80 for b in bodies if b)  # 8-bit header bytes
    assert all(b"\n" not in b.replace(b"\r\n", b"") for b in bodies)  # bare LF is served as CRLF
    assert any(b"\n" in raw.replace(b"\r\n", b"") for _, raw in torture.values())  # ... and was seeded

    result = backup(vault, account)
    assert result["failures"] == []
    assert result["messages_fetched"] == len(torture)
    rows = by_key(ls(vault, result["snapshot"]))
    for uid, (path, raw) in torture.items():
        row = rows[("INBOX", uid)]
        body = served[uid].body
        assert row["blob"] == sha(body), path
        assert row["size"] == len(body), path
        assert body == Dovecot.served_form(raw), path  # the harness's prediction of what is served
    with open_vault(vault) as repo:
        snap = repo.resolve_snapshot(result["snapshot"])
        for _, entry, raw in repo.iter_messages(snap, ["INBOX"]):
            assert raw == served[int(entry.uid)].body, torture[int(entry.uid)][0]


def _pop3_wire_bodies(account: Account, count: int) -> dict[str, bytes]:
    """UIDL -> the message bytes as they come over the wire (lines kept as sent, dot-unstuffed).

    Read straight off the socket, not through poplib's line splitting (which the backup uses).
    """
    conn = pop3(account)
    try:
        uidls = {int(n): u.decode() for n, u in (line.split() for line in conn.uidl()[1])}
        assert len(uidls) == count
        out = {}
        for n, uidl in uidls.items():
            conn._putcmd(f"RETR {n}")
            status = conn.file.readline()
            assert status.startswith(b"+OK"), status
            chunks = []
            while True:
                line = conn.file.readline(1 << 30)
                assert line, "connection closed mid-message"
                if line == b".\r\n":
                    break
                chunks.append(line[1:] if line.startswith(b"..") else line)
            out[uidl] = b"".join(chunks)
        return out
    finally:
        conn.quit()


def test_torture_set_pop3(account: Account, vault: Path, torture: dict[int, tuple[Path, bytes]]) -> None:
    """POP3: the blob is the message as the POP3 server sends it (NUL bytes kept, unlike IMAP BODY[])."""
    wire = _pop3_wire_bodies(account, len(torture))
    result = backup(vault, account, scheme="pop3s")
    assert result["failures"] == []
    assert result["messages"] == len(torture)
    rows = {r["uid"]: r for r in ls(vault, result["snapshot"])}
    assert set(rows) == set(wire)
    for uidl, body in wire.items():
        path, raw = torture[int(uidl[:8], 16)]  # Dovecot's UIDL is %08Xu%08Xv
        assert rows[uidl]["blob"] == sha(body), path
        assert rows[uidl]["size"] == len(body), path
        # what Dovecot sends: CRLF line endings, NUL as is, a final CRLF added when missing
        predicted = re.sub(rb"(?<!\r)\n", b"\r\n", Dovecot.stored_form(raw))
        assert body in (predicted, predicted + b"\r\n"), path
    assert any(b"\x00" in b for b in wire.values())
