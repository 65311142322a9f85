"""Folder-name encoding: IMAP modified UTF-7 (RFC 3501 §5.1.3) — the one place for it."""

from __future__ import annotations

from imapclient import imap_utf7


def decode(name: str | bytes) -> str:
    """Decode a modified UTF-7 mailbox name; a name that is not valid mUTF-7 is returned as is."""
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    try:
        return str(imap_utf7.decode(raw))
    except (ValueError, UnicodeError):
        return raw.decode("utf-8", "replace")


def encode(name: str) -> bytes:
    """Encode a Unicode mailbox name to modified UTF-7."""
    return bytes(imap_utf7.encode(name))


def decode_exact(name: str) -> str | None:
    """Decode ``name`` only if it is ASCII modified UTF-7 that encodes back to itself, else None.

    For names found on disk (Maildir++ folders, ...), where a name may or may not be mUTF-7."""
    try:
        raw = name.encode("ascii")
        decoded = str(imap_utf7.decode(raw))
    except (ValueError, UnicodeError):
        return None
    return decoded if imap_utf7.encode(decoded) == raw else None
