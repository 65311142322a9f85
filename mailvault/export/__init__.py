"""Write messages out of the vault as a Maildir tree, mbox files or ``.eml`` files.

:func:`open_exporter` returns an :class:`Exporter`; call :meth:`Exporter.add` for each
message and :meth:`Exporter.close` at the end (or use it as a context manager).

Folder names become relative paths below the destination: the name is split on its
hierarchy delimiter and every component is made safe (empty, ``.`` and ``..`` components,
control characters, ``/`` and ``\\`` and a leading ``.`` are percent-encoded, e.g. ``..``
becomes ``%2E%2E``). Every target path is checked to stay inside the destination. An
existing file is never overwritten: :class:`ExportError` is raised instead.

The package:

``paths.py``
    folder names → safe relative paths; file writes that never overwrite.
``base.py``
    the :class:`Exporter` interface.
``maildir.py``, ``mbox.py``, ``eml.py``
    one module per format; each module's docstring describes its format
    (``maildir``: a nested Maildir tree with flags; ``mbox``: one mboxrd file per folder;
    ``eml``: one file per message).
"""

from __future__ import annotations

from pathlib import Path

from mailvault.errors import ConfigError, ExportError
from mailvault.export.base import Exporter
from mailvault.export.eml import EmlExporter
from mailvault.export.maildir import MaildirExporter
from mailvault.export.mbox import MboxExporter, mboxrd_escape
from mailvault.export.paths import folder_parts, mkdirs, safe_component

__all__ = [
    "EXPORT_FORMATS",
    "EmlExporter",
    "Exporter",
    "MaildirExporter",
    "MboxExporter",
    "folder_parts",
    "mboxrd_escape",
    "open_exporter",
    "safe_component",
]

EXPORT_FORMATS = ("maildir", "mbox", "eml")

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
    mkdirs(path)
    return cls(path)
