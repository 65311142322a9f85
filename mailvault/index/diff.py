"""``mailvault diff``: what changed between two snapshots, per folder.

Read straight from the two snapshots' folder manifests (the search index is not needed).
A folder's messages are compared by blob (the content), with multiplicity: a message is
*added* when SNAP2 holds more copies of its blob in that folder than SNAP1, *removed* when
fewer; a blob held once on each side whose flags differ is *flags changed*. A folder only
in one snapshot is all added or all removed. Moving a message between folders shows as
removed from one and added to the other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import ManifestEntry, Snapshot


@dataclass
class DiffMessage:
    uid: int | str
    blob: str
    size: int
    internaldate: str | None
    flags: list[str]


@dataclass
class FlagChange:
    uid: int | str  # in SNAP2
    blob: str
    before: list[str]
    after: list[str]


@dataclass
class FolderDiff:
    folder: str
    added: list[DiffMessage] = field(default_factory=list)
    removed: list[DiffMessage] = field(default_factory=list)
    flags_changed: list[FlagChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.flags_changed)


@dataclass
class SnapshotDiff:
    a: str  # snapshot ids
    b: str
    account_a: str
    account_b: str
    folders: list[FolderDiff] = field(default_factory=list)  # only folders with a change

    @property
    def added(self) -> int:
        return sum(len(f.added) for f in self.folders)

    @property
    def removed(self) -> int:
        return sum(len(f.removed) for f in self.folders)

    @property
    def flags_changed(self) -> int:
        return sum(len(f.flags_changed) for f in self.folders)


def _msg(e: ManifestEntry) -> DiffMessage:
    return DiffMessage(e.uid, e.blob, e.size, e.internaldate, list(e.flags))


def _entries(repo: Repository, snap: Snapshot) -> dict[str, list[ManifestEntry]]:
    return {f.name: repo.read_manifest(f) for f in snap.folders}


def diff_folder(name: str, old: list[ManifestEntry], new: list[ManifestEntry]) -> FolderDiff:
    by_old: dict[str, list[ManifestEntry]] = defaultdict(list)
    by_new: dict[str, list[ManifestEntry]] = defaultdict(list)
    for e in old:
        by_old[e.blob].append(e)
    for e in new:
        by_new[e.blob].append(e)
    fd = FolderDiff(name)
    for blob, olds in by_old.items():
        news = by_new.get(blob, [])
        if len(olds) > len(news):
            fd.removed.extend(_msg(e) for e in olds[len(news) :])
        elif len(olds) == 1 and len(news) == 1 and sorted(olds[0].flags) != sorted(news[0].flags):
            fd.flags_changed.append(
                FlagChange(news[0].uid, blob, sorted(olds[0].flags), sorted(news[0].flags))
            )
    for blob, news in by_new.items():
        n_old = len(by_old.get(blob, []))
        if len(news) > n_old:
            fd.added.extend(_msg(e) for e in news[n_old:])
    return fd


def diff_snapshots(repo: Repository, a: str, b: str, account: str | None = None) -> SnapshotDiff:
    """Compare snapshot ``a`` (older) with ``b``: ids, unique prefixes or ``latest``."""
    sa = repo.resolve_snapshot(a, account)
    sb = repo.resolve_snapshot(b, account)
    ea, eb = _entries(repo, sa), _entries(repo, sb)
    out = SnapshotDiff(sa.id, sb.id, sa.account, sb.account)
    for name in sorted(ea.keys() | eb.keys()):
        fd = diff_folder(name, ea.get(name, []), eb.get(name, []))
        if not fd.empty:
            out.folders.append(fd)
    return out
