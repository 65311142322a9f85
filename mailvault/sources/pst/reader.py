"""Walk an Outlook PST/OST file with libpff (``pypff``): folders, items, recipients and
attachments as :class:`~mailvault.sources.pst.convert.MapiMessage` values.

Every libpff call that can fail on a damaged file is wrapped: an unreadable item or
folder is recorded as a :class:`PstFailure` (file, folder, item index, subject when
known) and the walk goes on. Which folders are the special ones: :mod:`.folders`.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypff

from mailvault.errors import SourceError
from mailvault.sources.pst import props as P
from mailvault.sources.pst.convert import MapiAttachment, MapiMessage
from mailvault.sources.pst.folders import RawFolder, assign_special, entryid_nid, mark_ipm
from mailvault.sources.pst.props import Props, parse_heap_props

__all__ = ["PST_MAGIC", "PstFailure", "PstFile", "RawFolder", "is_mail_class", "item_kind", "looks_like_pst"]

#: The first four bytes of every PST and OST file ("!BDN").
PST_MAGIC = b"!BDN"

#: Message classes that are mail (LOCAL-STORES.md): notes, posts, meeting messages, reports.
MAIL_CLASS_PREFIXES = ("ipm.note", "report.", "ipm.schedule.meeting", "ipm.post")

#: Non-mail item kinds by message-class prefix, for the import summary.
_KINDS = (
    ("ipm.contact", "contacts"),
    ("ipm.distlist", "distribution_lists"),
    ("ipm.appointment", "calendar"),
    ("ipm.task", "tasks"),
    ("ipm.stickynote", "notes"),
    ("ipm.activity", "journal"),
)


def looks_like_pst(path: str | Path) -> bool:
    """True when ``path`` is a regular file starting with the PST/OST magic ``!BDN``."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == PST_MAGIC
    except OSError:
        return False


def is_mail_class(message_class: str) -> bool:
    return message_class.lower().startswith(MAIL_CLASS_PREFIXES)


def item_kind(message_class: str) -> str:
    """``"mail"`` or the summary bucket of a non-mail class (``contacts``, ``calendar``, …)."""
    low = message_class.lower()
    if is_mail_class(low):
        return "mail"
    for prefix, kind in _KINDS:
        if low.startswith(prefix):
            return kind
    return "other"


@dataclass(frozen=True)
class PstFailure:
    """One item or folder libpff could not read."""

    folder: str
    index: int | None  # item index within the folder; None for a folder-level failure
    subject: str | None
    error: str

    def describe(self, file: str) -> str:
        where = f"folder {self.folder!r}"
        if self.index is not None:
            where += f" item {self.index + 1}"
        if self.subject:
            where += f" ({self.subject!r})"
        return f"{file}: {where}: {self.error}"


def _short_error(e: BaseException) -> str:
    text = " ".join(str(e).split())
    # libpff chains its call stack into the message: the first clause says what failed and
    # a later one (a mismatch, an unsupported value) usually why.
    clauses = [c.strip() for c in text.split(". ") if c.strip()]
    if not clauses:
        return type(e).__name__
    why = next(
        (c for c in clauses[1:] if re.search(r"mismatch|unsupported|invalid|corrupt|missing", c)), None
    )
    return (f"{clauses[0]}: {why.split(': ', 1)[-1]}" if why else clauses[0])[:240]


