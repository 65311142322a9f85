"""Unit tests of the query language: parse trees, FTS expressions, errors, phrase matching."""

from __future__ import annotations

import pytest

from mailvault.errors import QueryError
from mailvault.index.extract import cjk_bigrams, extract, strip_html
from mailvault.index.phrase import holds, words
from mailvault.index.query import And, Filter, Not, Or, Term, parse_query
from mailvault.index.query_sql import fts_match, split_driver, to_sql


def test_words_and_implicit_and() -> None:
    q = parse_query("invoice  2019")
    assert q.root == And((Term(None, "invoice", "invoice"), Term(None, "2019", "2019")))
    assert q.gone is None


def test_or_binds_looser_than_and() -> None:
    q = parse_query("a b OR c")
    assert q.root == Or((And((Term(None, "a", "a"), Term(None, "b", "b"))), Term(None, "c", "c")))


def test_negation_parentheses_and_fields() -> None:
    q = parse_query('-from:alice@example.com (subject:"big deal" OR filename:report.pdf)')
    assert q.root == And(
        (
            Not(Term("from_", "alice@example.com", "from:alice@example.com")),
            Or(
                (
                    Term("subject", "big deal", 'subject:"big deal"'),
                    Term("filename", "report.pdf", "filename:report.pdf"),
                )
            ),
        )
    )


def test_filters_values() -> None:
    q = parse_query(
        "has:attachment before:2020-01-02 after:2019/12/31 larger:10M smaller:1.5k in:INBOX is:unread account:me"
    )
    assert isinstance(q.root, And)
    vals = {(f.op, f.value) for f in q.root.children if isinstance(f, Filter)}
    assert vals == {
        ("has", "attachment"),
        ("before", 1577923200),  # 2020-01-02T00:00Z
        ("after", 1577750400),  # 2019-12-31T00:00Z
        ("larger", 10 * 1024 * 1024),
        ("smaller", 1536),
        ("in", "INBOX"),
        ("is", "unread"),
        ("account", "me"),
    }


def test_gone_is_lifted_to_the_query() -> None:
    q = parse_query("gone:yes from:bob")
    assert q.gone == "yes"
    assert q.root == Term("from_", "bob", "from:bob")
    assert parse_query("gone:folder").gone == "folder"
    assert parse_query("gone:folder").root is None


def test_empty_query_matches_all() -> None:
    assert parse_query("   ").root is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("foo:bar", "'foo:'"),
        ("(a b", "'('"),
        ("a b)", "')'"),
        ("a OR", "'OR'"),
        ("OR a", "'OR'"),
        ("()", "()"),
        ('"open quote', "unterminated"),
        ("before:yesterday", "before:yesterday"),
        ("larger:big", "larger:big"),
        ("is:purple", "is:purple"),
        ("has:cat", "has:cat"),
        ("from:", "from:"),
        ("- a", "'-'"),
        ("a -", "'-'"),
        ("gone:maybe", "gone:maybe"),
        ("-gone:yes", "gone:"),
        ("a OR gone:yes", "gone:"),
        ("!!!", "'!!!'"),
    ],
)
def test_bad_queries_name_the_token(text: str, needle: str) -> None:
    with pytest.raises(QueryError) as exc:
        parse_query(text)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("bad query")
    assert needle in msg, msg


def test_fts_expressions() -> None:
    q = parse_query("razor -spam subject:perl")
    match, rest = split_driver(q.root)
    assert rest is None
    assert match is not None and '"razor"' in match and '{subject} : "perl"' in match and "NOT" in match
    # a phrase drives by its words and is checked in sequence afterwards
    q = parse_query('"spam assassin" is:read')
    match, rest = split_driver(q.root)
    assert match == '(("spam" AND "assassin"))'
    sql, params = to_sql(rest)  # type: ignore[arg-type]
    assert "mv_body_phrase" in sql and "spam assassin" in params
    assert (
        fts_match(Term("from_", "a.b@c", "from:a.b@c")) == '{from_} : "a" AND {from_} : "b" AND {from_} : "c"'
    )


def test_phrase_words_follow_the_tokenizer() -> None:
    assert words("Café-Straße, ÉTÉ_2019!") == ["cafe", "straße", "ete", "2019"]
    assert holds("Re: the Spam-Assassin list", "spam assassin")
    assert not holds("assassin spam", "spam assassin")
    assert holds("東京都の天気", "東京都")
    assert not holds("京都", "東京")


def test_cjk_bigrams_and_html() -> None:
    assert cjk_bigrams("東京都 abc") == " 東京 京都  abc"
    assert "secret" not in strip_html("<p>Hi<script>secret()</script></p>")
    assert strip_html("a&amp;b<br>c") == "a&b\nc"


def test_extract_decodes_headers_parts_and_attachments() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\n"
        b"Subject: =?iso-8859-1?q?caf=E9?=\r\n"
        b"Date: Tue, 05 Mar 2019 10:00:00 +0100\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PHA+SGVsbG8gPGI+d29ybGQ8L2I+PC9wPg==\r\n"
        b'--b\r\nContent-Type: application/pdf; name="r.pdf"\r\nContent-Disposition: attachment; filename="r.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
    )
    doc = extract(raw)
    assert doc.from_ == "Jürgen <j@example.org>"
    assert doc.subject == "café"
    assert doc.date == 1551776400
    assert "Hello" in doc.text and "world" in doc.text and "<b>" not in doc.text
    assert [(a.name, a.mime, a.size) for a in doc.attachments] == [("r.pdf", "application/pdf", 5)]
