"""Export format ``mbox``: one mboxrd file per folder.

One file per folder, ``dest/<folder path>.mbox``, in the **mboxrd** variant: each message is
preceded by ``From MAILER-DAEMON <asctime of the INTERNALDATE in UTC>`` and followed by one
blank line, and every line matching ``^>*From `` gets one more ``>``. mboxrd is the only
common mbox variant that is reversible: reading the file back with
``iter_local(..., mboxrd=True)`` returns every message byte-exact, including lines that begin
with ``From `` or ``>From ``. The one exception is a message that does not end with ``\\n``:
mbox cannot represent that, so a ``\\n`` is added before the separator. Flags are not kept
(writing ``Status:`` headers would change the message). Readers that do not know mboxrd
(mboxo) show quoted lines with one ``>`` too many, as they do for any mbox.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from mailvault.errors import ExportError
from mailvault.export.base import Exporter, as_utc
from mailvault.export.paths import folder_parts, inside, mkdirs
from mailvault.sources.local import header_date

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
        path = inside(self.dest, Path(*parts[:-1], parts[-1] + ".mbox"))
        f = self._open.get(path)
        if f is not None:
            self._open.move_to_end(path)
            return f
        try:
            if path in self._created:
                f = open(path, "ab")  # noqa: SIM115  # kept open across calls
            else:
                mkdirs(path.parent)
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
        date = as_utc(internaldate) or as_utc(header_date(raw)) or datetime.now(UTC)
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
