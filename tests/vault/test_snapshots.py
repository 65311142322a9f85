"""Folder manifests and sealed snapshots."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import zstandard

from mailvault.errors import FormatError, IntegrityError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.vault.crypto import AeadSealer, PlainSealer, new_master_key
from mailvault.vault.format import AD_SNAPSHOT, sha256
from mailvault.vault.repository import new_snapshot
from mailvault.vault.snapshots import (
    ManifestEntry,
    Snapshot,
    SnapshotFolder,
    decode_manifest,
    encode_manifest,
)


def entries() -> list[ManifestEntry]:
    return [
        ManifestEntry(1, "ab" * 32, ["\\Seen", "$Label1"], "2002-03-04T10:00:00+01:00", 1234),
        ManifestEntry(
            "uid-2",
            "cd" * 32,
            [],
            None,
            5,
            labels=["\\Inbox", "Entwürfe", "Projects/2002"],
            gm_msgid=1234567890123456789,
            gm_thrid=987654321,
            extra={"mbox_from_line": "From x Sat Jan  3 01:05:34 1996", "n": 3},
        ),
        ManifestEntry(3, "ef" * 32, ["\\Answered"], "2024-01-01T00:00:00+00:00", 0, gm_msgid=7),
    ]


def test_manifest_entry_json_is_compact_without_options() -> None:
    e = entries()[0]
    assert e.to_json() == [1, "ab" * 32, ["\\Seen", "$Label1"], "2002-03-04T10:00:00+01:00", 1234]
    assert ManifestEntry.from_json(e.to_json()) == e


def test_manifest_entry_json_with_labels_and_gmail_fields() -> None:
    e = entries()[1]
    row = e.to_json()
    assert len(row) == 6
    assert row[5] == {
        "labels": ["\\Inbox", "Entwürfe", "Projects/2002"],
        "gm_msgid": 1234567890123456789,
        "gm_thrid": 987654321,
        "extra": {"mbox_from_line": "From x Sat Jan  3 01:05:34 1996", "n": 3},
    }
    assert ManifestEntry.from_json(row) == e
    assert ManifestEntry.from_json(entries()[2].to_json()) == entries()[2]


def test_manifest_roundtrip_is_deterministic() -> None:
    data = encode_manifest(entries())
    assert decode_manifest(data) == entries()
    assert encode_manifest(entries()) == data  # same entries, same bytes, same blob id
    assert "Entwürfe".encode() in data  # not \u-escaped
    assert decode_manifest(encode_manifest([])) == []


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"v": 2, "messages": []}', b'{"v": 1, "messages": [[1, "x"]]}', b"\xff\xfe"],
)
def test_bad_manifest_is_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_manifest(data)


def test_manifest_entry_from_message() -> None:
    date = datetime(2002, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    msg = SourceMessage(
        uid=42,
        raw=b"Subject: hi\r\n\r\nbody\r\n",
        flags=("\\Seen", "\\Flagged"),
        internaldate=date,
        labels=("Work",),
        gm_msgid=5,
        gm_thrid=6,
        extra={"k": "v"},
    )
    e = ManifestEntry.from_message(msg, sha256(msg.raw).hex())
    assert e.size == len(msg.raw)
    assert e.internaldate == "2002-03-04T10:00:00+01:00"
    assert e.flags == ["\\Seen", "\\Flagged"]
    assert (e.labels, e.gm_msgid, e.gm_thrid, e.extra) == (["Work"], 5, 6, {"k": "v"})
    assert ManifestEntry.from_message(SourceMessage(uid="x", raw=b""), "00").internaldate is None


def make_snapshot() -> Snapshot:
    folders = [
        SnapshotFolder.build(
            FolderInfo("INBOX", "INBOX", "/", "\\Inbox", 1, 10, 99), "11" * 32, messages=9, size=1000
        ),
        SnapshotFolder.build(FolderInfo("Entwürfe", "Entw&APw-rfe", "."), "22" * 32, messages=2, size=30),
    ]
    snap = new_snapshot("alice@example.org", "imap", "imap://mail.example.org", folders)
    snap.tags = ["daily"]
    snap.summary = {"new_messages": 3}
    return snap


@pytest.mark.parametrize("kind", ["aead", "plain"])
def test_snapshot_seal_unseal(kind: str) -> None:
    sealer = AeadSealer(new_master_key()) if kind == "aead" else PlainSealer()
    snap = make_snapshot()
    snap_id, sealed = snap.seal(sealer)
    assert snap_id == sha256(sealed)
    back = Snapshot.unseal(sealer, sealed, snap_id.hex())
    assert back.id == snap_id.hex()
    back.id = snap.id
    assert back == snap
    assert back.messages == 11
    assert back.size == 1030
    assert back.datetime.tzinfo is not None
    assert back.folders[0].special_use == "\\Inbox"
    assert back.folders[1].name_raw == "Entw&APw-rfe"


def test_snapshot_time_is_iso_with_offset() -> None:
    snap = make_snapshot()
    parsed = datetime.fromisoformat(snap.time)
    assert parsed.utcoffset() is not None
    assert abs(parsed - datetime.now(UTC)) < timedelta(minutes=1)


def test_encrypted_snapshot_hides_names_and_rejects_other_key() -> None:
    sealer = AeadSealer(new_master_key())
    snap_id, sealed = make_snapshot().seal(sealer)
    assert b"alice@example.org" not in sealed
    with pytest.raises(IntegrityError):
        Snapshot.unseal(AeadSealer(new_master_key()), sealed, snap_id.hex())


def _sealed_doc(sealer: PlainSealer, doc: object) -> bytes:
    return sealer.seal(zstandard.ZstdCompressor().compress(json.dumps(doc).encode()), AD_SNAPSHOT)


def test_snapshot_bad_version_and_malformed() -> None:
    sealer = PlainSealer()
    doc = make_snapshot().to_doc()
    doc["version"] = 99
    with pytest.raises(FormatError, match="unsupported version"):
        Snapshot.unseal(sealer, _sealed_doc(sealer, doc), "ab" * 32)
    doc = make_snapshot().to_doc()
    del doc["account"]
    with pytest.raises(FormatError, match="malformed"):
        Snapshot.unseal(sealer, _sealed_doc(sealer, doc), "ab" * 32)
    doc = make_snapshot().to_doc()
    doc["folders"][0]["bogus"] = 1
    with pytest.raises(FormatError, match="malformed"):
        Snapshot.unseal(sealer, _sealed_doc(sealer, doc), "ab" * 32)
    with pytest.raises(FormatError, match="unreadable"):
        Snapshot.unseal(sealer, sealer.seal(b"garbage", AD_SNAPSHOT), "ab" * 32)


def test_message_id_is_recorded_from_the_header_and_round_trips() -> None:
    raw = b"From: a@example.org\r\nMessage-ID:\r\n <abc.123@example.org>\r\nSubject: x\r\n\r\nMessage-ID: <body@x>\r\n"
    e = ManifestEntry.from_message(SourceMessage(uid=7, raw=raw), "ab" * 32)
    assert e.message_id == "<abc.123@example.org>"  # folded header unfolded; the body's line ignored
    assert e.to_json()[5] == {"message_id": "<abc.123@example.org>"}
    assert ManifestEntry.from_json(e.to_json()) == e
    none = ManifestEntry.from_message(SourceMessage(uid=8, raw=b"Subject: no id\r\n\r\nbody\r\n"), "cd" * 32)
    assert none.message_id is None and len(none.to_json()) == 5


def test_source_namespace_round_trips_and_is_optional() -> None:
    """``source.namespace`` (the IMAP source's personal prefix) is written only when set; old docs read as ""."""
    snap = make_snapshot()
    assert "namespace" not in snap.to_doc()["source"]
    assert Snapshot.from_doc(snap.to_doc(), "ab" * 32).source_namespace == ""
    snap.source_namespace = "INBOX."
    doc = snap.to_doc()
    assert doc["source"]["namespace"] == "INBOX."
    assert Snapshot.from_doc(json.loads(json.dumps(doc)), "ab" * 32).source_namespace == "INBOX."
