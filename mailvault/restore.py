"""``mailvault restore``: replay a snapshot into an IMAP account — exact, idempotent, resumable.

1. **Plan.** Each source folder gets a target folder: ``--into`` (everything into one
   folder), else an explicit ``--map SRC=DST``, else the target folder with the same
   special-use attribute (\\Sent → ``[Gmail]/Sent Mail``), else the same name, re-joined
   with the target's delimiter under its personal namespace prefix. Missing folders are
   created; a name the target refuses is reported with a suggestion.
2. **Upload.** Messages are APPENDed byte-exact with their INTERNALDATE and the flags the
   folder's PERMANENTFLAGS allow (the rest reported once per folder), in MULTIAPPEND
   batches where advertised. Each success is written to the restore journal (blob → UID,
   per target folder and UIDVALIDITY), so a rerun uploads only what is missing and an
   interrupted run resumes. Before uploading into a non-empty folder the target's
   (Message-ID, size) pairs are compared, so messages already there (from another tool or
   a journal that was lost) are not uploaded again.
3. **Gmail** (target advertises X-GM-EXT-1): each message is uploaded once; its other
   folders become labels (``STORE +X-GM-LABELS``); the \\All folder comes last; APPENDLIMIT
   and a daily upload budget are respected; throttling answers back off.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mailvault.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    FormatError,
    IntegrityError,
    ObjectNotFound,
    ProtocolError,
)
from mailvault.net import mutf7
from mailvault.net.imap import connection_count
from mailvault.net.session import Credentials, Endpoint, TLSPolicy, connect_imap
from mailvault.progress import QUIET, Progress
from mailvault.restore_journal import Journal
from mailvault.sources.local import header_date
from mailvault.targets.existing import ExistingMessages
from mailvault.targets.imap import (
    AppendItem,
    ImapTarget,
    OverQuota,
    Rejected,
    SelectedState,
    TargetFolder,
    _is_over_quota,
)
from mailvault.targets.pipeline import AppendPipeline, Done
from mailvault.vault.index import default_cache_root
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import ManifestEntry, Snapshot, SnapshotFolder

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


def _journal(repo: Repository) -> Journal:
    return Journal(default_cache_root() / repo.id / "restore.sqlite")


def restore(
    repo: Repository,
    endpoint: Endpoint,
    creds: Credentials,
    tls: TLSPolicy,
    options: RestoreOptions | None = None,
    *,
    progress: Progress = QUIET,
    journal: Journal | None = None,
) -> RestoreResult:
    options = options or RestoreOptions()
    snap = repo.resolve_snapshot(options.snapshot, options.account)

    def connect() -> ImapTarget:
        return ImapTarget(lambda: connect_imap(endpoint, creds, tls))

    target = connect()
    own_journal = journal is None
    jr = journal or _journal(repo)
    try:
        return _Restore(repo, snap, endpoint, target, jr, options, progress, connect=connect).run()
    finally:
        target.close()
        if own_journal:
            jr.close()


@dataclass
class _Work:
    entry: ManifestEntry
    seq: int


@dataclass
class _Check:
    """What the verification FETCH compares for one uploaded message."""

    uid: int
    blob: str
    size: int
    date: datetime | None


class _Restore:
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
        self._reserved = 0  # budget bytes of uploads in flight (parallel connections)

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
        tfolders = self.target.folders()
        by_special: dict[str, TargetFolder] = {}
        for tf in tfolders:
            if tf.special_use and tf.special_use not in by_special:
                by_special[tf.special_use] = tf
        existing = {tf.name: tf for tf in tfolders}
        delim = next((tf.delimiter for tf in tfolders if tf.delimiter), None)
        prefix, ns_delim = self.target.personal_namespace()
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

    # -- running ------------------------------------------------------------------------
    def run(self) -> RestoreResult:
        r = self.result
        plans = self.plan()
        r.folders = plans
        r.messages = sum(p.messages for p in plans)
        if self.snap.repairs:
            lost = sum(len(rec.get("lost_messages", [])) for rec in self.snap.repairs)
            r.warnings.append(
                f"snapshot {self.snap.id[:12]} was repaired: {lost} message(s) lost to vault damage are not "
                "in it (listed in 'mailvault snapshots --json')"
            )
        r.bytes = sum(p.bytes for p in plans)
        folders = {f.name: f for f in self.snap.folders}
        if self.options.dry_run:
            for p in plans:
                self._dry_run_folder(p)
        else:
            # \All (Gmail's All Mail) strictly after every other folder.
            first = [p for p in plans if p.special_use != "\\All"]
            last = [p for p in plans if p.special_use == "\\All"]
            self._restore_folders(first, folders)
            self._restore_folders(last, folders)
            if self.target.gmail and not r.budget_exhausted and not self._over_quota:
                self._apply_gmail_labels(plans)
        for p in plans:
            if not p.started and not self.options.dry_run:
                p.pending = p.messages  # the budget ran out (or the target filled up) before this folder
            if self._over_quota and p.pending:
                # One line per folder, not one per message: every further APPEND would be refused.
                r.failures.append(
                    f"{p.source}: {p.pending} of {p.messages} message(s) not restored: the target account "
                    f"is over quota ({self._over_quota}); make room or raise the quota, then rerun"
                )
            r.uploaded += p.uploaded
            r.uploaded_bytes += p.uploaded_bytes
            r.skipped_existing += p.skipped_existing
            r.already_there += p.already + p.skipped_existing
            r.failed += p.failed
            r.pending += p.pending
            r.labels_applied += p.labelled
        r.duration = round(time.monotonic() - self.started, 3)
        return r

    def _restore_folders(self, plans: list[FolderPlan], folders: dict[str, SnapshotFolder]) -> None:
        n = min(self._connections(len(plans)), len(plans))
        if n <= 1:
            for p in plans:
                if self.result.budget_exhausted or self._over_quota:
                    break
                self._restore_folder(p, folders[p.source])
            return
        # Biggest folders first, spread over n connections.
        queue = sorted(plans, key=lambda p: p.bytes, reverse=True)
        lock = threading.Lock()

        def worker() -> None:
            assert self._connect is not None
            self._local.target = self._connect()
            try:
                while not self.result.budget_exhausted and not self._over_quota:
                    with lock:
                        if not queue:
                            return
                        p = queue.pop(0)
                    self._restore_folder(p, folders[p.source])
            finally:
                self._local.target.close()
                self._local.target = None

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="mailvault-restore") as pool:
            for f in [pool.submit(worker) for _ in range(n)]:
                f.result()

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

    def _ensure_folder(self, p: FolderPlan) -> bool:
        if not p.create:
            return True
        try:
            self.target.create(p.target_raw)
        except Rejected as exc:
            p.failed = p.messages
            suggestion = re.sub(r"[^\w /.-]", "_", p.target)
            self.result.failures.append(
                f"folder {p.target!r}: the server refused to create it ({exc}); "
                f"try --map {p.source!r}={suggestion!r}"
            )
            return False
        p.create = False
        return True

    def _restore_folder(self, p: FolderPlan, folder: SnapshotFolder) -> None:
        p.started = True
        if not self._ensure_folder(p):
            return
        state = self.target.select(p.target_raw)
        done = self.journal.done(self.key, p.target_raw, state.uidvalidity)
        try:
            occurrences = self._occurrences(folder)
        except (IntegrityError, FormatError, ObjectNotFound) as exc:
            p.failed = p.messages
            self.result.failures.append(
                f"{p.source}: the folder's list of messages cannot be read from the vault ({exc}); "
                f"{p.messages} message(s) not restored"
            )
            return
        work = [w for w in occurrences if (w.entry.blob, w.seq) not in done]
        p.already = len(occurrences) - len(work)
        if not work:
            return
        gmail = self.target.gmail
        if gmail:
            before = len(work)
            work = self._gmail_filter(p, state, work)
            p.already += before - len(work)  # uploaded once elsewhere: this folder becomes a label
        # Messages already in the target that the journal does not account for (another tool,
        # a lost journal, a kill between APPEND and journal): matched by Message-ID and size.
        existing = ExistingMessages(self.target)
        if state.exists > len(done):
            existing.load(self.journal.done_uids(self.key, p.target_raw, state.uidvalidity))
        skipped_rows: list[tuple[str, int, int | None]] = []
        dropped: set[str] = set()
        uploader = _Uploader(self, p, state)
        with self.progress.bar(p.target[:30], total=len(work)) as bar:
            for i, w in enumerate(work):
                bar.update()
                try:
                    raw = self.repo.read_blob(bytes.fromhex(w.entry.blob))
                except (IntegrityError, FormatError, ObjectNotFound) as exc:
                    p.failed += 1
                    self.result.failures.append(
                        f"{p.source} UID {w.entry.uid} ({w.entry.size} bytes, blob {w.entry.blob[:12]}): "
                        f"cannot be read from the vault: {exc}"
                    )
                    continue
                bar.set_postfix(f"{p.uploaded_bytes >> 20} MiB uploaded")
                if existing:
                    uid_there = existing.take(raw, w.entry.blob)
                    if uid_there is not None:
                        skipped_rows.append((w.entry.blob, w.seq, uid_there))
                        p.skipped_existing += 1
                        continue
                if self.limit is not None and len(raw) > self.limit:
                    p.failed += 1
                    self._fail_once(
                        w.entry.blob,
                        f"{p.source} UID {w.entry.uid}: {len(raw)} bytes is over the target's APPENDLIMIT "
                        f"({self.limit}); not uploaded",
                    )
                    continue
                if self.budget_bytes is not None and len(raw) > self.budget_bytes:
                    p.failed += 1
                    self._fail_once(
                        w.entry.blob,
                        f"{p.source} UID {w.entry.uid}: {len(raw)} bytes is more than the whole daily upload "
                        f"budget ({self.budget_bytes // 1_000_000} MB); raise --max-upload-mb-per-day",
                    )
                    continue
                flags = [f for f in w.entry.flags if state.allows(f)]
                dropped.update(f for f in w.entry.flags if not state.allows(f) and f.lower() != "\\recent")
                if not uploader.add(w, AppendItem(raw, flags, _date(w.entry, raw)), len(work) - i):
                    break
            uploader.finish()
        if skipped_rows:
            self.journal.record(self.key, p.target_raw, state.uidvalidity, skipped_rows)
        if dropped:
            p.dropped_flags = sorted(dropped)
            self.result.warnings.append(
                f"{p.target}: the server does not keep {', '.join(sorted(dropped))}; restored without them"
            )

    def _flush_counted(
        self, p: FolderPlan, state: SelectedState, batch: list[tuple[_Work, AppendItem]], after: int
    ) -> bool:
        """:meth:`_flush`; when the budget stops it, count what was not attempted (of the batch and
        the ``after`` messages still to come) as pending."""
        uploaded, failed = p.uploaded, p.failed
        if self._flush(p, state, batch):
            return True
        p.pending += len(batch) - (p.uploaded - uploaded) - (p.failed - failed) + after
        return False

    def _fail_once(self, blob: str, message: str) -> None:
        """Report a message that cannot be uploaded once, not once per folder holding it."""
        if blob not in self._reported:
            self._reported.add(blob)
            self.result.failures.append(message)

    def _budget_left(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` of today's budget (released by :meth:`_spent`)."""
        if self.budget_bytes is None:
            return True
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        with self._budget_lock:
            if self.journal.spent(self.key, day) + self._reserved + nbytes <= self.budget_bytes:
                self._reserved += nbytes
                return True
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d 00:00 UTC")
        self.result.budget_exhausted = (
            f"daily upload budget of {self.budget_bytes // 1_000_000} MB reached; "
            f"rerun after {tomorrow} to continue (progress is saved)"
        )
        return False

    def _flush(self, p: FolderPlan, state: SelectedState, batch: list[tuple[_Work, AppendItem]]) -> bool:
        """Upload one batch; on a refusal retry one by one to name the culprit. False = stop."""
        if len(batch) > 1 and not self.target.multiappend:
            # Separate APPENDs: each one is its own retry unit and journal row, so a retry after
            # throttling or a dropped connection never sends an already stored message again.
            return all(self._flush(p, state, [one]) for one in batch)
        nbytes = sum(len(i.raw) for _, i in batch)
        if not self._budget_left(nbytes):
            if len(batch) == 1:
                return False
            # What is left of today's budget may still take some of the batch.
            self.result.budget_exhausted = ""
            return all(self._flush(p, state, [one]) for one in batch)
        try:
            uids = self.target.append_batch(p.target_raw, [i for _, i in batch])
        except BaseException as exc:
            self._release(nbytes)
            if not isinstance(exc, Rejected):
                raise
            if isinstance(exc, OverQuota) and len(batch) == 1:
                self._over_quota = str(exc)  # stop: counted as pending, reported per folder
                return False
            if len(batch) == 1:
                w, item = batch[0]
                p.failed += 1
                self.result.failures.append(
                    f"{p.source} UID {w.entry.uid} ({len(item.raw)} bytes, blob {w.entry.blob[:12]}): "
                    f"refused by the server: {exc}"
                )
                return True
            return all(self._flush(p, state, [one]) for one in batch)
        try:
            self._uploaded(p, state, batch, uids)
        finally:
            self._release(nbytes)
        return True

    def _release(self, nbytes: int) -> None:
        if self.budget_bytes is not None:
            with self._budget_lock:
                self._reserved -= nbytes

    def _uploaded(
        self,
        p: FolderPlan,
        state: SelectedState,
        batch: list[tuple[_Work, AppendItem]],
        uids: list[int | None],
        verify_later: list[_Check] | None = None,
    ) -> None:
        rows = [(w.entry.blob, w.seq, uid) for (w, _), uid in zip(batch, uids, strict=True)]
        self.journal.record(self.key, p.target_raw, state.uidvalidity, rows)
        nbytes = sum(len(i.raw) for _, i in batch)
        self.journal.spend(self.key, datetime.now(UTC).strftime("%Y-%m-%d"), nbytes)
        p.uploaded += len(batch)
        p.uploaded_bytes += nbytes
        if self.target.gmail:
            for (w, _), uid in zip(batch, uids, strict=True):
                self.journal.record_gmail_copy(self.key, w.entry.blob, p.target_raw, state.uidvalidity, uid)
        checks = [
            _Check(uid, w.entry.blob, len(item.raw), item.date)
            for (w, item), uid in zip(batch, uids, strict=True)
            if uid is not None
        ]
        if verify_later is not None:
            verify_later.extend(checks)
        elif self.options.verify:
            self._verify(p, checks)

    def _verify(self, p: FolderPlan, checks: list[_Check]) -> None:
        """Size and INTERNALDATE of uploaded messages as the server stored them: one FETCH for
        all of them (a folder's worth at a time)."""
        known = {c.uid: c for c in checks}
        if not known:
            return
        try:
            got = self.target.verify(list(known))
        except (Rejected, ProtocolError):
            return
        for uid, (size, date) in got.items():
            c = known[uid]
            if size != c.size:
                self.result.warnings.append(
                    f"{p.target} UID {uid}: the server stored {size} bytes of a {c.size}-byte message "
                    f"(blob {c.blob[:12]}); it altered the message"
                )
            # INTERNALDATE has whole seconds; a snapshot date may carry microseconds (file mtimes).
            if c.date is not None and isinstance(date, datetime) and date != c.date.replace(microsecond=0):
                self.result.warnings.append(
                    f"{p.target} UID {uid}: the server set INTERNALDATE {date.isoformat()} "
                    f"instead of {c.date.isoformat()}"
                )

    # -- Gmail --------------------------------------------------------------------------
    def _gmail_filter(self, p: FolderPlan, state: SelectedState, work: list[_Work]) -> list[_Work]:
        """Drop messages already uploaded once to this Gmail account (they get labels instead).

        A message another worker is uploading right now is skipped here without a journal
        row: the label step gives it this folder's label, and the next run journals it."""
        out = []
        with self._claim_lock:
            for w in work:
                if self.journal.gmail_copy(self.key, w.entry.blob) is not None:
                    self.journal.record(
                        self.key, p.target_raw, state.uidvalidity, [(w.entry.blob, w.seq, None)]
                    )
                elif w.entry.blob in self._claimed:
                    continue
                else:
                    self._claimed.add(w.entry.blob)
                    out.append(w)
        return out

    def _label_for(self, p: FolderPlan) -> str | None:
        if p.special_use == "\\All":
            return None
        if p.target.upper() == "INBOX":
            return "\\Inbox"
        if p.special_use in GMAIL_SYSTEM_LABELS:
            return GMAIL_SYSTEM_LABELS[p.special_use]
        return p.target

    def _apply_gmail_labels(self, plans: list[FolderPlan]) -> None:
        """Give every uploaded message the labels of all the source folders it was in."""
        folders = {f.name: f for f in self.snap.folders}
        wanted: dict[str, set[str]] = {}
        for p in plans:
            label = self._label_for(p)
            for e in self.repo.read_manifest(folders[p.source]):
                labels = wanted.setdefault(e.blob, set())
                if label:
                    labels.add(label)
                labels.update(lab for lab in e.labels if lab)
        # Group by the folder holding the single copy, then by label.
        todo: dict[tuple[str, int], dict[str, list[tuple[int, str]]]] = {}
        for blob, labels in wanted.items():
            copy = self.journal.gmail_copy(self.key, blob)
            if copy is None:
                continue
            folder, validity, maybe_uid = copy
            if maybe_uid is None:
                continue
            uid = maybe_uid
            missing = labels - self.journal.labels_done(self.key, blob)
            home = next((p for p in plans if p.target_raw == folder), None)
            if home is not None:
                missing.discard(self._label_for(home) or "")
            for label in missing:
                todo.setdefault((folder, validity), {}).setdefault(label, []).append((uid, blob))
        for (folder, validity), by_label in todo.items():
            state = self.target.select(folder)
            if state.uidvalidity != validity:
                self.result.warnings.append(
                    f"{mutf7.decode(folder)}: UIDVALIDITY changed; labels not applied"
                )
                continue
            for label, items in by_label.items():
                try:
                    self.target.add_labels([u for u, _ in items], [label])
                except Rejected as exc:
                    self.result.failures.append(f"label {label!r}: refused by the server: {exc}")
                    continue
                self.journal.record_labels(self.key, [(b, label) for _, b in items])
                home = next((p for p in plans if p.target_raw == folder), None)
                if home is not None:
                    home.labelled += len(items)


