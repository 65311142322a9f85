"""A backup through the real server writes messages into compression blocks in Date order across
folders (mailvault/vault/order.py): a reply lies beside the message it quotes, whatever folder and
connection each came from; every message still exports byte-exact."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from mailvault.vault.format import sha256
from mailvault.vault.order import date_key
from tests.backup.helpers import Account, backup, cli_json, open_vault
from tests.common import invoke as cli
from tests.common import sha
from tests.servers.dovecot import Dovecot


def _mail(i: int, day: int, quoted: str = "") -> bytes:
    body = f"Reply {i} about the plan.\r\n" + "".join(f"> {line}\r\n" for line in quoted.splitlines())
    return (
        f"From: p{i % 3}@example.org\r\nTo: team@example.org\r\nSubject: plan {i // 2}\r\n"
        f"Message-ID: <order-{i}@example.org>\r\nDate: Tue, {day} Mar 2021 09:{i % 60:02d}:00 +0000\r\n\r\n"
        f"{body}{'plan text line ' * 40}\r\n"
    ).encode()


def test_backup_packs_messages_in_date_order_across_folders(
    dovecot: Dovecot, fresh_user: tuple[str, str], tmp_path: Path, vault: Path
) -> None:
    alice = Account(dovecot, *fresh_user)
    # Originals in INBOX on odd days, the replies (quoting them) in Sent the day after.
    inbox = [_mail(2 * k, 1 + 2 * k) for k in range(10)]
    sent = [_mail(2 * k + 1, 2 + 2 * k, quoted=inbox[k].decode()) for k in range(10)]
    when = datetime(2021, 3, 1, tzinfo=UTC)
    dovecot.seed(alice.user, "INBOX", [(m, [], when) for m in inbox])
    dovecot.seed(alice.user, "Sent", [(m, ["\\Seen"], when) for m in sent])
    assert backup(vault, alice)["new_messages"] == 20

    served = [Dovecot.served_form(m) for m in inbox + sent]
    with open_vault(vault) as repo:
        where = {}
        for raw in served:
            loc = repo.locate(sha256(raw))
            where[raw] = (loc.pack_id, loc.block_no, loc.offset)
    in_packs = sorted(served, key=where.__getitem__)
    assert in_packs == sorted(served, key=lambda r: date_key(r) or 0)
    # ... so each reply follows its original, although they came from two folders.
    assert in_packs[1::2] == [Dovecot.served_form(m) for m in sent]

    snap = cli_json("snapshots", vault, "--account", alice.account_name)[-1]["id"]
    cli("export", vault, snap, tmp_path / "out", "--format", "eml", "--quiet")
    got = Counter(sha(p.read_bytes()) for p in (tmp_path / "out").rglob("*.eml"))
    assert got == Counter(sha(r) for r in served)
