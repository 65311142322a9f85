"""A PST/OST file as a local source: ``(FolderInfo, messages)`` pairs plus a report.

Folder mapping (docs/PST.md): folders below the store's mail root (the IPM subtree) keep
their path relative to it; the Inbox becomes ``INBOX``; Sent Items, Drafts, Deleted Items
and Junk carry their special-use. Folders outside the IPM subtree (search folders, views,
Freebusy Data) appear only when they hold mail items. Non-mail items (contacts, calendar,
tasks, …) are counted in the report, never converted silently into mail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailvault.model import FolderInfo, SourceMessage
from mailvault.sources.pst import props as P
from mailvault.sources.pst.convert import convert, flags_of, internaldate_of
from mailvault.sources.pst.props import Props
from mailvault.sources.pst.reader import PstFailure, PstFile, RawFolder, item_kind

__all__ = ["PstReport", "count_pst", "iter_pst"]


@dataclass
class PstReport:
    """What one PST import saw, filled in while the folders are consumed."""

    file: str
    mail: int = 0
    #: Non-mail items by kind: contacts, distribution_lists, calendar, tasks, notes, journal, other.
    items: Counter[str] = field(default_factory=Counter)
    #: Unreadable items and folders: ``file: folder 'X' item N ('subject'): error``.
    failures: list[str] = field(default_factory=list)
    #: Items imported with something missing (an attachment without data, unreadable RTF).
    warnings: list[str] = field(default_factory=list)


def _component(name: str) -> str:
    # "/" is the snapshot's hierarchy delimiter: a "/" inside a PST folder name becomes "∕".
    return name.replace("/", "\u2215").strip() or "(unnamed)"


def _is_mail_folder(f: RawFolder) -> bool:
    cls = f.container_class.lower()
    return cls == "" or cls.startswith("ipf.note")


def _snapshot_names(folders: list[RawFolder]) -> dict[int, tuple[str, str | None]]:
    """Folder nid → (snapshot name, special-use) for every folder."""
    ipm_root = next((f for f in folders if f.ipm_root), None)
    base_len = len(ipm_root.path) if ipm_root is not None else 0
    inbox = next((f for f in folders if f.special == "inbox"), None)
    parent = {c.nid: g.nid for g in folders for c in g.children}
    names: dict[int, tuple[str, str | None]] = {}
    used: set[str] = set()
    for f in folders:
        relative = f.in_ipm and ipm_root is not None and not f.ipm_root
        parts = [_component(x) for x in (f.path[base_len:] if relative else f.path)]
        if inbox is not None and relative and _below(f.nid, inbox.nid, parent):
            parts[len(inbox.path) - base_len - 1] = "INBOX"  # the Inbox and everything below it
        name = "/".join(parts) or "(root)"
        base, n = name, 1
        while name.lower() in used:
            n += 1
            name = f"{base} ({n})"
        used.add(name.lower())
        names[f.nid] = (name, f.special if f.special != "inbox" else None)
    return names


def _below(nid: int, ancestor: int, parent: dict[int, int]) -> bool:
    """``nid`` is ``ancestor`` or lies below it."""
    seen: set[int] = set()
    while nid not in seen:
        if nid == ancestor:
            return True
        seen.add(nid)
        if nid not in parent:
            return False
        nid = parent[nid]
    return False


def iter_pst(
    path: str | Path, report: PstReport | None = None
) -> Iterator[tuple[FolderInfo, Iterator[SourceMessage]]]:
    """Open ``path`` (raises SourceError at once when libpff cannot) and yield its folders."""
    pst = PstFile(path)
    rep = report if report is not None else PstReport(pst.name)
    return _iter(pst, rep)


def _iter(pst: PstFile, rep: PstReport) -> Iterator[tuple[FolderInfo, Iterator[SourceMessage]]]:
    with pst:
        folders = pst.folders()
        names = _snapshot_names(folders)
        for f in folders:
            if f.nid not in names:
                continue
            # Folders outside the mail tree, and non-mail folders, appear only when they hold mail.
            if not (f.in_ipm and not f.ipm_root and _is_mail_folder(f)) and not _has_mail(pst, f):
                _count_only(pst, f, rep)
                continue
            name, special = names[f.nid]
            info = FolderInfo(name=name, name_raw="/".join(f.path), delimiter="/", special_use=special)
            yield info, _messages(pst, f, rep)
        rep.failures.extend(x.describe(pst.name) for x in pst.failures)


def _has_mail(pst: PstFile, f: RawFolder) -> bool:
    try:
        n = f.handle.number_of_sub_messages
    except OSError:
        return False
    for i in range(n):
        try:
            cls = Props.of(f.handle.get_sub_message(i)).text(P.PR_MESSAGE_CLASS) or ""
        except OSError:
            continue
        if item_kind(cls) == "mail":
            return True
    return False


def _count_only(pst: PstFile, f: RawFolder, rep: PstReport) -> None:
    for _i, handle in pst.items(f):
        if handle is None:
            continue
        try:
            cls = Props.of(handle, pst.ansi_codec).text(P.PR_MESSAGE_CLASS) or ""
        except OSError:
            cls = ""
        rep.items[item_kind(cls)] += 1


def _messages(pst: PstFile, f: RawFolder, rep: PstReport) -> Iterator[SourceMessage]:
    folder_name = "/".join(f.path) or "(root)"
    for i, handle in pst.items(f):
        if handle is None:
            continue  # recorded by pst.items
        subject: str | None = None
        try:
            props = Props.of(handle, pst.ansi_codec)
            subject = props.subject()
            kind = item_kind(props.text(P.PR_MESSAGE_CLASS) or "")
            if kind != "mail":
                rep.items[kind] += 1
                continue
            msg = pst.read_message(handle, props)
            raw = convert(msg)
            uid = int(handle.identifier)
        except OSError as e:
            pst.failures.append(PstFailure(folder_name, i, subject, " ".join(str(e).split())[:200]))
            continue
        except Exception as e:  # one bad item must not end the import
            pst.failures.append(
                PstFailure(folder_name, i, subject, f"cannot convert: {type(e).__name__}: {e}")
            )
            continue
        for problem in msg.problems:  # imported, but with a part missing: named, and exit 1
            rep.failures.append(
                PstFailure(folder_name, i, subject, f"imported without: {problem}").describe(pst.name)
            )
        rep.mail += 1
        yield SourceMessage(
            uid=uid,
            raw=raw,
            flags=flags_of(props),
            internaldate=internaldate_of(props),
            extra={"pst_class": props.text(P.PR_MESSAGE_CLASS) or ""},
        )


def count_pst(path: str | Path) -> PstReport:
    """Count mail and non-mail items without converting anything (``discover`` uses this).

    Reads each item's message class; unreadable items are listed in ``failures``."""
    with PstFile(path) as pst:
        rep = PstReport(pst.name)
        for f in pst.folders():
            for _i, handle in pst.items(f):
                if handle is None:
                    continue
                try:
                    cls = Props.of(handle, pst.ansi_codec).text(P.PR_MESSAGE_CLASS) or ""
                except OSError:
                    cls = ""
                kind = item_kind(cls)
                if kind == "mail":
                    rep.mail += 1
                else:
                    rep.items[kind] += 1
        rep.failures.extend(x.describe(pst.name) for x in pst.failures)
    return rep
