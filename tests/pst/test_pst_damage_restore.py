"""PST import with damage (unreadable items named, exit 1, vault clean), and the restore of a PST
snapshot into a real Dovecot account (Sent Items lands in the special-use \\Sent folder)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.common import invoke, mv
from tests.restore.helpers import Account, list_folders, read_account, restore
from tests.servers.dovecot import Dovecot

CORPUS = os.environ.get("MAILVAULT_CORPUS")

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        not CORPUS, reason="set MAILVAULT_CORPUS=/path/to/shared/corpus to run the corpus tier"
    ),
]

OUTLOOK_1 = "pst/aspose-email/Outlook_1.pst"
#: 512 bytes inverted at this offset of Outlook_1.pst damage the 6th item of Inbox (its index
#: node), and nothing else: libpff still opens the file and reads the other 13 mail items.
DAMAGE_OFFSET = 0x1B400


@pytest.fixture
def _env(cli_env: Path) -> Path:
    return cli_env


def _json(*args: str | Path, code: int | None = 0) -> dict:
    out = json.loads(invoke(*args, "--json", code=code).stdout)
    assert isinstance(out, dict)
    return out


def _blobs(vault: Path, snapshot: str) -> set[str]:
    return {r["blob"] for r in json.loads(invoke("ls", vault, snapshot, "--json").stdout)}


def test_damaged_pst_imports_the_readable_items_and_names_the_rest(
    vault: Path, tmp_path: Path, _env: Path
) -> None:
    clean = Path(CORPUS or "") / OUTLOOK_1
    data = bytearray(clean.read_bytes())
    for i in range(DAMAGE_OFFSET, DAMAGE_OFFSET + 512):
        data[i] ^= 0xFF
    damaged = tmp_path / "damaged.pst"
    damaged.write_bytes(bytes(data))

    proc = mv("import", vault, damaged, "--account", "damaged", code=1)
    unreadable = [line for line in proc.stderr.splitlines() if "damaged.pst: folder" in line]
    assert len(unreadable) == 1, proc.stderr
    assert "folder 'Top of Personal Folders/Inbox' item 6:" in unreadable[0]
    assert all(line.startswith("mailvault: ") for line in proc.stderr.splitlines()), proc.stderr

    snaps = json.loads(invoke("snapshots", vault, "--json").stdout)
    assert len(snaps) == 1 and snaps[0]["messages"] == 13
    assert invoke("check", vault, "--read-data", code=0).exit_code == 0

    # The 13 are exactly what the undamaged file gives for those items: nothing half-converted.
    good = _json("import", vault, clean, "--account", "clean")
    assert good["messages"] == 14
    assert _blobs(vault, snaps[0]["id"]) < _blobs(vault, good["snapshot"])


def test_pst_snapshot_restores_with_sent_items_in_the_sent_folder(
    vault: Path, dovecot: Dovecot, fresh_user: tuple[str, str], tmp_path: Path, _env: Path
) -> None:
    pst = Path(CORPUS or "") / OUTLOOK_1
    out = _json("import", vault, pst, "--account", "outlook")
    assert out["messages"] == 14
    folders = {r["folder"] for r in json.loads(invoke("ls", vault, "latest", "--json").stdout)}
    assert folders == {"INBOX", "Sent Items"}

    target = Account(dovecot, *fresh_user)
    r = restore(vault, target, "--account", "outlook")
    assert r["failures"] == [], r
    listing = list_folders(target)
    sent = [name for name, attrs in listing.items() if "\\Sent" in attrs]
    assert len(sent) == 1, listing
    got = read_account(target, ["INBOX", sent[0]])
    assert sum(got[sent[0]].values()) == 6
    assert sum(got["INBOX"].values()) == 8
    assert "Sent Items" not in listing  # mapped onto the target's \Sent folder, not created beside it

    # Byte-exact: what the server holds is what the vault exported.
    export = tmp_path / "export"
    invoke("export", vault, "latest", export, "--format", "eml")
    exported = {p.read_bytes() for p in export.rglob("*.eml")}
    served = {body for bag in got.values() for (body, _flags, _date) in bag}
    assert served == exported
    # Flags: the two unread Inbox mails come back unread, everything else \Seen.
    unseen = [m for m in got["INBOX"] if "\\Seen" not in m[1]]
    assert len(unseen) == 2
    shutil.rmtree(export)
