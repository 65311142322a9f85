"""Export format ``eml``: one ``.eml`` file per message.

``dest/<folder path>/<counter:06d>-<blob[:12]>.eml``, one file per message, exact bytes,
mtime = INTERNALDATE. Flags are not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mailvault.export.base import Exporter, as_utc
from mailvault.export.paths import folder_parts, inside, mkdirs, set_mtime, write_new


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
        path, counter = self._folders.get(parts) or (inside(self.dest, Path(*parts)), 0)
        if counter == 0:
            mkdirs(path)
        counter += 1
        self._folders[parts] = (path, counter)
        target = path / f"{counter:06d}-{blob_hex[:12]}.eml"
        write_new(target, raw)
        set_mtime(target, as_utc(internaldate))
        self.count += 1

    def close(self) -> None:
        self._folders.clear()
