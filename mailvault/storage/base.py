"""The storage backend interface: put / get (with a byte range) / list / delete.

Storage knows nothing of mail or of the vault format: it stores opaque objects
under ``/``-separated names such as ``data/ab/ab12...`` or ``snapshots/cd34...``.

Rules every backend follows:

* ``put`` is atomic: a reader sees either no object or the whole object, never
  a partial one. With ``exclusive=True`` it raises :class:`ObjectExists` when
  the name is already taken (create-only; used for lock and config files).
* ``get`` raises :class:`ObjectNotFound` for a missing name.
* ``list`` yields ``(name, size)`` for every object whose name starts with
  ``prefix``; order is unspecified.
* ``delete`` of a missing object is not an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator


class Backend(ABC):
    """Abstract object store."""

    #: Human-readable location, e.g. ``/srv/vault`` or ``s3://bucket/prefix``.
    location: str

    @abstractmethod
    def put(
        self, name: str, data: bytes | bytearray, *, exclusive: bool = False, durable: bool = True
    ) -> None:
        """Store ``data`` under ``name`` atomically (create-only if ``exclusive``). ``durable=False``:
        the object need not survive a power loss (locks, run records), so a local disk is not
        asked to flush it (two fsyncs, the most a no-op backup of one account costs)."""

    @abstractmethod
    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes, or ``length`` bytes starting at ``offset``."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Yield ``(name, size)`` of every object whose name starts with ``prefix``."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove ``name``; a missing object is not an error."""

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists (default: a listing of that exact name)."""
        return any(n == name for n, _ in self.list(name))

    def size(self, name: str) -> int:
        """Size in bytes of ``name``; raises ObjectNotFound when missing."""
        from mailvault.errors import ObjectNotFound

        for n, s in self.list(name):
            if n == name:
                return s
        raise ObjectNotFound(f"{self.location}: no object {name}")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections); default does nothing."""


def open_backend(location: str) -> Backend:
    """Return the backend for a vault location: a directory path or ``s3://bucket/prefix``."""
    if location.startswith("s3://"):
        from mailvault.storage.s3 import S3Backend

        return S3Backend.from_url(location)
    from mailvault.storage.local import LocalBackend

    return LocalBackend(location)
