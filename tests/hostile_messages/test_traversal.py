"""Path traversal: hostile folder names in a snapshot never make ``mailvault export`` write outside
DEST (maildir, mbox, eml; real CLI), and ``discover`` / ``import`` of a tree with symbolic links
(pointing outside, and forming loops) never follow them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mailvault.vault.repository import Repository
from tests.common import mv, sha
from tests.vault.helpers import write_snapshot

HOSTILE = [
    "../../etc",
    "/abs",
    "/abs/../../x",
    "a/../../b",
    "..",
    ".",
    "../",
    "nul\x00byte",
    "\x00",
    "x" * 5000,
    "ü" * 300 + "/" + "y" * 300,
    "CON",
    "aux.txt",
    "NUL",
    "COM1",
    "LPT9.mbox",
    "a\\..\\..\\b",
    "~/x",
    "cur",
    "INBOX/tmp",
    ".hidden/..",
    "new\nline/../..",
    "../" * 50 + "tmp/pwned",
]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def hostile_vault(vault: Path, vault_password: str) -> tuple[Path, dict[str, bytes]]:
    folders = {name: [f"Subject: {i}\r\n\r\nfolder {name!r}\r\n".encode()] for i, name in enumerate(HOSTILE)}
    repo = Repository.open(str(vault), vault_password.encode)
    try:
        write_snapshot(repo, folders, delimiter="/")
        write_snapshot(repo, folders, account="backslash", delimiter="\\")
    finally:
        repo.close()
    return vault, {sha(m[0]): m[0] for m in folders.values()}


@pytest.mark.parametrize("fmt", ["maildir", "mbox", "eml"])
def test_export_hostile_folder_names_stay_inside(
    hostile_vault: tuple[Path, dict[str, bytes]], tmp_path: Path, fmt: str
) -> None:
    vault, messages = hostile_vault
    box = tmp_path / "box"  # DEST lives two levels down; everything else in the box must stay empty
    dest = box / "a" / "dest"
    (box / "a").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    for account in ("alice@example.org", "backslash"):
        out = dest / account.split("@")[0]
        mv("export", vault, "latest", out, "--format", fmt, "--account", account)
    outside = [p for p in box.rglob("*") if not p.resolve().is_relative_to(dest.resolve())]
    assert outside == [box / "a"]  # only DEST's parent, made by the test
    assert not any(tmp_path.glob("tmp/*")) and not (tmp_path / "etc").exists() and not Path("/abs").exists()
    written = _tree(dest)
    if fmt == "mbox":
        body = b"".join(written.values())
        assert all(raw.split(b"\r\n\r\n")[1] in body for raw in messages.values())
    else:
        assert sorted(sha(b) for b in written.values() if not b[:1].isdigit()) == sorted(list(messages) * 2)
    for rel in written:
        assert all(part not in ("..", ".") for part in Path(rel).parts), rel
        assert all(len(part.encode()) <= 255 for part in Path(rel).parts), rel


def _outside_store(root: Path) -> Path:
    """A Maildir outside the scanned tree, holding one message that must never be imported."""
    md = root / "outside" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "cur" / "1.outside:2,S").write_bytes(b"Subject: OUTSIDE\r\n\r\nmust not be imported\r\n")
    return md


def _tree_with_links(tmp_path: Path) -> Path:
    outside = _outside_store(tmp_path)
    home = tmp_path / "home"
    md = home / "Maildir"
    for sub in ("cur", "new", "tmp", ".Sub/cur", ".Sub/new", ".Sub/tmp"):
        (md / sub).mkdir(parents=True)
    (md / "cur" / "1.inside:2,S").write_bytes(b"Subject: inside\r\n\r\nok\r\n")
    (md / ".Sub" / "cur" / "2.inside:2,").write_bytes(b"Subject: inside sub\r\n\r\nok\r\n")
    (md / ".Evil").symlink_to(outside)  # a Maildir++ folder that is a link to another store
    (md / ".Loop").symlink_to(md)  # a loop
    (home / "loop").symlink_to(home)
    (home / "up").symlink_to(tmp_path)
    mail = home / "mail"
    mail.mkdir()
    (mail / "inbox.eml").write_bytes(b"Subject: eml inside\r\n\r\nok\r\n")
    (mail / "evil").symlink_to(outside.parent)
    (mail / "self").symlink_to(mail)
    return home


def test_discover_does_not_follow_symlinks(tmp_path: Path) -> None:
    home = _tree_with_links(tmp_path)
    proc = mv("discover", home, "--json", timeout=120)
    found = json.loads(proc.stdout)
    text = json.dumps(found)
    assert str(tmp_path / "outside") not in text
    maildirs = [s for s in found if s["format"] == "maildir"]
    assert [(Path(s["path"]).name, s["messages"]) for s in maildirs] == [("Maildir", 2)], found
    assert "Loop" not in text and "/loop" not in text and "/up" not in text


@pytest.mark.parametrize(("sub", "fmt", "expected"), [("Maildir", "maildir", 2), ("mail", "eml", 1)])
def test_import_does_not_follow_symlinks(
    vault: Path, tmp_path: Path, sub: str, fmt: str, expected: int
) -> None:
    home = _tree_with_links(tmp_path)
    out = json.loads(
        mv("import", vault, home / sub, "--account", "local", "--format", fmt, "--json", timeout=120).stdout
    )
    assert out["messages"] == expected, out
    ls = mv("ls", vault, "latest", "--json").stdout
    assert "OUTSIDE" not in ls and "Evil" not in ls and "Loop" not in ls and "evil" not in ls
    assert os.path.exists(tmp_path / "outside" / "Maildir" / "cur" / "1.outside:2,S")
