"""Backup from, restore into and migrate through a real Cyrus IMAP (the second server beside Dovecot).

Cyrus differs from Dovecot in the ways that matter to a migration tool: hierarchy separator ``.``,
personal namespace ``INBOX.`` (Dovecot ``Work/Sub`` is Cyrus ``INBOX.Work.Sub``), its own SPECIAL-USE
folders (``INBOX.Sent``...), timestamp UIDVALIDITYs. Every check reads the servers independently with
plain imapclient (:func:`tests.restore.helpers.read_account`); docs/INTEROP.md records what each server
rewrites.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from mailvault.vault.repository import Repository
from tests.common import mv_json
from tests.restore.helpers import (
    PW_ENV,
    SOURCE_PW_ENV,
    VAULT_PASSWORD,
    Account,
    Msg,
    assert_same,
    backup,
    list_folders,
    read_account,
    restore,
    seed_set,
)

#: Dovecot folder -> where it lands on Cyrus (INBOX-relative namespace, '.' separator).
DOVECOT_TO_CYRUS = {
    "INBOX": "INBOX",
    "Sent": "INBOX.Sent",
    "Work": "INBOX.Work",
    "Work/Sub": "INBOX.Work.Sub",
    "Ünïcode/日本": "INBOX.Ünïcode.日本",
}
#: The one rewrite that does not come back: '.' is Cyrus's separator, so restore turns a '.' inside a
#: Dovecot folder name into '_' (else "v1.2" would become folder "2" below "v1"), and it stays '_'.
DOTTED = {"Dovecot": "v1.2", "Cyrus": "INBOX.v1_2", "back": "v1_2"}


def seed_dovecot(account: Account, rng: random.Random) -> None:
    for i, folder in enumerate([*DOVECOT_TO_CYRUS, DOTTED["Dovecot"]]):
        msgs = seed_set(4 + i, rng, tag=f"f{i}")
        account.server.seed_append(account.user, folder, msgs)  # type: ignore[attr-defined]


def by_folder_ls(vault: Path, account: str) -> dict[str, Counter[Msg]]:
    """``mailvault ls VAULT latest --json`` as folder -> multiset of (sha256 of bytes, flags, INTERNALDATE)."""
    from datetime import datetime

    out: dict[str, Counter[Msg]] = {}
    for row in mv_json("ls", vault, "latest", "--account", account):
        when = datetime.fromisoformat(row["internaldate"]).astimezone(UTC)
        flags = tuple(sorted(f for f in row["flags"] if f.lower() != "\\recent"))
        out.setdefault(row["folder"], Counter())[(row["blob"].encode(), flags, when)] += 1
    return out


def hashed(account_view: dict[str, Counter[Msg]]) -> dict[str, Counter[Msg]]:
    return {
        folder: Counter({(hashlib.sha256(b).hexdigest().encode(), f, d): n for (b, f, d), n in bag.items()})
        for folder, bag in account_view.items()
        if bag
    }


def test_backup_from_cyrus_exact(cyrus_account: Account, vault: Path) -> None:
    """Bytes (SHA-256), flags incl. keywords, INTERNALDATE: the vault holds what Cyrus serves."""
    rng = random.Random(11)
    cyrus = cyrus_account.server
    cyrus.seed_append(cyrus_account.user, "INBOX", seed_set(6, rng, "ci"))  # type: ignore[attr-defined]
    cyrus.seed_append(cyrus_account.user, "INBOX.Work.Sub", seed_set(5, rng, "cw"))  # type: ignore[attr-defined]
    out = backup(vault, cyrus_account, "--account", "cy")
    assert out["exit_code"] == 0, out
    want = hashed(read_account(cyrus_account))
    got = by_folder_ls(vault, "cy")
    assert set(got) == set(want) == {"INBOX", "INBOX.Work.Sub"}
    for folder in want:
        assert_same(want[folder], got[folder], folder)
    # The snapshot records Cyrus's personal namespace: restore elsewhere strips it (see the migrate test).
    with Repository.open(str(vault), VAULT_PASSWORD.encode) as repo:
        snap = repo.latest_snapshot("cy")
        assert snap is not None
        assert snap.source_namespace == "INBOX."


def test_restore_dovecot_snapshot_into_cyrus(
    make_dovecot_account: Callable[[], Account], cyrus_account: Account, vault: Path
) -> None:
    source = make_dovecot_account()
    seed_dovecot(source, random.Random(12))
    want = read_account(source, [*DOVECOT_TO_CYRUS, DOTTED["Dovecot"]])
    backup(vault, source, "--account", "dv")
    out = restore(vault, cyrus_account, "--account", "dv")
    assert out["exit_code"] == 0
    got = read_account(cyrus_account)
    for dv_folder, cy_folder in [*DOVECOT_TO_CYRUS.items(), (DOTTED["Dovecot"], DOTTED["Cyrus"])]:
        assert_same(want[dv_folder], got[cy_folder], f"{dv_folder} -> {cy_folder}")
    # Sent went into Cyrus's own \\Sent folder; nothing else appeared.
    assert "\\sent" in {a.lower() for a in list_folders(cyrus_account)["INBOX.Sent"]}
    extra = {f for f, bag in got.items() if bag} - {*DOVECOT_TO_CYRUS.values(), DOTTED["Cyrus"]}
    assert not extra, extra


def test_migrate_dovecot_cyrus_dovecot_round_trip(
    make_dovecot_account: Callable[[], Account], cyrus_account: Account, ca_bundle: Path, tmp_path: Path
) -> None:
    """Must-show: every message, flag and date survives Dovecot -> Cyrus -> Dovecot via ``mailvault migrate``."""
    source = make_dovecot_account()
    back = make_dovecot_account()
    seed_dovecot(source, random.Random(13))
    want = read_account(source, [*DOVECOT_TO_CYRUS, DOTTED["Dovecot"]])
    assert sum(len(b) for b in want.values()) == sum(4 + i for i in range(len(DOVECOT_TO_CYRUS) + 1))

    def migrate(src: Account, dst: Account, vault: Path) -> None:
        out = mv_json(
            "migrate", src.url(), dst.url(), "--vault", vault, "--account", "mig",
            "--source-password-env", SOURCE_PW_ENV, "--target-password-env", PW_ENV, "--ca-file", ca_bundle,
            env={SOURCE_PW_ENV: src.password, PW_ENV: dst.password},
        )  # fmt: skip
        assert out["exit_code"] == 0, out

    migrate(source, cyrus_account, tmp_path / "v1")
    on_cyrus = read_account(cyrus_account)
    for dv_folder, cy_folder in [*DOVECOT_TO_CYRUS.items(), (DOTTED["Dovecot"], DOTTED["Cyrus"])]:
        assert_same(want[dv_folder], on_cyrus[cy_folder], f"Dovecot {dv_folder} -> Cyrus {cy_folder}")

    migrate(cyrus_account, back, tmp_path / "v2")
    got = read_account(back)
    for folder in DOVECOT_TO_CYRUS:
        assert_same(want[folder], got[folder], f"round trip {folder}")
    # Named server-side change: the '.' of "v1.2" came back as '_' (messages, flags, dates all intact).
    assert_same(want[DOTTED["Dovecot"]], got[DOTTED["back"]], f"round trip {DOTTED}")
    assert {f for f, bag in got.items() if bag} == {*DOVECOT_TO_CYRUS, DOTTED["back"]}
