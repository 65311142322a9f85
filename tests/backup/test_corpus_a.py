"""Issue 3's acceptance account: corpus A in its 6 folders plus `Entwürfe`, `Projects/2002/Q1 & Q2`,
`日本語` and `Sent`, with \\Seen, \\Answered, \\Flagged, $Forwarded and custom keywords set — backed up
over IMAPS and compared with an independent read of the server.

Needs ``MAILVAULT_CORPUS`` (the shared corpus directory holding ``spamassassin/``).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.backup.helpers import Account, backup, by_key, ls, server_messages
from tests.common import sha
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.corpus

EXTRA = ["Entwürfe", "Projects/2002/Q1 & Q2", "日本語", "Sent"]
FLAG_CHOICES = [
    [],
    ["\\Seen"],
    ["\\Seen", "\\Answered"],
    ["\\Flagged"],
    ["\\Seen", "$Forwarded"],
    ["Work", "$label1"],
]


def _corpus() -> Path:
    corpus = os.environ.get("MAILVAULT_CORPUS")
    if not corpus:
        pytest.skip("MAILVAULT_CORPUS is not set (point it at the shared corpus dir holding spamassassin/)")
    root = Path(corpus) / "spamassassin"
    if not root.is_dir():
        pytest.skip(f"MAILVAULT_CORPUS={corpus} has no spamassassin/ directory")
    return root


def test_corpus_a_account_backed_up_as_served(dovecot: Dovecot, account: Account, vault: Path) -> None:
    root = _corpus()
    rng = random.Random(2002)
    folders: dict[str, list[Path]] = {
        d.name: sorted(d.iterdir()) for d in sorted(root.iterdir()) if d.is_dir()
    }
    # the four extra folders get 10 messages each (Sent: the "10 messages of Sent")
    spare = folders["easy_ham"]
    for i, name in enumerate(EXTRA):
        folders[name] = spare[i * 10 : i * 10 + 10]
    for name, files in folders.items():
        dovecot.seed(
            account.user,
            name,
            [
                (p.read_bytes(), rng.choice(FLAG_CHOICES), datetime.fromtimestamp(p.stat().st_mtime, UTC))
                for p in files
            ],
        )
    before = {name: server_messages(account, name) for name in folders}
    total = sum(len(v) for v in before.values())
    assert total == 8596 + 40

    result = backup(vault, account)
    assert result["failures"] == [] and result["messages"] == total
    rows = by_key(ls(vault, result["snapshot"]))
    assert {f for f, _ in rows} >= set(folders)  # decoded names
    for name, served in before.items():
        for uid, m in served.items():
            row = rows[(name, uid)]
            assert row["blob"] == sha(m.body), (name, uid)
            assert row["size"] == len(m.body)
            assert set(row["flags"]) == set(m.flags), (name, uid)
            assert datetime.fromisoformat(row["internaldate"]) == m.internaldate, (name, uid)
    # the server's flags (\\Seen above all) are as they were
    after = {name: server_messages(account, name, bodies=False) for name in folders}
    assert {n: {u: m.flags for u, m in v.items()} for n, v in after.items()} == {
        n: {u: m.flags for u, m in v.items()} for n, v in before.items()
    }
    again = backup(vault, account)
    assert again["messages_fetched"] == 0
