"""Shared helpers for the vault tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from mailvault.model import FolderInfo, SourceMessage
from mailvault.storage.base import Backend
from mailvault.vault.format import pack_name
from mailvault.vault.repository import Repository, new_snapshot
from mailvault.vault.snapshots import ManifestEntry, SnapshotFolder

PASSWORD = b"correct horse battery staple"

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "mailbox",
    "vault",
    "archive",
    "backup",
    "folder",
    "invoice",
]


def make_message(i: int, *, size: int = 2000, seed: int = 0, subject: str | None = None) -> bytes:
    """A plausible RFC 5322 message of about ``size`` bytes, different for every (i, seed)."""
    rng = random.Random(f"{seed}-{i}")
    subject = subject or f"Message number {i} " + " ".join(rng.choices(_WORDS, k=4))
    head = (
        f"From: sender{i % 17}@example.org\r\n"
        f"To: someone@example.net\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{i}.{seed}.{rng.getrandbits(48):x}@example.org>\r\n"
        f"Date: Mon, 4 Mar 2002 10:{i % 60:02d}:00 +0100\r\n\r\n"
    ).encode()
    body: list[str] = []
    n = len(head)
    while n < size:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(6, 14))) + "\r\n"
        body.append(line)
        n += len(line)
    return head + "".join(body).encode()


def write_snapshot(
    repo: Repository,
    folders: dict[str, list[bytes]],
    *,
    account: str = "alice@example.org",
    delimiter: str | None = "/",
) -> str:
    """Store the messages of ``folders`` and commit one snapshot; return its id."""
    with repo.lock():
        writer = repo.writer()
        snap_folders = []
        for name, messages in folders.items():
            entries = []
            for uid, raw in enumerate(messages, 1):
                msg = SourceMessage(
                    uid=uid,
                    raw=raw,
                    flags=("\\Seen",) if uid % 2 else (),
                    internaldate=datetime(2002, 3, 4, 10, uid % 60, tzinfo=UTC),
                )
                blob, _new = writer.add(raw)
                entries.append(ManifestEntry.from_message(msg, blob))
            manifest = writer.add_manifest(entries)
            info = FolderInfo(name=name, name_raw=name, delimiter=delimiter)
            snap_folders.append(SnapshotFolder.build(info, manifest, len(entries), sum(map(len, messages))))
        snap = new_snapshot(account, "test", "memory", snap_folders)
        return writer.commit(snap)


def stored_bytes(backend: Backend, prefix: str = "") -> int:
    return sum(size for _name, size in backend.list(prefix))


def pack_names(backend: Backend) -> list[str]:
    return sorted(name for name, _ in backend.list("data/"))


def flip_byte(backend: Backend, name: str, offset: int) -> None:
    """Invert one byte of a stored object (the same on a directory and on S3)."""
    data = bytearray(backend.get(name))
    data[offset] ^= 0xFF
    backend.put(name, bytes(data))


def pack_of(repo: Repository, blob_hex: str) -> str:
    return pack_name(repo.locate(bytes.fromhex(blob_hex)).pack_id)
