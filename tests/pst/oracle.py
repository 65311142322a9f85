"""An independent reading of PST files with pypff, for the PST tests.

This shares no code with ``mailvault.sources.pst``: it walks the folders, decides "mail" by
the message class as LOCAL-STORES.md defines it, and collects what libpff reads (subject,
sender name, recipient names, transport headers, by-value attachment names and SHA-256).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pypff

MAIL_PREFIXES = ("ipm.note", "report.", "ipm.schedule.meeting", "ipm.post")


def _props(item: Any) -> dict[int, tuple[int, bytes]]:
    out: dict[int, tuple[int, bytes]] = {}
    for rs in item.record_sets:
        for e in rs.entries:
            out.setdefault(e.entry_type, (e.value_type, e.data or b""))
    return out


def _text(p: dict[int, tuple[int, bytes]], tag: int) -> str | None:
    if tag not in p:
        return None
    vtype, data = p[tag]
    if vtype == 0x1F:
        return data.decode("utf-16-le").rstrip("\x00")
    if vtype == 0x1E:
        return data.decode("cp1252", "replace").rstrip("\x00")
    return None


@dataclass
class OracleMail:
    folder: str
    subject: str
    sender_name: str
    recipient_names: list[str]
    transport_headers: str | None
    #: (file name, SHA-256) of every attach-method-1 attachment
    attachments: list[tuple[str, str]] = field(default_factory=list)
    #: their bytes, by SHA-256
    data: dict[str, bytes] = field(default_factory=dict)
    embedded: int = 0
    read: bool = False


def _walk(folder: Any, path: str) -> Iterator[tuple[str, Any]]:
    for i in range(folder.number_of_sub_messages):
        try:
            yield path, folder.get_sub_message(i)
        except OSError:
            continue
    for sub in folder.sub_folders:
        yield from _walk(sub, f"{path}/{sub.name}")


def read_mail(path: Path) -> list[OracleMail]:
    f = pypff.file()
    f.open(str(path))
    out: list[OracleMail] = []
    try:
        for folder, m in _walk(f.root_folder, ""):
            p = _props(m)
            cls = (_text(p, 0x001A) or "").lower()
            if not cls.startswith(MAIL_PREFIXES):
                continue
            names = []
            if m.recipients is not None:
                for rs in m.recipients.record_sets:
                    rp = _props_rs(rs)
                    names.append((_text(rp, 0x3001) or "").strip())
            flags = struct.unpack("<i", p[0x0E07][1][:4])[0] if 0x0E07 in p else 0
            mail = OracleMail(
                folder=folder,
                subject=_subject(_text(p, 0x0037) or ""),
                sender_name=(m.sender_name or "").strip(),
                recipient_names=names,
                transport_headers=m.transport_headers,
                read=bool(flags & 1),
            )
            for a in m.attachments:
                ap = _props(a)
                method = struct.unpack("<i", ap[0x3705][1][:4])[0] if 0x3705 in ap else 1
                if method == 5:
                    mail.embedded += 1
                    continue
                if method != 1:
                    continue
                name = _text(ap, 0x3707) or _text(ap, 0x3704) or ""
                data = a.read_buffer(a.size) if a.size else b""
                digest = hashlib.sha256(data).hexdigest()
                mail.attachments.append((name, digest))
                mail.data[digest] = data
            out.append(mail)
    finally:
        f.close()
    return out


def _subject(s: str) -> str:
    # MS-OXCMSG: "\x01" + one character (the prefix length) may precede the subject text.
    return s[2:] if s.startswith("\x01") else s


def _props_rs(rs: Any) -> dict[int, tuple[int, bytes]]:
    return {e.entry_type: (e.value_type, e.data or b"") for e in rs.entries}
