"""One MAPI mail item → one RFC 5322 message (the rules are in docs/PST.md).

Pure functions over :class:`MapiMessage`: no I/O, no clock, no randomness, so the same item
always gives the same bytes and a re-import stores nothing new.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

from mailvault.sources.local import header_date
from mailvault.sources.pst import props as P
from mailvault.sources.pst.addresses import recipient_address, sender_address
from mailvault.sources.pst.mime import (
    Part,
    address_list,
    encode_header,
    leaf,
    message_part,
    multipart,
    param,
)
from mailvault.sources.pst.props import Props
from mailvault.sources.pst.rtf import decode_rtf

__all__ = ["MapiAttachment", "MapiMessage", "convert", "flags_of", "internaldate_of"]


@dataclass
class MapiAttachment:
    props: Props
    data: bytes | None = None  # attach method 1 (by value) and 6 (OLE): the bytes libpff reads
    embedded: MapiMessage | None = None  # attach method 5


@dataclass
class MapiMessage:
    props: Props
    recipients: list[Props] = field(default_factory=list)
    attachments: list[MapiAttachment] = field(default_factory=list)
    #: Things the reader could not get (reported, never fatal).
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# Flags and dates
# ---------------------------------------------------------------------------------------

MSGFLAG_READ = 0x1
MSGFLAG_UNSENT = 0x8
_VERB_REPLY = (102, 103)  # reply to sender, reply to all
_VERB_FORWARD = 104
_ICON_REPLIED = 261
_ICON_FORWARDED = 262


def flags_of(p: Props) -> tuple[str, ...]:
    """IMAP flags: read → \\Seen, unsent → \\Draft, follow-up flag → \\Flagged, last verb
    reply/forward (or the replied/forwarded icon) → \\Answered / $Forwarded."""
    flags: list[str] = []
    mflags = p.integer(P.PR_MESSAGE_FLAGS) or 0
    verb = p.integer(P.PR_LAST_VERB_EXECUTED)
    icon = p.integer(P.PR_ICON_INDEX)
    if mflags & MSGFLAG_READ:
        flags.append("\\Seen")
    if verb in _VERB_REPLY or icon == _ICON_REPLIED:
        flags.append("\\Answered")
    if p.integer(P.PR_FLAG_STATUS) == 2:
        flags.append("\\Flagged")
    if mflags & MSGFLAG_UNSENT:
        flags.append("\\Draft")
    if verb == _VERB_FORWARD or icon == _ICON_FORWARDED:
        flags.append("$Forwarded")
    return tuple(flags)


def internaldate_of(p: Props) -> datetime | None:
    """Delivery time, else submit time, else the first Received date of the transport
    headers, else creation time, else last modification time."""
    for prop in (P.PR_MESSAGE_DELIVERY_TIME, P.PR_CLIENT_SUBMIT_TIME):
        dt = p.time(prop)
        if dt is not None:
            return dt
    headers = p.text(P.PR_TRANSPORT_MESSAGE_HEADERS)
    if headers:
        dt = header_date(headers.encode("utf-8", "replace"))
        if dt is not None:
            return dt
    return p.time(P.PR_CREATION_TIME) or p.time(P.PR_LAST_MODIFICATION_TIME)


# ---------------------------------------------------------------------------------------
# Header block
# ---------------------------------------------------------------------------------------

#: Fields of the transport headers that describe the wire form (often TNEF), not the body
#: the store holds: dropped, and written anew for the rebuilt body.
DROPPED_TRANSPORT_FIELDS = ("mime-version", "content-type", "content-transfer-encoding")
_FIELD_RE = re.compile(r"^([!-9;-~]+)[ \t]*:")


def transport_header_lines(headers: str) -> list[str]:
    """The transport header block as lines (CRLF removed), the dropped fields left out.

    The block ends at the first empty line; lines that are neither fields nor continuations
    are kept as they are (they were part of what the server delivered)."""
    lines = headers.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    skipping = False
    for line in lines:
        if line == "":
            break
        if line[:1] in (" ", "\t"):
            if not skipping:
                out.append(line)
            continue
        m = _FIELD_RE.match(line)
        skipping = bool(m and m.group(1).lower() in DROPPED_TRANSPORT_FIELDS)
        if not skipping:
            out.append(line)
    return out


_RECIPIENT_FIELDS = ((1, "To"), (2, "Cc"), (3, "Bcc"))


def synthesised_header_lines(msg: MapiMessage) -> list[str]:
    """Date, From, Subject, To, Cc, Bcc, Message-ID, In-Reply-To, References from properties."""
    p = msg.props
    out: list[str] = []
    when = p.time(P.PR_CLIENT_SUBMIT_TIME) or p.time(P.PR_MESSAGE_DELIVERY_TIME) or p.time(P.PR_CREATION_TIME)
    if when is not None:
        out.append(f"Date: {format_datetime(when)}")
    sender = address_list("From", [sender_address(p)])
    if sender:
        out.append(sender)
    subject = p.subject()
    if subject is not None:
        out.append(encode_header("Subject", subject))
    for rtype, name in _RECIPIENT_FIELDS:
        line = address_list(name, [recipient_address(r) for r in msg.recipients if _rtype(r) == rtype])
        if line:
            out.append(line)
    for prop, name in (
        (P.PR_INTERNET_MESSAGE_ID, "Message-ID"),
        (P.PR_IN_REPLY_TO_ID, "In-Reply-To"),
        (P.PR_INTERNET_REFERENCES, "References"),
    ):
        value = (p.text(prop) or "").strip()
        if value:
            out.append(encode_header(name, value))
    return out


def _rtype(r: Props) -> int:
    return (r.integer(P.PR_RECIPIENT_TYPE) or 1) & 0x0F


# ---------------------------------------------------------------------------------------
# Bodies and attachments
# ---------------------------------------------------------------------------------------

#: MIME charset names of the Windows code pages HTML bodies are stored in.
_CPID_CHARSETS = {
    65001: "utf-8",
    20127: "us-ascii",
    28591: "iso-8859-1",
    50220: "iso-2022-jp",
    50221: "iso-2022-jp",
    50222: "iso-2022-jp",
    51932: "euc-jp",
    932: "shift_jis",
    936: "gbk",
    54936: "gb18030",
    950: "big5",
    20866: "koi8-r",
    21866: "koi8-u",
}


def _charset(cpid: int | None) -> str | None:
    if cpid is None:
        return None
    if cpid in _CPID_CHARSETS:
        return _CPID_CHARSETS[cpid]
    if 1250 <= cpid <= 1258:
        return f"windows-{cpid}"
    if 28592 <= cpid <= 28606:
        return f"iso-8859-{cpid - 28590}"
    return None


def _html_bytes(p: Props) -> tuple[bytes, str] | None:
    """The HTML body as stored (bytes, MIME charset); re-encoded to UTF-8 only when the
    code page has no MIME name or the value is a Unicode string."""
    vtype = p.type(P.PR_HTML)
    raw = p.raw(P.PR_HTML)
    if raw is None or vtype is None:
        return None
    if vtype == P.PT_BINARY:
        cpid = p.integer(P.PR_INTERNET_CPID) or p.integer(P.PR_MESSAGE_CODEPAGE)
        charset = _charset(cpid)
        data = raw.rstrip(b"\x00")
        if charset is not None:
            return data, charset
        return data.decode(p.codec, "replace").encode("utf-8"), "utf-8"
    text = p.text(P.PR_HTML)
    return (text.encode("utf-8"), "utf-8") if text is not None else None


@dataclass
class _Bodies:
    plain: str | None = None
    html: tuple[bytes, str] | None = None
    rtf: bytes | None = None  # native RTF kept as an attachment


def _bodies(msg: MapiMessage, problems: list[str]) -> _Bodies:
    p = msg.props
    out = _Bodies(plain=p.text(P.PR_BODY), html=_html_bytes(p))
    compressed = p.raw(P.PR_RTF_COMPRESSED)
    if compressed and out.html is None:
        rtf = decode_rtf(compressed, want_text=out.plain is None)
        if rtf.error:
            problems.append(rtf.error)
        elif rtf.html is not None:
            out.html = (rtf.html, "utf-8")
        elif rtf.encapsulated == "text":
            if out.plain is None:
                out.plain = rtf.text or ""
        else:
            out.rtf = rtf.rtf
    return out


def _attachment_name(a: MapiAttachment, index: int) -> str:
    for prop in (P.PR_ATTACH_LONG_FILENAME, P.PR_ATTACH_FILENAME, P.PR_DISPLAY_NAME):
        name = (a.props.text(prop) or "").strip()
        if name:
            return name
    if a.embedded is not None:
        subject = (a.embedded.props.subject() or "").strip()
        if subject:
            return subject
    return f"attachment-{index}"


def _is_inline(a: MapiAttachment, html: str) -> bool:
    cid = (a.props.text(P.PR_ATTACH_CONTENT_ID) or "").strip().strip("<>")
    if not cid:
        return False
    return (
        f"cid:{cid}" in html
        or a.props.flag(P.PR_ATTACHMENT_HIDDEN)
        or bool((a.props.integer(P.PR_ATTACH_FLAGS) or 0) & 4)
    )


def _attachment_part(a: MapiAttachment, index: int, inline: bool, problems: list[str]) -> Part:
    name = _attachment_name(a, index)
    disposition = f"Content-Disposition: {'inline' if inline else 'attachment'}; {param('filename', name)}"
    extra = [disposition]
    cid = (a.props.text(P.PR_ATTACH_CONTENT_ID) or "").strip().strip("<>")
    if cid:
        extra.append(f"Content-ID: <{cid}>")
    if a.embedded is not None:
        raw = convert(a.embedded, problems)
        problems.extend(a.embedded.problems)
        return message_part(raw, extra)
    mime = (a.props.text(P.PR_ATTACH_MIME_TAG) or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", mime):
        mime = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    if a.data is None:
        method = a.props.integer(P.PR_ATTACH_METHOD)
        problems.append(f"attachment {name!r} (method {method}) has no readable data")
        note = f"The attachment {name!r} (attach method {method}) had no readable data in the PST.\n"
        return leaf("text/plain; charset=utf-8", note.encode(), text=True, extra=extra)
    if mime.startswith("message/"):
        # RFC 2046: message/* parts are never base64 or quoted-printable. The bytes go in
        # as they are when that is legal (CRLF lines of at most 998 octets, no NUL);
        # otherwise the part is labelled application/octet-stream and base64-encoded.
        if _is_clean_crlf(a.data):
            return message_part(a.data, extra, mime)
        mime = "application/octet-stream"
    return leaf(f"{mime}; {param('name', name)}", a.data, text=False, extra=extra)


def _is_clean_crlf(data: bytes) -> bool:
    if b"\x00" in data or data.replace(b"\r\n", b"").count(b"\r") or data.replace(b"\r\n", b"").count(b"\n"):
        return False
    return all(len(line) <= 998 for line in data.split(b"\r\n"))


def _body_part(b: _Bodies) -> Part:
    alternatives: list[Part] = []
    if b.plain is not None or b.html is None:
        alternatives.append(leaf("text/plain; charset=utf-8", (b.plain or "").encode("utf-8"), text=True))
    if b.html is not None:
        data, charset = b.html
        alternatives.append(leaf(f"text/html; charset={charset}", data, text=True))
    return alternatives[0] if len(alternatives) == 1 else multipart("alternative", alternatives)


def convert(msg: MapiMessage, problems: list[str] | None = None) -> bytes:
    """The RFC 5322 bytes of ``msg`` (CRLF line ends). ``problems`` collects what could not
    be converted faithfully (unreadable RTF, attachments without data)."""
    sink = msg.problems if problems is None else problems
    p = msg.props
    transport = p.text(P.PR_TRANSPORT_MESSAGE_HEADERS)
    header_lines = transport_header_lines(transport) if transport and transport.strip() else []
    if not header_lines:
        header_lines = synthesised_header_lines(msg)
    bodies = _bodies(msg, sink)
    html_text = bodies.html[0].decode("ascii", "replace") if bodies.html else ""
    related: list[Part] = []
    mixed: list[Part] = []
    for i, a in enumerate(msg.attachments, 1):
        inline = a.embedded is None and bodies.html is not None and _is_inline(a, html_text)
        part = _attachment_part(a, i, inline, sink)
        (related if inline else mixed).append(part)
    if bodies.rtf is not None:
        mixed.append(
            leaf(
                'application/rtf; name="body.rtf"',
                bodies.rtf,
                text=False,
                extra=['Content-Disposition: attachment; filename="body.rtf"'],
            )
        )
    root = _body_part(bodies)
    if related:
        root = multipart("related", [root, *related])
    if mixed:
        root = multipart("mixed", [root, *mixed])
    head = [*header_lines, "MIME-Version: 1.0", *root.headers]
    return "".join(h + "\r\n" for h in head).encode("utf-8") + b"\r\n" + root.body
