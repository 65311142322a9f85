"""A stored message made safe to show in a browser.

The raw bytes are never changed (the vault keeps them); this module only derives a view: decoded
headers, the body as sanitised HTML (``nh3``: no scripts, no event handlers, no forms, no frames),
and the attachments with their part numbers. Images referenced by ``cid:`` are served from the
message itself; remote images are replaced by a placeholder unless the user asked for them.
"""

from __future__ import annotations

import email
import email.policy
import html
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import nh3

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup", "dd", "del",
    "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
}  # fmt: skip
_GENERIC_ATTRS = {"align", "valign", "width", "height", "style", "title", "dir", "lang", "bgcolor", "color"}
_TAG_ATTRS = {
    "a": {"href", "name"},
    "img": {"src", "alt", "border", "data-remote-src"},
    "font": {"face", "size"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap"},
    "table": {"border", "cellpadding", "cellspacing"},
    "col": {"span"},
    "ol": {"start", "type"},
}
_STYLE_PROPS = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "line-height", "letter-spacing", "white-space",
    "vertical-align", "margin", "margin-top", "margin-bottom", "margin-left", "margin-right",
    "padding", "padding-top", "padding-bottom", "padding-left", "padding-right", "border",
    "border-top", "border-bottom", "border-left", "border-right", "border-collapse", "border-color",
    "border-style", "border-width", "width", "max-width", "min-width", "height", "display",
}  # fmt: skip
PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="


@dataclass
class Attachment:
    number: int  # 1-based, in the order the parts appear
    filename: str
    mime_type: str
    size: int
    content_id: str | None
    inline: bool


@dataclass
class MailView:
    headers: dict[str, str]
    header_block: str
    date: str | None
    text: str | None
    html: str | None
    attachments: list[Attachment] = field(default_factory=list)
    remote_images: int = 0


def _header_end(raw: bytes) -> int:
    """Offset of the blank line that ends the header block (the whole message if there is none)."""
    cuts = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(cuts) if cuts else len(raw)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a malformed header must not break the page
        value = None
    if value is None:
        return ""
    try:
        return str(value)
    except Exception:
        return str(msg.get_all(name, [""])[0])


def _is_attachment(part: Message) -> bool:
    disp = (part.get_content_disposition() or "").lower()
    return disp == "attachment" or bool(part.get_filename()) or part.get_content_maintype() not in ("text",)


def _leaves(msg: Message) -> list[Message]:
    out: list[Message] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        out.append(part)
    return out


def _decode_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("latin-1", errors="replace")


def attachments(msg: Message) -> list[tuple[Attachment, Message]]:
    found: list[tuple[Attachment, Message]] = []
    for part in _leaves(msg):
        if part is msg and not _is_attachment(part):
            continue
        if not _is_attachment(part):
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        cid = part.get("Content-ID")
        cid_s = str(cid).strip().strip("<>") if cid else None
        filename = part.get_filename() or ""
        att = Attachment(
            number=len(found) + 1,
            filename=filename,
            mime_type=part.get_content_type(),
            size=size,
            content_id=cid_s,
            inline=(part.get_content_disposition() or "") == "inline" or (cid_s is not None and not filename),
        )
        found.append((att, part))
    return found


def attachment_bytes(raw: bytes, number: int) -> tuple[Attachment, bytes] | None:
    for att, part in attachments(parse(raw)):
        if att.number == number:
            payload = part.get_payload(decode=True)
            return att, payload if isinstance(payload, bytes) else b""
    return None


def by_content_id(raw: bytes, cid: str) -> tuple[Attachment, bytes] | None:
    for att, part in attachments(parse(raw)):
        if att.content_id == cid:
            payload = part.get_payload(decode=True)
            return att, payload if isinstance(payload, bytes) else b""
    return None


def sanitize(markup: str, cid_base: str, allow_remote: bool) -> tuple[str, int]:
    """Sanitised HTML and the number of remote images (blocked unless ``allow_remote``)."""
    remote = 0

    def attr_filter(tag: str, attr: str, value: str) -> str | None:
        nonlocal remote
        if tag == "img" and attr == "src":
            v = value.strip()
            if v.lower().startswith("cid:"):
                return cid_base + quote(v[4:], safe="")
            if v.lower().startswith(("http:", "https:", "//")):
                remote += 1
                return v if allow_remote else PLACEHOLDER
            if v.lower().startswith("data:image/"):
                return v
            return None
        if tag == "a" and attr == "href":
            v = value.strip()
            return v if v.lower().startswith(("http:", "https:", "mailto:")) else None
        return value

    cleaned = nh3.clean(
        markup,
        tags=_ALLOWED_TAGS,
        clean_content_tags={"script", "style", "title", "head", "noscript", "template", "iframe", "object"},
        attributes={"*": _GENERIC_ATTRS, **_TAG_ATTRS},
        attribute_filter=attr_filter,
        url_schemes={"http", "https", "mailto", "data", "cid"},
        filter_style_properties=_STYLE_PROPS,
        link_rel="noopener noreferrer nofollow",
    )
    return cleaned, remote


def view(raw: bytes, cid_base: str = "cid/", allow_remote: bool = False) -> MailView:
    msg = parse(raw)
    names = ("From", "To", "Cc", "Date", "Subject", "Message-ID")
    headers = {n: _header(msg, n) for n in names if _header(msg, n)}
    header_block = raw[: _header_end(raw)].decode("utf-8", errors="replace")
    date = None
    if headers.get("Date"):
        try:
            date = parsedate_to_datetime(headers["Date"]).isoformat()
        except (TypeError, ValueError):
            date = None
    text_body = html_body = None
    for part in _leaves(msg):
        if part.get_content_maintype() != "text" or (part.get_content_disposition() or "") == "attachment":
            continue
        if part.get_filename():
            continue
        sub = part.get_content_subtype()
        if sub == "html" and html_body is None:
            html_body = _decode_text(part)
        elif sub == "plain" and text_body is None:
            text_body = _decode_text(part)
    remote = 0
    safe_html = None
    if html_body is not None:
        safe_html, remote = sanitize(html_body, cid_base, allow_remote)
    atts = [a for a, _ in attachments(msg)]
    return MailView(headers, header_block, date, text_body, safe_html, atts, remote)


def body_document(v: MailView) -> str:
    """The HTML document shown inside the sandboxed iframe."""
    if v.html is not None:
        body = v.html
    else:
        body = f'<pre style="white-space:pre-wrap;font-family:monospace">{html.escape(v.text or "")}</pre>'
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"></head>'
        f'<body style="font-family:sans-serif;margin:8px">{body}</body></html>'
    )


def addresses(value: str) -> list[str]:
    return [a for _, a in getaddresses([value]) if a]


def summary(raw: bytes) -> dict[str, Any]:
    """From, subject and date of a message, for lists (headers only)."""
    msg = parse(raw[: _header_end(raw)] + b"\n\n")
    return {"from": _header(msg, "From"), "subject": _header(msg, "Subject"), "date": _header(msg, "Date")}
