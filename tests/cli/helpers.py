"""Helpers for the command-line tests: run the CLI, build mail trees, hash exported files."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import Result

from tests import common
from tests.common import MAIL_WORDS, sha

PASSWORD = "cli test password"
SUBJECT_MARKER = "QuixoticPlatypusSubject"


def mv(*args: str | Path, code: int | None = 0) -> Result:
    """Run ``mailvault ARGS`` in-process; check the exit code unless ``code`` is None."""
    return common.invoke(*args, code=code)


def mv_json(*args: str | Path) -> Any:
    return json.loads(mv(*args, "--json").stdout)


def mv_proc(*args: str | Path, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mailvault ARGS`` as a real process (real exit codes, real stderr)."""
    return common.mv(*args, code=None, timeout=timeout, **kw)


def message_files(root: Path) -> list[Path]:
    """Every message file of a Maildir tree (files inside cur/ and new/)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name in ("cur", "new"))


def file_hashes(paths: list[Path]) -> Counter[str]:
    return Counter(sha(p.read_bytes()) for p in paths)


@dataclass
class SourceMsg:
    folder: str  # decoded folder name, as the vault shows it
    uid: str  # Maildir base name (without the :2, info)
    raw: bytes
    flags: set[str]
    mtime: int


@dataclass
class MailTree:
    root: Path
    messages: list[SourceMsg] = field(default_factory=list)

    def by_folder(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for m in self.messages:
            out.setdefault(m.folder, Counter())[sha(m.raw)] += 1
        return out

    def hashes(self) -> Counter[str]:
        return Counter(sha(m.raw) for m in self.messages)

    def find(self, uid: str) -> SourceMsg:
        return next(m for m in self.messages if m.uid == uid)


_WORDS = list(MAIL_WORDS)


def text_body(rng: random.Random, size: int, eol: str = "\n") -> str:
    lines, n = [], 0
    while n < size:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(4, 12)))
        lines.append(line)
        n += len(line) + len(eol)
    return eol.join(lines) + eol


def sample_messages() -> dict[str, bytes]:
    """Awkward messages, keyed by a short name."""
    rng = random.Random(42)
    big_payload = base64.encodebytes(random.Random(7).randbytes(1_200_000)).decode()
    return {
        "crlf": (
            f"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: {SUBJECT_MARKER} CRLF\r\n"
            "Date: Mon, 4 Mar 2002 10:00:00 +0100\r\nMessage-ID: <crlf@example.org>\r\n\r\n"
            + text_body(rng, 800, "\r\n")
        ).encode(),
        "lf": (
            f"From: Bob <bob@example.net>\nSubject: {SUBJECT_MARKER} bare LF\nDate: Tue, 5 Mar 2002 11:00:00 -0500\n\n"
            + text_body(rng, 600)
        ).encode(),
        "nul": b"From: nul@example.org\nSubject: NUL bytes\n\nbefore\x00after\x00\x00\nmore\x00\n",
        "eightbit": (
            b"From: J\xc3\xb6rg M\xc3\xbcller <joerg@example.de>\nSubject: Gr\xfc\xdfe aus K\xf6ln\n"
            b"X-Raw: \xff\xfe\x80\n\nLatin-1 body: \xe4\xf6\xfc\xdf\n"
        ),
        "big": (
            "From: big@example.org\nSubject: a large attachment\nMIME-Version: 1.0\n"
            'Content-Type: application/octet-stream; name="blob.bin"\nContent-Transfer-Encoding: base64\n\n'
            + big_payload
        ).encode(),
        "noeol": b"From: x@example.org\nSubject: no final newline\n\nthe last line has no end",
        "fromlines": (
            b"From: quoting@example.org\nSubject: From lines\n\nFrom here on, a line begins with From\n"
            b">From quoted once\n>>From quoted twice\n\nFrom the end\n"
        ),
        "mixed": b"From: m@example.org\r\nSubject: mixed endings\n\r\nline one\r\nline two\nline three\r\n",
        "draft": b"From: me@example.org\nSubject: Entwurf \xe2\x80\x93 unfertig\n\nNoch nicht fertig.\n",
        "q1": b"From: pm@example.org\nSubject: Q1 plan\n\nQ1 numbers.\n",
        "q2": b"From: pm@example.org\nSubject: Q2 plan\r\n\r\nQ2 numbers.\r\n",
    }


def _maildir(d: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)


def build_maildir(root: Path) -> MailTree:
    """INBOX (root), ``.Entw&APw-rfe`` (Maildir++, modified UTF-7), ``.Sent`` and the
    nested ``Projects/2002/Q1 & Q2`` (fs layout)."""
    msgs = sample_messages()
    tree = MailTree(root)
    base_time = int(datetime(2002, 3, 4, 9, 0, tzinfo=UTC).timestamp())
    counter = 0

    def put(
        folder_dir: Path, folder: str, key: str, info: str | None, flags: set[str], sub: str = "cur"
    ) -> None:
        nonlocal counter
        counter += 1
        uid = f"{1015228800 + counter}.M{counter}P4242.testhost"
        name = uid if info is None else f"{uid}:2,{info}"
        path = folder_dir / sub / name
        raw = msgs[key]
        path.write_bytes(raw)
        mtime = base_time + counter * 3600
        os.utime(path, (mtime, mtime))
        tree.messages.append(SourceMsg(folder, uid, raw, flags, mtime))

    _maildir(root)
    (root / "dovecot-keywords").write_text("0 $Important\n1 Work\n")
    put(root, "INBOX", "crlf", "S", {"\\Seen"})
    put(root, "INBOX", "lf", "FRS", {"\\Flagged", "\\Answered", "\\Seen"})
    put(root, "INBOX", "nul", None, set(), sub="new")
    put(root, "INBOX", "eightbit", "Sab", {"\\Seen", "$Important", "Work"})
    put(root, "INBOX", "big", "S", {"\\Seen"})
    put(root, "INBOX", "noeol", "", set())
    put(root, "INBOX", "fromlines", "PS", {"$Forwarded", "\\Seen"})
    put(root, "INBOX", "mixed", "T", {"\\Deleted"})

    drafts = root / ".Entw&APw-rfe"
    _maildir(drafts)
    put(drafts, "Entwürfe", "draft", "DS", {"\\Draft", "\\Seen"})
    put(drafts, "Entwürfe", "crlf", "S", {"\\Seen"})  # the same bytes as in INBOX: stored once

    sent = root / ".Sent"
    _maildir(sent)
    put(sent, "Sent", "lf", "S", {"\\Seen"})

    q = root / "Projects" / "2002" / "Q1 & Q2"
    _maildir(q)
    put(q, "Projects/2002/Q1 & Q2", "q1", "S", {"\\Seen"})
    put(q, "Projects/2002/Q1 & Q2", "q2", "", set())
    return tree


def generated_messages(n: int, *, seed: int, size: int = 1500, subject: str = "generated") -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        head = (
            f"From: user{i % 23}@example.org\nTo: list@example.net\nSubject: {subject} {i}\n"
            f"Message-ID: <{seed}.{i}.{rng.getrandbits(40):x}@example.org>\n\n"
        )
        out.append((head + text_body(rng, size)).encode())
    return out


def write_flat_maildir(root: Path, messages: list[bytes]) -> None:
    _maildir(root)
    for i, raw in enumerate(messages):
        (root / "cur" / f"{1000000000 + i}.M{i}P1.gen:2,S").write_bytes(raw)
