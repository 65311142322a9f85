"""Gmail targets: one copy per message, its other folders as labels."""

from __future__ import annotations

from mailvault.net import mutf7
from mailvault.restore.base import _Base
from mailvault.restore.model import GMAIL_SYSTEM_LABELS, FolderPlan, _Work
from mailvault.targets.imap import Rejected, SelectedState


class _GmailMixin(_Base):
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
