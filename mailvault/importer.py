"""``mailvault import``: a local mail store (mbox, Maildir, .eml, Thunderbird) into the vault."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mailvault.progress import QUIET, Progress
from mailvault.sources.local import detect_format, iter_local
from mailvault.vault.repository import Repository, new_snapshot
from mailvault.vault.snapshots import ManifestEntry, SnapshotFolder


@dataclass
class ImportResult:
    snapshot: str
    account: str
    format: str
    folders: int
    messages: int
    bytes: int
    new_messages: int
    new_bytes: int
    stored_bytes: int
    duration: float
    recovered_packs: int = 0
    warnings: list[str] = field(default_factory=list)


def import_local(
    repo: Repository,
    path: str | Path,
    account: str,
    *,
    fmt: str = "auto",
    mboxrd: bool = False,
    progress: Progress = QUIET,
) -> ImportResult:
    """Read every folder under ``path`` and commit one snapshot for ``account``."""
    started = time.monotonic()
    kind = detect_format(path) if fmt == "auto" else fmt
    folders: list[SnapshotFolder] = []
    total_msgs = total_bytes = 0
    with repo.lock():
        writer = repo.writer()
        with progress.bar(f"import {Path(path).name}", unit="msg") as bar:
            for info, messages in iter_local(path, kind, mboxrd=mboxrd):
                entries: list[ManifestEntry] = []
                size = 0
                for msg in messages:
                    blob, _new = writer.add(msg.raw)
                    entries.append(ManifestEntry.from_message(msg, blob))
                    size += len(msg.raw)
                    bar.update()
                manifest = writer.add_manifest(entries)
                folders.append(SnapshotFolder.build(info, manifest, len(entries), size))
                total_msgs += len(entries)
                total_bytes += size
        snap = new_snapshot(account, kind, str(Path(path).resolve()), folders)
        duration = time.monotonic() - started
        snap.summary["duration"] = round(duration, 3)
        snap_id = writer.commit(snap)
    return ImportResult(
        snapshot=snap_id,
        account=account,
        format=kind,
        folders=len(folders),
        messages=total_msgs,
        bytes=total_bytes,
        new_messages=writer.new_messages,
        new_bytes=writer.new_message_bytes,
        stored_bytes=writer.stored_bytes,
        duration=round(time.monotonic() - started, 3),
        recovered_packs=writer.recovered_packs,
    )
