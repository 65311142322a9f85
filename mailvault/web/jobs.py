"""Restores and exports started from the UI run in a background thread; the page polls their state."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from mailvault.errors import MailvaultError
from mailvault.progress import Bar, Progress


@dataclass
class JobState:
    id: str
    kind: str
    title: str
    status: str = "running"  # running | done | partial | failed
    desc: str = ""
    done: float = 0
    total: float | None = None
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "desc": self.desc,
            "done": self.done,
            "total": self.total,
            "message": self.message,
        }


class _RecordingBar(Bar):
    def __init__(self, state: JobState, desc: str, total: float | None) -> None:
        self._bar = None
        self._state = state
        state.desc, state.done, state.total = desc, 0, total

    def update(self, n: float = 1) -> None:
        self._state.done += n

    def set_postfix(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


class RecordingProgress(Progress):
    """A :class:`Progress` whose bars write into a :class:`JobState` instead of a terminal."""

    def __init__(self, state: JobState) -> None:
        super().__init__(False)
        self.state = state

    def bar(self, desc: str, total: float | None = None, unit: str = "msg", unit_scale: bool = False) -> Bar:
        return _RecordingBar(self.state, desc, total)


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, JobState] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> JobState | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, kind: str, title: str, work: Callable[[Progress], tuple[int, str]]) -> JobState:
        """Run ``work`` in a thread; it returns (exit code, summary line)."""
        state = JobState(secrets.token_hex(8), kind, title)
        with self._lock:
            self._jobs[state.id] = state

        def runner() -> None:
            try:
                code, message = work(RecordingProgress(state))
                state.status = "done" if code == 0 else "partial"
                state.message = message
            except MailvaultError as exc:
                state.status, state.message = "failed", exc.message
            except Exception as exc:  # shown in the page, never a traceback with secrets
                state.status, state.message = "failed", f"internal error: {type(exc).__name__}"
            finally:
                state.finished = time.time()

        threading.Thread(target=runner, name=f"job-{state.id}", daemon=True).start()
        return state
