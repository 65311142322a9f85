"""Uploading: batches and pipelined APPENDs, the daily budget, journal rows, verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailvault.errors import ProtocolError
from mailvault.restore.base import _Base
from mailvault.restore.model import FolderPlan, _Check, _Work
from mailvault.sources.local import header_date
from mailvault.targets.answers import is_over_quota
from mailvault.targets.imap import AppendItem, OverQuota, Rejected, SelectedState
from mailvault.targets.pipeline import AppendPipeline, Done
from mailvault.vault.snapshots import ManifestEntry


class _UploadMixin(_Base):
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
        nbytes = sum(len(i.raw) for _, i in batch)
        self.journal.record_uploaded(
            self.key,
            p.target_raw,
            state.uidvalidity,
            rows,
            day=datetime.now(UTC).strftime("%Y-%m-%d"),
            nbytes=nbytes,
            gmail=self.target.gmail,
        )
        with self._count_lock:
            p.uploaded += len(batch)
            p.uploaded_bytes += nbytes
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
            differ = self.target.verify({c.uid: (c.size, c.date) for c in checks})
        except (Rejected, ProtocolError):
            return
        for uid, (size, date) in sorted(differ.items()):
            c = known[uid]
            if size != c.size:
                self.result.warnings.append(
                    f"{p.target} UID {uid}: the server stored {size} bytes of a {c.size}-byte message "
                    f"(blob {c.blob[:12]}); it altered the message"
                )
            if c.date is not None and date is not None:
                self.result.warnings.append(
                    f"{p.target} UID {uid}: the server set INTERNALDATE {date.isoformat()} "
                    f"instead of {c.date.isoformat()}"
                )


class _Uploader:
    """One folder's uploads: pipelined APPENDs (:class:`AppendPipeline`), journalled in groups and
    verified with one FETCH at the end; a folder name that cannot be pipelined (not ASCII) goes
    the classic way, in batches."""

    def __init__(self, r: _UploadMixin, p: FolderPlan, state: SelectedState) -> None:
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
                self.r._count(self.p, pending=left)
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
        if is_over_quota(answer):
            # The account is full: every further APPEND would be refused too. Stop; what is left
            # is pending and reported once per folder.
            self.r._over_quota = self.r._over_quota or answer
            self.r._count(self.p, pending=1)
            return
        self.r._count(self.p, failed=1)
        self.r.result.failures.append(
            f"{self.p.source} UID {w.entry.uid} ({len(item.raw)} bytes, blob {w.entry.blob[:12]}): "
            f"refused by the server: {answer}"
        )


def _date(entry: ManifestEntry, raw: bytes) -> datetime | None:
    if entry.internaldate:
        return datetime.fromisoformat(entry.internaldate)
    return header_date(raw)
