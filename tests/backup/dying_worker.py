"""``python -m tests.backup.dying_worker``: the backup worker process, killed (SIGKILL, by itself)
when it is handed its ``MV_TEST_WORKER_DIE_AT``-th chunk (default 1)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from mailvault.backup import worker
from mailvault.workers import serve


class _Dying(worker._Worker):
    chunks = 0

    def handle(self, msg: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if msg[0] == "chunk":
            self.chunks += 1
            if self.chunks == int(os.environ.get("MV_TEST_WORKER_DIE_AT", "1")):
                os.kill(os.getpid(), signal.SIGKILL)
        return super().handle(msg)


if __name__ == "__main__":
    sys.exit(serve(_Dying().handle))
