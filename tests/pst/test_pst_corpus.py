"""Corpus tier: every PST/OST of ``pst/`` in the shared corpus through ``mailvault import``.

The expectations come from ``pst/expected-counts.json`` (readpst and libpff counts) and from an
independent pypff reading (:mod:`tests.pst.oracle`), never from the converter's own code.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.common import invoke
from tests.pst.oracle import OracleMail, read_mail

CORPUS = os.environ.get("MAILVAULT_CORPUS")

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        not CORPUS, reason="set MAILVAULT_CORPUS=/path/to/shared/corpus to run the corpus tier"
    ),
]

UNOPENABLE = "pst/aspose-email/AddingBulkMessagesWithImprovedPerformance.pst"
DROPPED = ("mime-version", "content-type", "content-transfer-encoding")


def _expected() -> dict[str, Any]:
    path = Path(CORPUS or "") / "pst" / "expected-counts.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}


EXPECTED = _expected()
READABLE = sorted(
    k for k, v in EXPECTED.items() if k.startswith("pst/") and "items_total" in v.get("libpff", {})
)


@pytest.fixture
def _env(cli_env: Path) -> Path:
    return cli_env


def mvj(*args: str | Path, code: int | None = 0) -> Any:
    """``mailvault ARGS --json`` in-process (the real CLI; one interpreter for the whole tier)."""
    return json.loads(invoke(*args, "--json", code=code).stdout)


def _messages(export_dir: Path) -> list[tuple[str, bytes]]:
    out = []
    for p in sorted(export_dir.rglob("*.eml")):
        out.append((p.parent.relative_to(export_dir).as_posix(), p.read_bytes()))
    return out


def _leaves(msg: EmailMessage) -> list[EmailMessage]:
    """Leaf parts, not descending into attached messages."""
    if msg.get_content_maintype() == "multipart":
        return [leaf for sub in msg.iter_parts() for leaf in _leaves(sub)]  # type: ignore[arg-type]
    return [msg]


def _header_block(transport: str) -> bytes:
    """The transport headers as the converted message must start with them (LOCAL-STORES.md:
    MIME-Version, Content-Type and Content-Transfer-Encoding dropped, CRLF line ends)."""
    lines: list[str] = []
    skip = False
    for line in transport.replace("\r\n", "\n").split("\n"):
        if not line:
            break
        if line[0] in " \t":
            if not skip:
                lines.append(line)
            continue
        skip = line.split(":", 1)[0].strip().lower() in DROPPED
        if not skip:
            lines.append(line)
    return "".join(x + "\r\n" for x in lines).encode("utf-8")


def _by_value(leaf: EmailMessage, oracle: list[OracleMail]) -> bool:
    """A message/rfc822 part that was a by-value attachment (an attached .eml), not attach method 5."""
    return any(name == leaf.get_filename() for o in oracle for name, _ in o.attachments)


def _norm(s: str | None) -> str:
    return " ".join((s or "").split())


@pytest.mark.parametrize("rel", READABLE)
def test_pst_imports_all_mail_matching_libpff(rel: str, vault: Path, tmp_path: Path, _env: Path) -> None:
    corpus = Path(CORPUS or "")
    pst = corpus / rel
    exp = EXPECTED[rel]
    libpff_mail = exp["libpff"]["mail_items"].get("mail", 0)
    readpst_d = exp["readpst_D"]["mail_total"]
    oracle: list[OracleMail] = read_mail(pst)
    assert len(oracle) == libpff_mail  # the oracle agrees with the corpus notes

    unreadable = exp["libpff"].get("item_errors", 0)
    out = mvj("import", vault, pst, "--account", "pst", code=1 if unreadable else 0)
    assert readpst_d <= out["messages"] <= libpff_mail, out
    assert out["messages"] == libpff_mail
    assert out["format"] == "pst"
    assert len(out["problems"]) == unreadable
    for failure in out["problems"]:  # each one named: file, folder, item
        assert failure.startswith(f"{pst.name}: folder '") and " item " in failure, failure
    non_mail = exp["libpff"]["items_total"] - unreadable - libpff_mail
    assert sum(out["other_items"].values()) == non_mail, out["other_items"]

    # Through the CLI: export byte-exact, then compare with what pypff reads.
    export = tmp_path / "export"
    mvj("export", vault, out["snapshot"], export, "--format", "eml")
    got = _messages(export)
    assert len(got) == libpff_mail
    parsed = [email.message_from_bytes(raw, policy=email.policy.default) for _, raw in got]
    for _, raw in got:
        assert b"\r\n\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), raw[:300]  # CRLF only
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert head.count(b"\nMIME-Version: 1.0") + head.startswith(b"MIME-Version: 1.0") == 1, head[:500]

    # subjects (decoded) match PR_SUBJECT, as a multiset over the store
    assert Counter(_norm(str(m["subject"] or "")) for m in parsed) == Counter(
        _norm(o.subject) for o in oracle
    )

    # transport headers are the header block, where present
    blocks = [_header_block(o.transport_headers) for o in oracle if o.transport_headers]
    raws = [raw for _, raw in got]
    for block in blocks:
        match = [r for r in raws if r.startswith(block)]
        assert match, block[:300]
        raws.remove(match[0])
    # the others have synthesised headers: sender and recipients from the properties
    synth = [m for (_, raw), m in zip(got, parsed, strict=True) if not any(raw.startswith(b) for b in blocks)]
    oracle_synth = [o for o in oracle if not o.transport_headers]
    assert len(synth) == len(oracle_synth)
    want_senders = Counter(o.sender_name for o in oracle_synth if o.sender_name)
    got_senders = Counter(
        (g.display_name or a.display_name)
        for m in synth
        if m["from"]
        for g in m["from"].groups
        for a in g.addresses
    ) + Counter(g.display_name for m in synth if m["from"] for g in m["from"].groups if not g.addresses)
    assert want_senders <= got_senders + Counter(), (want_senders, got_senders)
    want_rcpts = Counter(tuple(sorted(n for n in o.recipient_names if n)) for o in oracle_synth)
    got_rcpts = Counter(
        tuple(
            sorted(
                a.display_name or (g.display_name or "")
                for field in ("to", "cc", "bcc")
                if m[field]
                for g in m[field].groups
                for a in (g.addresses or [g])  # type: ignore[attr-defined]
            )
        )
        for m in synth
    )
    assert want_rcpts == got_rcpts

    # attachments: every by-value attachment with its name and the SHA-256 of its bytes
    import hashlib

    got_atts: Counter[tuple[str, str]] = Counter()
    message_parts: Counter[str] = Counter()  # message/* parts (never decoded by email): file name
    rfc822 = 0
    for m in parsed:
        for leaf in _leaves(m):
            if leaf.get_content_type() == "message/rfc822" and not _by_value(leaf, oracle):
                rfc822 += 1
            elif leaf.get_content_maintype() == "message":
                message_parts[leaf.get_filename() or ""] += 1
            elif leaf.get_filename() and leaf.get_filename() != "body.rtf":
                data = leaf.get_payload(decode=True)
                assert isinstance(data, bytes)
                got_atts[(leaf.get_filename() or "", hashlib.sha256(data).hexdigest())] += 1
    want_atts = Counter(a for o in oracle for a in o.attachments)
    missing = want_atts - got_atts
    all_raw = b"".join(raw for _, raw in got)
    data_of = {k: v for o in oracle for k, v in o.data.items()}
    for (name, digest), n in missing.items():
        # a message/* attachment is carried as its bytes, unencoded: look for them
        assert message_parts[name] >= n and data_of[digest] in all_raw, (name, digest)
    assert rfc822 == sum(o.embedded for o in oracle)

    # flags: read items are \Seen
    rows = mvj("ls", vault, out["snapshot"])
    assert sum("\\Seen" in r["flags"] for r in rows) == sum(o.read for o in oracle)

    # determinism: the same PST again adds nothing
    again = mvj("import", vault, pst, "--account", "pst", code=1 if unreadable else 0)
    assert again["messages"] == out["messages"]
    assert again["new_messages"] == 0 and again["new_bytes"] == 0, again


def test_pst_libpff_cannot_open_is_refused_and_stores_nothing(vault: Path, _env: Path) -> None:
    pst = Path(CORPUS or "") / UNOPENABLE
    before = sorted(p.relative_to(vault) for p in vault.rglob("*"))
    from tests.common import mv

    for fmt in ("auto", "pst", "mbox", "eml", "thunderbird", "maildir", "applemail", "takeout"):
        proc = mv("import", vault, pst, "--account", "x", "--format", fmt, code=2)
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mailvault: "), proc.stderr
        assert "PST" in lines[0]
    assert sorted(p.relative_to(vault) for p in vault.rglob("*")) == before
    assert mvj("snapshots", vault) == []


def test_a_pst_inside_a_tree_is_never_stored_as_a_message(vault: Path, tmp_path: Path, _env: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "Archive").mkdir(parents=True)
    shutil.copyfile(
        Path(CORPUS or "") / "pst/pstsdk/sample1.pst", tree / "Archive" / "Outlook"
    )  # no extension
    shutil.copyfile(Path(CORPUS or "") / "pst/pstsdk/sample1.pst", tree / "backup.pst")
    (tree / "Inbox").write_bytes(b"From a@example.org Mon Jan  1 00:00:00 2001\nSubject: hi\n\nbody\n")
    for i, fmt in enumerate(("auto", "mbox", "eml", "thunderbird")):
        result = invoke("import", vault, tree, "--account", f"t{i}", "--format", fmt, code=None)
        assert result.exit_code in (0, 1, 2), result.stderr
        if result.exit_code == 2:
            assert "PST" in result.stderr, result.stderr
            continue
        export = tmp_path / f"export-{i}"
        invoke("export", vault, "latest", export, "--account", f"t{i}", "--format", "eml")
        stored = [p.read_bytes() for p in export.rglob("*.eml")]
        assert stored and not any(raw.startswith(b"!BDN") for raw in stored), fmt
