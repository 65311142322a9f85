"""Progress reporting: a tqdm bar on a terminal, silence otherwise (cron, --quiet, --json)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


class Progress:
    """Factory of progress bars that exist only when a human is watching."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def bar(self, desc: str, total: float | None = None, unit: str = "msg", unit_scale: bool = False) -> Bar:
        return Bar(self.enabled, desc, total, unit, unit_scale)


class Bar:
    def __init__(self, enabled: bool, desc: str, total: float | None, unit: str, unit_scale: bool) -> None:
        self._bar: tqdm[Any] | None = None
        if enabled:
            from tqdm import tqdm  # only when a human watches: not loaded by cron runs

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=False, file=sys.stderr
            )

    def update(self, n: float = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


QUIET = Progress(False)
