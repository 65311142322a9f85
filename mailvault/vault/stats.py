"""``mailvault stats``: how much mail the vault holds and what it costs to store."""

from __future__ import annotations

from dataclasses import dataclass

from mailvault.vault.format import BLOB_MESSAGE
from mailvault.vault.repository import Repository


@dataclass
class VaultStats:
    snapshots: int
    accounts: int
    messages: int  # messages in the latest snapshot of each account
    message_refs: int  # message entries over all snapshots
    unique_blobs: int  # distinct message blobs stored
    raw_bytes: int  # bytes of the distinct messages
    stored_bytes: int  # every object in the vault
    pack_files: int
    ratio: float  # stored / raw


def vault_stats(repo: Repository) -> VaultStats:
    snaps = repo.snapshots()
    latest = {}
    for s in snaps:
        latest[s.account] = s
    blobs, raw = repo.cache.blob_stats(BLOB_MESSAGE)
    stored = 0
    packs = 0
    for name, size in repo.backend.list(""):
        stored += size
        if name.startswith("data/"):
            packs += 1
    return VaultStats(
        snapshots=len(snaps),
        accounts=len(latest),
        messages=sum(s.messages for s in latest.values()),
        message_refs=sum(s.messages for s in snaps),
        unique_blobs=blobs,
        raw_bytes=raw,
        stored_bytes=stored,
        pack_files=packs,
        ratio=round(stored / raw, 4) if raw else 0.0,
    )
