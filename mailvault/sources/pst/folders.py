"""The folders of a PST/OST file: :class:`RawFolder`, and which of them are the special folders
(inbox, sent, drafts, trash, junk) — by the entry ids the store and the inbox hold, or, where
those do not resolve (OST files, damaged stores), by the well-known names of Outlook's default
folders directly below the IPM subtree."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from mailvault.sources.pst.props import Props


@dataclass
class RawFolder:
    """One folder of the store: its path of display names and libpff handle."""

    nid: int
    path: tuple[str, ...]  # display names from the root (or from the IPM subtree)
    in_ipm: bool
    container_class: str
    handle: Any
    special: str | None = None  # "inbox", "\\Sent", "\\Drafts", "\\Trash", "\\Junk"
    children: list[RawFolder] = field(default_factory=list)
    ipm_root: bool = False  # the top of the mail folders ("Top of Personal Folders", IPM_SUBTREE)
    props: Props = field(default_factory=lambda: Props({}))


def assign_special(folders: list[RawFolder], store: dict[int, int]) -> None:
    """Set ``special`` on the IPM folders: from the entry ids the message store (``store``: its
    properties → folder node ids), the root folder and the inbox hold, else by the well-known
    names directly below the IPM root."""
    by_nid = {f.nid: f for f in folders}
    ipm = [f for f in folders if f.in_ipm]
    root = next((f for f in folders if f.path == ()), None)
    marks: dict[int, str] = {}
    if 0x35E4 in store:
        marks[store[0x35E4]] = "\\Sent"
    if 0x35E3 in store:
        marks[store[0x35E3]] = "\\Trash"
    holders = [f for f in ipm if 0x36D0 in f.props]
    inbox = next((f for f in holders if not f.ipm_root), None)
    for holder in [*(h for h in [root] if h is not None), *holders]:
        hp: Props = holder.props
        drafts = entryid_nid(hp.raw(0x36D7))
        if drafts is not None:
            marks.setdefault(drafts, "\\Drafts")
        junk = multi_binary(hp.raw(0x36D8), 4)
        junk_nid = entryid_nid(junk)
        if junk_nid is not None:
            marks.setdefault(junk_nid, "\\Junk")
    if inbox is not None:
        marks.setdefault(inbox.nid, "inbox")
    for nid, special in marks.items():
        f = by_nid.get(nid)
        if f is not None and f.in_ipm and not f.ipm_root:
            f.special = special
    # Fallback (OST, damaged stores): well-known English names directly below the IPM root.
    taken = {f.special for f in folders if f.special}
    for f in ipm:
        parent_is_root = any(p.ipm_root and f in p.children for p in ipm)
        if not parent_is_root:
            continue
        by_name = NAME_SPECIAL.get(f.path[-1].lower())
        if by_name and by_name not in taken and f.special is None:
            f.special = by_name
            taken.add(by_name)


#: Names of the special folders directly below the IPM subtree, used only where entry ids do not
#: resolve (OST files): English and a few common localisations of Outlook's default folders.
NAME_SPECIAL = {
    "inbox": "inbox",
    "posteingang": "inbox",
    "boîte de réception": "inbox",
    "bandeja de entrada": "inbox",
    "posta in arrivo": "inbox",
    "postvak in": "inbox",
    "受信トレイ": "inbox",
    "sent items": "\\Sent",
    "sent": "\\Sent",
    "gesendete elemente": "\\Sent",
    "éléments envoyés": "\\Sent",
    "elementos enviados": "\\Sent",
    "posta inviata": "\\Sent",
    "verzonden items": "\\Sent",
    "送信済みアイテム": "\\Sent",
    "drafts": "\\Drafts",
    "entwürfe": "\\Drafts",
    "brouillons": "\\Drafts",
    "borradores": "\\Drafts",
    "bozze": "\\Drafts",
    "concepten": "\\Drafts",
    "下書き": "\\Drafts",
    "deleted items": "\\Trash",
    "gelöschte elemente": "\\Trash",
    "éléments supprimés": "\\Trash",
    "elementos eliminados": "\\Trash",
    "posta eliminata": "\\Trash",
    "verwijderde items": "\\Trash",
    "削除済みアイテム": "\\Trash",
    "junk e-mail": "\\Junk",
    "junk email": "\\Junk",
    "junk-e-mail": "\\Junk",
    "courrier indésirable": "\\Junk",
    "correo no deseado": "\\Junk",
    "posta indesiderata": "\\Junk",
    "ongewenste e-mail": "\\Junk",
    "迷惑メール": "\\Junk",
}


def mark_ipm(top: RawFolder, folders: list[RawFolder]) -> None:
    top.ipm_root = True
    stack = [top]
    while stack:
        f = stack.pop()
        f.in_ipm = True
        stack.extend(f.children)


def entryid_nid(entryid: bytes | None) -> int | None:
    """The node id in a short-term PST entry id (4 flag bytes, 16-byte provider uid, NID)."""
    if entryid is None or len(entryid) != 24:
        return None
    return int(struct.unpack_from("<I", entryid, 20)[0])


def multi_binary(data: bytes | None, index: int) -> bytes | None:
    """Value ``index`` of a PT_MV_BINARY property as libpff returns it (count, offsets, data)."""
    if not data or len(data) < 4:
        return None
    (count,) = struct.unpack_from("<I", data, 0)
    if index >= count or len(data) < 4 + 4 * count:
        return None
    offsets = [*struct.unpack_from(f"<{count}I", data, 4), len(data)]
    start, end = offsets[index], offsets[index + 1]
    if not 0 <= start <= end <= len(data):
        return None
    return data[start:end]
