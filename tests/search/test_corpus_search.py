"""Corpus tier: the query language against corpus A (SpamAssassin), answers known from a direct parse.

Every expected set here is computed in the test from the corpus files themselves (Python's ``email``
package, a word splitter written here), never from mailvault's index. Run with
``MAILVAULT_CORPUS=/path/to/shared/corpus python -m pytest -m corpus tests/search``.
"""

from __future__ import annotations

import email
import email.message
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.common import invoke, mv

CORPUS = os.environ.get("MAILVAULT_CORPUS")

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        not CORPUS, reason="set MAILVAULT_CORPUS=/path/to/shared/corpus to run the corpus tier"
    ),
]

Key = tuple[str, str]  # (folder, file name = uid)


def _words(text: str) -> list[str]:
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.findall(r"[^\W_]+", text.lower())


def _has_seq(text: str, phrase: str) -> bool:
    return f" {' '.join(_words(phrase))} " in f" {' '.join(_words(text))} "


def _hdr(msg: email.message.Message, name: str) -> str:
    out = []
    for v in msg.get_all(name) or []:
        try:
            out.append(str(make_header(decode_header(str(v)))))
        except Exception:
            out.append(str(v))
    return " , ".join(out)


def _decoded(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


@dataclass
class Mail:
    from_: str
    subject: str
    other_headers: str  # To, Cc
    date: datetime | None
    attachment: bool
    plain: set[str]  # words of the decoded text/plain parts (not attachments)
    everything: set[
        str
    ]  # words of the headers, every decoded text part (HTML with its markup), attachment names


def _parse(raw: bytes) -> Mail:
    msg = email.message_from_bytes(raw)
    try:
        date = parsedate_to_datetime(msg["Date"]) if msg["Date"] else None
        if date is not None and date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
    except (TypeError, ValueError):
        date = None
    attachment, plain, texts, names = False, [], [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        disp = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        name = part.get_filename() or part.get_param("name")
        if disp == "attachment" or name:
            attachment = True
            names.append(str(name or ""))
            continue
        if part.get_content_type() == "text/plain":
            plain.append(_decoded(part))
        if part.get_content_maintype() == "text":
            texts.append(_decoded(part))
    heads = [_hdr(msg, h) for h in ("From", "To", "Cc", "Subject")]
    return Mail(
        heads[0],
        heads[3],
        heads[1] + " " + heads[2],
        date,
        attachment,
        set(_words("\n".join(plain))),
        set(_words("\n".join(heads + texts + names))),
    )


@pytest.fixture(scope="module")
def corpus_vault(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[Key, Mail], dict[Key, datetime | None]]:
    root = Path(CORPUS or "") / "spamassassin"
    if not root.is_dir():
        pytest.fail(f"MAILVAULT_CORPUS={CORPUS} has no spamassassin/ folder")
    tmp = tmp_path_factory.mktemp("search-corpus")
    mp = pytest.MonkeyPatch()
    mp.setenv("MAILVAULT_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("MAILVAULT_PASSWORD", "corpus search")
    vault = tmp / "vault"
    invoke("init", vault, "--no-encryption")
    invoke("import", vault, root, "--account", "sa", "--format", "eml", "-q")
    mails = {(p.parent.name, p.name): _parse(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}
    listing = json.loads(invoke("ls", vault, "latest", "--account", "sa", "--json").stdout)
    idates = {
        (m["folder"], m["uid"]): (datetime.fromisoformat(m["internaldate"]) if m["internaldate"] else None)
        for m in listing
    }
    assert set(idates) == set(mails)
    yield vault, mails, idates
    mp.undo()


def _hits(vault: Path, query: str) -> set[Key]:
    out = json.loads(invoke("search", vault, query, "--json").stdout)
    keys = [(h["folder"], h["uid"]) for h in out]
    assert len(keys) == len(set(keys))
    return set(keys)


def test_corpus_a_header_queries(
    corpus_vault: tuple[Path, dict[Key, Mail], dict[Key, datetime | None]],
) -> None:
    vault, mails, idates = corpus_vault
    assert len(mails) == 8596
    first = json.loads(invoke("search", vault, "", "--json", "--limit", "3").stdout)
    assert [set(h) for h in first] == [
        {
            "blob",
            "account",
            "snapshot",
            "folder",
            "uid",
            "date",
            "from",
            "to",
            "subject",
            "size",
            "flags",
            "attachments",
        }
    ] * 3

    def expect(pred) -> set[Key]:  # type: ignore[no-untyped-def]
        return {k for k, m in mails.items() if pred(m)}

    cases = {
        "from:pudge@perl.org": expect(lambda m: _has_seq(m.from_, "pudge@perl.org")),
        'from:"Tim Peters"': expect(lambda m: _has_seq(m.from_, "Tim Peters")),
        "from:spamassassin": expect(lambda m: _has_seq(m.from_, "spamassassin")),
        "subject:razor": expect(lambda m: _has_seq(m.subject, "razor")),
        'subject:"use perl"': expect(lambda m: _has_seq(m.subject, "use perl")),
        "subject:razor OR subject:perl": expect(
            lambda m: _has_seq(m.subject, "razor") or _has_seq(m.subject, "perl")
        ),
        "from:spamassassin -subject:razor": expect(
            lambda m: _has_seq(m.from_, "spamassassin") and not _has_seq(m.subject, "razor")
        ),
        "has:attachment": expect(lambda m: m.attachment),
        "has:attachment -from:spamassassin": expect(
            lambda m: m.attachment and not _has_seq(m.from_, "spamassassin")
        ),
    }
    for query, expected in cases.items():
        assert expected, query
        assert _hits(vault, query) == expected, query
    assert len(cases["has:attachment"]) == 67  # the corpus README's own count

    lo, hi = datetime(2002, 9, 1, tzinfo=UTC), datetime(2002, 9, 8, tzinfo=UTC)

    def in_range(k: Key) -> bool:
        d = mails[k].date or idates[k]
        return d is not None and lo <= d < hi

    expected = {k for k in mails if in_range(k)}
    assert 100 < len(expected) < 2000
    assert _hits(vault, "after:2002-09-01 before:2002-09-08") == expected
    assert _hits(vault, "after:2002-09-01 before:2002-09-08 subject:razor") == {
        k for k in expected if _has_seq(mails[k].subject, "razor")
    }
    assert invoke("search", vault, "has:attachment", "--count").stdout.strip() == "67"


@pytest.mark.parametrize("word", ["sourceforge", "python", "viagra", "mortgage", "zzzzyyyxxq"])
def test_corpus_a_body_words(
    corpus_vault: tuple[Path, dict[Key, Mail], dict[Key, datetime | None]], word: str
) -> None:
    """Every message whose decoded text/plain holds the word is found; every hit holds it somewhere
    (headers, any decoded text part, attachment names)."""
    vault, mails, _ = corpus_vault
    hits = _hits(vault, word)
    must = {k for k, m in mails.items() if word in m.plain}
    may = {k for k, m in mails.items() if word in m.everything}
    assert must <= hits, sorted(must - hits)[:5]
    assert hits <= may, sorted(hits - may)[:5]
    if word == "zzzzyyyxxq":
        assert hits == set()
    else:
        assert len(must) > 5


def test_corpus_a_bad_query_exit_2(
    corpus_vault: tuple[Path, dict[Key, Mail], dict[Key, datetime | None]],
) -> None:
    vault, _, _ = corpus_vault
    proc = mv("search", vault, "razor (perl", code=None)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "'('" in proc.stderr
