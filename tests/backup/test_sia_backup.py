"""Single-instance attachments through the real server and the real CLI: two accounts whose mail
shares attachments and images, backed up into one vault; every message exported byte-exact."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests.backup.helpers import Account, backup, cli_json, stats
from tests.common import invoke as cli
from tests.common import sha
from tests.servers.dovecot import Dovecot
from tests.sia_mail import generate


def test_shared_attachments_backed_up_once_and_exported_exact(
    dovecot: Dovecot, fresh_user: tuple[str, str], tmp_path: Path, vault: Path
) -> None:
    mail = generate(60, seed=11, scale=0.25)
    rng = random.Random(5)
    date = datetime(2022, 3, 1, tzinfo=UTC)
    alice = Account(dovecot, *fresh_user)
    bob_name = f"sia-bob-{rng.getrandbits(24):x}"
    dovecot.add_user(bob_name, "bob-secret")
    bob = Account(dovecot, bob_name, "bob-secret")
    folders = {"INBOX": mail[:40], "Archive": mail[40:]}
    for folder, msgs in folders.items():
        dovecot.seed(alice.user, folder, [(m, ["\\Seen"], date) for m in msgs])
    result = backup(vault, alice)
    assert result["new_messages"] == len(mail)
    parts_after_alice = stats(vault)["parts"]
    # Bob received 30 of the same mails, delivered with his own header: other messages (new blobs),
    # the same attachments (no new part).
    bobs = [b"Delivered-To: bob@example.net\r\n" + m for m in rng.sample(mail, 30)]
    dovecot.seed(bob.user, "INBOX", [(m, [], date) for m in bobs])
    assert backup(vault, bob)["new_messages"] == 30
    assert stats(vault)["parts"] == parts_after_alice

    st = stats(vault)
    assert st["skeleton_messages"] > len(mail) // 2
    assert st["sia_saving"] > 0.3, st
    whole_text = cli("stats", vault).stdout
    assert "attachments:" in whole_text and "saved" in whole_text

    out = tmp_path / "out"
    snap = cli_json("snapshots", vault, "--account", alice.account_name)[-1]["id"]
    cli("export", vault, snap, out, "--format", "eml", "--quiet")
    got = Counter(sha(p.read_bytes()) for p in out.rglob("*.eml"))
    assert got == Counter(sha(Dovecot.served_form(m)) for m in mail)
    snap = cli_json("snapshots", vault, "--account", bob.account_name)[-1]["id"]
    cli("export", vault, snap, tmp_path / "bob", "--format", "eml", "--quiet")
    got = Counter(sha(p.read_bytes()) for p in (tmp_path / "bob").rglob("*.eml"))
    assert got == Counter(sha(Dovecot.served_form(m)) for m in bobs)
    assert cli_json("check", vault, "--read-data")["ok"] is True
