"""The real program (`python -m mailvault`): exit codes and one-line errors on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailvault.storage.base import open_backend
from mailvault.vault.crypto import DEFAULT_SCRYPT
from tests.cli.helpers import MailTree, file_hashes, message_files, mv_proc
from tests.vault.helpers import flip_byte


def one_line_error(proc, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mailvault: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_real_process_exit_codes(vault_location: str, maildir: MailTree, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    p = mv_proc("init", vault_location)
    assert p.returncode == 0, p.stderr
    keys = [n for n, _ in open_backend(vault_location).list("keys/")]
    assert json.loads(open_backend(vault_location).get(keys[0]))["n"] == DEFAULT_SCRYPT["n"]

    p = mv_proc("import", vault_location, maildir.root, "--account", "a", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["messages"] == len(maildir.messages)
    assert p.stderr == ""  # no progress bars without a terminal

    p = mv_proc("check", vault_location, "--read-data")
    assert p.returncode == 0, p.stderr
    assert "no errors" in p.stdout

    dest = tmp_path / "restore"
    p = mv_proc("export", vault_location, "latest", dest)
    assert p.returncode == 0, p.stderr
    assert file_hashes(message_files(dest)) == maildir.hashes()

    assert "no snapshot" in one_line_error(mv_proc("ls", vault_location, "deadbeef"))
    assert "already exists" in one_line_error(mv_proc("init", vault_location))
    (tmp_path / "afile").write_text("x")
    assert "not a directory" in one_line_error(
        mv_proc("export", vault_location, "latest", tmp_path / "afile")
    )
    assert "unknown --format" in one_line_error(
        mv_proc("export", vault_location, "latest", dest, "--format", "x")
    )

    monkeypatch.setenv("MAILVAULT_PASSWORD", "wrong")
    line = one_line_error(mv_proc("snapshots", vault_location))
    assert "wrong password" in line
    monkeypatch.delenv("MAILVAULT_PASSWORD")
    line = one_line_error(mv_proc("snapshots", vault_location), 2)
    assert "no vault password given" in line


def test_real_process_damaged_vault_is_exit_1(tmp_path: Path, maildir: MailTree) -> None:
    vault = str(tmp_path / "v")
    assert mv_proc("init", vault).returncode == 0
    assert mv_proc("import", vault, maildir.root, "--account", "a", "-q").returncode == 0
    backend = open_backend(vault)
    name, size = max(backend.list("data/"), key=lambda x: x[1])
    flip_byte(backend, name, size // 2)
    p = mv_proc("check", vault, "--read-data")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert all(line.startswith(("error: ", "warning: ")) for line in p.stderr.splitlines()), p.stderr
    assert "Traceback" not in p.stderr
    # Exporting a snapshot whose data is damaged fails with one line, not a traceback.
    line = one_line_error(mv_proc("export", vault, "latest", tmp_path / "out", "-q"))
    assert "authentication failed" in line or "fails" in line or "damaged" in line


@pytest.mark.parametrize("args", [["snapshots"], ["check"], ["stats"], ["unlock"]])
def test_real_process_not_a_vault(tmp_path: Path, args: list[str]) -> None:
    line = one_line_error(mv_proc(*args, tmp_path / "nowhere"))
    assert "no vault here" in line


def test_real_process_version_and_usage() -> None:
    p = mv_proc("--version")
    assert p.returncode == 0 and p.stdout.startswith("mailvault ")
    p = mv_proc("import")  # missing arguments: a usage error from the parser
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