class PstFile:
    """An open PST/OST file. Raises :class:`SourceError` (one line) when libpff cannot open it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        if not looks_like_pst(self.path):
            raise SourceError(f"{self.path}: not an Outlook PST/OST file (no !BDN signature)")
        self._file = pypff.file()
        try:
            self._file.open(str(self.path))
        except OSError as e:
            raise SourceError(
                f"{self.path}: libpff cannot open this PST/OST file: {_short_error(e)}"
            ) from None
        self.ansi_codec = self._ansi_codec()
        self.failures: list[PstFailure] = []

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> PstFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ansi_codec(self) -> str:
        try:
            cp = self._file.ascii_codepage
            name = cp.decode() if isinstance(cp, bytes) else str(cp)
            return codecs.lookup(name).name
        except (OSError, LookupError, UnicodeDecodeError, AttributeError):
            return "cp1252"

    # ------------------------------------------------------------------ folders

    def _store_nids(self) -> dict[int, int]:
        """Entry-id properties of the message store → folder node ids (short, PST-style ids)."""
        out: dict[int, int] = {}
        try:
            store = Props.of(self._file.message_store, self.ansi_codec)
        except OSError:
            return out
        for prop in (0x35E0, 0x35E3, 0x35E4):  # IPM subtree, Deleted Items, Sent Items
            nid = entryid_nid(store.raw(prop))
            if nid is not None:
                out[prop] = nid
        return out

    def folders(self) -> list[RawFolder]:
        """Every folder (depth-first, in store order), IPM subtree marked, special folders set."""
        try:
            root = self._file.root_folder
        except OSError as e:
            raise SourceError(f"{self.path}: cannot read the root folder: {_short_error(e)}") from None
        store = self._store_nids()
        ipm_nid = store.get(0x35E0)
        out: list[RawFolder] = []
        self._walk(root, (), False, ipm_nid, out, None)
        if not any(f.in_ipm for f in out):
            # OST: long-term entry ids; the mail lives below "Root - Mailbox/IPM_SUBTREE".
            for f in out:
                if f.path[-1:] == ("IPM_SUBTREE",) and len(f.path) == 2 and "public" not in f.path[0].lower():
                    mark_ipm(f, out)
                    break
        assign_special(out, store)
        return out

    def _walk(
        self,
        handle: Any,
        path: tuple[str, ...],
        in_ipm: bool,
        ipm_nid: int | None,
        out: list[RawFolder],
        parent: RawFolder | None,
    ) -> None:
        try:
            nid = int(handle.identifier)
            props = Props.of(handle, self.ansi_codec)
            name = handle.name
        except OSError as e:
            self.failures.append(PstFailure("/".join(path) or "(root)", None, None, _short_error(e)))
            return
        if parent is not None:
            path = (*path, name if name else f"folder-{nid}")
        is_ipm_root = ipm_nid is not None and nid == ipm_nid
        folder = RawFolder(
            nid=nid,
            path=path,
            in_ipm=in_ipm or is_ipm_root,
            container_class=props.text(P.PR_CONTAINER_CLASS) or "",
            handle=handle,
        )
        folder.ipm_root = is_ipm_root
        folder.props = props
        out.append(folder)
        if parent is not None:
            parent.children.append(folder)
        try:
            count = handle.number_of_sub_folders
        except OSError as e:
            self.failures.append(
                PstFailure("/".join(path), None, None, f"sub-folders unreadable: {_short_error(e)}")
            )
            return
        for i in range(count):
            try:
                sub = handle.get_sub_folder(i)
            except OSError as e:
                self.failures.append(
                    PstFailure(
                        "/".join(path), None, None, f"sub-folder {i + 1} unreadable: {_short_error(e)}"
                    )
                )
                continue
            self._walk(sub, path, folder.in_ipm, ipm_nid, out, folder)

    # ------------------------------------------------------------------ items

    def items(self, folder: RawFolder) -> Iterator[tuple[int, Any | None]]:
        """``(index, pypff message or None)``; None when libpff could not read that item
        (the failure is recorded)."""
        name = "/".join(folder.path) or "(root)"
        try:
            count = folder.handle.number_of_sub_messages
        except OSError as e:
            self.failures.append(PstFailure(name, None, None, f"item list unreadable: {_short_error(e)}"))
            return
        for i in range(count):
            try:
                yield i, folder.handle.get_sub_message(i)
            except OSError as e:
                self.failures.append(PstFailure(name, i, None, _short_error(e)))
                yield i, None

    def read_message(self, handle: Any, props: Props | None = None) -> MapiMessage:
        """The properties, recipients and attachments of one item (OSError if unreadable)."""
        msg = MapiMessage(props or Props.of(handle, self.ansi_codec))
        codec = msg.props.codec
        try:
            recipients = handle.recipients
        except OSError:
            recipients = None
        if recipients is not None:
            try:
                for rs in recipients.record_sets:
                    msg.recipients.append(Props(P.read_record_sets([rs]), codec))
            except OSError as e:
                msg.problems.append(f"recipient table unreadable: {_short_error(e)}")
        try:
            n = handle.number_of_attachments
        except OSError as e:
            msg.problems.append(f"attachment list unreadable: {_short_error(e)}")
            n = 0
        for i in range(n):
            try:
                msg.attachments.append(self._attachment(handle.get_attachment(i), codec))
            except OSError as e:
                msg.problems.append(f"attachment {i + 1} unreadable: {_short_error(e)}")
        return msg

    def _attachment(self, a: Any, codec: str) -> MapiAttachment:
        ap = Props.of(a, codec)
        method = ap.integer(P.PR_ATTACH_METHOD)
        size = int(a.size or 0)
        data = a.read_buffer(size) if size > 0 else b""
        if method == 5:
            try:
                values, unreachable = parse_heap_props(data)
            except ValueError:
                return MapiAttachment(ap, data=bytes(data))  # kept as opaque bytes
            inner = MapiMessage(Props(values, codec))
            bodies = {P.PR_BODY, P.PR_HTML, P.PR_RTF_COMPRESSED}
            lost = sorted(bodies.intersection(unreachable))
            if lost and not bodies.intersection(values):
                inner.problems.append(
                    "embedded message: its body is outside its property heap (not readable with libpff): "
                    + ", ".join(f"0x{x:04X}" for x in lost)
                )
            if values.get(0x0E1B, (0, b"\x00"))[1][:1] not in (b"\x00", b""):  # PR_HASATTACH
                inner.problems.append("embedded message: its own attachments are not readable with libpff")
            return MapiAttachment(ap, embedded=inner)
        return MapiAttachment(ap, data=bytes(data))
