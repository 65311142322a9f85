"""RTF bodies: ``PR_RTF_COMPRESSED`` (0x1009) decoded with ``compressed-rtf``, and the HTML or
text encapsulated in it (``\\fromhtml1`` / ``\\fromtext``) recovered with ``RTFDE``.

libpff's own ``rtf_body`` fails on the uncompressed ``MELA`` form, so the raw property is
decoded here; ``compressed_rtf.decompress`` handles both ``LZFu`` and ``MELA``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import compressed_rtf
from lark import Lark
from RTFDE.deencapsulate import DeEncapsulator

__all__ = ["RtfBody", "decode_rtf"]

# RTFDE logs every parse detail at INFO/DEBUG and its validation failures as errors; the
# converter reports what matters itself.
logging.getLogger("RTFDE").setLevel(logging.CRITICAL)


_parser: Lark | None = None
_parser_lock = threading.Lock()


class _DeEncapsulator(DeEncapsulator):  # type: ignore[misc]  # untyped library class
    """RTFDE's de-encapsulator with its Lark parser built once instead of once per message
    (building the grammar costs ~0.4 s, nine tenths of RTFDE's time)."""

    def parse_rtf(self, rtf: Any) -> None:
        global _parser  # noqa: PLW0603
        with _parser_lock:
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


@dataclass(frozen=True)
class RtfBody:
    """What an RTF body holds: the RTF itself and, when encapsulated, the HTML or text."""

    rtf: bytes
    html: bytes | None = None  # UTF-8 (RTFDE's output encoding)
    text: str | None = None
    error: str | None = None  # why the RTF could not be decompressed, if it could not


def decode_rtf(compressed: bytes) -> RtfBody:
    """Decompress ``PR_RTF_COMPRESSED`` and pull out encapsulated HTML/text. Never raises."""
    try:
        rtf = bytes(compressed_rtf.decompress(compressed))
    except Exception as e:  # corrupt RTF must never stop a conversion
        return RtfBody(rtf=b"", error=f"compressed RTF unreadable: {e}")
    rtf = rtf.rstrip(b"\x00")
    head = rtf[:2048]
    if b"\\fromhtml" not in head and b"\\fromtext" not in head:
        return RtfBody(rtf=rtf)  # native RTF
    try:
        de = _DeEncapsulator(rtf)
        de.deencapsulate()
    except Exception:  # RTFDE rejects malformed encapsulation: keep the RTF
        return RtfBody(rtf=rtf)
    if de.content_type == "html":
        html = de.html
        return RtfBody(rtf=rtf, html=html.encode() if isinstance(html, str) else bytes(html))
    text = de.text
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return RtfBody(rtf=rtf, text=str(text))
