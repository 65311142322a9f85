"""``mailvault export``: a snapshot out of the vault into Maildir, mbox or .eml files."""

from __future__ import annotations

from collections.abc import Mapping
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
    selection: Mapping[str, set[tuple[str, str]]] | None = None,
    into: str | None = None,
    progress: Progress = QUIET,
) -> ExportResult:
    """Write ``snap`` (or its ``folders``) to ``dest``.

    ``selection`` (``export --search``): only these messages, folder -> {(str(uid), blob hex)}.
    ``into``: every message into this one folder (delimiter ``/``) instead of its own.
    """
    exporter = open_exporter(dest, fmt)
    n_msgs = n_bytes = 0
    chosen = [f for f in snap.folders if not folders or f.name in folders]
    if selection is not None:
        chosen = [f for f in chosen if selection.get(f.name)]
    total = sum(len(selection[f.name]) if selection is not None else f.messages for f in chosen)
    try:
        with progress.bar("export", total=total) as bar:
            for folder in chosen:
                keep = selection.get(folder.name, set()) if selection is not None else None
                name, delim = (into, "/") if into else (folder.name, folder.delimiter)
                for entry in repo.read_manifest(folder):
                    if keep is not None and (str(entry.uid), entry.blob) not in keep:
                        continue
                    raw = repo.read_blob(bytes.fromhex(entry.blob))
                    date = datetime.fromisoformat(entry.internaldate) if entry.internaldate else None
                    exporter.add(name, delim, raw, entry.flags, date, entry.blob)
                    n_msgs += 1
                    n_bytes += len(raw)
                    bar.update()
    finally:
        exporter.close()
    return ExportResult(snap.id, fmt, str(dest), len(chosen), n_msgs, n_bytes)
