"""What the search index knows of one message: parsed once per content-addressed blob.

:func:`extract` turns raw message bytes into a :class:`Doc`: the decoded From/To/Cc/Subject,
the ``Date`` header (as Unix seconds), the decoded text of every ``text/plain`` and
``text/html`` part (HTML stripped), and the attachments (a leaf part with
``Content-Disposition: attachment`` or a file name) with their MIME types and sizes.
It never raises on malformed mail: what cannot be decoded is skipped.

:func:`cjk_bigrams` rewrites runs of Chinese/Japanese/Korean characters as overlapping
bigrams, so the word tokenizer of the full-text index can find them (applied to both the
indexed text and the query).
"""

from __future__ import annotations

import binascii
import email
import email.message
import html
import quopri
import re
from dataclasses import dataclass, field
from datetime import UTC
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime

#: Text beyond this many characters per message is not indexed (keeps the index compact).
MAX_TEXT_CHARS = 512 * 1024

_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{2,}")
_SCRIPT_STYLE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_BLOCK = re.compile(r"<(?:br|p|div|tr|li|h\d|td|table)\b[^>]*>", re.IGNORECASE)


@dataclass
class Attachment:
    name: str
    mime: str
    size: int


@dataclass
class Doc:
    """The searchable view of one message."""

    size: int
    date: int | None  # Date header, Unix seconds (UTC); None when missing or unparsable
    from_: str = ""
    to: str = ""
    cc: str = ""
    subject: str = ""
    text: str = ""  # decoded text of the text/plain and text/html parts
    attachments: list[Attachment] = field(default_factory=list)


def cjk_bigrams(text: str) -> str:
    """Rewrite every run of 2+ CJK characters as space-separated overlapping bigrams."""
    if text.isascii():
        return text
    return _CJK_RUN.sub(lambda m: " " + " ".join(m[0][i : i + 2] for i in range(len(m[0]) - 1)) + " ", text)


def strip_html(markup: str) -> str:
    """Visible text of an HTML fragment (scripts, styles and comments dropped, entities decoded)."""
    text = _COMMENT.sub(" ", markup)
    text = _SCRIPT_STYLE.sub(" ", text)
    text = _BLOCK.sub("\n", text)
    text = _TAG.sub(" ", text)
    return html.unescape(text)


def decode_header_value(value: object) -> str:
    """An RFC 2047 header value as text; undecodable parts are kept as they are."""
    if value is None:
        return ""
    raw = str(value)
    if not raw.isascii() and any("\udc80" <= c <= "\udcff" for c in raw):  # 8-bit bytes, escaped
        raw = _text(raw.encode("utf-8", "surrogateescape"))
    if "=?" not in raw:
        return " ".join(raw.split())
    try:
        return " ".join(str(make_header(decode_header(raw))).split())
    except Exception:  # malformed encoded words must never stop indexing
        return " ".join(raw.split())


def _all(msg: email.message.Message, name: str) -> str:
    values = msg.get_all(name) or []
    return ", ".join(decode_header_value(v) for v in values)


def parse_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(str(value))
        if dt.tzinfo is None:  # "-0000" or no zone: taken as UTC, never the local zone
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp())
    except Exception:  # malformed dates are common in old mail
        return None


