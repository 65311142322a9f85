"""``mailvault export``: a snapshot out of the vault into Maildir, mbox or .eml files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mailvault.export import open_exporter
from mailvault.progress import QUIET, Progress
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import Snapshot


@dataclass
class ExportResult:
    snapshot: str
    format: str
    dest: str
    folders: int
    messages: int
    bytes: int


def export_snapshot(
    repo: Repository,
    snap: Snapshot,
    dest: str | Path,
    fmt: str,
    *,
    folders: list[str] | None = None,
    progress: Progress = QUIET,
) -> ExportResult:
    exporter = open_exporter(dest, fmt)
    n_msgs = n_bytes = 0
    chosen = [f for f in snap.folders if not folders or f.name in folders]
    try:
        with progress.bar("export", total=sum(f.messages for f in chosen)) as bar:
            for folder in chosen:
                for entry in repo.read_manifest(folder):
                    raw = repo.read_blob(bytes.fromhex(entry.blob))
                    date = datetime.fromisoformat(entry.internaldate) if entry.internaldate else None
                    exporter.add(folder.name, folder.delimiter, raw, entry.flags, date, entry.blob)
                    n_msgs += 1
                    n_bytes += len(raw)
                    bar.update()
    finally:
        exporter.close()
    return ExportResult(snap.id, fmt, str(dest), len(chosen), n_msgs, n_bytes)
