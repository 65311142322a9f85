"""Fixtures for the web UI tests: a vault with HTML mail (imported through the CLI) and a running ``serve``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.common import invoke
from tests.web.helpers import Served, hostile_message, html_message, serve


@pytest.fixture(autouse=True)
def _web_env(cli_env: Path) -> Path:
    return cli_env


def _maildir(root: Path, folder: str | None, messages: list[tuple[bytes, str]]) -> None:
    d = root if folder is None else root / f".{folder}"
    for sub in ("cur", "new", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for i, (raw, flags) in enumerate(messages):
        name = d / "cur" / f"{1_700_000_000 + i}.M{i}P1.web:2,{flags}"
        name.write_bytes(raw)
        os.utime(name, (1_700_000_000 + i * 3600,) * 2)


@pytest.fixture
def mail_tree(tmp_path: Path) -> dict[str, list[bytes]]:
    """INBOX: a hostile HTML newsletter and 60 plain notes (so the list pages); Archive: 3 invoices."""
    root = tmp_path / "Maildir"
    notes = [
        html_message(i, f"Note {i:02d}", f"<p>note number {i}</p>", boundary=f"B{i}") for i in range(1, 61)
    ]
    invoices = [
        html_message(100 + i, f"Invoice 2019-{i}", f"<p>Invoice {i} total 42 EUR</p>") for i in range(3)
    ]
    inbox = [(m, "S") for m in notes] + [(hostile_message(), "")]  # the newest: first on page 1
    _maildir(root, None, inbox)
    _maildir(root, "Archive", [(m, "S") for m in invoices])
    return {"root": [str(root).encode()], "INBOX": [m for m, _ in inbox], "Archive": invoices}


@pytest.fixture
def web_vault(vault: Path, mail_tree: dict[str, list[bytes]]) -> Path:
    root = mail_tree["root"][0].decode()
    invoke("import", vault, root, "--account", "alice", "--format", "maildir", "--quiet")
    return vault


@pytest.fixture
def served(web_vault: Path) -> Iterator[Served]:
    s = serve(web_vault)
    try:
        yield s
    finally:
        s.stop()
