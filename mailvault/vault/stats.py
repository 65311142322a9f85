"""``mailvault stats``: how much mail the vault holds and what it costs to store."""

from __future__ import annotations

from dataclasses import dataclass

from mailvault.vault import sia
from mailvault.vault.format import BLOB_MESSAGE, BLOB_PART, BLOB_SKELETON
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import Snapshot


@dataclass
class VaultStats:
    snapshots: int
    accounts: int
    messages: int  # messages in the latest snapshot of each account
    message_refs: int  # message entries over all snapshots
    unique_blobs: int  # distinct messages stored (whole or as skeletons)
    raw_bytes: int  # bytes of the distinct messages
    stored_bytes: int  # every object in the vault
    pack_files: int
    ratio: float  # stored / raw
    # Single-instance attachments (docs/FORMAT.md): messages kept as skeletons, the distinct
    # parts they share, and the bytes handed to compression instead of ``raw_bytes``.
    skeleton_messages: int = 0
    parts: int = 0
    part_bytes: int = 0
    blob_bytes: int = 0  # whole messages + skeletons + parts, before compression
    sia_saving: float = 0.0  # 1 - blob_bytes / raw_bytes


def _skeleton_raw_bytes(repo: Repository, snaps: list[Snapshot], skeletons: set[bytes]) -> int:
    """Sum of the whole-message sizes of the skeletons: from the manifests (no message read),
    reading a skeleton's own header only for one no snapshot names."""
    if not skeletons:
        return 0
    sizes: dict[bytes, int] = {}
    seen_manifests: set[str] = set()
    for snap in snaps:
        for folder in snap.folders:
            if folder.manifest in seen_manifests:
                continue
            seen_manifests.add(folder.manifest)
            for e in repo.read_manifest(folder):
                blob = bytes.fromhex(e.blob)
                if blob in skeletons:
                    sizes[blob] = e.size
    for blob in skeletons - sizes.keys():
        sizes[blob] = sia.raw_length(repo.read_stored(blob)[1])
    return sum(sizes.values())


def vault_stats(repo: Repository) -> VaultStats:
    snaps = repo.snapshots()
    latest = {}
    for s in snaps:
        latest[s.account] = s
    whole, whole_bytes = repo.cache.blob_stats(BLOB_MESSAGE)
    skel, skel_bytes = repo.cache.blob_stats(BLOB_SKELETON)
    parts, part_bytes = repo.cache.blob_stats(BLOB_PART)
    skeletons = {i for i, _loc in repo.cache.iter_type(BLOB_SKELETON)} if skel else set()
    raw = whole_bytes + _skeleton_raw_bytes(repo, snaps, skeletons)
    blob_bytes = whole_bytes + skel_bytes + part_bytes
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
        unique_blobs=whole + skel,
        raw_bytes=raw,
        stored_bytes=stored,
        pack_files=packs,
        ratio=round(stored / raw, 4) if raw else 0.0,
        skeleton_messages=skel,
        parts=parts,
        part_bytes=part_bytes,
        blob_bytes=blob_bytes,
        sia_saving=round(1 - blob_bytes / raw, 4) if raw else 0.0,
    )
