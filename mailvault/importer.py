"""``mailvault import``: a local mail store (mbox, Maildir, .eml, Thunderbird, Apple Mail, Google
Takeout, Outlook PST/OST) into the vault.

Problems with single items (an unreadable file, a wrong ``.emlx`` byte count, a partial
message whose attachments are missing) do not stop the import: they are listed in
:attr:`ImportResult.problems` and make the exit code 1. The snapshot is committed only at the
end, so an import that fails half-way leaves no snapshot behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailvault.errors import EXIT_OK, EXIT_PARTIAL, ConfigError, SourceError
from mailvault.model import FolderInfo
from mailvault.progress import QUIET, Progress
from mailvault.sources.applemail import iter_applemail
from mailvault.sources.detect import FORMATS, detect_format, sniff_file
from mailvault.sources.local import PST_MAGIC, Folder, collect_unreadable, iter_local
from mailvault.sources.takeout import iter_takeout
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
    #: Items that could not be read (or only with a fallback), one line each: file, folder, what.
    problems: list[str] = field(default_factory=list)
    #: Items that are not mail, counted and not imported (PST: contacts, calendar, tasks, …).
    other_items: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.problems else EXIT_OK


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
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"unknown format {fmt!r} (auto, {', '.join(FORMATS)})")
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind in ("mbox", "eml") and Path(path).is_file():
        sniff_file(Path(path))  # refuses a file that holds no mail, whatever the format says
    if kind != "pst" and Path(path).is_file() and _is_pst(Path(path)):
        raise SourceError(
            f"{path}: is an Outlook PST/OST file, not {kind}: import it with --format pst (or auto)"
        )
    problems: list[str] = []
    folders: list[SnapshotFolder] = []
    total_msgs = total_bytes = 0
    pst_report: Any = None
    pst_folders: Iterator[Folder] | None = None
    if kind == "pst":
        from mailvault.sources.pst import PstReport, iter_pst  # libpff is loaded only for PST files

        pst_report = PstReport(Path(path).name)
        pst_folders = iter_pst(path, pst_report)  # opens the file now: an unreadable PST stores nothing
    with repo.lock():
        writer = repo.writer()
        with progress.bar(f"import {Path(path).name}", unit="msg") as bar, collect_unreadable(problems):
            if kind == "takeout":
                folders, total_msgs, total_bytes = _import_takeout(writer, path, bar.update)
            else:
                for info, messages in pst_folders or _folders(path, kind, mboxrd, problems):
                    entries: list[ManifestEntry] = []
                    size = 0
                    for msg in messages:
                        if msg.raw.startswith(PST_MAGIC):  # a PST/OST is never stored as one "message"
                            raise SourceError(f"{path}: {info.name}/{msg.uid} is an Outlook PST/OST file")
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
        if pst_report is not None:
            problems.extend(pst_report.failures)
            snap.summary["pst"] = {
                "mail": pst_report.mail,
                "other_items": dict(sorted(pst_report.items.items())),
                "unreadable": len(pst_report.failures),
            }
        if problems:
            snap.summary["problems"] = len(problems)
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
        problems=problems,
        warnings=list(pst_report.warnings) if pst_report is not None else [],
        other_items=dict(sorted(pst_report.items.items())) if pst_report is not None else {},
    )


def _is_pst(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == PST_MAGIC
    except OSError:
        return False


def _folders(path: str | Path, kind: str, mboxrd: bool, problems: list[str]) -> Iterator[Folder]:
    if kind == "applemail":
        return iter_applemail(path, problems)
    return iter_local(path, kind, mboxrd=mboxrd)


def _import_takeout(
    writer: Any, path: str | Path, tick: Callable[[], object]
) -> tuple[list[SnapshotFolder], int, int]:
    """Each message stored once, listed in the folder of every label it carries."""
    infos: dict[str, FolderInfo] = {}
    rows: dict[str, list[ManifestEntry]] = {}
    seen: set[tuple[str, str]] = set()  # (folder, blob): a message in several label files
    total_msgs = total_bytes = 0
    for item in iter_takeout(path):
        msg = item.message
        blob, _new = writer.add(msg.raw)
        entry = ManifestEntry.from_message(msg, blob)
        for info in item.folders:
            if (info.name, blob) in seen:
                continue
            seen.add((info.name, blob))
            infos.setdefault(info.name, info)
            rows.setdefault(info.name, []).append(entry)
        total_msgs += 1
        total_bytes += len(msg.raw)
        tick()
    folders = []
    for name in sorted(rows, key=lambda n: (n != "INBOX", n)):
        entries = rows[name]
        manifest = writer.add_manifest(entries)
        folders.append(
            SnapshotFolder.build(infos[name], manifest, len(entries), sum(e.size for e in entries))
        )
    return folders, total_msgs, total_bytes
