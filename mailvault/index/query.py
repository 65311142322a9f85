"""The search query language (Gmail-like): tokens, the parser and the parsed tree (:class:`Query`).

:mod:`mailvault.index.query_sql` translates a parsed query to SQL over the index.

Grammar (``docs/SEARCH.md`` has examples)::

    query   := or_expr?
    or_expr := and_expr ("OR" and_expr)*
    and_expr:= unary (["AND"] unary)*            -- juxtaposition means AND
    unary   := "-" unary | "(" or_expr ")" | term
    term    := WORD | "PHRASE" | OPERATOR ":" (WORD | "PHRASE")

Text terms (bare words, ``"phrases"``, ``from: to: cc: subject: filename:``) match whole
words of the decoded headers and text (case and accents ignored); a phrase or a value with
punctuation (``from:alice@example.com``) matches its words in sequence. Filters:
``has:attachment``, ``before:/after:YYYY-MM-DD`` (UTC; after is inclusive, before
exclusive; the Date header, else the INTERNALDATE), ``larger:/smaller:N[K|M|G]`` (bytes,
binary units), ``in:FOLDER``, ``account:NAME``, ``is:read|unread|flagged|answered|draft|
deleted``, and ``gone:yes|folder`` (see :class:`Query`). :func:`parse_query` raises
:class:`~mailvault.errors.QueryError` naming the offending token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mailvault.errors import QueryError
from mailvault.index.phrase import words

TEXT_FIELDS = {"from": "from_", "to": "to_", "cc": "cc", "subject": "subject", "filename": "filename"}
FILTERS = {"has", "before", "after", "larger", "smaller", "in", "account", "is", "gone"}
IS_FLAGS = {
    "read": ("\\Seen", True),
    "unread": ("\\Seen", False),
    "flagged": ("\\Flagged", True),
    "starred": ("\\Flagged", True),
    "answered": ("\\Answered", True),
    "draft": ("\\Draft", True),
    "deleted": ("\\Deleted", True),
}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([kmg]?)b?$", re.IGNORECASE)


@dataclass(frozen=True)
class Term:
    """Words (or a phrase) to find in one header (``field``) or anywhere (``None``)."""

    field: str | None
    text: str
    token: str  # as written, for messages


@dataclass(frozen=True)
class Filter:
    op: str  # has before after larger smaller in account is
    value: str | int
    token: str


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Checked:
    """A multi-word term whose words the full-text driver already requires (see
    :func:`mailvault.index.query_sql.split_driver`): only the check that they come in sequence
    is left."""

    term: Term


Node = Term | Filter | Not | And | Or | Checked


@dataclass(frozen=True)
class Query:
    """A parsed query.

    ``gone`` (from ``gone:yes`` or ``gone:folder``, only at the top level): the query then
    looks at the snapshots *older* than each account's latest and keeps the messages that
    are no longer in the latest snapshot — ``yes``: the message (its blob) is in no folder of
    the latest snapshot; ``folder``: it is no longer in that same folder (moved counts).
    Each such message is reported once, from the newest snapshot that still had it.
    """

    root: Node | None
    text: str
    gone: str | None = None


# -- tokens -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tok:
    kind: str  # ( ) - OR AND WORD
    text: str  # value (unquoted)
    raw: str  # as written
    quoted: bool = False
    op: str | None = None  # "from" in from:alice


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    """s[i] == '"'; return (content, index after the closing quote)."""
    end = s.find('"', i + 1)
    if end < 0:
        raise QueryError(f"bad query: unterminated quote in {s[i:]!r}")
    return s[i + 1 : end], end + 1


def _tokens(s: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
            continue
        if c in "()":
            out.append(_Tok(c, c, c))
            i += 1
            continue
        if c == "-" and i + 1 < n and not s[i + 1].isspace():
            out.append(_Tok("-", "-", "-"))
            i += 1
            continue
        if c == "-":
            raise QueryError("bad query: '-' must be followed by a term")
        if c == '"':
            text, j = _read_quoted(s, i)
            out.append(_Tok("WORD", text, s[i:j], quoted=True))
            i = j
            continue
        j = i
        while j < n and not s[j].isspace() and s[j] not in '()"':
            j += 1
        word = s[i:j]
        op, colon, value = word.partition(":")
        if colon and op.lower() in (TEXT_FIELDS.keys() | FILTERS):
            if not value and j < n and s[j] == '"':
                value, j = _read_quoted(s, j)
                out.append(_Tok("WORD", value, s[i:j], quoted=True, op=op.lower()))
            else:
                if not value:
                    raise QueryError(f"bad query: missing value after {word!r}")
                out.append(_Tok("WORD", value, word, op=op.lower()))
            i = j
            continue
        if colon and op and op.isalpha() and value:
            raise QueryError(f"bad query: unknown operator {op + ':'!r} in {word!r}")
        if word in ("OR", "AND"):
            out.append(_Tok(word, word, word))
        else:
            out.append(_Tok("WORD", word, word))
        i = j
    return out


# -- parser -------------------------------------------------------------------------------
class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def no_term_next(self) -> bool:
        t = self.peek()
        return t is None or t.kind in (")", "OR", "AND")

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while (t := self.peek()) is not None and t.kind == "OR":
            self.take()
            if self.no_term_next():
                raise QueryError("bad query: 'OR' needs a term on both sides")
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Node:
        parts: list[Node] = []
        while (t := self.peek()) is not None and t.kind not in (")", "OR"):
            if t.kind == "AND":
                self.take()
                if not parts or self.no_term_next():
                    raise QueryError("bad query: 'AND' needs a term on both sides")
                continue
            parts.append(self.unary())
        if not parts:
            t = self.peek()
            raise QueryError(
                f"bad query: expected a term before {t.raw!r}" if t else "bad query: expected a term"
            )
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Node:
        t = self.take()
        if t.kind == "-":
            if self.peek() is None:
                raise QueryError("bad query: '-' must be followed by a term")
            return Not(self.unary())
        if t.kind == "(":
            if self.peek() is None:
                raise QueryError("bad query: unbalanced '(' (nothing after it)")
            if (p := self.peek()) is not None and p.kind == ")":
                raise QueryError("bad query: empty parentheses '()'")
            node = self.or_expr()
            if (p := self.peek()) is None or p.kind != ")":
                raise QueryError("bad query: unbalanced '(' (missing ')')")
            self.take()
            return node
        if t.kind == ")":
            raise QueryError("bad query: unbalanced ')'")
        return _leaf(t)


def _day(value: str, token: str) -> int:
    for fmt in ("%Y-%m-%d", "%Y/%m/%d"):
        try:
            return int(datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    raise QueryError(f"bad query: {token!r}: expected a date YYYY-MM-DD")


def _size(value: str, token: str) -> int:
    m = _SIZE_RE.match(value)
    if not m:
        raise QueryError(f"bad query: {token!r}: expected a size such as 500K, 10M or 1G")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m[2].lower()]
    return int(float(m[1]) * mult)


def _leaf(t: _Tok) -> Node:
    if t.op is None or t.op in TEXT_FIELDS:
        if not words(t.text):
            raise QueryError(f"bad query: {t.raw!r} has no letters or digits to search for")
        return Term(TEXT_FIELDS[t.op] if t.op else None, t.text, t.raw)
    v = t.text
    if t.op == "has":
        if v.lower() not in ("attachment", "attachments"):
            raise QueryError(f"bad query: {t.raw!r}: only has:attachment is known")
        return Filter("has", "attachment", t.raw)
    if t.op in ("before", "after"):
        return Filter(t.op, _day(v, t.raw), t.raw)
    if t.op in ("larger", "smaller"):
        return Filter(t.op, _size(v, t.raw), t.raw)
    if t.op == "is":
        if v.lower() not in IS_FLAGS:
            raise QueryError(f"bad query: {t.raw!r}: expected is:{'|'.join(IS_FLAGS)}")
        return Filter("is", v.lower(), t.raw)
    if t.op == "gone":
        if v.lower() not in ("yes", "folder"):
            raise QueryError(f"bad query: {t.raw!r}: expected gone:yes or gone:folder")
        return Filter("gone", v.lower(), t.raw)
    return Filter(t.op, v, t.raw)  # in:, account:


def _contains_gone(node: Node) -> bool:
    if isinstance(node, Filter):
        return node.op == "gone"
    if isinstance(node, Not):
        return _contains_gone(node.child)
    if isinstance(node, And | Or):
        return any(_contains_gone(c) for c in node.children)
    return False


def parse_query(text: str) -> Query:
    """Parse ``text``; raise :class:`QueryError` (one line naming the token) when it is bad.

    An empty query matches every message in scope.
    """
    toks = _tokens(text)
    if not toks:
        return Query(None, text)
    p = _Parser(toks)
    root = p.or_expr()
    if p.peek() is not None:
        t = p.take()
        raise QueryError(f"bad query: unexpected {t.raw!r}" + (" (unbalanced ')')" if t.kind == ")" else ""))
    gone: str | None = None
    parts = list(root.children) if isinstance(root, And) else [root]
    kept: list[Node] = []
    for part in parts:
        if isinstance(part, Filter) and part.op == "gone":
            gone = str(part.value)
        elif _contains_gone(part):
            raise QueryError("bad query: gone: may only be used at the top level (not negated or in OR)")
        else:
            kept.append(part)
    new_root: Node | None = None if not kept else kept[0] if len(kept) == 1 else And(tuple(kept))
    return Query(new_root, text, gone)
