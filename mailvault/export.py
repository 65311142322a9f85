"""Write messages out of the vault as a Maildir tree, mbox files or ``.eml`` files.

:func:`open_exporter` returns an :class:`Exporter`; call :meth:`Exporter.add` for each
message and :meth:`Exporter.close` at the end (or use it as a context manager).

Folder names become relative paths below the destination: the name is split on its
hierarchy delimiter and every component is made safe (empty, ``.`` and ``..`` components,
control characters, ``/`` and ``\\`` and a leading ``.`` are percent-encoded, e.g. ``..``
becomes ``%2E%2E``). Every target path is checked to stay inside the destination. An
existing file is never overwritten: :class:`ExportError` is raised instead.

Formats:

``maildir``
    A nested ("fs" layout, as mbsync ``SubFolders Verbatim`` and Dovecot ``LAYOUT=fs``
    use) Maildir tree: ``dest/<folder path>/{cur,new,tmp}``. Folder name components are
    stored in IMAP modified UTF-7 (``Entwürfe`` → ``Entw&APw-rfe``, ``Q1 & Q2`` →
    ``Q1 &- Q2``), the on-disk convention of Dovecot and mbsync; a component named
    ``cur``, ``new`` or ``tmp`` is escaped (``%63ur``). Each message is written to
    ``tmp/`` and then moved into ``cur/`` as
    ``<unix time>.<blob[:16]>.<counter>.mailvault:2,<flag letters>``, with its mtime set
    to the INTERNALDATE. ``\\Draft \\Flagged $Forwarded \\Answered \\Seen \\Deleted`` map
    to ``D F P R S T``; other keywords get Dovecot letters ``a``–``z`` recorded in the
    folder's ``dovecot-keywords`` file (at most 26 per folder; more are dropped with a
    warning). The bytes are written exactly as given.

``eml``
    ``dest/<folder path>/<counter:06d>-<blob[:12]>.eml``, one file per message, exact
    bytes, mtime = INTERNALDATE. Flags are not kept.

``mbox``
    One file per folder, ``dest/<folder path>.mbox``, in the **mboxrd** variant: each
    message is preceded by ``From MAILER-DAEMON <asctime of the INTERNALDATE in UTC>``
    and followed by one blank line, and every line matching ``^>*From `` gets one more
    ``>``. mboxrd is the only common mbox variant that is reversible: reading the file
    back with ``iter_local(..., mboxrd=True)`` returns every message byte-exact,
    including lines that begin with ``From `` or ``>From ``. The one exception is a
    message that does not end with ``\\n``: mbox cannot represent that, so a ``\\n`` is
    added before the separator. Flags are not kept (writing ``Status:`` headers would
    change the message). Readers that do not know mboxrd (mboxo) show quoted lines
    with one ``>`` too many, as they do for any mbox.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import unicodedata
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from imapclient import imap_utf7

from mailvault.errors import ConfigError, ExportError
from mailvault.sources.local import header_date

__all__ = ["EXPORT_FORMATS", "EmlExporter", "Exporter", "MaildirExporter", "MboxExporter", "open_exporter"]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("maildir", "mbox", "eml")

_MAX_COMPONENT_BYTES = 255


# ---------------------------------------------------------------------------------------
# Folder names → safe relative paths
# ---------------------------------------------------------------------------------------


def _pct(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def safe_component(component: str, *, maildir: bool = False) -> str:
    """Make one folder-name component safe as a single path component."""
    if component == "":
        return "%"
    if component in (".", ".."):
        return "%2E" * len(component)
    if maildir:
        component = imap_utf7.encode(component).decode("ascii")
    out: list[str] = []
    for i, ch in enumerate(component):
        if ch in "/\\" or (i == 0 and ch == ".") or unicodedata.category(ch) in ("Cc", "Cs"):
            out.append(_pct(ch))
        else:
            out.append(ch)
    safe = "".join(out)
    if maildir and safe in ("cur", "new", "tmp"):
        safe = _pct(safe[0]) + safe[1:]
    if len(safe.encode("utf-8")) > _MAX_COMPONENT_BYTES - 16:  # room for ".mbox" and the like
        digest = hashlib.sha256(safe.encode("utf-8")).hexdigest()[:16]
        cut = safe.encode("utf-8")[:200].decode("utf-8", "ignore")
        safe = f"{cut}~{digest}"
    return safe


def folder_parts(folder: str, delimiter: str | None, *, maildir: bool = False) -> list[str]:
    """Split ``folder`` on ``delimiter`` and make every component safe."""
    parts = folder.split(delimiter) if delimiter else [folder]
    return [safe_component(part, maildir=maildir) for part in parts]


def _inside(dest: Path, rel: Path) -> Path:
    target = dest / rel
    resolved = target.resolve()
    if not resolved.is_relative_to(dest.resolve()):
        raise ExportError(f"{target}: refusing to write outside {dest}")
    return target


def _as_utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _set_mtime(path: Path, dt: datetime | None) -> None:
    if dt is None:
        return
    ts = dt.timestamp()
    try:
        os.utime(path, (ts, ts))
    except (OSError, OverflowError, ValueError) as e:
        log.warning("cannot set the mtime of %s: %s", path, e)


def _mkdirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{path}: cannot create directory: {e.strerror or e}") from None


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``; an existing file is an ExportError."""
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        raise ExportError(f"{path}: already exists, not overwriting") from None
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror or e}") from None


