"""search / show / diff / export --search / index through the real CLI, on a small hand-made mail tree.

Every message below has a known content, so every query has a known answer.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mailvault.index.store import DB_NAME
from tests.common import assert_one_line_error, invoke, mv, sha

JSON_KEYS = {
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


def _msg(
    frm: str, subject: str, date: str, body: str, *, to: str = "me@example.net", extra: str = ""
) -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{abs(hash(subject))}@x>\r\n"
        f"{extra}MIME-Version: 1.0\r\n{body}"
    ).encode()


PLAIN = "Content-Type: text/plain; charset=utf-8\r\n\r\n"
MESSAGES: dict[str, dict[str, bytes]] = {
    "INBOX": {
        "invoice.eml": _msg(
            "Alice Smith <alice@example.org>",
            "Invoice 2019-03",
            "Tue, 05 Mar 2019 10:00:00 +0000",
            PLAIN + "Please pay the amount before Friday.\r\n",
        ),
        "html.eml": _msg(
            "Bob <bob@example.com>",
            "Newsletter",
            "Wed, 10 Jul 2019 12:00:00 +0000",
            "Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>zebrafish</b></p><script>hiddenscript()</script>\r\n",
        ),
        "attach.eml": _msg(
            "Carol <carol@example.org>",
            "Quarterly report",
            "Mon, 06 Jan 2020 09:00:00 +0000",
            'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n' + PLAIN + "numbers inside\r\n"
            '--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="q4-report.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n",
        ),
    },
    "Archive/2018": {
        "cjk.eml": _msg(
            "=?utf-8?b?5bGx55Sw?= <yamada@example.jp>",
            "=?utf-8?b?5p2x5Lqs6YO944Gu5aSp5rCX?=",
            "Sat, 01 Dec 2018 08:00:00 +0900",
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            "caf=C3=A9 au lait\r\n",
        ),
        "alice-old.eml": _msg(
            "alice@example.org",
            "Old thread",
            "Thu, 01 Feb 2018 08:00:00 +0000",
            PLAIN + "the spam assassin rules\r\n",
            extra="Cc: dave@example.org\r\n",
        ),
    },
}


def _tree(root: Path, messages: dict[str, dict[str, bytes]]) -> Path:
    for folder, files in messages.items():
        d = root.joinpath(*folder.split("/"))
        d.mkdir(parents=True, exist_ok=True)
        for name, raw in files.items():
            (d / name).write_bytes(raw)
    return root


@pytest.fixture
def loaded(vault: Path, tmp_path: Path) -> Path:
    src = _tree(tmp_path / "mail", MESSAGES)
    invoke("import", vault, src, "--account", "me", "--format", "eml", "-q")
    return vault


def _search(vault: Path, query: str, *extra: str) -> list[dict[str, object]]:
    out = json.loads(invoke("search", vault, query, "--json", *extra).stdout)
    assert isinstance(out, list)
    for hit in out:
        assert set(hit) == JSON_KEYS
    return out


def _subjects(vault: Path, query: str, *extra: str) -> list[str]:
    return [str(h["subject"]) for h in _search(vault, query, *extra)]


def test_queries_have_the_known_answers(loaded: Path) -> None:
    v = loaded
    assert _subjects(v, "from:alice") == ["Invoice 2019-03", "Old thread"]  # newest first
    assert _subjects(v, "from:alice@example.org -subject:invoice") == ["Old thread"]
    assert _subjects(v, "zebrafish") == ["Newsletter"]  # HTML text
    assert _subjects(v, "hiddenscript") == []  # scripts are not text
    assert _subjects(v, "has:attachment") == ["Quarterly report"]
    assert _subjects(v, "filename:q4-report.pdf") == ["Quarterly report"]
    assert _subjects(v, "after:2019-03-05 before:2020-01-06") == ["Newsletter", "Invoice 2019-03"]
    assert _subjects(v, "東京") == ["東京都の天気"] and _subjects(v, "京都") == ["東京都の天気"]
    assert _subjects(v, "from:山田") == ["東京都の天気"]
    assert _subjects(v, "cafe") == ["東京都の天気"]  # accents ignored
    assert _subjects(v, '"spam assassin"') == ["Old thread"]
    assert _subjects(v, '"assassin spam"') == []  # a phrase is words in sequence
    assert _subjects(v, "cc:dave") == ["Old thread"]
    assert _subjects(v, "in:Archive/2018") == ["東京都の天気", "Old thread"]
    assert _subjects(v, "(zebrafish OR numbers) -has:attachment") == ["Newsletter"]
    assert _subjects(v, "larger:1M") == []
    assert len(_subjects(v, "")) == 5
    assert _subjects(v, "is:unread from:carol") == ["Quarterly report"]  # eml files carry no flags
    assert _subjects(v, "is:read") == []
    assert _subjects(v, "from:alice", "--limit", "1") == ["Invoice 2019-03"]
    assert invoke("search", v, "from:alice", "--count").stdout.strip() == "2"
    hit = _search(v, "zebrafish")[0]
    assert hit["folder"] == "INBOX" and hit["account"] == "me" and hit["uid"] == "html.eml"
    assert hit["blob"] == sha(MESSAGES["INBOX"]["html.eml"]) and hit["size"] == len(
        MESSAGES["INBOX"]["html.eml"]
    )
    assert hit["date"] == "2019-07-10T12:00:00+00:00" and hit["attachments"] == [] and hit["flags"] == []


def test_index_is_private_and_incremental(loaded: Path, tmp_path: Path, cli_env: Path) -> None:
    first = json.loads(invoke("index", loaded, "--json").stdout)
    assert first["messages_total"] == 5
    db = next(cli_env.rglob(DB_NAME))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    # a second snapshot with one new message costs one parse
    more = dict(MESSAGES)
    more["INBOX"] = {
        **MESSAGES["INBOX"],
        "new.eml": _msg(
            "eve@example.org", "Fresh", "Fri, 01 Jan 2021 00:00:00 +0000", PLAIN + "brandnewword\r\n"
        ),
    }
    invoke("import", loaded, _tree(tmp_path / "mail2", more), "--account", "me", "--format", "eml", "-q")
    second = json.loads(invoke("index", loaded, "--json").stdout)
    assert second["snapshots_added"] == 1 and second["messages_indexed"] == 1
    assert second["manifests_added"] == 1  # Archive/2018 did not change: its manifest is shared
    assert _subjects(loaded, "brandnewword") == ["Fresh"]
    assert (
        len(_search(loaded, "from:alice", "--snapshot", "all")) == 2
    )  # one hit per message, not per snapshot
    rebuilt = json.loads(invoke("index", loaded, "--rebuild", "--json").stdout)
    assert rebuilt["messages_indexed"] == 6 and rebuilt["snapshots_added"] == 2


def test_gone_and_diff(loaded: Path, tmp_path: Path) -> None:
    snap1 = _search(loaded, "from:alice")[0]["snapshot"]
    fewer = {
        "INBOX": {k: v for k, v in MESSAGES["INBOX"].items() if k != "html.eml"},
        "Archive/2018": MESSAGES["Archive/2018"],
    }
    invoke("import", loaded, _tree(tmp_path / "mail2", fewer), "--account", "me", "--format", "eml", "-q")
    assert _subjects(loaded, "zebrafish") == []
    assert _subjects(loaded, "gone:yes") == ["Newsletter"]
    assert _subjects(loaded, "gone:yes from:alice") == []
    d = json.loads(invoke("diff", loaded, str(snap1), "latest", "--account", "me", "--json").stdout)
    assert (d["added"], d["removed"], d["flags_changed"]) == (0, 1, 0)
    assert [(f["folder"], [m["blob"] for m in f["removed"]]) for f in d["folders"]] == [
        ("INBOX", [sha(MESSAGES["INBOX"]["html.eml"])])
    ]
    text = invoke("diff", loaded, str(snap1), "latest", "--account", "me").stdout
    assert "0 added, 1 removed, 0 flags changed" in text and "INBOX: +0 -1 ~0" in text


def test_show(loaded: Path, tmp_path: Path) -> None:
    raw = MESSAGES["INBOX"]["attach.eml"]
    blob = sha(raw)
    out = invoke("show", loaded, blob[:8]).stdout
    assert "Subject: Quarterly report" in out and "Attachment 1: q4-report.pdf (application/pdf, 9 B)" in out
    assert "numbers inside" in out
    assert invoke("show", loaded, blob[:10], "--text").stdout.strip() == "numbers inside"
    assert invoke("show", loaded, blob, "--headers").stdout.startswith("From: Carol <carol@example.org>")
    assert invoke("show", loaded, blob, "--raw").stdout_bytes == raw
    invoke("show", loaded, blob, "--attachment", "1", "--output", tmp_path / "q4.pdf")
    assert (tmp_path / "q4.pdf").read_bytes() == b"%PDF-1.4\n"


def test_export_search_writes_only_the_matches(loaded: Path, tmp_path: Path) -> None:
    dry = json.loads(
        invoke(
            "export",
            loaded,
            "latest",
            tmp_path / "x",
            "--account",
            "me",
            "--search",
            "from:alice",
            "--dry-run",
            "--json",
        ).stdout
    )
    assert dry["messages"] == 2 and dry["folders"] == {"INBOX": 1, "Archive/2018": 1}
    assert not (tmp_path / "x").exists()
    invoke(
        "export",
        loaded,
        "latest",
        tmp_path / "x",
        "--account",
        "me",
        "--search",
        "from:alice",
        "--format",
        "eml",
        "-q",
    )
    files = sorted(p for p in (tmp_path / "x").rglob("*") if p.is_file())
    assert sorted(sha(p.read_bytes()) for p in files) == sorted(
        [sha(MESSAGES["INBOX"]["invoice.eml"]), sha(MESSAGES["Archive/2018"]["alice-old.eml"])]
    )
    invoke(
        "export",
        loaded,
        "latest",
        tmp_path / "y",
        "--account",
        "me",
        "--search",
        "from:alice",
        "--into",
        "Found",
        "-q",
    )
    assert sorted(
        p.parent.parent.name for p in (tmp_path / "y").rglob("*") if p.is_file() and p.parent.name == "cur"
    ) == ["Found", "Found"]


@pytest.mark.parametrize(
    ("query", "token"),
    [("from:alice (", "'('"), ("size:3", "'size:'"), ("before:2019-13-01", "before:2019-13-01")],
)
def test_bad_query_is_one_line_exit_2(loaded: Path, query: str, token: str) -> None:
    proc = mv("search", loaded, query, code=None)
    assert_one_line_error(proc, 2, "bad query", token)
    proc = mv(
        "export", loaded, "latest", loaded.parent / "z", "--account", "me", "--search", query, code=None
    )
    assert_one_line_error(proc, 2, "bad query", token)
    assert not (loaded.parent / "z").exists()


def test_show_unknown_or_ambiguous_blob(loaded: Path) -> None:
    assert_one_line_error(mv("show", loaded, "0000000000", code=None), 2, "no message")
    assert_one_line_error(mv("show", loaded, "xyz", code=None), 2, "not a blob id")
    assert os.environ.get("MAILVAULT_CACHE_DIR")


def test_core_api_pages_and_counts(loaded: Path, vault_password: str) -> None:
    """What the web UI builds on: update_index, search with limit/offset, count, select."""
    from mailvault.index import count, open_index, search, select, update_index
    from mailvault.vault.repository import Repository

    with Repository.open(str(loaded), vault_password.encode) as repo:
        stats = update_index(repo)
        assert stats.messages_total == 5
        db = open_index(repo)
        try:
            everything = [h.blob for h in search(db, "")]
            assert len(everything) == count(db, "") == 5
            pages = [h.blob for off in (0, 2, 4) for h in search(db, "", limit=2, offset=off)]
            assert pages == everything
            snap = search(db, "zebrafish")[0].snapshot
            assert select(db, "from:alice", snap) == {
                "INBOX": {("invoice.eml", sha(MESSAGES["INBOX"]["invoice.eml"]))},
                "Archive/2018": {("alice-old.eml", sha(MESSAGES["Archive/2018"]["alice-old.eml"]))},
            }
        finally:
            db.close()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "from:alice",
        "from:alice -subject:invoice",
        '"spam assassin"',
        "after:2019-01-01",
        "has:attachment",
        "zebrafish OR numbers",
        "in:INBOX is:unread",
        "cafe",
        "report has:attachment",
        "zebrafish OR cafe larger:1",
        "zebrafish OR cafe OR report after:2019-01-01",
    ],
)
def test_both_query_plans_give_the_same_page(
    loaded: Path, vault_password: str, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """A page of hits read newest first along the date index (chosen for common words), and one
    sorted on the index before the rows are read (the deferred plan, for other words), equal
    the same page of the whole result read from the full-text matches."""
    import importlib

    from mailvault.index import open_index, update_index
    from mailvault.vault.repository import Repository

    msearch = importlib.import_module("mailvault.index.search")  # (the package's `search` is the function)
    with Repository.open(str(loaded), vault_password.encode) as repo:
        update_index(repo)
        db = open_index(repo)
        try:
            whole = [(h.folder, h.uid) for h in msearch.search(db, query)]  # no limit: by text / all
            assert msearch.count(db, query) == len(whole)  # counted on indexes where it can be
            for limit in (1, 2, 10):  # a handful of messages: words are never walked by date
                assert [(h.folder, h.uid) for h in msearch.search(db, query, limit=limit)] == whole[:limit]
            assert [(h.folder, h.uid) for h in msearch.search(db, query, limit=2, offset=1)] == whole[1:3]
            monkeypatch.setattr(msearch, "DRIVE_MAX", 1)
            for limit in (1, 2, 10):
                assert [(h.folder, h.uid) for h in msearch.search(db, query, limit=limit)] == whole[:limit]
            assert [(h.folder, h.uid) for h in msearch.search(db, query, limit=2, offset=1)] == whole[1:3]
        finally:
            db.close()


def test_two_index_updates_at_once_both_succeed(loaded: Path) -> None:
    from tests.common import mv_popen

    procs = [mv_popen("index", loaded, "-q") for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert invoke("search", loaded, "", "--count").stdout.strip() == "5"
