"""Corpus tier: the shared real-mail and torture sets through import -> export, byte-exact.

Run with ``MAILVAULT_CORPUS=/path/to/shared/corpus python -m pytest -m corpus tests/cli``.
"""

from __future__ import annotations

import mailbox
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from mailvault.sources.local import iter_local
from tests.cli.helpers import file_hashes, message_files, mv, mv_json, sha

CORPUS = os.environ.get("MAILVAULT_CORPUS")

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        not CORPUS, reason="set MAILVAULT_CORPUS=/path/to/shared/corpus to run the corpus tier"
    ),
]


@pytest.fixture(scope="module")
def corpus() -> Path:
    root = Path(CORPUS or "")
    if not (root / "torture").is_dir() or not (root / "spamassassin").is_dir():
        pytest.fail(f"MAILVAULT_CORPUS={root} has no torture/ and spamassassin/ folders")
    return root


def _is_mbox_fixture(path: Path, torture: Path) -> bool:
    rel = path.relative_to(torture).as_posix()
    return rel.startswith("mimekit/mbox/") and rel.endswith(".mbox.txt")


def stage_single_messages(torture: Path, stage: Path) -> list[bytes]:
    """Copy every single-message file of the torture set under a name the eml reader takes."""
    out = []
    for path in sorted(torture.rglob("*")):
        if not path.is_file() or path.name == "README.md" or _is_mbox_fixture(path, torture):
            continue
        rel = path.relative_to(torture)
        target = stage / rel.parent / (rel.name if rel.name.endswith(".eml") else rel.name + ".eml")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        out.append(path.read_bytes())
    return out


def mbox_oracle(path: Path, tmp: Path) -> list[bytes]:
    """The messages of an mbox file according to Python's own ``mailbox`` module.

    ``mailbox`` does not skip a UTF-8 byte-order mark before the first ``From`` line (one
    MimeKit fixture has one), so it is given a copy without it.
    """
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbfFrom "):
        copy = tmp / path.name
        copy.write_bytes(data[3:])
        path = copy
    box = mailbox.mbox(path, create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()


def test_torture_set_roundtrip(corpus: Path, tmp_path: Path) -> None:
    torture = corpus / "torture"
    singles = stage_single_messages(torture, tmp_path / "stage")
    assert len(singles) == 363
    mbox_files = sorted(p for p in torture.rglob("*.mbox.txt") if _is_mbox_fixture(p, torture))
    assert len(mbox_files) == 4
    (tmp_path / "oracle").mkdir()
    from_mbox = [m for p in mbox_files for m in mbox_oracle(p, tmp_path / "oracle")]
    # The corpus README counts 39: Python's mailbox misses the first message of
    # unmunged.mbox.txt, which follows a byte-order mark.
    assert len(from_mbox) == 40

    vault = str(tmp_path / "vault")
    mv("init", vault)
    r = mv_json("import", vault, tmp_path / "stage", "--account", "eml", "--format", "eml")
    assert r["messages"] == 363
    r = mv_json("import", vault, torture / "mimekit" / "mbox", "--account", "mbox", "--format", "mbox")
    assert r["messages"] == 40
    assert r["folders"] == 4

    for account, expected in (("eml", singles), ("mbox", from_mbox)):
        dest = tmp_path / f"out-{account}"
        mv("export", vault, "latest", dest, "--account", account, "-q")
        assert file_hashes(message_files(dest)) == Counter(map(sha, expected)), account

    # The same single messages through an mboxrd file and back: every byte survives
    # (a message without a final newline gets one; mbox cannot store it otherwise).
    dest = tmp_path / "out-mboxrd"
    mv("export", vault, "latest", dest, "--account", "eml", "--format", "mbox", "-q")
    back = Counter(sha(m.raw) for _info, msgs in iter_local(dest, "mbox", mboxrd=True) for m in msgs)
    assert back == Counter(sha(m if m.endswith(b"\n") else m + b"\n") for m in singles)

    dest = tmp_path / "out-eml"
    mv("export", vault, "latest", dest, "--account", "eml", "--format", "eml", "-q")
    assert file_hashes(list(dest.rglob("*.eml"))) == Counter(map(sha, singles))

    assert mv_json("check", vault, "--read-data")["ok"] is True


def test_spamassassin_corpus(corpus: Path, tmp_path: Path) -> None:
    source = corpus / "spamassassin"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    raw_total = sum(p.stat().st_size for p in files)
    want = file_hashes(files)

    vault = str(tmp_path / "vault")
    mv("init", vault)
    r = mv_json("import", vault, source, "--account", "spamassassin", "--format", "eml")
    assert r["messages"] == len(files) == 8596
    assert r["folders"] == 6
    assert r["bytes"] == raw_total
    assert r["new_messages"] == len(want)  # byte-identical duplicates are stored once

    dest = tmp_path / "restored"
    mv("export", vault, "latest", dest, "--account", "spamassassin", "-q")
    assert file_hashes(message_files(dest)) == want
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in source.iterdir())

    assert mv_json("check", vault, "--read-data")["ok"] is True

    st = mv_json("stats", vault)
    ratio = st["stored_bytes"] / raw_total
    assert ratio <= 0.22, f"stored {st['stored_bytes']} of {raw_total} raw bytes = {ratio:.4f}"

    before = st["stored_bytes"]
    r2 = mv_json("import", vault, source, "--account", "spamassassin", "--format", "eml")
    assert r2["new_messages"] == 0
    after = mv_json("stats", vault)["stored_bytes"]
    assert after - before < 0.01 * before, (before, after)
    assert len(mv_json("snapshots", vault)) == 2


def _as_maildir(source: Path, dest: Path) -> list[Path]:
    """Corpus A laid out as Dovecot keeps a Maildir++ (INBOX at the root, .folder dirs)."""
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    out = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        box = dest / ("." + folder.name)
        for sub in ("cur", "new", "tmp"):
            (box / sub).mkdir(parents=True)
        (box / "maildirfolder").touch()
        for n, msg in enumerate(sorted(folder.iterdir())):
            data = msg.read_bytes()
            target = box / "cur" / f"{1030000000 + n}.M{n}P1.corpus,S={len(data)}:2,S"
            target.write_bytes(data)
            out.append(target)
    return out


def test_spamassassin_as_maildir_on_s3_is_packed_and_exact(
    corpus: Path, tmp_path: Path, s3_vault_url: str
) -> None:
    """Issue 2's check on an S3 vault: corpus A as a Maildir, import -> export identical, and
    stored as tens of objects (packs), not one object per message."""
    maildir = tmp_path / "Maildir"
    files = _as_maildir(corpus / "spamassassin", maildir)
    want = file_hashes(files)
    mv("init", s3_vault_url)
    r = mv_json("import", s3_vault_url, maildir, "--account", "corpus-a")
    assert r["format"] == "maildir" and r["messages"] == len(files) == 8596
    dest = tmp_path / "restored"
    mv("export", s3_vault_url, "latest", dest, "--account", "corpus-a", "-q")
    assert file_hashes(message_files(dest)) == want
    assert mv_json("check", s3_vault_url, "--read-data")["ok"] is True
    from mailvault.storage.base import open_backend

    names = [n for n, _ in open_backend(s3_vault_url).list("")]
    assert len(names) < 30, names
    raw_total = sum(p.stat().st_size for p in files)
    assert mv_json("stats", s3_vault_url)["stored_bytes"] <= 0.22 * raw_total
