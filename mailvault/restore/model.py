"""The restore's options, plan and result (see :mod:`mailvault.restore`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailvault.errors import EXIT_OK, EXIT_PARTIAL, ConfigError
from mailvault.vault.snapshots import ManifestEntry

#: Gmail system labels for special-use folders (X-GM-LABELS syntax).
GMAIL_SYSTEM_LABELS = {
    "\\Sent": "\\Sent",
    "\\Flagged": "\\Starred",
    "\\Important": "\\Important",
    "\\Drafts": "\\Draft",
    "\\Junk": "\\Spam",
    "\\Trash": "\\Trash",
}
GMAIL_DEFAULT_BUDGET_MB = 500


@dataclass
class RestoreOptions:
    snapshot: str = "latest"
    account: str | None = None
    folders: Sequence[str] = ()
    maps: Sequence[tuple[str, str]] = ()
    into: str | None = None
    dry_run: bool = False
    max_upload_mb_per_day: int | None = None
    batch_bytes: int = 4 << 20
    batch_count: int = 200
    verify: bool = True
    #: Parallel IMAP connections (folders are spread over them); None: 1; AUTO (0): one per
    #: folder up to AUTO_CONNECTIONS, never more than the provider allows (Gmail: 15).
    connections: int | None = None
    #: Only these messages (``restore --search``): folder -> {(str(uid), blob hex)}.
    selection: Mapping[str, set[tuple[str, str]]] | None = None


@dataclass
class FolderPlan:
    source: str
    target: str
    target_raw: str
    reason: str
    create: bool
    messages: int
    bytes: int
    special_use: str | None = None
    already: int = 0  # messages the journal says are there (Gmail: or uploaded once elsewhere)
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_existing: int = 0  # found in the target by Message-ID and size (or bytes)
    failed: int = 0  # unreadable in the vault, refused by the server, over a size limit
    pending: int = 0  # not attempted: the daily upload budget ran out, or the target is full
    labelled: int = 0
    started: bool = False
    parts: int = 0  # connections its uploads went over (more than 1: a big folder that was empty)
    dropped_flags: list[str] = field(default_factory=list)


@dataclass
class RestoreResult:
    snapshot: str
    account: str
    target: str
    dry_run: bool
    gmail: bool = False
    folders: list[FolderPlan] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_existing: int = 0
    #: Every message of the snapshot is counted once: uploaded + already_there + failed + pending = messages.
    already_there: int = 0  # in the journal, or found in the target
    failed: int = 0
    pending: int = 0
    labels_applied: int = 0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    budget_exhausted: str = ""
    duration: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.failures or self.budget_exhausted else EXIT_OK


def parse_map(values: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        src, sep, dst = v.partition("=")
        if not sep or not src or not dst:
            raise ConfigError(f"--map expects SRC=DST, got {v!r}")
        out.append((src, dst))
    return out


@dataclass
class _Work:
    entry: ManifestEntry
    seq: int


@dataclass
class _Part:
    """A folder to restore (``work`` None), or a part of one another connection prepared."""

    plan: FolderPlan
    work: list[_Work] | None = None
    uidvalidity: int = 0


@dataclass
class _Check:
    """What the verification FETCH compares for one uploaded message."""

    uid: int
    blob: str
    size: int
    date: datetime | None
