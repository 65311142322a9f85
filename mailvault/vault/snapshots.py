"""Snapshots and folder manifests.

A snapshot (``snapshots/<id>``) is the commit point of one run for one account:
sealed, zstd-compressed JSON naming the folders and, per folder, the id of a
*manifest* blob. A manifest lists the folder's messages; it is stored as a blob
in a pack (type 1), so a folder whose manifest did not change since the last
run costs nothing to store again: its bytes, and so its id, are the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import zstandard

from mailvault.errors import FormatError
from mailvault.model import FolderInfo, SourceMessage, header_block, message_id
from mailvault.vault.crypto import Sealer
from mailvault.vault.format import AD_SNAPSHOT, FORMAT_VERSION, sha256

MANIFEST_VERSION = 1


@dataclass(slots=True)
class ManifestEntry:
    """One message in a folder manifest."""

    uid: int | str
    blob: str  # hex SHA-256 of the raw bytes
    flags: list[str]
    internaldate: str | None  # ISO 8601 with offset
    size: int
    labels: list[str] = field(default_factory=list)
    gm_msgid: int | None = None
    gm_thrid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The message's Message-ID header, recorded when it was stored (names a lost message).
    message_id: str | None = None

    def to_json(self) -> list[Any]:
        row: list[Any] = [self.uid, self.blob, self.flags, self.internaldate, self.size]
        opt: dict[str, Any] = {}
        if self.labels:
            opt["labels"] = self.labels
        if self.gm_msgid is not None:
            opt["gm_msgid"] = self.gm_msgid
        if self.gm_thrid is not None:
            opt["gm_thrid"] = self.gm_thrid
        if self.extra:
            opt["extra"] = self.extra
        if self.message_id:
            opt["message_id"] = self.message_id
        if opt:
            row.append(opt)
        return row

    @classmethod
    def from_json(cls, row: list[Any]) -> ManifestEntry:
        if not isinstance(row, list) or len(row) < 5:
            raise FormatError("manifest entry is malformed")
        opt = row[5] if len(row) > 5 and isinstance(row[5], dict) else {}
        return cls(
            uid=row[0],
            blob=row[1],
            flags=list(row[2]),
            internaldate=row[3],
            size=int(row[4]),
            labels=list(opt.get("labels", [])),
            gm_msgid=opt.get("gm_msgid"),
            gm_thrid=opt.get("gm_thrid"),
            extra=dict(opt.get("extra", {})),
            message_id=opt.get("message_id") if isinstance(opt.get("message_id"), str) else None,
        )

    @classmethod
    def from_message(cls, msg: SourceMessage, blob_hex: str) -> ManifestEntry:
        return cls(
            uid=msg.uid,
            blob=blob_hex,
            flags=list(msg.flags),
            internaldate=msg.internaldate.isoformat() if msg.internaldate else None,
            size=len(msg.raw),
            labels=list(msg.labels),
            gm_msgid=msg.gm_msgid,
            gm_thrid=msg.gm_thrid,
            extra=dict(msg.extra),
            message_id=message_id(header_block(msg.raw)) or None,
        )


def _row(e: ManifestEntry) -> str:
    return json.dumps(e.to_json(), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


class ManifestRows:
    """A manifest under construction, held as encoded rows (~150 bytes a message), not objects.

    The bytes equal ``json.dumps({"v": 1, "messages": rows}, sort_keys=True, compact)``, so an
    unchanged folder yields the same manifest id however it was built.
    """

    def __init__(self) -> None:
        self._rows: list[str] = []
        self.count = 0
        self.bytes = 0

    def add(self, e: ManifestEntry) -> None:
        self._rows.append(_row(e))
        self.count += 1
        self.bytes += e.size

    def extend(self, other: ManifestRows) -> None:
        """Append the rows of ``other`` (built apart, e.g. on another connection), in order."""
        self._rows.extend(other._rows)
        self.count += other.count
        self.bytes += other.bytes

    def encode(self) -> bytes:
        return ('{"messages":[' + ",".join(self._rows) + '],"v":' + str(MANIFEST_VERSION) + "}").encode()


def encode_manifest(entries: list[ManifestEntry]) -> bytes:
    rows = ManifestRows()
    for e in entries:
        rows.add(e)
    return rows.encode()


def decode_manifest(data: bytes) -> list[ManifestEntry]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise FormatError("manifest is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != MANIFEST_VERSION:
        raise FormatError("unsupported manifest version")
    return [ManifestEntry.from_json(r) for r in doc["messages"]]


_ROWS_START = re.compile(r'\{\s*"messages"\s*:\s*\[\s*')
_ROWS_END = re.compile(r'\]\s*,\s*"v"\s*:\s*' + str(MANIFEST_VERSION) + r"\s*\}\s*")
_SPACE = re.compile(r"\s*")


def iter_manifest_rows(data: bytes) -> Iterator[list[Any]]:
    """A manifest's rows (the JSON arrays of ``ManifestEntry.to_json``), parsed one at a time.

    A folder of 100,000 messages does not become 100,000 objects at once: prune and check only
    look at each row and let it go. The layout mailvault writes (``{"messages":[...],"v":1}``)
    is parsed row by row with the standard JSON decoder; any other valid layout is decoded whole.
    """
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = ""
    start = _ROWS_START.match(text, _SPACE.match(text).end()) if text else None  # type: ignore[union-attr]
    if start is None:
        for e in decode_manifest(data):
            yield e.to_json()
        return
    decoder = json.JSONDecoder()
    pos = start.end()
    while not text.startswith("]", pos):
        try:
            row, pos = decoder.raw_decode(text, pos)
        except ValueError:
            raise FormatError("manifest is not valid JSON") from None
        if not isinstance(row, list):
            raise FormatError("manifest entry is malformed")
        yield row
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        if text.startswith(",", pos):
            pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
        elif not text.startswith("]", pos):
            raise FormatError("manifest is not valid JSON")
    if _ROWS_END.fullmatch(text, pos) is None:
        # Not the layout mailvault writes after the rows (another version, more keys): the whole
        # document decides (raises for another version or bad JSON; its rows are the ones above).
        decode_manifest(data)


def iter_manifest(data: bytes) -> Iterator[ManifestEntry]:
    """The entries of a manifest, decoded one at a time (see :func:`iter_manifest_rows`)."""
    for row in iter_manifest_rows(data):
        yield ManifestEntry.from_json(row)


def manifest_blob_ids(data: bytes) -> Iterator[bytes]:
    """The message blob ids a manifest names, one row at a time."""
    for row in iter_manifest_rows(data):
        if len(row) < 5 or not isinstance(row[1], str) or len(row[1]) != 64:
            raise FormatError("manifest entry is malformed")
        try:
            yield bytes.fromhex(row[1])
        except ValueError:
            raise FormatError("manifest entry names a blob that is not a hex id") from None


@dataclass
class SnapshotFolder:
    name: str
    name_raw: str
    delimiter: str | None
    special_use: str | None
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    manifest: str  # hex blob id of the manifest
    messages: int
    bytes: int

    @classmethod
    def build(cls, info: FolderInfo, manifest_hex: str, messages: int, size: int) -> SnapshotFolder:
        return cls(
            name=info.name,
            name_raw=info.name_raw,
            delimiter=info.delimiter,
            special_use=info.special_use,
            uidvalidity=info.uidvalidity,
            uidnext=info.uidnext,
            highestmodseq=info.highestmodseq,
            manifest=manifest_hex,
            messages=messages,
            bytes=size,
        )


@dataclass
class Snapshot:
    time: str
    host: str
    account: str
    source_kind: str
    source_address: str
    folders: list[SnapshotFolder]
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    #: Records of ``mailvault repair`` runs that rewrote this snapshot (what was lost), oldest first.
    repairs: list[dict[str, Any]] = field(default_factory=list)
    #: The IMAP source's personal namespace prefix (``"INBOX."`` on Cyrus/Courier; ``""`` on Dovecot or
    #: unknown). Restore strips it from folder names before adding the target's own prefix.
    source_namespace: str = ""
    id: str = ""  # hex; set when loaded or saved, not stored

    @property
    def messages(self) -> int:
        return sum(f.messages for f in self.folders)

    @property
    def size(self) -> int:
        return sum(f.bytes for f in self.folders)

    @property
    def datetime(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "time": self.time,
            "host": self.host,
            "account": self.account,
            "source": {"kind": self.source_kind, "address": self.source_address},
            "folders": [asdict(f) for f in self.folders],
            "summary": self.summary,
            "tags": self.tags,
        }
        if self.repairs:
            doc["repairs"] = self.repairs
        if self.source_namespace:
            doc["source"]["namespace"] = self.source_namespace
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], snapshot_id: str) -> Snapshot:
        if doc.get("version") != FORMAT_VERSION:
            raise FormatError(f"snapshot {snapshot_id[:12]} has unsupported version {doc.get('version')}")
        try:
            return cls(
                time=doc["time"],
                host=doc["host"],
                account=doc["account"],
                source_kind=doc["source"]["kind"],
                source_address=doc["source"]["address"],
                folders=[SnapshotFolder(**f) for f in doc["folders"]],
                summary=dict(doc.get("summary", {})),
                tags=list(doc.get("tags", [])),
                repairs=list(doc.get("repairs", [])),
                source_namespace=str(doc["source"].get("namespace", "")),
                id=snapshot_id,
            )
        except (KeyError, TypeError) as exc:
            raise FormatError(f"snapshot {snapshot_id[:12]} is malformed: {exc}") from None

    def seal(self, sealer: Sealer) -> tuple[bytes, bytes]:
        plain = json.dumps(self.to_doc(), ensure_ascii=False, sort_keys=True).encode()
        sealed = sealer.seal(zstandard.ZstdCompressor(level=6).compress(plain), AD_SNAPSHOT)
        return sha256(sealed), sealed

    @classmethod
    def unseal(cls, sealer: Sealer, sealed: bytes, snapshot_id: str) -> Snapshot:
        plain = sealer.open(sealed, AD_SNAPSHOT)
        try:
            doc = json.loads(zstandard.ZstdDecompressor().decompress(plain, max_output_size=1 << 30))
        except (zstandard.ZstdError, ValueError) as exc:
            raise FormatError(f"snapshot {snapshot_id[:12]} is unreadable: {exc}") from None
        return cls.from_doc(doc, snapshot_id)