def part_text(part: email.message.Message) -> str:
    """The decoded text of a text/* leaf part (charset errors replaced)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except (LookupError, ValueError):
        text = payload.decode("utf-8", "replace")
    if part.get_content_subtype() == "html":
        text = strip_html(text)
    return text


def attachment_name(part: email.message.Message) -> str | None:
    """The decoded file name of an attachment leaf part, or None when it is not one."""
    try:
        name = part.get_filename() or part.get_param("name")
    except Exception:
        name = None
    if isinstance(name, tuple):  # RFC 2231 triple
        name = email.utils.collapse_rfc2231_value(name)
    disposition = (part.get("Content-Disposition") or "").split(";", 1)[0].strip().lower()
    if not name and disposition != "attachment":
        return None
    return decode_header_value(name) if name else ""


def leaf_parts(msg: email.message.Message) -> list[email.message.Message]:
    return [p for p in msg.walk() if not p.is_multipart()]


def attachments_of(msg: email.message.Message) -> list[tuple[Attachment, email.message.Message]]:
    out = []
    for part in leaf_parts(msg):
        name = attachment_name(part)
        if name is None:
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        out.append((Attachment(name, part.get_content_type(), size), part))
    return out


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.DOTALL)
_WANTED = {
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"content-type",
    b"content-transfer-encoding",
    b"content-disposition",
}
_PARAM = re.compile(r';\s*([a-z*0-9-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)', re.IGNORECASE)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace")


def _params(value: str) -> tuple[str, dict[str, str]]:
    main = value.split(";", 1)[0].strip().lower()
    params = {k.lower(): v.strip('"') for k, v in _PARAM.findall(value)}
    return main, params


def _fast(raw: bytes) -> Doc | None:
    """The common case without the ``email`` package: a single-part message.

    Reads only the header fields the index needs (the ``email`` parser spends most of its time
    on the long Received chains of real mail). Returns None for anything it does not handle —
    multipart or message/* bodies, RFC 2231 parameters — which :func:`extract` then parses in
    full.
    """
    m = _HEAD_END.search(raw)
    head, body = (raw[: m.start()], raw[m.end() :]) if m else (raw, b"")
    fields: dict[bytes, list[bytes]] = {}
    last: list[bytes] | None = None
    for full_line in head.split(b"\n"):
        line = full_line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if last is not None:
                last[-1] += b" " + line.strip()
            continue
        fm = _FIELD.match(line)
        if fm is None:
            last = None
            continue
        name = fm.group(1).lower()
        if name in _WANTED:
            last = fields.setdefault(name, [])
            last.append(fm.group(2).strip())
        else:
            last = None

    def one(name: bytes) -> str:
        v = fields.get(name)
        return _text(v[0]) if v else ""

    ctype, cparams = _params(one(b"content-type") or "text/plain")
    disposition, dparams = _params(one(b"content-disposition"))
    if ctype.startswith(("multipart/", "message/")) or any("*" in k for k in (*cparams, *dparams)):
        return None
    if "/" not in ctype:
        ctype = "text/plain"

    def hdr(name: bytes) -> str:
        return ", ".join(decode_header_value(_text(v)) for v in fields.get(name, []))

    doc = Doc(
        size=len(raw),
        date=parse_date(one(b"date") or None),
        from_=hdr(b"from"),
        to=hdr(b"to"),
        cc=hdr(b"cc"),
        subject=hdr(b"subject"),
    )
    cte = one(b"content-transfer-encoding").strip().lower()
    name = dparams.get("filename") or cparams.get("name")
    is_text = ctype in ("text/plain", "text/html")
    if not name and disposition != "attachment" and not is_text:
        return doc
    try:
        if cte == "base64":
            payload = binascii.a2b_base64(body)
        elif cte == "quoted-printable":
            payload = quopri.decodestring(body)
        else:
            payload = body
    except (binascii.Error, ValueError):
        return None
    if name or disposition == "attachment":
        doc.attachments.append(Attachment(decode_header_value(name) if name else "", ctype, len(payload)))
        return doc
    charset = cparams.get("charset") or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except (LookupError, ValueError):
        text = payload.decode("utf-8", "replace")
    if ctype == "text/html":
        text = strip_html(text)
    doc.text = text[:MAX_TEXT_CHARS]
    return doc


def extract(raw: bytes) -> Doc:
    """Parse ``raw`` into a :class:`Doc`; never raises on malformed mail."""
    try:
        fast = _fast(raw)
    except Exception:  # the full parser below copes with whatever broke the quick one
        fast = None
    if fast is not None:
        return fast
    try:
        msg = email.message_from_bytes(raw)
    except Exception:  # the parser is lenient; this is belt and braces
        return Doc(size=len(raw), date=None)
    doc = Doc(
        size=len(raw),
        date=parse_date(msg.get("Date")),
        from_=_all(msg, "From"),
        to=_all(msg, "To"),
        cc=_all(msg, "Cc"),
        subject=_all(msg, "Subject"),
    )
    texts: list[str] = []
    n = 0
    for part in leaf_parts(msg):
        try:
            name = attachment_name(part)
            if name is not None:
                payload = part.get_payload(decode=True)
                size = len(payload) if isinstance(payload, bytes) else 0
                doc.attachments.append(Attachment(name, part.get_content_type(), size))
                continue
            if part.get_content_maintype() != "text" or part.get_content_subtype() not in ("plain", "html"):
                continue
            if n >= MAX_TEXT_CHARS:
                continue
            text = part_text(part)[: MAX_TEXT_CHARS - n]
        except Exception:  # noqa: S112 (a broken part must not lose the rest of the message)
            continue
        texts.append(text)
        n += len(text)
    doc.text = "\n".join(texts)
    return doc


def extract_many(raws: list[bytes]) -> list[Doc]:
    """:func:`extract` over a batch (the unit of work of the parsing pool)."""
    return [extract(r) for r in raws]
