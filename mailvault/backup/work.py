"""The tasks of an IMAP backup, shared by its connections (see :mod:`mailvault.backup.imap`).

Two kinds: *plan* a folder (its state and UIDs, cut into chunks), and a *chunk* of a planned
folder. A connection takes a chunk of the folder it has selected while there is one, else plans
the next folder, else takes the largest chunk left of any folder: one large folder ends up spread
over every connection, and the tail of the run is made of small pieces.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from mailvault.model import FolderInfo
from mailvault.progress import Bar
from mailvault.vault.snapshots import ManifestEntry, ManifestRows, SnapshotFolder


@dataclass
class Job:
    """A folder with work: its chunks of UIDs and, per chunk, the manifest rows once done."""

    index: int
    info: FolderInfo
    pf: SnapshotFolder | None
    uidvalidity: int | None
    known: dict[int, ManifestEntry]
    condstore: bool
    chunks: list[list[int]]
    bar: Bar
    rows: list[ManifestRows | None] = field(default_factory=list)
    left: int = 0


@dataclass
class Task:
    plan: int | None = None  # index of a folder to plan
    job: Job | None = None  # or a chunk of a planned folder
    chunk: int = 0


class Work:
    """The tasks of a run, taken by every connection (see the module doc for the order)."""

    def __init__(self, folders: int) -> None:
        self._cond = threading.Condition()
        self._plans: deque[int] = deque(range(folders))
        self._chunks: list[tuple[Job, int]] = []
        self._busy = 0
        self.failed = False

    def take(self, selected: str | None, *, chunks_only: bool = False, wait: bool = True) -> Task | None:
        """The next task for a connection with ``selected`` selected; ``chunks_only``: never a plan
        (a worker process: it waits while the others plan); ``wait`` False: None at once when no
        task is ready (a worker process asking for a second chunk to keep in flight)."""
        with self._cond:
            while True:
                if self.failed:
                    return None
                task = self._pick(selected, chunks_only)
                if task is not None:
                    self._busy += 1
                    return task
                if not wait or (self._busy == 0 and not (chunks_only and self._plans)):
                    return None  # nothing left, and nobody is planning more
                self._cond.wait()

    def _pick(self, selected: str | None, chunks_only: bool) -> Task | None:
        if self._chunks:
            own = [i for i, (job, _) in enumerate(self._chunks) if job.info.name_raw == selected]
            if own or not self._plans or chunks_only:
                i = own[0] if own else max(range(len(self._chunks)), key=self._size)
                job, k = self._chunks.pop(i)
                return Task(job=job, chunk=k)
        if self._plans and not chunks_only:
            return Task(plan=self._plans.popleft())
        return None

    def _size(self, k: int) -> int:
        job, c = self._chunks[k]
        return len(job.chunks[c])

    def done(self, job: Job | None = None) -> None:
        """A task is finished; ``job``: a planned folder whose chunks are now to be taken."""
        with self._cond:
            self._busy -= 1
            if job is not None:
                self._chunks.extend((job, k) for k in range(len(job.chunks)))
            self._cond.notify_all()

    def requeue(self, job: Job, k: int) -> None:
        """A chunk taken but not done (its worker process was lost): back for another connection."""
        with self._cond:
            self._busy -= 1
            self._chunks.append((job, k))
            self._cond.notify_all()

    def fail(self) -> None:
        with self._cond:
            self.failed = True
            self._busy -= 1
            self._cond.notify_all()
