"""A stored message made safe to show in a browser.

The raw bytes are never changed (the vault keeps them); this module only derives a view (parsing is
:mod:`mailvault.index.show`'s, so attachments are numbered as ``mailvault show`` numbers them): decoded
headers, the body as sanitised HTML (``nh3``: no scripts, no event handlers, no forms, no frames),
and the attachments with their part numbers. Images referenced by ``cid:`` are served from the
message itself; remote images are replaced by a placeholder unless the user asked for them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import nh3

from mailvault.errors import ConfigError
from mailvault.index import show
from mailvault.index.extract import Attachment, decode_header_value

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
class MailView:
    headers: list[tuple[str, str]]
    subject: str
    text: str | None
    html: str | None
    attachments: list[Attachment] = field(default_factory=list)  # numbered as `mailvault show` numbers them
    remote_images: int = 0


def _header_end(raw: bytes) -> int:
    """Offset of the blank line that ends the header block (the whole message if there is none)."""
    cuts = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(cuts) if cuts else len(raw)


def attachment_bytes(raw: bytes, number: int) -> tuple[Attachment, bytes] | None:
    """Attachment ``number`` (1-based, as ``mailvault show --attachment N``) and its decoded bytes."""
    try:
        return show.attachment(raw, number)
    except ConfigError:
        return None


def by_content_id(raw: bytes, cid: str) -> tuple[str, bytes] | None:
    """The MIME type and decoded bytes of the part whose Content-ID is ``cid`` (for ``cid:`` images)."""
    for part in show.parse(raw).walk():
        if part.is_multipart():
            continue
        value = part.get("Content-ID")
        if value and str(value).strip().strip("<>") == cid:
            payload = part.get_payload(decode=True)
            return part.get_content_type(), payload if isinstance(payload, bytes) else b""
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
    base = show.view(raw)
    markup = show.html_body(raw)
    safe_html, remote = sanitize(markup, cid_base, allow_remote) if markup is not None else (None, 0)
    subject = next((v for h, v in base.headers if h.lower() == "subject"), "")
    return MailView(base.headers, subject, base.text, safe_html, base.attachments, remote)


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


def summary(raw: bytes) -> dict[str, Any]:
    """From, subject and date of a message, for lists (headers only)."""
    msg = show.parse(raw[: _header_end(raw)] + b"\n\n")
    return {
        k: decode_header_value(msg.get(h, ""))
        for k, h in (("from", "From"), ("subject", "Subject"), ("date", "Date"))
    }