# ---------------------------------------------------------------------------------------
# Exporters
# ---------------------------------------------------------------------------------------


class Exporter(ABC):
    """Writes messages below ``dest``. Use :func:`open_exporter` to build one."""

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


_FLAG_LETTERS = {
    "\\draft": "D",
    "\\flagged": "F",
    "$forwarded": "P",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}


class _MaildirFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.keywords: dict[str, str] = {}  # keyword -> letter
        self.keywords_preexisting = False


class MaildirExporter(Exporter):
    """Nested Maildir tree; see the module docstring."""

    fmt = "maildir"

    def __init__(self, dest: Path) -> None:
        super().__init__(dest)
        self._folders: dict[tuple[str, ...], _MaildirFolder] = {}
        self._counter = 0

    def _folder(self, folder: str, delimiter: str | None) -> _MaildirFolder:
        parts = tuple(folder_parts(folder, delimiter, maildir=True))
        state = self._folders.get(parts)
        if state is None:
            path = _inside(self.dest, Path(*parts))
            for sub in ("cur", "new", "tmp"):
                _mkdirs(path / sub)
            state = _MaildirFolder(path)
            kw_file = path / "dovecot-keywords"
            if kw_file.exists():
                state.keywords_preexisting = True
                try:
                    for line in kw_file.read_text("utf-8", "replace").splitlines():
                        num, _, name = line.strip().partition(" ")
                        if num.isdigit() and int(num) < 26 and name:
                            state.keywords[name] = chr(ord("a") + int(num))
                except OSError as e:
                    raise ExportError(f"{kw_file}: cannot read: {e.strerror or e}") from None
            self._folders[parts] = state
        return state

    def _letters(self, state: _MaildirFolder, flags: Sequence[str]) -> str:
        letters: set[str] = set()
        new_keyword = False
        for flag in flags:
            letter = _FLAG_LETTERS.get(flag.lower())
            if letter:
                letters.add(letter)
                continue
            if flag.startswith("\\"):  # \Recent and unknown system flags cannot be stored
                continue
            letter = state.keywords.get(flag)
            if letter is None:
                if state.keywords_preexisting or len(state.keywords) >= 26:
                    log.warning("%s: no room for keyword %r, dropped", state.path, flag)
                    continue
                letter = chr(ord("a") + len(state.keywords))
                state.keywords[flag] = letter
                new_keyword = True
            letters.add(letter)
        if new_keyword:
            self._write_keywords(state)
        return "".join(sorted(letters))

    def _write_keywords(self, state: _MaildirFolder) -> None:
        text = "".join(f"{ord(letter) - ord('a')} {kw}\n" for kw, letter in state.keywords.items())
        final = state.path / "dovecot-keywords"
        tmp = state.path / "tmp" / f"dovecot-keywords.{os.getpid()}.mailvault"
        try:
            tmp.write_text(text, "utf-8")
            os.replace(tmp, final)
        except OSError as e:
            raise ExportError(f"{final}: cannot write: {e.strerror or e}") from None

    def add(  # the signature is the interface
        self,
        folder: str,
        delimiter: str | None,
        raw: bytes,
        flags: Sequence[str],
        internaldate: datetime | None,
        blob_hex: str,
    ) -> None:
        state = self._folder(folder, delimiter)
        letters = self._letters(state, flags)
        date = _as_utc(internaldate)
        self._counter += 1
        stamp = max(0, int(date.timestamp())) if date else int(time.time())
        base = f"{stamp}.{blob_hex[:16]}.{self._counter}.mailvault"
        tmp = state.path / "tmp" / base
        final = state.path / "cur" / f"{base}:2,{letters}"
        if final.exists():
            raise ExportError(f"{final}: already exists, not overwriting")
        _write_new(tmp, raw)
        _set_mtime(tmp, date)
        try:
            try:
                os.link(tmp, final)  # fails instead of replacing an existing file
            except FileExistsError:
                raise ExportError(f"{final}: already exists, not overwriting") from None
            except OSError:  # no hard links on this file system
                if final.exists():
                    raise ExportError(f"{final}: already exists, not overwriting") from None
                os.rename(tmp, final)
            else:
                os.unlink(tmp)
        except OSError as e:
            raise ExportError(f"{final}: cannot write: {e.strerror or e}") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        self.count += 1

    def close(self) -> None:
        self._folders.clear()


