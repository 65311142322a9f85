"""A damaged vault end to end (real Dovecot, real CLI): one pack of a 3-pack vault is deleted.

``check`` lists the affected messages; ``restore`` of the damaged snapshot restores everything
readable and names the rest (exit 1); ``repair`` makes ``check --read-data`` pass; a restore of the
repaired snapshot brings back exactly every message not in the lost pack; the next backup brings
the lost messages back from the server.
"""

from __future__ import annotations

import email
import hashlib
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mailvault.vault.format import BLOB_MESSAGE
from mailvault.vault.repository import Repository, VaultParams
from tests.common import init_vault, mv, mv_json
from tests.restore.helpers import (
    VAULT_PASSWORD,
    Account,
    Msg,
    assert_same,
    backup,
    read_account,
    restore,
    seed_set,
)

#: Small packs, so 250 messages of 3 KB fill three message packs.
PARAMS = VaultParams(pack_size=64 << 10, block_size=16 << 10, dictionary="off")
LAYOUT = {"INBOX": 120, "Archive": 70, "Sent": 60}


def _message_packs(vault: Path) -> dict[bytes, set[bytes]]:
    with Repository.open(str(vault), VAULT_PASSWORD.encode) as repo:
        out: dict[bytes, set[bytes]] = {}
        for blob, blob_type in repo.cache.iter_blobs():
            if blob_type == BLOB_MESSAGE:
                out.setdefault(repo.locate(blob).pack_id, set()).add(blob)
        return out


def _without(bag: dict[str, Counter[Msg]], lost: set[bytes]) -> dict[str, Counter[Msg]]:
    return {
        f: Counter({m: n for m, n in msgs.items() if hashlib.sha256(m[0]).digest() not in lost})
        for f, msgs in bag.items()
    }


def test_one_pack_lost_check_repair_restore_backup(
    source: Account, make_account: Callable[..., Account], tmp_path: Path
) -> None:
    vault = tmp_path / "vault3"
    init_vault(vault, VAULT_PASSWORD, PARAMS)
    rng = random.Random(11)
    source.seed({f: seed_set(n, rng, tag=f"dmg-{f}-", size=3000) for f, n in LAYOUT.items()})
    total = sum(LAYOUT.values())
    assert backup(vault, source)["messages"] == total
    packs = _message_packs(vault)
    assert len(packs) == 3, {p.hex()[:8]: len(b) for p, b in packs.items()}
    victim = sorted(packs)[1]
    lost = packs[victim]
    (vault / "data" / victim.hex()[:2] / victim.hex()).unlink()

    want = read_account(source, LAYOUT)
    # Which (folder, UID)s hold the lost messages, as the server numbers them.
    client = source.server.imap_client(source.user)
    lost_uids = set()
    lost_mids = {}
    try:
        for folder in LAYOUT:
            client.select_folder(folder, readonly=True)
            for uid, d in client.fetch(client.search("ALL"), ["BODY.PEEK[]"]).items():
                if hashlib.sha256(d[b"BODY[]"]).digest() in lost:
                    lost_uids.add((folder, uid))
                    lost_mids[(folder, uid)] = email.message_from_bytes(d[b"BODY[]"])["Message-ID"]
    finally:
        client.logout()
    assert len(lost_uids) == len(lost) > 0

    # check names the pack and every affected message (JSON and text).
    report = mv_json("check", vault, code=1)
    assert [d["id"] for d in report["damaged"] if d["kind"] == "pack"] == [victim.hex()]
    assert {(m["folder"], m["uid"]) for m in report["lost_messages"]} == lost_uids
    assert {(m["folder"], m["uid"]): m["message_id"] for m in report["lost_messages"]} == lost_mids
    assert len(report["affected_snapshots"]) == 1
    text = mv("check", vault, code=1).stdout
    for (folder, uid), mid in lost_mids.items():
        assert f"folder {folder!r} uid {uid} {mid} " in text, text

    # restore of the damaged snapshot: everything readable, the rest named, exit 1.
    early = make_account()
    r = restore(vault, early, code=1)
    assert (r["uploaded"], r["failed"], r["already_there"]) == (total - len(lost), len(lost), 0), r
    assert r["uploaded"] + r["already_there"] + r["failed"] + r["pending"] == r["messages"] == total
    for folder, uid in lost_uids:
        assert any(f.startswith(f"{folder} UID {uid} ") for f in r["failures"]), (folder, uid, r["failures"])
    expected = _without(want, lost)
    got = read_account(early, LAYOUT)
    for folder in LAYOUT:
        assert_same(expected[folder], got[folder], folder)

    # repair: the vault passes check --read-data; the report names the lost messages.
    dry = mv_json("repair", vault, "--dry-run")
    assert {(m["folder"], m["uid"]) for m in dry["lost_messages"]} == lost_uids
    assert mv_json("check", vault, code=1)["ok"] is False  # the dry run changed nothing
    rep = mv_json("repair", vault)
    assert {(m["folder"], m["uid"]) for m in rep["lost_messages"]} == lost_uids
    assert len(rep["snapshots_rewritten"]) == 1
    after = mv_json("check", vault, "--read-data")
    assert after["ok"] is True and after["errors"] == [], after
    snaps = mv_json("snapshots", vault)
    assert len(snaps) == 1 and "repaired" in snaps[0]["tags"]
    recorded = snaps[0]["repairs"][0]["lost_messages"]
    assert {(m["folder"], m["uid"]): m["message_id"] for m in recorded} == lost_mids

    # restore of the repaired snapshot: every message not in the lost pack, exactly; exit 0.
    target = make_account()
    r2 = restore(vault, target)
    assert r2["uploaded"] == r2["messages"] == total - len(lost) and r2["failures"] == []
    assert [w for w in r2["warnings"] if "was repaired" in w and f"{len(lost)} message(s)" in w], r2[
        "warnings"
    ]
    got = read_account(target, LAYOUT)
    for folder in LAYOUT:
        assert_same(expected[folder], got[folder], folder)
    # A rerun accounts for every message as already there.
    r3 = restore(vault, target)
    assert (r3["uploaded"], r3["already_there"], r3["failed"]) == (0, total - len(lost), 0), r3

    # The lost messages are still on the server: the next backup brings them back.
    b2 = backup(vault, source)
    assert b2["messages"] == total and b2["new_messages"] == len(lost), b2
    assert mv_json("check", vault, "--read-data")["ok"] is True
    final = make_account()
    restore(vault, final, "--snapshot", b2["snapshot"])
    got = read_account(final, LAYOUT)
    for folder in LAYOUT:
        assert_same(want[folder], got[folder], folder)
