"""The target folders of a restore: created in one round trip before the uploads, a refusal
reported once per folder."""

from __future__ import annotations

import re

from mailvault.restore.base import _Base
from mailvault.restore.model import FolderPlan
from mailvault.targets.imap import Rejected


class _FolderMixin(_Base):
    def _create_folders(self, plans: list[FolderPlan]) -> None:
        """Every folder the plan creates, in one round trip before any upload (the CREATEs
        pipelined), instead of one round trip per folder on each connection's critical path. A
        folder the server refuses fails here, once; if the pipelined try breaks off, each folder
        is created when its turn comes (:meth:`_ensure_folder`)."""
        names = list(dict.fromkeys(p.target_raw for p in plans if p.create))
        refused = self.target.create_many(names) if names else None
        if refused is None:
            return
        for p in plans:
            if not p.create:
                continue
            p.create = False
            if p.target_raw in refused:
                self._refused(p, refused[p.target_raw])

    def _refused(self, p: FolderPlan, answer: str) -> None:
        p.started = True
        p.failed = p.messages
        self._refused_folders.add(p.target_raw)
        suggestion = re.sub(r"[^\w /.-]", "_", p.target)
        self.result.failures.append(
            f"folder {p.target!r}: the server refused to create it ({answer}); "
            f"try --map {p.source!r}={suggestion!r}"
        )

    def _ensure_folder(self, p: FolderPlan) -> bool:
        if p.target_raw in self._refused_folders:
            return False
        if not p.create:
            return True
        try:
            self.target.create(p.target_raw)
        except Rejected as exc:
            self._refused(p, str(exc))
            return False
        p.create = False
        return True
