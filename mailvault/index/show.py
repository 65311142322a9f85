"""Looking at one message of the vault: what ``mailvault show`` (and the web UI) render.

:func:`find_blob` turns a unique hex prefix into a message blob id (from the vault's own
index cache; the search index is not needed). :func:`view` parses raw bytes into a
:class:`MessageView` (decoded headers, text, attachment list); :func:`attachment` returns
the decoded bytes of attachment N (1-based, in the order of the list); :func:`html_body`
returns the first ``text/html`` part *unsanitised* (a caller showing it must sanitise it).
"""

from __future__ import annotations

import email
import email.message
import re
from dataclasses import dataclass, field

from mailvault.errors import ConfigError, ObjectNotFound
from mailvault.index.extract import (
    Attachment,
    attachment_name,
    attachments_of,
    decode_header_value,
    leaf_parts,
    part_text,
)
from mailvault.vault.format import BLOB_MESSAGE
from mailvault.vault.repository import Repository

SHOWN_HEADERS = ("From", "To", "Cc", "Date", "Subject", "Message-ID")
_HEX = re.compile(r"^[0-9a-f]{4,64}$")


@dataclass
class MessageView:
    blob: str
    headers: list[tuple[str, str]]  # the SHOWN_HEADERS present, decoded
    text: str  # text/plain parts; when there are none, the text/html parts stripped of markup
    attachments: list[Attachment] = field(default_factory=list)


def find_blob(repo: Repository, prefix: str) -> bytes:
    """The message blob whose hex id starts with ``prefix`` (at least 4 hex digits, unique)."""
    p = prefix.strip().lower()
    if not _HEX.match(p):
        raise ConfigError(f"{prefix!r} is not a blob id or prefix (4 to 64 hex digits)")
    found = repo.cache.find_prefix(p, BLOB_MESSAGE)
    if not found:
        raise ObjectNotFound(f"no message {prefix!r} in {repo.location}")
    if len(found) > 1:
        raise ConfigError(f"blob prefix {prefix!r} is ambiguous: give more digits")
    return found[0]


def parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw)


def header_block(raw: bytes) -> str:
    """The header block exactly as stored (decoded as UTF-8, bad bytes replaced)."""
    m = re.search(rb"\r?\n\r?\n", raw)
    head = raw[: m.start()] if m else raw
    return head.decode("utf-8", "replace")


def view(raw: bytes, blob: str = "") -> MessageView:
    msg = parse(raw)
    headers = [(h, decode_header_value(v)) for h in SHOWN_HEADERS for v in (msg.get_all(h) or [])]
    plain: list[str] = []
    html: list[str] = []
    for part in leaf_parts(msg):
        if attachment_name(part) is not None or part.get_content_maintype() != "text":
            continue
        sub = part.get_content_subtype()
        if sub == "plain":
            plain.append(part_text(part))
        elif sub == "html":
            html.append(part_text(part))
    return MessageView(blob, headers, "\n".join(plain or html), [a for a, _ in attachments_of(msg)])


def attachment(raw: bytes, n: int) -> tuple[Attachment, bytes]:
    """Attachment ``n`` (1-based) and its decoded bytes."""
    atts = attachments_of(parse(raw))
    if not 1 <= n <= len(atts):
        raise ConfigError(f"no attachment {n}: the message has {len(atts)}")
    att, part = atts[n - 1]
    payload = part.get_payload(decode=True)
    return att, payload if isinstance(payload, bytes) else b""


def html_body(raw: bytes) -> str | None:
    """The first text/html part, decoded but NOT sanitised, or None."""
    for part in leaf_parts(parse(raw)):
        if part.get_content_type() == "text/html" and attachment_name(part) is None:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    return payload.decode(charset, "replace")
                except (LookupError, ValueError):
                    return payload.decode("utf-8", "replace")
    return None
