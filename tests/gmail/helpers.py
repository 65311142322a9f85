"""Helpers for the Gmail tests: messages, snapshots written straight into a vault, connection settings."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mailvault.model import FolderInfo, SourceMessage
from mailvault.net.session import Credentials, Endpoint, TLSPolicy, parse_url
from mailvault.vault.repository import Repository, new_snapshot
from mailvault.vault.snapshots import ManifestEntry, SnapshotFolder
from tests.gmail.fakegmail import FakeGmail

VAULT_PASSWORD = "gmail-test-vault"


def make_message(i: int, *, size: int = 1500, seed: int = 0) -> bytes:
    """A plausible RFC 5322 message of about ``size`` bytes, different for every (i, seed)."""
    rng = random.Random(f"gmail-{seed}-{i}")
    head = (
        f"From: sender{i}@example.org\r\n"
        f"To: me@gmail.com\r\n"
        f"Subject: message {i} ({seed})\r\n"
        f"Message-ID: <{i}.{seed}.{rng.getrandbits(40):x}@example.org>\r\n"
        f"Date: Tue, 5 Mar 2024 09:{i % 60:02d}:00 +0000\r\n\r\n"
    ).encode()
    words = ["mail", "vault", "label", "gmail", "restore", "backup", "inbox", "archive", "thread"]
    body = bytearray()
    while len(head) + len(body) < size:
        body += (" ".join(rng.choices(words, k=10)) + "\r\n").encode()
    return head + bytes(body)


@dataclass
class Msg:
    """One message of a snapshot folder: raw bytes, flags, INTERNALDATE."""

    raw: bytes
    flags: Sequence[str] = ()
    date: datetime | None = None


def internaldate(raw: bytes) -> datetime:
    return datetime(2024, 3, 5, 9, sum(raw) % 60, 7, tzinfo=UTC)


def write_snapshot(
    repo: Repository,
    folders: Sequence[tuple[str, str | None, Sequence[bytes | Msg]]],
    *,
    account: str = "old@gmail.com",
) -> str:
    """Commit one snapshot whose folders are ``(name, special_use, messages)``; return its id.

    Byte-identical messages in several folders share one blob, as after a real backup."""
    with repo.lock():
        writer = repo.writer()
        snap_folders = []
        for validity, (name, special, messages) in enumerate(folders, 1):
            entries = []
            for uid, item in enumerate(messages, 1):
                m = item if isinstance(item, Msg) else Msg(item, ("\\Seen",))
                msg = SourceMessage(
                    uid=uid, raw=m.raw, flags=tuple(m.flags), internaldate=m.date or internaldate(m.raw)
                )
                blob, _new = writer.add(m.raw)
                entries.append(ManifestEntry.from_message(msg, blob))
            manifest = writer.add_manifest(entries)
            info = FolderInfo(name, name, "/", special, uidvalidity=validity, uidnext=len(entries) + 1)
            snap_folders.append(
                SnapshotFolder.build(info, manifest, len(entries), sum(e.size for e in entries))
            )
        return writer.commit(
            new_snapshot(account, "imap", "imaps://old@gmail.com@imap.gmail.com:993", snap_folders)
        )


def access(g: FakeGmail) -> tuple[Endpoint, Credentials, TLSPolicy]:
    """Endpoint, credentials and TLS policy for the fake server (plain TCP allowed, or its own CA)."""
    password = g.password.encode()
    tls = TLSPolicy(ca_file=g.ca_file) if g.tls else TLSPolicy(allow_plaintext=True)
    return parse_url(g.url), Credentials(password=lambda: password), tls