class _Uploader:
    """One folder's uploads: pipelined APPENDs (:class:`AppendPipeline`), journalled in groups and
    verified with one FETCH at the end; a folder name that cannot be pipelined (not ASCII) goes
    the classic way, in batches."""

    def __init__(self, r: _Restore, p: FolderPlan, state: SelectedState) -> None:
        self.r, self.p, self.state = r, p, state
        self.checks: list[_Check] = []
        self.batch: list[tuple[_Work, AppendItem]] = []
        self.batch_bytes = 0
        self.pipe: AppendPipeline | None = None
        if AppendPipeline.usable(p.target_raw):
            self.pipe = AppendPipeline(
                r.target,
                p.target_raw,
                on_done=self._done,
                on_refused=self._refused,
                group_count=r.options.batch_count,
                group_bytes=r.options.batch_bytes,
            )

    def add(self, w: _Work, item: AppendItem, left: int) -> bool:
        """Queue one message (``left``: it and the messages after it); False = stop (the daily
        budget is spent: those are counted as pending)."""
        if self.pipe is not None:
            if self.r._over_quota or not self.r._budget_left(len(item.raw)):
                self.p.pending += left
                return False
            self.pipe.submit(w, item)
            return True
        opts = self.r.options
        full = self.batch_bytes + len(item.raw) > opts.batch_bytes or len(self.batch) >= opts.batch_count
        if self.batch and full:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            if not self.r._flush_counted(self.p, self.state, batch, left):
                return False
        self.batch.append((w, item))
        self.batch_bytes += len(item.raw)
        return True

    def finish(self) -> None:
        if self.pipe is None:
            if self.batch:
                self.r._flush_counted(self.p, self.state, self.batch, 0)
            return
        self.pipe.finish()
        if self.r.options.verify:
            self.r._verify(self.p, self.checks)

    def _done(self, done: list[Done]) -> None:
        try:
            self.r._uploaded(
                self.p, self.state, [(d.key, d.item) for d in done], [d.uid for d in done], self.checks
            )
        finally:
            self.r._release(sum(len(d.item.raw) for d in done))

    def _refused(self, w: _Work, item: AppendItem, answer: str) -> None:
        self.r._release(len(item.raw))
        if _is_over_quota(answer):
            # The account is full: every further APPEND would be refused too. Stop; what is left
            # is pending and reported once per folder.
            self.r._over_quota = self.r._over_quota or answer
            self.p.pending += 1
            return
        self.p.failed += 1
        self.r.result.failures.append(
            f"{self.p.source} UID {w.entry.uid} ({len(item.raw)} bytes, blob {w.entry.blob[:12]}): "
            f"refused by the server: {answer}"
        )


def _date(entry: ManifestEntry, raw: bytes) -> datetime | None:
    if entry.internaldate:
        return datetime.fromisoformat(entry.internaldate)
    return header_date(raw)
