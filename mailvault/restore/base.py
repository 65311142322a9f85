"""The restore's state and its plan: which source folder goes into which target folder."""

from __future__ import annotations

import fnmatch
import threading
import time
from collections import Counter
from collections.abc import Callable

from mailvault.errors import ProtocolError
from mailvault.net import mutf7
from mailvault.net.connections import connection_count
from mailvault.net.session import Endpoint
from mailvault.progress import Progress
from mailvault.restore.model import GMAIL_DEFAULT_BUDGET_MB, FolderPlan, RestoreOptions, RestoreResult, _Work
from mailvault.restore.procs import WorkerProcess
from mailvault.restore_journal import Journal
from mailvault.targets.imap import ImapTarget, Rejected, TargetFolder
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import Snapshot, SnapshotFolder


class _Base:
    def __init__(
        self,
        repo: Repository,
        snap: Snapshot,
        endpoint: Endpoint,
        target: ImapTarget,
        journal: Journal,
        options: RestoreOptions,
        progress: Progress,
        *,
        connect: Callable[[], ImapTarget] | None = None,
    ) -> None:
        self.repo = repo
        self.snap = snap
        self.endpoint = endpoint
        self._main_target = target
        self._connect = connect
        self._local = threading.local()  # each worker thread has its own connection
        self._claim_lock = threading.Lock()
        self._claimed: set[str] = set()  # Gmail: blobs some worker is uploading right now
        self.journal = journal
        self.options = options
        self.progress = progress
        self.key = endpoint.address
        self.started = time.monotonic()
        self.result = RestoreResult(snap.id, snap.account, endpoint.address, options.dry_run, target.gmail)
        budget = options.max_upload_mb_per_day
        if budget is None and target.gmail:
            budget = GMAIL_DEFAULT_BUDGET_MB
        self.budget_bytes = budget * 1_000_000 if budget else None
        self.limit = target.append_limit
        self._reported: set[str] = set()
        self._over_quota = ""  # the server's answer once an APPEND was refused for a full account
        self._budget_lock = threading.Lock()
        self._count_lock = threading.Lock()  # a folder's counters (its parts may run in parallel)
        self._refused_folders: set[str] = set()  # target folders the server would not create
        self._reserved = 0  # budget bytes of uploads in flight (parallel connections)
        #: Worker processes set up for this restore (mailvault.restore.procs); none by default.
        self.workers: list[WorkerProcess] = []

    def _count(self, p: FolderPlan, *, failed: int = 0, pending: int = 0, skipped_existing: int = 0) -> None:
        with self._count_lock:
            p.failed += failed
            p.pending += pending
            p.skipped_existing += skipped_existing

    @property
    def target(self) -> ImapTarget:
        t: ImapTarget | None = getattr(self._local, "target", None)
        return t if t is not None else self._main_target

    def _connections(self, folders: int) -> int:
        if self._connect is None or self.options.connections is None:
            return 1
        return connection_count(self.options.connections, folders, gmail=self._main_target.gmail)

    # -- planning -----------------------------------------------------------------------
    def _selected_folders(self) -> list[SnapshotFolder]:
        inc = self.options.folders
        chosen = [f for f in self.snap.folders if not inc or any(fnmatch.fnmatchcase(f.name, g) for g in inc)]
        if self.options.selection is not None:
            chosen = [f for f in chosen if self.options.selection.get(f.name)]
        # Gmail: \All last, so every message is first placed in its labelled folders.
        return sorted(chosen, key=lambda f: f.special_use == "\\All")

    def plan(self) -> list[FolderPlan]:
        (prefix, ns_delim), tfolders = self.target.listing()
        by_special: dict[str, TargetFolder] = {}
        for tf in tfolders:
            if tf.special_use and tf.special_use not in by_special:
                by_special[tf.special_use] = tf
        existing = {tf.name: tf for tf in tfolders}
        delim = next((tf.delimiter for tf in tfolders if tf.delimiter), None)
        delim = ns_delim or delim or "/"
        maps = dict(self.options.maps)
        plans = []
        for f in self._selected_folders():
            special = f.special_use
            if self.options.into:
                name, reason = self.options.into, "--into"
            elif f.name in maps:
                name, reason = maps[f.name], "--map"
            elif self.snap.source_kind == "pop3" and f.name == "INBOX":
                name, reason = "INBOX", "POP3 mailbox"
            elif special and special in by_special:
                name, reason = by_special[special].name, f"special-use {special}"
            elif f.name.upper() == "INBOX":
                name, reason = "INBOX", "INBOX"
            else:
                name, reason = self._translate(f, self.snap.source_namespace, prefix, delim), "same name"
            found = existing.get(name)
            raw = found.name_raw if found else mutf7.encode(name).decode("ascii")
            n_msgs, n_bytes = f.messages, f.bytes
            if self.options.selection is not None:
                picked = self._occurrences(f)
                n_msgs, n_bytes = len(picked), sum(w.entry.size for w in picked)
            plans.append(
                FolderPlan(
                    source=f.name,
                    target=name,
                    target_raw=raw,
                    reason=reason,
                    create=found is None and name.upper() != "INBOX",
                    messages=n_msgs,
                    bytes=n_bytes,
                    special_use=special,
                )
            )
        return plans

    @staticmethod
    def _translate(f: SnapshotFolder, source_prefix: str, prefix: str, delim: str) -> str:
        # The source's namespace prefix ("INBOX." on Cyrus) is not part of the folder's name: Cyrus
        # INBOX.Work is Dovecot Work (and Dovecot Work becomes Cyrus INBOX.Work below).
        name = f.name
        if source_prefix and name.startswith(source_prefix) and len(name) > len(source_prefix):
            name = name[len(source_prefix) :]
        parts = name.split(f.delimiter) if f.delimiter else [name]
        # A source name part holding the target's delimiter would create a hierarchy level.
        parts = [p.replace(delim, "_") if delim else p for p in parts]
        name = delim.join(parts)
        if prefix and not name.startswith(prefix) and name.upper() != "INBOX":
            name = prefix + name
        return name

    def _dry_run_folder(self, p: FolderPlan) -> None:
        if p.create:
            return
        try:
            state = self.target.select(p.target_raw)
        except (Rejected, ProtocolError):
            return
        done = self.journal.done(self.key, p.target_raw, state.uidvalidity)
        if self.options.selection is not None:
            folder = next(f for f in self.snap.folders if f.name == p.source)
            p.already = sum((w.entry.blob, w.seq) in done for w in self._occurrences(folder))
        else:
            p.already = len(done)

    def _occurrences(self, folder: SnapshotFolder) -> list[_Work]:
        seen: Counter[str] = Counter()
        out = []
        for e in self.repo.read_manifest(folder):
            out.append(_Work(e, seen[e.blob]))
            seen[e.blob] += 1
        selection = self.options.selection
        if selection is not None:  # filtered after numbering: a copy keeps its journal identity
            keep = selection.get(folder.name, set())
            out = [w for w in out if (str(w.entry.uid), w.entry.blob) in keep]
        return out
