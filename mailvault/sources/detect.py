"""``--format auto``: which kind of local mail store a path is, and refusing files that are no mail.

Checked in this order: a file is sniffed by its first bytes (Outlook PST/OST magic ``!BDN``,
an ``.emlx`` byte-count line, an mbox ``From`` line with ``X-Gmail-Labels`` → Takeout, an
mbox, a message). A file that is none of these (a PDF, a zip, any binary) is refused with
:class:`SourceError` (exit 2), so it is never stored as one "message". A directory is an
Apple Mail tree if it holds ``.emlx`` files or ``Name.mbox/mbox`` bundles, a Takeout
directory if its ``*.mbox`` files carry Gmail labels, otherwise what
:func:`mailvault.sources.local.detect_format` says (Maildir, Thunderbird, ``.eml`` tree).
"""

from __future__ import annotations

import importlib.util
import re
import stat
from pathlib import Path

from mailvault.errors import SourceError
from mailvault.sources import local
from mailvault.sources.applemail import looks_like_applemail
from mailvault.sources.takeout import is_takeout_archive, looks_like_takeout

__all__ = ["FORMATS", "detect_format", "pst_available", "sniff_file"]

#: Every format ``import --format`` takes (besides ``auto``).
FORMATS = (*local.FORMATS, "applemail", "takeout", "pst")

PST_MAGIC = b"!BDN"
_HEADER_RE = re.compile(rb"^[!-9;-~]+[ \t]*:")
_EMLX_RE = re.compile(rb"^[ \t]*\d{1,12}[ \t]*\r?\n[!-9;-~]+[ \t]*:")
_BOM = b"\xef\xbb\xbf"

#: Magic numbers of common non-mail files, for a clearer refusal.
_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\xfd7zXZ", "an xz file"),
    (b"BZh", "a bzip2 file"),
    (b"7z\xbc\xaf", "a 7-zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "an OLE2 file (old Office document or .msg)"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "an executable"),
)


def pst_available() -> bool:
    """True once the Outlook PST/OST importer (``mailvault.sources.pst``) and libpff are installed."""
    try:
        return (
            importlib.util.find_spec("mailvault.sources.pst") is not None
            and importlib.util.find_spec("pypff") is not None
        )
    except (ImportError, ValueError):
        return False


def _head(p: Path, n: int = 64 * 1024) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise SourceError(f"{p}: cannot read: {e.strerror or e}") from None


def sniff_file(p: Path) -> str:
    """The format of the single file ``p``; :class:`SourceError` if it holds no mail."""
    head = _head(p)
    if head.startswith(PST_MAGIC):
        if pst_available():
            return "pst"
        raise SourceError(f"{p}: is an Outlook PST/OST file, which this mailvault cannot read")
    if not head.strip():
        return "mbox"  # an empty mbox: nothing to import, nothing wrong
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b")) and is_takeout_archive(p):
        return "takeout"
    text = head[len(_BOM) :] if head.startswith(_BOM) else head
    if p.name.endswith(".emlx") or _EMLX_RE.match(text):
        return "applemail"
    if text.startswith(b"From "):
        if looks_like_takeout(p):
            return "takeout"
        return "eml" if p.name.lower().endswith(".eml") else "mbox"
    if _HEADER_RE.match(text.lstrip(b"\r\n")):
        return "eml" if p.name.lower().endswith(".eml") else "mbox"
    what = next((desc for magic, desc in _MAGIC if head.startswith(magic)), None)
    if what is None:
        what = "binary data" if b"\0" in head[:4096] else "no mail message or mbox"
    raise SourceError(f"{p}: not a mail file ({what}); nothing imported")


def detect_format(path: str | Path) -> str:
    """Guess the format of the local store at ``path`` (see the module docstring)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SourceError(f"{p}: no such file or directory") from None
    except OSError as e:
        raise SourceError(f"{p}: cannot read: {e.strerror or e}") from None
    if stat.S_ISREG(st.st_mode):
        return sniff_file(p)
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{p}: not a regular file or directory")
    if looks_like_applemail(p):
        return "applemail"
    if looks_like_takeout(p):
        return "takeout"
    return local.detect_format(p)
