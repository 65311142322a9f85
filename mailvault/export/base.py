"""The interface every exporter implements (:class:`Exporter`), and the INTERNALDATE in UTC."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType


class Exporter(ABC):
    """Writes messages below ``dest``. Use :func:`mailvault.export.open_exporter` to build one."""

    fmt: str

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.count = 0

    @abstractmethod
    def add(  # the signature is the interface
        self,
        folder: str,
        delimiter: str | None,
        raw: bytes,
        flags: Sequence[str],
        internaldate: datetime | None,
        blob_hex: str,
    ) -> None:
        """Write one message (``raw`` exactly) into ``folder``."""

    @abstractmethod
    def close(self) -> None:
        """Finish writing; the exporter cannot be used afterwards."""

    def __enter__(self) -> Exporter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def as_utc(dt: datetime | None) -> datetime | None:
    """``dt`` in UTC (a naive one is taken as UTC already)."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
