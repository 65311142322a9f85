"""A vault in a local directory: one file per object.

An object ``data/ab/ab12...`` is the file ``ROOT/data/ab/ab12...``. Writes go to a
``.tmp-*`` file in the target directory, are fsynced, then renamed (or, for a
create-only put, hard-linked) into place and the directory is fsynced, so a
reader or a crash sees either no object or the whole object. ``.tmp-*`` files
left by a killed process are never listed nor readable; :meth:`LocalBackend.cleanup_temp`
removes them.

Files are created with mode 0600 and directories with 0700: a vault holds mail.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from mailvault.errors import ObjectExists, ObjectNotFound, StorageError, StorageFull
from mailvault.storage.base import Backend

TEMP_PREFIX = ".tmp-"

_FILE_MODE = 0o600
_DIR_MODE = 0o700
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Errors from os.link meaning "this filesystem has no hard links", not "name taken".
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK})


def _fsync_dir(path: str) -> None:
    """fsync a directory so that entries created or renamed in it are durable."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # e.g. a platform that cannot open directories
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class LocalBackend(Backend):
    """Objects stored as files under a root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.location = os.fspath(root)

    # -- helpers ---------------------------------------------------------

    def _path(self, name: str) -> str:
        """The file path of ``name``; rejects names that could escape root or hit temp files."""
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") or p.startswith(TEMP_PREFIX) or "\\" in p for p in parts):
            raise StorageError(f"{self.location}: invalid object name {name!r}")
        return os.path.join(self.root, *parts)

    def _error(self, exc: OSError, action: str, path: str) -> StorageError:
        """Map an OSError to StorageFull (no space / quota) or StorageError, with a one-line message."""
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            return StorageFull(f"no space left on device {action} {path}")
        if exc.errno == errno.EDQUOT:
            return StorageFull(f"disk quota exceeded {action} {path}")
        return StorageError(f"{action} {path} failed: {reason}")

    def _makedirs(self, directory: str) -> None:
        """Create ``directory`` and missing parents, fsyncing the parent of each new directory."""
        missing: list[str] = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
        for d in reversed(missing):
            try:
                os.mkdir(d, _DIR_MODE)
            except FileExistsError:
                if not os.path.isdir(d):
                    raise
                continue  # created concurrently by another writer
            _fsync_dir(os.path.dirname(d))

    def _open_temp(self, directory: str) -> tuple[int, str]:
        """Create a fresh temp file in ``directory`` (creating the directory if needed)."""
        for attempt in range(2):
            tmp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}")
            try:
                fd = os.open(tmp, _CREATE_FLAGS, _FILE_MODE)
            except FileNotFoundError:
                if attempt:
                    raise
                self._makedirs(directory)
                continue
            return fd, tmp
        raise AssertionError("unreachable")  # pragma: no cover

    # -- Backend ---------------------------------------------------------

    def put(
        self, name: str, data: bytes | bytearray, *, exclusive: bool = False, durable: bool = True
    ) -> None:
        path = self._path(name)
        directory = os.path.dirname(path)
        tmp: str | None = None
        try:
            if exclusive and os.path.lexists(path):
                raise ObjectExists(f"{self.location}: object {name} already exists")
            fd, tmp = self._open_temp(directory)
            try:
                _write_all(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                self._link_exclusive(tmp, path, name, data)
            else:
                os.replace(tmp, path)
                tmp = None
            if durable:
                _fsync_dir(directory)
        except OSError as exc:
            raise self._error(exc, "writing", path) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _link_exclusive(self, tmp: str, path: str, name: str, data: bytes | bytearray) -> None:
        """Atomically publish ``tmp`` as ``path`` only if ``path`` does not exist."""
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise ObjectExists(f"{self.location}: object {name} already exists") from None
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            # No hard links here (some network/FUSE filesystems): O_EXCL still makes
            # the create atomic, but a concurrent reader may see a partial file.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            except FileExistsError:
                raise ObjectExists(f"{self.location}: object {name} already exists") from None
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError:
                os.close(fd)
                os.unlink(path)
                raise
            os.close(fd)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"bad range offset={offset} length={length}")
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                available = max(0, os.fstat(f.fileno()).st_size - offset)
                if length is not None:
                    available = min(available, length)
                if not available:
                    return b""
                f.seek(offset)
                return f.read(available)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"{self.location}: no object {name}") from None
        except OSError as exc:
            raise self._error(exc, "reading", path) from exc

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        # Only descend into the directory part of the prefix; filter its last
        # component against the entries of that directory.
        dir_part, _, leaf = prefix.rpartition("/")
        if dir_part:
            parts = dir_part.split("/")
            if any(p in ("", ".", "..") for p in parts):
                return
            start = os.path.join(self.root, *parts)
            base = dir_part + "/"
        else:
            start, base = self.root, ""
        yield from self._walk(start, base, leaf)

    def _walk(self, start: str, base: str, leaf: str = "") -> Iterator[tuple[str, int]]:
        """Yield ``(name, size)`` of files under ``start`` whose names start with ``leaf``."""
        stack: list[tuple[str, str, str]] = [(start, base, leaf)]
        while stack:
            directory, rel, want = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = [e for e in it if e.name.startswith(want)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise self._error(exc, "listing", directory) from exc
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                except OSError as exc:
                    raise self._error(exc, "listing", entry.path) from exc
                if stat.S_ISDIR(st.st_mode):
                    stack.append((entry.path, f"{rel}{entry.name}/", ""))
                elif stat.S_ISREG(st.st_mode):
                    yield f"{rel}{entry.name}", st.st_size

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            raise self._error(exc, "deleting", path) from exc

    def _stat(self, name: str) -> os.stat_result | None:
        path = self._path(name)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(exc, "reading", path) from exc
        return st if stat.S_ISREG(st.st_mode) else None

    def exists(self, name: str) -> bool:
        return self._stat(name) is not None

    def size(self, name: str) -> int:
        st = self._stat(name)
        if st is None:
            raise ObjectNotFound(f"{self.location}: no object {name}")
        return st.st_size

    def cleanup_temp(self, older_than_seconds: float = 3600.0) -> int:
        """Delete ``.tmp-*`` files (left by killed writers) older than the given age; return how many."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        stack = [self.root]
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = list(it)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise self._error(exc, "listing", directory) from exc
            for entry in entries:
                try:
                    if entry.is_dir():
                        stack.append(entry.path)
                    elif entry.name.startswith(TEMP_PREFIX) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise self._error(exc, "removing", entry.path) from exc
        return removed
