"""How ``tests/vault/data/vault_v1/`` was made (kept for the record; the fixture is committed).

Run once with the vault code of commit 853f1e2 (format version 1, before single-instance
attachments) from the repository root::

    MAILVAULT_CACHE_DIR=$(mktemp -d) python -m tests.vault.data.make_v1_vault tests/vault/data/vault_v1

It writes an encrypted vault (password ``tests.vault.helpers.PASSWORD``, cheap scrypt) with two
snapshots of one account: small messages that share attachments, the kind that a later
format stores once. ``tests/vault/test_sia.py`` opens it with today's code.
"""

from __future__ import annotations

import random
import sys

from mailvault.vault.repository import Repository, VaultParams
from tests.common import FAST_SCRYPT
from tests.sia_mail import Asset, forward, reply_chain
from tests.vault.helpers import PASSWORD, write_snapshot


def messages() -> list[bytes]:
    rng = random.Random(7)
    assets = {
        "docs": [Asset("a.pdf", "application/pdf", rng.randbytes(6000))],
        "photos": [Asset("b.jpg", "image/jpeg", rng.randbytes(5000))],
    }
    chain = reply_chain(rng, 0, assets, 4)
    return [*chain, forward(rng, 4, chain[0])]


def main(dest: str) -> None:
    repo = Repository.init(
        dest, PASSWORD, VaultParams(pack_size=64 << 10, block_size=16 << 10), scrypt=FAST_SCRYPT
    )
    msgs = messages()
    write_snapshot(repo, {"INBOX": msgs[:3]}, account="old@example.org")
    write_snapshot(repo, {"INBOX": msgs[:3], "Sent": msgs[3:]}, account="old@example.org")
    repo.close()


if __name__ == "__main__":
    main(sys.argv[1])
