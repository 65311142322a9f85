"""Running a restore: folders spread over connections, each folder's messages uploaded."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mailvault.errors import FormatError, IntegrityError, ObjectNotFound
from mailvault.restore.folders import _FolderMixin
from mailvault.restore.gmail import _GmailMixin
from mailvault.restore.model import FolderPlan, RestoreResult, _Part, _Work
from mailvault.restore.procs import WorkerProcess
from mailvault.restore.upload import _date, _Uploader, _UploadMixin
from mailvault.targets.existing import ExistingMessages
from mailvault.targets.imap import AppendItem, SelectedState
from mailvault.targets.pipeline import AppendPipeline
from mailvault.vault.snapshots import SnapshotFolder
from mailvault.workers import WorkerDied

#: A folder is split over connections in parts of at least this many messages.
MIN_PART = 250
#: Messages whose place in the vault is looked up at once before they are read.
PREFETCH = 500


#: After a worker process died mid-folder: the folder must keep its message count this long
#: before it is restored in-process (its duplicate check then sees what the worker had sent).
SETTLE_QUIET_S = 1.0


def _units(plans: list[FolderPlan]) -> int:
    """How many connections the folders could keep busy (a big folder counts for its parts)."""
    return sum(max(1, p.messages // MIN_PART) for p in plans if p.messages) or 1


class _Restore(_FolderMixin, _UploadMixin, _GmailMixin):
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
            self._create_folders(plans)
            todo = [p for p in plans if p.target_raw not in self._refused_folders]
            first = [p for p in todo if p.special_use != "\\All"]
            last = [p for p in todo if p.special_use == "\\All"]
            self._restore_folders(first, folders)
            self._restore_folders(last, folders)
            for p in plans:
                if p.dropped_flags:
                    kept = ", ".join(p.dropped_flags)
                    r.warnings.append(f"{p.target}: the server does not keep {kept}; restored without them")
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
        n = min(self._connections(_units(plans)), _units(plans))
        if n <= 1:
            for p in plans:
                if self.result.budget_exhausted or self._over_quota:
                    break
                self._restore_folder(p, folders[p.source])
            return
        # Biggest folders first, spread over n connections; a big folder that is new or empty on
        # the target is split into parts that other connections take as they become free. Worker
        # processes (mailvault.restore.procs) take folders and parts from the same queue, each
        # over one of the n connections.
        procs = self.workers[: n - 1]
        self.repo.set_readers(n - len(procs))  # this process's connections read blocks at once
        queue: deque[_Part] = deque(_Part(p) for p in sorted(plans, key=lambda p: p.bytes, reverse=True))
        part_size = max(MIN_PART, -(-sum(p.messages for p in plans) // (2 * n)))
        lock = threading.Lock()
        main_free = [True]  # the first worker uses the connection that made the plan

        def take() -> _Part | None:
            with lock:
                if not queue or self.result.budget_exhausted or self._over_quota:
                    return None
                return queue.popleft()

        def worker() -> None:
            with lock:
                mine, main_free[0] = main_free[0], False
            assert self._connect is not None
            self._local.target = self._main_target if mine else self._connect()
            try:
                while (item := take()) is not None:
                    if item.work is not None:
                        self._restore_part(item)
                        continue
                    prepared = self._prepare(item.plan, folders[item.plan.source])
                    if prepared is None:
                        continue
                    state, work, existing = prepared
                    if self._splittable(item.plan, state, work, part_size):
                        k = -(-len(work) // part_size)
                        size = -(-len(work) // k)
                        parts = [work[i : i + size] for i in range(0, len(work), size)]
                        work = parts[0]
                        item.plan.parts = len(parts)
                        with lock:
                            queue.extendleft(
                                _Part(item.plan, w, state.uidvalidity) for w in reversed(parts[1:])
                            )
                    self._upload(item.plan, state, work, existing)
            finally:
                if not mine:
                    self._local.target.close()
                self._local.target = None

        def remote(w: WorkerProcess) -> None:
            while not w.answered(0.05):  # still starting: give up once nothing is left to do
                with lock:
                    if not queue:
                        return
            problem = w.ready()
            if problem is not None:
                self.result.warnings.append(
                    f"a restore worker process could not start ({problem}); its share was restored in-process"
                )
                return
            while (item := take()) is not None:
                if not self._remote(w, item, folders):
                    return  # the worker is gone; the others take the rest

        try:
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="mailvault-restore") as pool:
                futures = [pool.submit(worker) for _ in range(n - len(procs))]
                futures += [pool.submit(remote, w) for w in procs]
                for f in futures:
                    f.result()
        finally:
            for item in queue:  # stopped by the budget or a full account: counted as not attempted
                if item.work is not None:
                    item.plan.pending += len(item.work)

    def _remote(self, w: WorkerProcess, item: _Part, folders: dict[str, SnapshotFolder]) -> bool:
        """Have worker process ``w`` restore a folder or part; merge what it reports. False: the
        worker is gone (what it left undone is redone here or counted pending)."""
        p = item.plan
        with self._count_lock:  # the counters as sent: the worker's changes are the difference
            sent = dataclasses.replace(p, dropped_flags=list(p.dropped_flags))
        if item.work is None:
            job: tuple[Any, ...] = ("folder", sent, folders[p.source])
        else:
            job = ("part", sent, item.work, item.uidvalidity)
        total = p.messages if item.work is None else len(item.work)
        with self.progress.bar(p.target[:30], total=total) as bar:
            try:
                answer = w.call(job)
            except WorkerDied as exc:
                self._worker_died(item, folders, str(exc))
                return False
            if answer[0] == "raised":
                raise answer[1]
            if answer[0] != "done":
                w.close(timeout=0)
                lines = str(answer[1]).strip().splitlines() or ["?"]
                self._worker_died(item, folders, f"it failed: {lines[-1]}")
                return False
            _, after, failures, warnings, once, over_quota, budget = answer
            bar.update(total)
        with self._count_lock:
            for name in ("already", "uploaded", "uploaded_bytes", "skipped_existing", "failed", "pending"):
                setattr(p, name, getattr(p, name) + getattr(after, name) - getattr(sent, name))
            p.started = p.started or after.started
            p.create = p.create and after.create
            p.parts = max(p.parts, after.parts)
            if after.dropped_flags:
                p.dropped_flags = sorted(set(p.dropped_flags) | set(after.dropped_flags))
            self.result.failures.extend(failures)
            self.result.warnings.extend(warnings)
            for blob, message in once:
                self._fail_once(blob, message)
            self._over_quota = self._over_quota or over_quota
            self.result.budget_exhausted = self.result.budget_exhausted or budget
        return True

    def _worker_died(self, item: _Part, folders: dict[str, SnapshotFolder], why: str) -> None:
        """A worker process stopped mid-job. A whole folder is restored here instead (as a rerun
        would: the journal and the duplicate check skip what the worker uploaded); of a part, what
        the journal confirms counts as uploaded, the rest as pending (other connections may be
        uploading into the same folder, so it is left to the rerun)."""
        p = item.plan
        if item.work is None:
            self.result.warnings.append(
                f"{p.target}: a restore worker process stopped ({why}); the folder was restored in-process"
            )
            assert self._connect is not None
            self._local.target = self._connect()
            try:
                # What the worker had sent may still be on its way to the server: let the folder
                # stop growing before the duplicate check looks at it.
                if not p.create:
                    self.target.settle(p.target_raw, SETTLE_QUIET_S)
                self._restore_folder(p, folders[p.source])
            finally:
                self._local.target.close()
                self._local.target = None
            return
        done = self.journal.done(self.key, p.target_raw, item.uidvalidity)
        got = [w for w in item.work if (w.entry.blob, w.seq) in done]
        left = len(item.work) - len(got)
        with self._count_lock:
            p.uploaded += len(got)
            p.uploaded_bytes += sum(w.entry.size for w in got)
            p.pending += left
        if left:
            self.result.failures.append(
                f"{p.source}: a restore worker process stopped ({why}) before {left} message(s) of the "
                "folder were confirmed; rerun the restore to finish them (nothing is uploaded twice)"
            )

    def _splittable(self, p: FolderPlan, state: SelectedState, work: list[_Work], part_size: int) -> bool:
        """Whether a folder's uploads may go over several connections: the target folder is empty
        (no duplicate check to keep consistent), not Gmail (one copy per message, claimed per
        folder), pipelined (an ASCII name), and it is big enough to be worth it."""
        return (
            state.exists == 0
            and not self.target.gmail
            and AppendPipeline.usable(p.target_raw)
            and len(work) >= 2 * part_size
        )

    def _restore_part(self, item: _Part) -> None:
        """Upload one part of a folder another connection prepared (the folder was empty)."""
        assert item.work is not None
        p = item.plan
        state = self.target.select(p.target_raw)
        if state.uidvalidity != item.uidvalidity:
            with self._count_lock:
                p.pending += len(item.work)
            self.result.warnings.append(
                f"{p.target}: the folder was recreated on the target during the restore; "
                f"{len(item.work)} message(s) left for the next run"
            )
            return
        self._upload(p, state, item.work, ExistingMessages(self.target))

    def _restore_folder(self, p: FolderPlan, folder: SnapshotFolder) -> None:
        prepared = self._prepare(p, folder)
        if prepared is not None:
            self._upload(p, *prepared)

    def _prepare(
        self, p: FolderPlan, folder: SnapshotFolder
    ) -> tuple[SelectedState, list[_Work], ExistingMessages] | None:
        """Create and select the target folder; the messages still to upload (None: nothing)."""
        p.started = True
        if not self._ensure_folder(p) or not p.messages:
            return None  # an empty folder only needs to exist: no SELECT
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
            return None
        work = [w for w in occurrences if (w.entry.blob, w.seq) not in done]
        p.already = len(occurrences) - len(work)
        if not work:
            return None
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
        return state, work, existing

    def _upload(
        self, p: FolderPlan, state: SelectedState, work: list[_Work], existing: ExistingMessages
    ) -> None:
        """Upload ``work`` (all or part of a folder) on this thread's connection."""
        p.parts = p.parts or 1
        skipped_rows: list[tuple[str, int, int | None]] = []
        dropped: set[str] = set()
        uploader = _Uploader(self, p, state)
        ids: list[bytes] = []
        with self.progress.bar(p.target[:30], total=len(work)) as bar:
            for i, w in enumerate(work):
                bar.update()
                if i % PREFETCH == 0:  # where the next messages are: one index query, not one each
                    ids = [bytes.fromhex(x.entry.blob) for x in work[i : i + PREFETCH]]
                    self.repo.prefetch(ids)
                try:
                    raw = self.repo.read_blob(ids[i % PREFETCH])
                except (IntegrityError, FormatError, ObjectNotFound) as exc:
                    self._count(p, failed=1)
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
                        self._count(p, skipped_existing=1)
                        continue
                if self.limit is not None and len(raw) > self.limit:
                    self._count(p, failed=1)
                    self._fail_once(
                        w.entry.blob,
                        f"{p.source} UID {w.entry.uid}: {len(raw)} bytes is over the target's APPENDLIMIT "
                        f"({self.limit}); not uploaded",
                    )
                    continue
                if self.budget_bytes is not None and len(raw) > self.budget_bytes:
                    self._count(p, failed=1)
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
            with self._count_lock:  # reported once per folder, after the uploads (see run)
                p.dropped_flags = sorted(set(p.dropped_flags) | dropped)
