"""Finding damage: which packs are unreadable, and which snapshots, folders and messages that costs.

Shared by ``check`` (which reports) and ``repair`` (which fixes). A blob is *lost* when no
readable copy of it exists: its pack is missing, truncated past its block, or the block fails
authentication or decompression, or its bytes fail their hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailvault.errors import FormatError, IntegrityError, MailvaultError, ObjectNotFound
from mailvault.vault.crypto import Sealer
from mailvault.vault.format import BlobEntry, PackHeader, sha256, stored_blob_id
from mailvault.vault.packs import DictLoader, open_block, read_pack
from mailvault.vault.snapshots import ManifestEntry, Snapshot, iter_manifest


@dataclass
class PackScan:
    """What reading one whole pack found."""

    pack_id: bytes
    intact: bool
    problem: str = ""
    #: Entries (with ids) of the blobs that read back correctly.
    readable: list[BlobEntry] = field(default_factory=list)
    #: Ids of blobs the index lists for this pack that did not read back (known only via an index).
    unreadable: list[bytes] = field(default_factory=list)
    header: PackHeader | None = None  # the pack's own header, ids recomputed (None if unreadable)
    blocks: list[bytes | Exception] = field(default_factory=list)


def scan_pack(
    sealer: Sealer,
    pack_id: bytes,
    data: bytes,
    expected: PackHeader | None,
    load_dict: DictLoader | None,
) -> PackScan:
    """Read a whole pack and sort its blobs into readable and not.

    ``expected`` is the pack's header from an index file (with ids), used to find the blocks
    when the pack's own header (at its end) is gone, e.g. in a truncated pack.
    """
    problems: list[str] = []
    if load_dict is not None:
        load_dict = _missing_dict_is_damage(load_dict)
    if sha256(data) != pack_id:
        problems.append("content does not match its id")
    header: PackHeader | None = None
    blocks: list[bytes | Exception] = []
    try:
        header, blocks = read_pack(sealer, data, load_dict)
    except (FormatError, IntegrityError) as exc:
        problems.append(f"header: {exc}")
    if header is None and expected is not None:
        # Salvage through the index's copy of the header: blocks that are still whole.
        blocks = []
        for info in expected.blocks:
            chunk = data[info.offset : info.offset + info.sealed_len]
            try:
                if len(chunk) != info.sealed_len:
                    raise IntegrityError("block is cut short")
                blocks.append(open_block(sealer, chunk, info, load_dict))
            except (FormatError, IntegrityError) as exc:
                blocks.append(exc)
        entries = [
            BlobEntry(b"", e.type, e.block, e.offset, e.length) for e in expected.blobs
        ]  # ids recomputed below
    elif header is not None:
        entries = header.blobs
    else:
        entries = []
    bad_blocks = [i for i, b in enumerate(blocks) if isinstance(b, Exception)]
    if bad_blocks:
        first = blocks[bad_blocks[0]]
        problems.append(f"{len(bad_blocks)} of {len(blocks)} block(s) unreadable ({first!s})")
    readable: list[BlobEntry] = []
    for e in entries:
        raw = blocks[e.block] if e.block < len(blocks) else None
        if isinstance(raw, bytes):
            try:
                blob_id = stored_blob_id(e.type, raw[e.offset : e.offset + e.length])
            except FormatError:
                continue  # a skeleton without its header: unreadable
            readable.append(BlobEntry(blob_id, e.type, e.block, e.offset, e.length))
    got = {e.id for e in readable}
    unreadable = [e.id for e in expected.blobs if e.id not in got] if expected is not None else []
    if expected is not None and header is not None and unreadable and not bad_blocks:
        problems.append(f"{len(unreadable)} blob(s) the index lists are not in the pack")
    return PackScan(pack_id, not problems, "; ".join(problems), readable, unreadable, header, blocks)


def _missing_dict_is_damage(load_dict: DictLoader) -> DictLoader:
    """A dictionary file that is gone makes the blocks using it unreadable: damage, not a crash."""

    def load(dict_id: bytes) -> Any:
        try:
            return load_dict(dict_id)
        except ObjectNotFound:
            raise IntegrityError(f"dictionary {dict_id.hex()[:12]} is missing") from None

    return load


@dataclass
class LostMessage:
    """A message of a snapshot whose bytes cannot be read back."""

    snapshot: str
    account: str
    folder: str
    uidvalidity: int | None
    uid: int | str
    blob: str
    size: int
    internaldate: str | None
    message_id: str | None = None  # when the manifest records one (messages stored since it does)

    def describe(self) -> str:
        mid = f" {self.message_id}" if self.message_id else ""
        date = f" {self.internaldate}" if self.internaldate else ""
        return (
            f"snapshot {self.snapshot[:12]} ({self.account}) folder {self.folder!r} "
            f"uid {self.uid}{mid}{date} {self.size} bytes (blob {self.blob[:12]})"
        )


@dataclass
class LostFolder:
    """A folder of a snapshot whose manifest (its list of messages) cannot be read back."""

    snapshot: str
    account: str
    folder: str
    messages: int
    problem: str

    def describe(self) -> str:
        return (
            f"snapshot {self.snapshot[:12]} ({self.account}) folder {self.folder!r}: "
            f"its list of {self.messages} message(s) is lost ({self.problem})"
        )


def lost_message(snap: Snapshot, folder_name: str, uidvalidity: int | None, e: ManifestEntry) -> LostMessage:
    return LostMessage(
        snap.id, snap.account, folder_name, uidvalidity, e.uid, e.blob, e.size, e.internaldate, e.message_id
    )


@dataclass
class SnapshotDamage:
    """What one snapshot loses, given which blobs are readable."""

    snapshot: Snapshot
    kept: dict[str, list[ManifestEntry]]  # folder name -> entries still readable (folders with a manifest)
    lost_messages: list[LostMessage]
    lost_folders: list[LostFolder]

    @property
    def damaged(self) -> bool:
        return bool(self.lost_messages or self.lost_folders)


def assess_snapshot(
    snap: Snapshot,
    read_manifest: Callable[[bytes], bytes | None],
    readable: Callable[[bytes], bool],
    *,
    keep: bool = True,
    clean: set[bytes] | None = None,
) -> SnapshotDamage:
    """Sort a snapshot's messages into readable and lost.

    ``read_manifest(blob id)`` returns the manifest's bytes or None when it is lost;
    ``readable(blob id)`` says whether a message blob can be read back. Manifests are read a row
    at a time. With ``keep=False`` the readable entries are not collected (``kept`` holds empty
    lists: check needs only what is lost), and ``clean`` (a set the caller keeps across
    snapshots) skips the folders whose manifest was already found whole: an unchanged folder
    has the same manifest in every snapshot.
    """
    kept: dict[str, list[ManifestEntry]] = {}
    lost: list[LostMessage] = []
    lost_folders: list[LostFolder] = []
    for folder in snap.folders:
        manifest_id = bytes.fromhex(folder.manifest)
        if not keep and clean is not None and manifest_id in clean:
            kept[folder.name] = []
            continue
        data: bytes | None
        problem = "its manifest is in no readable pack"
        try:
            data = read_manifest(manifest_id)
        except MailvaultError as exc:
            data, problem = None, str(exc)
        if data is None:
            if folder.messages:
                lost_folders.append(LostFolder(snap.id, snap.account, folder.name, folder.messages, problem))
            else:
                kept[folder.name] = []  # an empty folder loses nothing
            continue
        good: list[ManifestEntry] = []
        gone: list[LostMessage] = []
        try:
            for e in iter_manifest(data):
                if readable(bytes.fromhex(e.blob)):
                    if keep:
                        good.append(e)
                else:
                    gone.append(lost_message(snap, folder.name, folder.uidvalidity, e))
        except FormatError as exc:
            lost_folders.append(LostFolder(snap.id, snap.account, folder.name, folder.messages, str(exc)))
            continue
        lost.extend(gone)
        kept[folder.name] = good
        if clean is not None and not gone:
            clean.add(manifest_id)
    return SnapshotDamage(snap, kept, lost, lost_folders)


def as_dicts(items: list[LostMessage] | list[LostFolder]) -> list[dict[str, Any]]:
    from dataclasses import asdict

    return [asdict(i) for i in items]
