"""A small, deterministic MIME writer for converted PST items.

Nothing here depends on the time, randomness or the Python version's folding quirks beyond
the standard library's ``email.header`` encoder: the same input always gives the same
bytes. Every line ends in CRLF. A multipart boundary is derived from the SHA-256 of the
rendered child parts, so it cannot occur inside them by accident and never changes between
runs.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import re
from dataclasses import dataclass, field
from email.header import Header
from email.utils import encode_rfc2231

__all__ = [
    "Part",
    "address_list",
    "encode_header",
    "leaf",
    "multipart",
    "param",
]

CRLF = b"\r\n"
_MAX_LINE = 998


@dataclass
class Part:
    """One MIME entity: its header fields (``Name: value`` lines, ASCII) and its body bytes."""

    headers: list[str] = field(default_factory=list)
    body: bytes = b""

    def render(self) -> bytes:
        head = "".join(h + "\r\n" for h in self.headers).encode("utf-8")
        return head + CRLF + self.body


def _to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", CRLF)


def encode_header(name: str, value: str) -> str:
    """``Name: value`` with RFC 2047 encoded words when the value is not plain ASCII."""
    value = " ".join(value.replace("\r", " ").replace("\n", " ").split(" "))
    try:
        value.encode("ascii")
        charset = "us-ascii"
    except UnicodeEncodeError:
        charset = "utf-8"
    encoded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}"


def param(name: str, value: str) -> str:
    """A MIME parameter: quoted when ASCII, RFC 2231 (``name*=utf-8''…``) otherwise."""
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        return f"{name}*={encode_rfc2231(value, 'utf-8')}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
    return f'{name}="{escaped}"'


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def mailbox(display: str, addr: str) -> str:
    """``Name <addr>``: the name quoted when it holds specials, RFC 2047-encoded when it is
    not ASCII; the address as it is (also a non-ASCII one, RFC 6532)."""
    display = " ".join(display.split())
    if not display:
        return f"<{addr}>"
    if not display.isascii():
        phrase = Header(display, "utf-8").encode()
    elif _SPECIALS.search(display):
        phrase = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        phrase = display
    return f"{phrase} <{addr}>"


def address_list(name: str, addrs: list[tuple[str, str]]) -> str | None:
    """``To: a, b`` from (display name, address) pairs; a pair without address becomes an
    empty group (``Name: ;``) so the name is kept. Folded one address per line when long."""
    items: list[str] = []
    for display, addr in addrs:
        if addr:
            items.append(mailbox(display, addr))
        elif display:
            group = encode_header("X", display)[3:].replace(":", " ").replace(";", " ")
            items.append(f"{group}: ;")
    if not items:
        return None
    line = f"{name}: " + ", ".join(items)
    if len(line) <= 78:
        return line
    return f"{name}: " + ",\r\n ".join(items)


def _qp(data: bytes) -> bytes:
    lf = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return _to_crlf(quopri.encodestring(lf))


def _b64(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + CRLF for i in range(0, len(encoded), 76))


def leaf(content_type: str, data: bytes, *, text: bool, extra: list[str] | None = None) -> Part:
    """A single part. Text is sent 7bit when it can be, else quoted-printable; binary is base64."""
    headers = [f"Content-Type: {content_type}"]
    if text:
        body = _to_crlf(data)
        if body and not body.endswith(CRLF):
            body += CRLF
        if body.isascii() and b"\x00" not in body and all(len(x) <= _MAX_LINE for x in body.split(CRLF)):
            headers.append("Content-Transfer-Encoding: 7bit")
        else:
            headers.append("Content-Transfer-Encoding: quoted-printable")
            body = _qp(data)
            if body and not body.endswith(CRLF):
                body += CRLF
    else:
        headers.append("Content-Transfer-Encoding: base64")
        body = _b64(data)
    return Part([*headers, *(extra or [])], body)


def message_part(raw: bytes, extra: list[str], content_type: str = "message/rfc822") -> Part:
    """An attached message (``message/rfc822``, or another message/* type): the bytes as they
    are, 7bit when ASCII, else 8bit (message parts are never encoded, RFC 2046 5.2)."""
    cte = "7bit" if raw.isascii() else "8bit"
    if raw and not raw.endswith(CRLF):
        raw += CRLF
    return Part([f"Content-Type: {content_type}", f"Content-Transfer-Encoding: {cte}", *extra], raw)


def multipart(subtype: str, parts: list[Part], extra: list[str] | None = None) -> Part:
    """``multipart/SUBTYPE`` of ``parts``; the boundary is a hash of the rendered parts."""
    rendered = [p.render() for p in parts]
    digest = hashlib.sha256()
    for r in rendered:
        digest.update(hashlib.sha256(r).digest())
    boundary = "=_mv_" + digest.hexdigest()[:40]
    b = boundary.encode()
    body = b"".join(b"--" + b + CRLF + r + CRLF for r in rendered) + b"--" + b + b"--" + CRLF
    headers = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"', *(extra or [])]
    return Part(headers, body)
