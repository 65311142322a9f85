"""Directories of single-message files (``*.eml``, MH folders, the SpamAssassin corpus)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from mailvault.model import FolderInfo, SourceMessage
from mailvault.sources.local.fs import (
    _MBOX_SUFFIXES,
    PST_MAGIC,
    Folder,
    _clean_name,
    _inbox,
    _is_dir,
    _is_file,
    _natural_key,
    _refuse_pst,
    _scandir,
    _unreadable,
    log,
)
from mailvault.sources.local.headers import _mtime, header_date
from mailvault.sources.local.mbox import _mbox_folder, _strip_mbox_suffix

# ---------------------------------------------------------------------------------------

# A file-name extension: a dot and a short word starting with a letter. Hash-like or
# numeric suffixes (``00001.7c53336b37003a9286aba55d2945844c``) do not count.
_EXTENSION_RE = re.compile(r"\.[A-Za-z][A-Za-z0-9_-]{0,7}$")


def _is_message_file(name: str) -> bool:
    if name.startswith("."):
        return False
    if name.lower().endswith(".eml"):
        return True
    return _EXTENSION_RE.search(name) is None


def _is_mbox_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(_MBOX_SUFFIXES)


def _eml_folder(folder_dir: Path, name: str, name_raw: str, files: list[str]) -> Folder:
    return FolderInfo(name=name, name_raw=name_raw, delimiter="/"), _iter_eml_messages(
        folder_dir, files, name
    )


def _iter_eml_messages(folder_dir: Path, files: list[str], folder: str = "") -> Iterator[SourceMessage]:
    for filename in files:
        p = folder_dir / filename
        try:
            with open(p, "rb") as f:
                raw = f.read()
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            log.warning("%s vanished while reading, skipped", p)
            continue
        except OSError as e:
            _unreadable(p, folder, e)
            continue
        if raw.startswith(PST_MAGIC):
            raise _refuse_pst(p)
        yield SourceMessage(uid=_clean_name(filename), raw=raw, internaldate=header_date(raw) or _mtime(st))


def _iter_eml_tree(root: Path, *, mboxrd: bool, rel: tuple[str, ...] = ()) -> Iterator[Folder]:
    d = root.joinpath(*rel)
    entries = _scandir(d, required=not rel)
    files: list[str] = []
    mboxes: list[os.DirEntry[str]] = []
    subdirs: list[str] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if _is_dir(entry):
            subdirs.append(entry.name)
        elif not _is_file(entry):
            continue
        elif _is_mbox_file(entry.name):
            mboxes.append(entry)
        elif _is_message_file(entry.name):
            files.append(entry.name)
    if files:
        if rel:
            name = "/".join([_inbox(rel[0]), *rel[1:]])
            yield _eml_folder(
                d, _clean_name(name), _clean_name("/".join(rel)), sorted(files, key=_natural_key)
            )
        else:
            yield _eml_folder(d, "INBOX", ".", sorted(files, key=_natural_key))
    for entry in mboxes:
        parts = [*rel, _strip_mbox_suffix(entry.name)]
        parts[0] = _inbox(parts[0])
        yield _mbox_folder(
            Path(entry.path), _clean_name("/".join(parts)), "/".join([*rel, entry.name]), mboxrd
        )
    for sub in subdirs:
        yield from _iter_eml_tree(root, mboxrd=mboxrd, rel=(*rel, sub))