class EmlExporter(Exporter):
    """One ``.eml`` file per message; see the module docstring."""

    fmt = "eml"

    def __init__(self, dest: Path) -> None:
        super().__init__(dest)
        self._folders: dict[tuple[str, ...], tuple[Path, int]] = {}

    def add(  # the signature is the interface
        self,
        folder: str,
        delimiter: str | None,
        raw: bytes,
        flags: Sequence[str],
        internaldate: datetime | None,
        blob_hex: str,
    ) -> None:
        parts = tuple(folder_parts(folder, delimiter))
        path, counter = self._folders.get(parts) or (_inside(self.dest, Path(*parts)), 0)
        if counter == 0:
            _mkdirs(path)
        counter += 1
        self._folders[parts] = (path, counter)
        target = path / f"{counter:06d}-{blob_hex[:12]}.eml"
        _write_new(target, raw)
        _set_mtime(target, _as_utc(internaldate))
        self.count += 1

    def close(self) -> None:
        self._folders.clear()


_MBOXRD_ESCAPE_RE = re.compile(rb"^(>*From )", re.MULTILINE)


def mboxrd_escape(raw: bytes) -> bytes:
    """Add one ``>`` to every line matching ``^>*From ``."""
    return _MBOXRD_ESCAPE_RE.sub(rb">\1", raw)


class MboxExporter(Exporter):
    """One mboxrd file per folder; see the module docstring."""

    fmt = "mbox"
    max_open = 16

    def __init__(self, dest: Path) -> None:
        super().__init__(dest)
        self._created: set[Path] = set()
        self._open: OrderedDict[Path, BinaryIO] = OrderedDict()

    def _file(self, folder: str, delimiter: str | None) -> BinaryIO:
        parts = folder_parts(folder, delimiter)
        path = _inside(self.dest, Path(*parts[:-1], parts[-1] + ".mbox"))
        f = self._open.get(path)
        if f is not None:
            self._open.move_to_end(path)
            return f
        try:
            if path in self._created:
                f = open(path, "ab")  # noqa: SIM115  # kept open across calls
            else:
                _mkdirs(path.parent)
                f = open(path, "xb")  # noqa: SIM115
                self._created.add(path)
        except FileExistsError:
            raise ExportError(f"{path}: already exists, not overwriting") from None
        except OSError as e:
            raise ExportError(f"{path}: cannot write: {e.strerror or e}") from None
        self._open[path] = f
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return f

    def add(  # the signature is the interface
        self,
        folder: str,
        delimiter: str | None,
        raw: bytes,
        flags: Sequence[str],
        internaldate: datetime | None,
        blob_hex: str,
    ) -> None:
        date = _as_utc(internaldate) or _as_utc(header_date(raw)) or datetime.now(UTC)
        from_line = f"From MAILER-DAEMON {time.asctime(date.timetuple())}\n".encode("ascii")
        body = mboxrd_escape(raw)
        tail = b"\n" if body.endswith(b"\n") or not body else b"\n\n"
        f = self._file(folder, delimiter)
        try:
            f.write(from_line + body + tail)
        except OSError as e:
            raise ExportError(f"{f.name}: cannot write: {e.strerror or e}") from None
        self.count += 1

    def close(self) -> None:
        errors: list[str] = []
        while self._open:
            path, f = self._open.popitem(last=False)
            try:
                f.close()
            except OSError as e:
                errors.append(f"{path}: {e.strerror or e}")
        if errors:
            raise ExportError(f"cannot finish writing {errors[0]}")


_EXPORTERS: dict[str, type[Exporter]] = {
    "maildir": MaildirExporter,
    "mbox": MboxExporter,
    "eml": EmlExporter,
}


def open_exporter(dest: str | Path, fmt: str) -> Exporter:
    """Build the exporter for ``fmt`` (``"maildir"``, ``"mbox"`` or ``"eml"``) writing below ``dest``.

    ``dest`` is created if needed; it may exist, but no existing file is ever overwritten.
    """
    cls = _EXPORTERS.get(fmt)
    if cls is None:
        raise ConfigError(f"unknown export format {fmt!r} (use {', '.join(EXPORT_FORMATS)})")
    path = Path(dest)
    if path.exists() and not path.is_dir():
        raise ExportError(f"{path}: exists and is not a directory")
    _mkdirs(path)
    return cls(path)
