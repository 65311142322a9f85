"""Exact phrase checks on top of the position-less full-text index.

The FTS5 table keeps no word positions (``detail=column``), so a phrase of several words
is first found as "all its words" and then checked here, word by word, with the same word
rules as the FTS5 tokenizer (``unicode61 remove_diacritics 2``: lower case, accents
removed, anything but letters and digits separates words; CJK runs as bigrams).

Two SQL functions are registered on an index connection by :func:`register`:

``mv_phrase(text, phrase)``
    1 when ``text`` (a stored header: From, To, Cc, Subject, attachment names) holds the
    words of ``phrase`` in sequence;
``mv_body_phrase(blob, phrase)``
    the same over every indexed field of the message, its decoded text included; the
    message is read from the vault through the reader given to :func:`register`. Without a
    reader the check cannot be made and the "all its words" result stands.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import OrderedDict
from collections.abc import Callable

from mailvault.index.extract import Doc, cjk_bigrams, extract

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of ``text`` as the index tokenizer sees them."""
    text = cjk_bigrams(text)
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _WORD.findall(text.lower())


def _joined(text: str) -> str:
    return " " + " ".join(words(text)) + " "


def holds(text: str, phrase: str) -> bool:
    """True when the words of ``phrase`` occur in sequence in ``text``."""
    target = words(phrase)
    if not target:
        return False
    return (" " + " ".join(target) + " ") in _joined(text)


def doc_fields(doc: Doc) -> list[str]:
    return [doc.from_, doc.to, doc.cc, doc.subject, doc.text, " ".join(a.name for a in doc.attachments)]


def register(db: sqlite3.Connection, reader: Callable[[bytes], bytes] | None) -> None:
    """Add ``mv_phrase`` and ``mv_body_phrase`` to ``db`` (see the module doc)."""
    cache: OrderedDict[bytes, list[str]] = OrderedDict()

    def mv_phrase(text: str | None, phrase: str) -> int:
        return int(holds(text or "", phrase))

    def mv_body_phrase(blob: bytes, phrase: str) -> int:
        if reader is None:
            return 1
        key = bytes(blob)
        fields = cache.get(key)
        if fields is None:
            try:
                fields = [_joined(f) for f in doc_fields(extract(reader(key)))]
            except Exception:  # an unreadable message cannot be checked: keep the FTS answer
                return 1
            cache[key] = fields
            while len(cache) > 256:
                cache.popitem(last=False)
        target = " " + " ".join(words(phrase)) + " "
        return int(any(target in f for f in fields))

    db.create_function("mv_phrase", 2, mv_phrase, deterministic=True)
    db.create_function("mv_body_phrase", 2, mv_body_phrase, deterministic=True)
