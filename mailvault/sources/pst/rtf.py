"""RTF bodies: ``PR_RTF_COMPRESSED`` (0x1009) decoded with ``compressed-rtf``, and the HTML or
text encapsulated in it (``\\fromhtml1`` / ``\\fromtext``) recovered with ``RTFDE``.

libpff's own ``rtf_body`` fails on the uncompressed ``MELA`` form, so the raw property is
decoded here; ``compressed_rtf.decompress`` handles both ``LZFu`` and ``MELA``. RTFDE (and
its Lark grammar) is loaded on the first encapsulated body only, and its parser is built once
per process instead of once per message (building the grammar is nine tenths of its time).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import compressed_rtf

__all__ = ["RtfBody", "decode_rtf"]

_parser: Any = None
_deencapsulator: Any = None
_lock = threading.Lock()


def _make_deencapsulator() -> Any:
    """RTFDE's DeEncapsulator with a shared, lazily built Lark parser (imported on first use)."""
    global _deencapsulator  # noqa: PLW0603
    if _deencapsulator is not None:
        return _deencapsulator
    from lark import Lark
    from RTFDE.deencapsulate import DeEncapsulator

    # RTFDE logs every parse detail, and its validation failures as errors; the converter
    # reports what matters itself.
    logging.getLogger("RTFDE").setLevel(logging.CRITICAL)

    class _Shared(DeEncapsulator):  # type: ignore[misc]  # untyped library class
        def parse_rtf(self, rtf: Any) -> None:
            global _parser  # noqa: PLW0603
            if _parser is None:
                _parser = Lark(
                    self.grammar,
                    parser="lalr",
                    keep_all_tokens=True,
                    use_bytes=True,
                    propagate_positions=True,
                )
            self.parser = _parser
            self.full_tree = _parser.parse(rtf)

    _deencapsulator = _Shared
    return _deencapsulator


@dataclass(frozen=True)
class RtfBody:
    """What an RTF body holds: the RTF itself and, when encapsulated, the HTML or text."""

    rtf: bytes
    html: bytes | None = None  # UTF-8 (RTFDE's output encoding)
    text: str | None = None
    error: str | None = None  # why the RTF could not be decompressed, if it could not
    #: "html" or "text" when the RTF encapsulates one (and RTFDE recovered it), else None.
    encapsulated: str | None = None


def decode_rtf(compressed: bytes, *, want_text: bool = True) -> RtfBody:
    """Decompress ``PR_RTF_COMPRESSED`` and pull out encapsulated HTML/text. Never raises.

    With ``want_text=False`` (the item has a plain body already) encapsulated *text* is not
    extracted: it is that plain body again, and RTFDE is the costly step."""
    try:
        rtf = bytes(compressed_rtf.decompress(compressed))
    except Exception as e:  # corrupt RTF must never stop a conversion
        return RtfBody(rtf=b"", error=f"compressed RTF unreadable: {e}")
    rtf = rtf.rstrip(b"\x00")
    head = rtf[:2048]
    if b"\\fromhtml" not in head and b"\\fromtext" not in head:
        return RtfBody(rtf=rtf)  # native RTF
    if b"\\fromhtml" not in head and not want_text:
        return RtfBody(rtf=rtf, encapsulated="text")
    try:
        with _lock:
            de = _make_deencapsulator()(rtf)
            de.deencapsulate()
    except Exception:  # RTFDE rejects malformed encapsulation: keep the RTF
        return RtfBody(rtf=rtf)
    if de.content_type == "html":
        html = de.html
        return RtfBody(
            rtf=rtf, html=html.encode() if isinstance(html, str) else bytes(html), encapsulated="html"
        )
    text = de.text
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return RtfBody(rtf=rtf, text=str(text), encapsulated="text")
