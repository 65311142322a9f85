"""Export format ``maildir``: a nested Maildir tree.

A nested ("fs" layout, as mbsync ``SubFolders Verbatim`` and Dovecot ``LAYOUT=fs`` use)
Maildir tree: ``dest/<folder path>/{cur,new,tmp}``. Folder name components are stored in
IMAP modified UTF-7 (``Entwürfe`` → ``Entw&APw-rfe``, ``Q1 & Q2`` → ``Q1 &- Q2``), the
on-disk convention of Dovecot and mbsync; a component named ``cur``, ``new`` or ``tmp`` is
escaped (``%63ur``). Each message is written to ``tmp/`` and then moved into ``cur/`` as
``<unix time>.<blob[:16]>.<counter>.mailvault:2,<flag letters>``, with its mtime set to the
INTERNALDATE. ``\\Draft \\Flagged $Forwarded \\Answered \\Seen \\Deleted`` map to
``D F P R S T``; other keywords get Dovecot letters ``a``–``z`` recorded in the folder's
``dovecot-keywords`` file (at most 26 per folder; more are dropped with a warning). The bytes
are written exactly as given.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mailvault.errors import ExportError
from mailvault.export.base import Exporter, as_utc
from mailvault.export.paths import folder_parts, inside, mkdirs, set_mtime, write_new

log = logging.getLogger(__name__)

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
            path = inside(self.dest, Path(*parts))
            for sub in ("cur", "new", "tmp"):
                mkdirs(path / sub)
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
        date = as_utc(internaldate)
        self._counter += 1
        stamp = max(0, int(date.timestamp())) if date else int(time.time())
        base = f"{stamp}.{blob_hex[:16]}.{self._counter}.mailvault"
        tmp = state.path / "tmp" / base
        final = state.path / "cur" / f"{base}:2,{letters}"
        if final.exists():
            raise ExportError(f"{final}: already exists, not overwriting")
        write_new(tmp, raw)
        set_mtime(tmp, date)
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
