"""A parsed search query (:mod:`mailvault.index.query`) translated to SQL over the index:
full-text parts as FTS5 MATCH expressions, filters as WHERE fragments, and the split into the
full-text driver and the rest (:func:`split_driver`)."""

from __future__ import annotations

from mailvault.errors import QueryError
from mailvault.index.phrase import words
from mailvault.index.query import IS_FLAGS, And, Checked, Filter, Node, Not, Or, Term


def _words_match(term: Term) -> str:
    """FTS5 expression: every word of the term (in its column, when it has one)."""
    col = f"{{{term.field}}} : " if term.field else ""
    return " AND ".join(f'{col}"{w}"' for w in words(term.text))


def _single(term: Term) -> bool:
    return len(words(term.text)) == 1


def fts_only(node: Node) -> bool:
    """True when the whole subtree is exactly one FTS5 MATCH expression (no phrase checks)."""
    if isinstance(node, Term):
        return _single(node)
    if isinstance(node, Or):
        return all(fts_only(c) for c in node.children)
    if isinstance(node, And):
        pos = [c for c in node.children if not isinstance(c, Not)]
        neg = [c.child for c in node.children if isinstance(c, Not)]
        return bool(pos) and all(fts_only(c) for c in pos + neg)
    return False


def fts_match(node: Node) -> str:
    """The FTS5 MATCH expression of a subtree for which :func:`fts_only` holds (for a
    multi-word term: all its words)."""
    if isinstance(node, Term):
        return _words_match(node)
    if isinstance(node, Or):
        return " OR ".join(f"({fts_match(c)})" for c in node.children)
    assert isinstance(node, And)
    pos = " AND ".join(f"({fts_match(c)})" for c in node.children if not isinstance(c, Not))
    negs = [fts_match(c.child) for c in node.children if isinstance(c, Not)]
    return f"({pos})" + "".join(f" NOT ({n})" for n in negs)


_PHRASE_CHECK = {
    "from_": "mv_phrase(g.from_, ?)",
    "to_": "mv_phrase(g.to_, ?)",
    "cc": "mv_phrase(g.cc, ?)",
    "subject": "mv_phrase(g.subject, ?)",
    "filename": "mv_phrase(g.attachments, ?)",
    None: "mv_body_phrase(g.blob, ?)",
}
_DATE = "m.sortdate"  # the Date header, else the INTERNALDATE (see store.py)


def to_sql(node: Node, *, probe: bool = False) -> tuple[str, list[object]]:
    """A WHERE fragment over the aliases g (msgs), m (members), sf (snapfolders), s (snapshots).

    A full-text part is ``g.id IN (<its matches>)`` — SQLite builds the set of matches once, the
    right thing when every message in scope is looked at — or, with ``probe``, a look-up of
    the one message in the full-text index (``EXISTS (... AND rowid = g.id)``): for a walk
    that stops after a page of hits, where building the set of a common word's half a million
    matches would cost more than the whole walk.
    """
    if fts_only(node) or isinstance(node, Term):
        found = (
            "EXISTS (SELECT 1 FROM fts WHERE fts MATCH ? AND rowid = g.id)"
            if probe
            else "g.id IN (SELECT rowid FROM fts WHERE fts MATCH ?)"
        )
        if fts_only(node):
            return found, [fts_match(node)]
        assert isinstance(node, Term)  # several words: all of them, then in sequence
        return f"{found} AND {_PHRASE_CHECK[node.field]}", [fts_match(node), node.text]
    if isinstance(node, Checked):
        return _PHRASE_CHECK[node.term.field], [node.term.text]
    if isinstance(node, Not):
        sql, params = to_sql(node.child, probe=probe)
        return f"NOT ({sql})", params
    if isinstance(node, And | Or):
        parts = [to_sql(c, probe=probe) for c in node.children]
        joiner = " AND " if isinstance(node, And) else " OR "
        return joiner.join(f"({s})" for s, _ in parts), [p for _, ps in parts for p in ps]
    assert isinstance(node, Filter)
    op, v = node.op, node.value
    if op == "has":
        return "g.nattach > 0", []
    if op == "before":
        return f"{_DATE} < ?", [v]
    if op == "after":
        return f"{_DATE} >= ?", [v]
    if op == "larger":
        return "g.size > ?", [v]
    if op == "smaller":
        return "g.size < ?", [v]
    if op == "in":
        return "sf.folder = ? COLLATE NOCASE", [v]
    if op == "account":
        return "s.account = ?", [v]
    if op == "is":
        flag, present = IS_FLAGS[str(v)]
        return f"instr(' ' || m.flags || ' ', ?) {'>' if present else '='} 0", [f" {flag} "]
    raise QueryError(f"bad query: {node.token!r} cannot be used here")


def split_driver(node: Node | None) -> tuple[str | None, Node | None]:
    """(FTS MATCH string to drive the query from, the rest to filter by).

    A query whose top level is (or ANDs) full-text terms starts from the FTS result, so a
    selective word costs a few index lookups, not a scan of every message in scope.
    """
    if node is None:
        return None, None
    children = list(node.children) if isinstance(node, And) else [node]
    exact = [c for c in children if fts_only(c)]
    phrases = [c for c in children if isinstance(c, Term) and not fts_only(c)]
    if not exact and not phrases:
        return None, node
    negated = [c for c in children if isinstance(c, Not) and fts_only(c.child)]
    # Phrases narrow the FTS result by their words and are then checked in sequence.
    match = " AND ".join(f"({fts_match(c)})" for c in exact + phrases)
    match = f"({match})" + "".join(f" NOT ({fts_match(c.child)})" for c in negated)
    rest = [Checked(c) if c in phrases else c for c in children if c not in exact and c not in negated]
    rest_node: Node | None = None if not rest else rest[0] if len(rest) == 1 else And(tuple(rest))
    return match, rest_node
