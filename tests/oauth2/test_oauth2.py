"""``--oauth2-token-command`` (SASL XOAUTH2) for ``mailvault backup`` and ``restore`` against a real Dovecot.

The server is ``oauth2_dovecot`` (see conftest): an ``oauth2`` passdb asks a loopback introspection
endpoint about every token, so the endpoint's lookup count is the number of logins made with a token.
Every CLI run is a real process (real exit codes, real stderr).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests import common
from tests.common import assert_one_line_error, vault_files
from tests.oauth2.conftest import SEEDED
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot

# ----------------------------------------------------------------------------- helpers


def mv(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m mailvault ARGS`` as a real process."""
    return common.mv(*args, code=None, timeout=timeout)


def ok_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return dict(json.loads(proc.stdout))


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, nothing on stdout, exactly one ``mailvault: ...`` line on stderr holding the needles."""
    return assert_one_line_error(proc, 2, *needles)


def url(server: Dovecot, user: str, scheme: str) -> str:
    port = {"imaps": server.imaps_port, "pop3s": server.pop3s_port}[scheme]
    return f"{scheme}://{user}@{server.host}:{port}"


def target(server: Dovecot, user: str, scheme: str, token_command: str) -> list[str | Path]:
    """The server arguments of backup/restore: URL, token command, the test CA."""
    return [url(server, user, scheme), "--oauth2-token-command", token_command, "--ca-file", server.ca_file]


def counting_command(counter: Path, token: str) -> str:
    """A token command that appends a line to ``counter`` and prints ``token`` (no shell features needed
    by mailvault: it splits the command like a shell and runs it without one)."""
    script = f"echo run >> {shlex.quote(str(counter))}; printf %s {shlex.quote(token)}"
    return f"sh -c {shlex.quote(script)}"


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def read_bodies(server: Dovecot, user: str) -> dict[str, Counter[bytes]]:
    """Non-empty folder -> multiset of BODY[] (plain password login, read-only)."""
    client = server.imap_client(user)
    out: dict[str, Counter[bytes]] = {}
    try:
        for flags, _, name in client.list_folders():
            if b"\\Noselect" in flags:
                continue
            if client.select_folder(name, readonly=True)[b"EXISTS"]:
                data = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
                out[name] = Counter(d[b"BODY[]"] for d in data.values())
    finally:
        client.logout()
    return out


def snapshot_rows(vault: Path, snapshot: str) -> list[dict[str, Any]]:
    proc = mv("ls", vault, snapshot, "--json")
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


# ----------------------------------------------------------------------------- backup


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_backup_with_token_command_runs_it_per_connection(
    oauth2_dovecot: Dovecot, oauth2_source: str, vault: Path, tmp_path: Path, scheme: str
) -> None:
    server = oauth2_dovecot
    token = server.issue_oauth2_token(oauth2_source)
    counter = tmp_path / "token-runs"
    args = [
        "backup",
        vault,
        *target(server, oauth2_source, scheme, counting_command(counter, token)),
        "--json",
    ]
    want = SEEDED["INBOX"] if scheme == "pop3s" else sum(SEEDED.values())

    first = ok_json(mv(*args))
    assert first["messages"] == want
    assert first["new_messages"] == want
    assert first["messages_fetched"] == want
    assert first["failures"] == []
    rows = snapshot_rows(vault, first["snapshot"])
    assert len(rows) == want
    if scheme == "imaps":
        assert Counter(r["folder"] for r in rows) == Counter(SEEDED)
    else:
        assert {r["folder"] for r in rows} == {"INBOX"}
    # One command run per login: the server saw exactly as many logins with the token as there were
    # runs, and at least one.
    first_runs = runs(counter)
    assert first_runs >= 1
    assert server.oauth2 is not None
    assert server.oauth2.lookup_count(token) == first_runs

    # A second run asks the command again (tokens expire: nothing is cached between runs).
    second = ok_json(mv(*args))
    assert second["messages"] == want
    assert second["messages_fetched"] == 0
    assert runs(counter) > first_runs
    assert server.oauth2.lookup_count(token) == runs(counter)


def test_plain_token_command(oauth2_dovecot: Dovecot, oauth2_source: str, vault: Path) -> None:
    """The simplest form: ``--oauth2-token-command "printf TOKEN"``."""
    token = oauth2_dovecot.issue_oauth2_token(oauth2_source)
    result = ok_json(
        mv("backup", vault, *target(oauth2_dovecot, oauth2_source, "imaps", f"printf {token}"), "--json")
    )
    assert result["messages"] == sum(SEEDED.values())


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
@pytest.mark.parametrize("kind", ["revoked", "unknown", "other-user"])
def test_refused_token_is_one_line_and_leaves_the_vault_alone(
    oauth2_dovecot: Dovecot,
    oauth2_source: str,
    oauth2_empty_user: tuple[str, str],
    vault: Path,
    scheme: str,
    kind: str,
) -> None:
    server = oauth2_dovecot
    if kind == "revoked":
        token = server.issue_oauth2_token(oauth2_source)
        server.revoke_oauth2_token(token)
    elif kind == "unknown":
        token = "mvtok-never-issued-0123456789"
    else:  # a valid token of another user
        token = server.issue_oauth2_token(oauth2_empty_user[0])
    before = vault_files(vault)
    proc = mv("backup", vault, *target(server, oauth2_source, scheme, f"printf {token}"))
    line = one_line_error(proc, "login", "refused", oauth2_source)
    assert token not in line
    assert vault_files(vault) == before
    assert server.oauth2 is not None
    assert server.oauth2.lookup_count(token) >= 1  # it was the server that said no


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_failing_token_command_is_one_line_without_the_token(
    oauth2_dovecot: Dovecot, oauth2_source: str, vault: Path, scheme: str
) -> None:
    server = oauth2_dovecot
    token = server.issue_oauth2_token(oauth2_source)  # a valid token, printed by a failing command
    before = vault_files(vault)
    assert server.oauth2 is not None
    lookups = server.oauth2.lookup_count()
    script = f"printf %s {token}; echo 'token helper: cannot refresh' >&2; exit 1"
    proc = mv("backup", vault, *target(server, oauth2_source, scheme, f"sh -c {shlex.quote(script)}"))
    one_line_error(proc, "oauth2 token command", "failed", "exit code 1")
    assert token not in proc.stderr and token not in proc.stdout
    assert vault_files(vault) == before
    assert server.oauth2.lookup_count() == lookups  # no token was sent


def test_missing_token_command_is_one_line(oauth2_dovecot: Dovecot, oauth2_source: str, vault: Path) -> None:
    command = "/nonexistent/token-helper --account x"
    proc = mv("backup", vault, *target(oauth2_dovecot, oauth2_source, "imaps", command))
    one_line_error(proc, "oauth2 token command", "not found")


# ----------------------------------------------------------------------------- restore


def test_restore_into_empty_user_with_token_command(
    oauth2_dovecot: Dovecot,
    oauth2_source: str,
    oauth2_empty_user: tuple[str, str],
    vault: Path,
    tmp_path: Path,
) -> None:
    server = oauth2_dovecot
    src_token = server.issue_oauth2_token(oauth2_source)
    backed_up = ok_json(
        mv("backup", vault, *target(server, oauth2_source, "imaps", f"printf {src_token}"), "--json")
    )
    total = sum(SEEDED.values())
    assert backed_up["messages"] == total

    dest, _ = oauth2_empty_user
    token = server.issue_oauth2_token(dest)
    counter = tmp_path / "token-runs"
    args = ["restore", vault, *target(server, dest, "imaps", counting_command(counter, token)), "--json"]
    restored = ok_json(mv(*args))
    assert restored["uploaded"] == total == restored["messages"]
    assert restored["failures"] == [] and restored["warnings"] == [], restored
    assert read_bodies(server, dest) == read_bodies(server, oauth2_source)
    assert runs(counter) >= 1
    assert server.oauth2 is not None
    assert server.oauth2.lookup_count(token) == runs(counter)

    # Again: nothing uploaded twice; the command ran again.
    first_runs = runs(counter)
    again = ok_json(mv(*args))
    assert again["uploaded"] == 0 and again["failures"] == [], again
    assert runs(counter) > first_runs
    assert read_bodies(server, dest) == read_bodies(server, oauth2_source)


def test_restore_with_refused_token_changes_nothing(
    oauth2_dovecot: Dovecot,
    oauth2_source: str,
    oauth2_empty_user: tuple[str, str],
    vault: Path,
) -> None:
    server = oauth2_dovecot
    src_token = server.issue_oauth2_token(oauth2_source)
    ok_json(mv("backup", vault, *target(server, oauth2_source, "imaps", f"printf {src_token}"), "--json"))
    dest, _ = oauth2_empty_user
    token = server.issue_oauth2_token(dest)
    server.revoke_oauth2_token(token)
    proc = mv("restore", vault, *target(server, dest, "imaps", f"printf {token}"))
    one_line_error(proc, "login", "refused", dest)
    assert read_bodies(server, dest) == {}
